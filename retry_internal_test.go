package migrate

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// TestRetryDelayBound checks the pauses rueidis takes between its tries of a read whose
// connection failed: they add up to reconnectWait and then stop, and a stall is not tried
// again.
func TestRetryDelayBound(t *testing.T) {
	var waited time.Duration
	attempts := 1
	for ; ; attempts++ {
		d := retryDelay(attempts, rueidis.Completed{}, io.EOF)
		if d < 0 {
			break
		}
		if d > clusterRetryMaxDelay {
			t.Fatalf("attempt %d pauses %v, more than %v", attempts, d, clusterRetryMaxDelay)
		}
		waited += d
	}
	if waited < reconnectWait || waited > reconnectWait+clusterRetryMaxDelay {
		t.Errorf("the pauses add up to %v over %d attempts, want %v", waited, attempts, reconnectWait)
	}
	if d := retryDelay(1, rueidis.Completed{}, errors.Join(os.ErrDeadlineExceeded)); d >= 0 {
		t.Errorf("a stall is tried again after %v", d)
	}
}

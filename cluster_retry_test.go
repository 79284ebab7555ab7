package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestClusterRetry checks the one policy by which every step waits for a cluster that is
// changing: pauses that double up to clusterRetryMaxDelay, a bound of clusterSettleWait from
// the first failed try (or the last reset), and an error that says how long it waited, for
// what, and what to check.
func TestClusterRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var r clusterRetry
	var pauses []time.Duration
	for range 6 {
		start := time.Now()
		if err := r.wait(ctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
		pauses = append(pauses, time.Since(start))
	}
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		if p := pauses[i]; p < want*time.Millisecond || p > want*time.Millisecond+3*time.Second {
			t.Errorf("pause %d lasted %v, want %v", i+1, p, want*time.Millisecond)
		}
	}

	// Past the bound it gives up at once.
	r.first = time.Now().Add(-clusterSettleWait)
	start := time.Now()
	err := r.wait(ctx)
	var w *clusterWaitError
	if !errors.As(err, &w) || time.Since(start) > 500*time.Millisecond || w.tries != 7 || w.waited < clusterSettleWait {
		t.Fatalf("wait past the bound: %v (%+v) after %v, want a clusterWaitError at once", err, w, time.Since(start))
	}
	last := &Error{Side: Target, Addr: "127.0.0.1:7000", Op: "restore into db 0", Key: "k", Err: errors.New("CLUSTERDOWN The cluster is down")}
	got := w.explain(Target, "slot 3999 (node 127.0.0.1:7001)", last)
	var e *Error
	if !errors.As(got, &e) || e.Key != "k" || e.Addr != last.Addr || e.Op != last.Op {
		t.Errorf("explain lost the side, address, operation or key: %#v", got)
	}
	for _, want := range []string{"waited 1m0s (7 tries)", "slot 3999 (node 127.0.0.1:7001)", "CLUSTERDOWN", "CLUSTER NODES"} {
		if !strings.Contains(got.Error(), want) {
			t.Errorf("explain: %q lacks %q", got, want)
		}
	}

	// Progress starts it again; a context that ends stops it.
	r.reset()
	if err := r.wait(ctx); err != nil || r.tries != 1 {
		t.Errorf("after reset: %v, %d tries", err, r.tries)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.wait(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a cancelled context: %v", err)
	}
}

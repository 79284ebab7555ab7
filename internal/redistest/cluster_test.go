package redistest

import (
	"context"
	"fmt"
	"testing"
)

func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, ClusterConfig{})
	cl := c.Client(t)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if err := cl.Do(ctx, cl.B().Set().Key(fmt.Sprint(i)).Value("v").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, m := range c.Masters {
		n, err := m.Do(t, 0, "DBSIZE").AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("master %s holds no key: slots not spread", m.Addr)
		}
		total += n
	}
	if total != 100 {
		t.Errorf("masters hold %d keys, want 100", total)
	}
}

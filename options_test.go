package migrate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestRateLimitDeadline copies under a low rate limit with a deadline the limit cannot
// meet: the error must wrap context.DeadlineExceeded, as any other deadline does.
func TestRateLimitDeadline(t *testing.T) {
	t.Parallel()
	src, dst := startPair(t, redistest.Config{}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k", 2000, 8)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithRateLimit(500))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := m.Migrate(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v: want one wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned %v after the start, with a deadline of 700ms", d)
	}
	if rep == nil || rep.Keys == 0 || rep.Keys >= 2000 {
		t.Errorf("report %+v: want some of the 2000 keys copied before the deadline", rep)
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); rep != nil && n != rep.Keys {
		t.Errorf("target holds %d keys, report says %d copied", n, rep.Keys)
	}
}

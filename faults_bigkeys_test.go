package migrate_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestFaultBigKeys copies keys in pieces, by DumpRestore and by Snapshot, (a 2 MB string, collections and a stream with a
// consumer group of 30,000 elements, past a 64 KiB key budget) while the target's
// connections are killed every 100 ms, or while the target restarts (appendonly yes,
// appendfsync always): the writes whose replies were lost are settled, none applied
// twice, and the copy ends exact, with no temporary key left.
func TestFaultBigKeys(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		dst      redistest.Config
		interval time.Duration
		fault    func(t *testing.T, dst *redistest.Server) func()
	}{
		{"ClientKill", redistest.Config{}, 100 * time.Millisecond, func(t *testing.T, dst *redistest.Server) func() {
			k := dst.Client(t, 0)
			return func() {
				if err := k.Do(context.Background(), k.B().ClientKill().TypeNormal().SkipmeYes().Build()).Error(); err != nil {
					t.Error(err)
				}
			}
		}},
		{"TargetRestart", redistest.Config{Lines: []string{"appendonly yes", "appendfsync always"}}, 0, func(t *testing.T, dst *redistest.Server) func() {
			return func() {
				if err := dst.Restart(500 * time.Millisecond); err != nil {
					t.Error(err)
				}
			}
		}},
	} {
		for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}} {
			t.Run(s.Name()+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				src, dst := redistest.StartPair(t, redistest.Config{}, c.dst)
				fillBig(t, src, "big", 2<<20, 30000)
				src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "readers", "0")
				src.Do(t, 0, "XREADGROUP", "GROUP", "readers", "alice", "COUNT", "1500", "STREAMS", "big:stream", ">")
				redistest.SetKeys(t, src, 0, "small:", 200, redistest.Numbered("v"))
				var faults atomic.Int64
				fault := c.fault(t, dst)
				var log logLines
				rep, err := migrateUnderFault(t, src, dst, s, c.interval, func() { fault(); faults.Add(1) },
					migrate.WithKeyBudget(64<<10), migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
				if err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				if rep.Keys != 206 || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
					t.Errorf("report %+v: want 206 keys copied", rep.Counts)
				}
				settled := log.count("settling the writes whose replies were lost")
				t.Logf("%d writes in pieces settled after a lost reply; %d renames found landed after one", settled, log.count("the rename whose reply was lost had landed"))
				if settled == 0 {
					t.Error("no fault met a write in pieces")
				}
				redistest.AssertSame(t, src, dst, 0)
				if left := partialKeys(t, dst); len(left) > 0 {
					t.Errorf("temporary keys left on the target: %q", left)
				}
			})
		}
	}
}

// TestFaultBigKeyLost deletes the temporary key of a list copied in pieces, as a target
// that restarted without its data would lose it: the next RPUSH's reply tells, and
// DumpRestore copies the key again from the beginning (exact in the end), while Snapshot,
// which cannot read its RDB again, stops with an error that says what happened.
func TestFaultBigKeyLost(t *testing.T) {
	t.Parallel()
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
			fillBig(t, src, "big", 0, 30000)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			deleted := make(chan string, 1)
			go func() {
				defer close(deleted)
				c := dst.Client(t, 0)
				for ctx.Err() == nil {
					keys, _ := redistest.KeysOf(ctx, c, "migrate:partial:*")
					for _, k := range keys {
						if typ, _ := c.Do(ctx, c.B().Type().Key(k).Build()).ToString(); typ == "list" {
							if n, _ := c.Do(ctx, c.B().Unlink().Key(k).Build()).AsInt64(); n == 1 {
								deleted <- k
								return
							}
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			var log logLines
			rep, err := runMigration(t, src.Option(), dst.Option(), s, migrate.WithKeyBudget(64<<10),
				migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
			cancel()
			if k, ok := <-deleted; !ok {
				t.Fatal("the list's temporary key was not seen: make the copy slower")
			} else {
				t.Logf("deleted %s", k)
			}
			if _, ok := s.(migrate.Snapshot); ok {
				t.Logf("error: %v", err)
				assertErrorSays(t, err, []string{"target " + dst.Addr, `"big:list"`, "no longer holds what the target acknowledged", "appendfsync always", "run the migration again"}, nil)
			} else {
				if err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				if n := log.count("copying the key again from the beginning"); n != 1 {
					t.Errorf("the key was copied again %d times, want once", n)
				}
				if rep.Keys != 5 || rep.Failed != 0 {
					t.Errorf("report %+v: want 5 keys copied", rep.Counts)
				}
				redistest.AssertSame(t, src, dst, 0)
			}
			if left := partialKeys(t, dst); len(left) > 0 {
				t.Errorf("temporary keys left on the target: %q", left)
			}
		})
	}
}

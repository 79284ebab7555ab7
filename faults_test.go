package migrate_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// faultStrategies are the strategies that must survive a fault without a restart.
var faultStrategies = []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}, migrate.Snapshot{}}

// migrateUnderFault runs s from src into dst (slowed down so that it lasts a couple of
// seconds) and calls fault once the copy is under way, and again every interval until the
// migration returns when interval is set. It returns the report and the error.
func migrateUnderFault(t *testing.T, src, dst *redistest.Server, s migrate.Strategy, interval time.Duration, fault func(), opts ...migrate.Option) (*migrate.Report, error) {
	t.Helper()
	var started sync.Once
	copying := make(chan struct{})
	opts = append(opts, migrate.WithRateLimit(8000), migrate.WithBatchSize(50),
		migrate.WithProgress(func(p migrate.Progress) {
			if p.Scanned > 0 {
				started.Do(func() { close(copying) })
			}
		}))
	done := make(chan struct{})
	var faults atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-copying:
		case <-done:
			return
		}
		time.Sleep(300 * time.Millisecond)
		for {
			fault()
			faults.Add(1)
			if interval == 0 {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
		}
	}()
	rep, err := runMigration(t, src.Option(), dst.Option(), s, opts...)
	close(done)
	wg.Wait()
	if faults.Load() == 0 {
		t.Fatal("the migration ended before the fault; make it slower")
	}
	t.Logf("%d faults", faults.Load())
	return rep, err
}

// assertExact fails unless rep counts every key of the source copied, and nothing failed,
// skipped or expired, and the target equals the source.
func assertExact(t *testing.T, rep *migrate.Report, err error, src, dst *redistest.Server, total int) {
	t.Helper()
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if rep.Keys != int64(total) || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
		t.Errorf("copied %d of %d keys, %d failed, %d skipped, %d expired", rep.Keys, total, rep.Failed, rep.Skipped, rep.Expired)
	}
	redistest.AssertSame(t, src, dst, 0, 3)
}

// TestFaultTargetRestart restarts the target (appendonly yes, so it keeps its data) in the
// middle of the copy: the writes whose replies were lost are sent again once it is back,
// and the copy ends exact, without a restart of the migration.
func TestFaultTargetRestart(t *testing.T) {
	t.Parallel()
	for _, s := range faultStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{Lines: []string{"appendonly yes", "appendfsync always"}})
			total := fillCheckpointSource(t, src, 4000)
			rep, err := migrateUnderFault(t, src, dst, s, 0, func() {
				if err := dst.Restart(700 * time.Millisecond); err != nil {
					t.Error(err)
				}
			})
			assertExact(t, rep, err, src, dst, total)
		})
	}
}

// TestFaultClientKill kills every connection of ours to both sides (source reads, target
// writes, MigrateKeys' MIGRATE connection and the source's to the target) with CLIENT KILL,
// many times during the copy: the copy ends exact.
func TestFaultClientKill(t *testing.T) {
	t.Parallel()
	for _, s := range faultStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
			total := fillCheckpointSource(t, src, 4000)
			var killed atomic.Int64
			killers := []rueidis.Client{src.Client(t, 0), dst.Client(t, 0)}
			rep, err := migrateUnderFault(t, src, dst, s, 150*time.Millisecond, func() {
				for _, c := range killers {
					n, err := c.Do(context.Background(), c.B().ClientKill().TypeNormal().SkipmeYes().Build()).AsInt64()
					if err != nil {
						t.Error(err)
					}
					killed.Add(n)
				}
			})
			t.Logf("%d connections killed", killed.Load())
			if killed.Load() < 5 {
				t.Errorf("only %d connections killed during the copy", killed.Load())
			}
			assertExact(t, rep, err, src, dst, total)
		})
	}
}

// TestFaultStall stops one side (SIGSTOP) during a copy with a checkpoint: the migration
// fails soon after that side's ConnWriteTimeout (or MIGRATE's timeout) with an error that
// names the side, its address and the timeout, rather than hang; once the side continues,
// the same migration resumes from the checkpoint and ends exact.
func TestFaultStall(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		strategy migrate.Strategy
		side     string
	}{
		{migrate.DumpRestore{}, "target"},
		{migrate.DumpRestore{}, "source"},
		{migrate.MigrateKeys{Timeout: time.Second}, "target"},
		{migrate.MigrateKeys{Timeout: time.Second}, "source"},
	} {
		t.Run(c.strategy.Name()+"/"+c.side, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
			fillCheckpointSource(t, src, 4000)
			if _, ok := c.strategy.(migrate.MigrateKeys); ok && c.side == "target" {
				// MIGRATE sends relative TTLs: the batch a stopped target takes in when it
				// continues expires later by the stall (see MigrateKeys), beyond what
				// AssertSame tolerates. That is MIGRATE's, not the resume's.
				for _, db := range []string{"0", "3"} {
					src.Do(t, 0, "EVAL", "redis.call('SELECT', ARGV[1]) for _, k in ipairs(redis.call('KEYS', '*')) do redis.call('PERSIST', k) end", "0", db)
				}
			}
			stopped := dst
			if c.side == "source" {
				stopped = src
			}
			file := filepath.Join(t.TempDir(), "checkpoint.json")
			srcOpt, dstOpt := src.Option(), dst.Option()
			srcOpt.ConnWriteTimeout, dstOpt.ConnWriteTimeout = time.Second, time.Second
			var stoppedAt time.Time
			var started sync.Once
			m, err := migrate.New(srcOpt, dstOpt, migrate.WithStrategy(c.strategy),
				migrate.WithCheckpoint(migrate.CheckpointFile(file)), migrate.WithRateLimit(8000), migrate.WithBatchSize(50),
				migrate.WithProgress(func(p migrate.Progress) {
					if p.Scanned > 1000 {
						started.Do(func() {
							stoppedAt = time.Now()
							if err := stopped.Pause(); err != nil {
								t.Error(err)
							}
						})
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
			defer cancel()
			_, err = m.Migrate(ctx)
			m.Close()
			took := time.Since(stoppedAt)
			if err := stopped.Continue(); err != nil {
				t.Fatal(err)
			}
			if stoppedAt.IsZero() {
				t.Fatal("the migration ended before the side was stopped")
			}
			t.Logf("failed %v after the %s stopped: %v", took, c.side, err)
			assertErrorSays(t, err, []string{c.side + " " + stopped.Addr, "did not answer within ConnWriteTimeout (1s)",
				"the checkpoint file " + file, "run the migration again"}, nil)
			if took > 12*time.Second {
				t.Errorf("took %v to fail after the %s stopped, with a ConnWriteTimeout of 1s", took, c.side)
			}
			rep, err := runMigration(t, src.Option(), dst.Option(), c.strategy, migrate.WithCheckpoint(migrate.CheckpointFile(file)))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(rep.Resumed, "checkpoint saved") || rep.Failed != 0 {
				t.Errorf("the second run did not resume cleanly: Resumed %q, %d failed", rep.Resumed, rep.Failed)
			}
			redistest.AssertSame(t, src, dst, 0, 3)
		})
	}
}

// TestFaultSourceRestart restarts the source (appendonly yes) in the middle of DumpRestore's
// walk: the SCAN cursor of the server before means nothing to the one after, so the walk
// stops with an error that says so rather than skip keys in silence.
func TestFaultSourceRestart(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{"appendonly yes", "appendfsync always"}}, redistest.Config{})
	fillCheckpointSource(t, src, 4000)
	_, err := migrateUnderFault(t, src, dst, migrate.DumpRestore{}, 0, func() {
		if err := src.Restart(300 * time.Millisecond); err != nil {
			t.Error(err)
		}
	})
	assertErrorSays(t, err, []string{"source " + src.Addr, "scan db", "restarted", "would skip keys"}, nil)
}

package migrate_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestClusterTargetDatabases checks how the databases of a standalone source go into a
// cluster's only database: refused unless the user says how, one database as it is, or
// every database with a prefix.
func TestClusterTargetDatabases(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	copyWith := func(opts ...migrate.Option) (*migrate.Report, error) {
		return runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, opts...)
	}

	_, err := copyWith()
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "0, 3, 15") ||
		!strings.Contains(err.Error(), "WithDatabases") || !strings.Contains(err.Error(), "WithDBPrefix") {
		t.Fatalf("several databases into a cluster: %v, want a refusal naming them and both options", err)
	}

	rep, err := copyWith(migrate.WithDatabases(3), migrate.WithVerify())
	if err != nil {
		t.Fatalf("WithDatabases(3): %v", err)
	}
	if rep.Keys != int64(counts[3]) {
		t.Errorf("WithDatabases(3) copied %d keys, want %d", rep.Keys, counts[3])
	}
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 3)}, dst.Side(t), "")
	dst.Flush(t)

	rep, err = copyWith(migrate.WithDBPrefix("src%d/"), migrate.WithVerify())
	if err != nil {
		t.Fatalf("WithDBPrefix: %v", err)
	}
	if rep.Keys != int64(counts[0]+counts[3]+counts[15]) || !rep.Verify.Equal() {
		t.Errorf("WithDBPrefix: %v, verify %v", rep, rep.Verify)
	}
	cl := dst.Client(t)
	for _, key := range []string{"src0/db0:str:int", "src3/db3:hash:big", "src15/db15:stream"} {
		if n, err := cl.Do(ctx, cl.B().Exists().Key(key).Build()).AsInt64(); err != nil || n != 1 {
			t.Errorf("%q on the cluster: %d, %v; want it there", key, n, err)
		}
	}

	if _, err := migrate.New(src.Option(), dst.Option(), migrate.WithDBPrefix("db%s")); err == nil {
		t.Errorf("WithDBPrefix(%q) accepted", "db%s")
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithDBPrefix("x%d:"), migrate.WithStrategy(migrate.MigrateKeys{}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Migrate(ctx); !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "renames keys") {
		t.Errorf("MigrateKeys with a prefix: %v, want a refusal", err)
	}
}

// TestClusterResharding moves slots on both clusters while a rate-limited copy runs, and
// expects every key copied once. Snapshot, which refuses a source being resharded, sees
// the target's slots move only.
func TestClusterResharding(t *testing.T) {
	t.Parallel()
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}, migrate.Snapshot{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}}})
			dst := redistest.StartCluster(t, redistest.ClusterConfig{})
			const keys = 3000
			src.AddKeys(t, "k:", keys, 100)
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s),
				migrate.WithRateLimit(1500), migrate.WithBatchSize(50))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ids := func(c *redistest.Cluster) []string {
				var out []string
				for _, n := range c.Masters {
					out = append(out, c.ID(t, n))
				}
				return out
			}
			srcIDs, dstIDs := ids(src), ids(dst)
			reshards := make(chan error, 2)
			go func() {
				time.Sleep(300 * time.Millisecond)
				reshards <- dst.Reshard(dst.Masters[0], dstIDs[0], dstIDs[1], 1500)
			}()
			go func() {
				if s.Name() == "snapshot" {
					reshards <- nil
					return
				}
				time.Sleep(500 * time.Millisecond)
				reshards <- src.Reshard(src.Masters[1], srcIDs[1], srcIDs[2], 1500)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := m.Migrate(ctx)
			for range 2 {
				if rerr := <-reshards; rerr != nil {
					t.Fatal(rerr)
				}
			}
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if rep.Keys != keys || rep.Scanned != keys || rep.Failed != 0 {
				t.Errorf("report %+v, want %d keys scanned and copied", rep.Counts, keys)
			}
			redistest.AssertSameSides(t, src.Side(t), dst.Side(t), "")
		})
	}
}

// TestClusterFailover stops a source master while a copy runs: the copy waits for its
// replica's promotion and finishes.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
			dst := redistest.StartCluster(t, redistest.ClusterConfig{})
			const keys = 3000
			src.AddKeys(t, "k:", keys, 100)
			// The master dies once the copy is under way: the checks before it take their
			// own time on a busy machine.
			var kill sync.Once
			var killed atomic.Bool
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s),
				migrate.WithRateLimit(1500), migrate.WithBatchSize(50),
				migrate.WithProgress(func(p migrate.Progress) {
					if p.Keys > 0 && p.Keys < keys/2 {
						kill.Do(func() { killed.Store(true); go src.Masters[0].Stop() })
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := m.Migrate(ctx)
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if !killed.Load() {
				t.Fatal("the master was not stopped during the copy")
			}
			src.WaitOK(t, src.Masters[1])
			if rep.Keys != keys || rep.Scanned != keys || rep.Failed != 0 {
				t.Errorf("report %+v, want %d keys scanned and copied", rep.Counts, keys)
			}
			redistest.AssertSameSides(t, src.Side(t), dst.Side(t), "")
		})
	}
}

// TestClusterReadFromReplicas walks the source's replicas rather than its masters.
func TestClusterReadFromReplicas(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "k:", 1000, 10)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithReadFromReplicas())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil || rep.Keys != 1000 {
		t.Fatalf("Migrate: %v, %v", rep, err)
	}
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
	for _, s := range src.Masters {
		stats, _ := s.Do(t, 0, "INFO", "commandstats").ToString()
		if strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
			t.Errorf("master %s was walked: %s", s.Addr, stats)
		}
	}
	for _, s := range src.Replicas {
		if stats, _ := s.Do(t, 0, "INFO", "commandstats").ToString(); !strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
			t.Errorf("replica %s was not walked", s.Addr)
		}
	}
}

// TestClusterSnapshotRefusesResharding checks that Snapshot refuses a source cluster whose
// slots are being moved, and that Auto then passes it over.
func TestClusterSnapshotRefusesResharding(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "k:", 100, 10)
	// Slot 0 belongs to the first master: mark it as moving to the second.
	src.Masters[0].Do(t, 0, "CLUSTER", "SETSLOT", "0", "MIGRATING", src.ID(t, src.Masters[1]))
	m, err := migrate.New(src.Option(), dst.Option())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if rep.Strategy == "snapshot" || rep.Keys != 100 {
		t.Errorf("report %v, want 100 keys copied by another strategy than snapshot", rep)
	}
	for _, s := range rep.Steps {
		if s.Strategy == "snapshot" && (s.OK || !strings.Contains(s.Err.Error(), "being moved")) {
			t.Errorf("snapshot verdict %v, want a refusal that says slots are being moved", s.Err)
		}
	}
}

// TestClusterCancel cancels copies between clusters and expects them to return promptly
// and leave no goroutine behind once closed.
func TestClusterCancel(t *testing.T) {
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	src.AddKeys(t, "k:", 3000, 10)
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{}} {
		before := runtime.NumGoroutine()
		m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s), migrate.WithRateLimit(1500),
			migrate.WithConflict(migrate.Replace))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		time.AfterFunc(500*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
		_, err = m.Migrate(ctx)
		if late := time.Since(<-cancelled); late > 500*time.Millisecond {
			t.Errorf("%s: Migrate returned %v after the cancellation", s.Name(), late)
		}
		m.Close()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", s.Name(), err)
		}
		// A rueidis cluster client that refreshed its slot map closes the connections it
		// dropped 5 s later, from a goroutine that Close does not stop.
		redistest.WaitGoroutines(t, before, 7*time.Second)
	}
}

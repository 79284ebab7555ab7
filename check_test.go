package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCheckReplicationDatabases: a source with more databases than the target, keys in
// one the target lacks, would make the target exit when it loads the sync; Check refuses
// it and names both counts. A source configured with more databases but keys only in db 0
// is refused by Replication (a write to a higher database would be lost on the replica),
// and copied by DumpRestore.
func TestCheckReplicationDatabases(t *testing.T) {
	t.Parallel()
	t.Run("keys in a database the target lacks", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{Lines: []string{"databases 32"}})
		dst := redistest.Start(t, redistest.Config{})
		src.Do(t, 20, "SET", "k", "v")
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.Replication{})
		wantRefused(t, err, "db 20", "32", "16")
		time.Sleep(100 * time.Millisecond)
		if dst.Stopped() {
			t.Fatalf("the target exited: %s", dst.Log())
		}
		if n := dst.DBSize(t, 0); n != 0 {
			t.Errorf("target db 0 holds %d keys, want none", n)
		}
	})
	t.Run("more databases configured, keys in db 0", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{Lines: []string{"databases 32"}})
		dst := redistest.Start(t, redistest.Config{})
		src.Do(t, 0, "SET", "k", "v")
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.Replication{})
		wantRefused(t, err, "32 databases", "16")
		file := filepath.Join(t.TempDir(), "dump.rdb")
		_, err = runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{ToFile: file})
		wantRefused(t, err, "32 databases", "16", "ToFile")
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("ToFile was written after the refusal (%v)", err)
		}
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
		if err != nil {
			t.Fatalf("DumpRestore: %v", err)
		}
		if rep.Keys != 1 {
			t.Errorf("DumpRestore copied %d keys, want 1", rep.Keys)
		}
		if v, _ := dst.Do(t, 0, "GET", "k").ToString(); v != "v" {
			t.Errorf("target k = %q, want v", v)
		}
	})
}

// TestCheckTargetDatabases: every copying strategy refuses, before its first write, a
// source database the target does not have; WithDatabases and WithDBPrefix make it run.
// The target's count is read with CONFIG GET, or probed with SELECT where CONFIG is
// refused.
func TestCheckTargetDatabases(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{"databases 32"}})
	redistest.AddKeys(t, src, 0, "a:", 100, 10)
	redistest.AddKeys(t, src, 20, "b:", 100, 10)
	strategies := []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{}}
	for _, s := range strategies {
		for _, managed := range []bool{false, true} {
			name := s.Name()
			cfg := redistest.Config{}
			if managed {
				name += " without CONFIG"
				cfg.Rename = map[string]string{"CONFIG": ""}
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dst := redistest.Start(t, cfg)
				_, err := runMigration(t, src.Option(), dst.Option(), s)
				wantRefused(t, err, "db 20", "16", "WithDatabases", "WithDBPrefix")
				if n := dst.DBSize(t, 0); n != 0 {
					t.Fatalf("target db 0 holds %d keys after the refusal, want none", n)
				}

				rep, err := runMigration(t, src.Option(), dst.Option(), s, migrate.WithDatabases(0))
				if err != nil {
					t.Fatalf("WithDatabases(0): %v", err)
				}
				if rep.Keys != 100 || dst.DBSize(t, 0) != 100 {
					t.Errorf("WithDatabases(0): %d keys copied, %d on the target, want 100", rep.Keys, dst.DBSize(t, 0))
				}

				rep, err = runMigration(t, src.Option(), dst.Option(), s, migrate.WithDBPrefix(""), migrate.WithConflict(migrate.Skip))
				if err != nil {
					t.Fatalf("WithDBPrefix: %v", err)
				}
				if n := dst.DBSize(t, 0); n != 200 {
					t.Errorf("WithDBPrefix: %d keys in target db 0, want 200 (report %v)", n, rep)
				}
			})
		}
	}
}

// evictedKeys reads evicted_keys from the server's INFO stats.
func evictedKeys(t *testing.T, s *redistest.Server) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s.Info(t, "evicted_keys"), 10, 64)
	if err != nil {
		t.Fatalf("evicted_keys in INFO stats of %s: %v", s.Addr, err)
	}
	return n
}

// evictedCount returns the number of keys an ErrEvicted error says were evicted, failing
// the test unless it says a positive number.
func evictedCount(t *testing.T, err error) int64 {
	t.Helper()
	_, after, ok := strings.Cut(err.Error(), "evicted ")
	var n int64
	if ok {
		_, _ = fmt.Sscanf(after, "%d keys", &n)
	}
	if n <= 0 {
		t.Fatalf("error %q does not say how many keys were evicted", err)
	}
	return n
}

// TestCheckEvictingTarget: a target that evicts keys and cannot hold the source's data is
// refused, WithEvictingTarget lets the migration run, and a run during which the target
// evicts keys fails with ErrEvicted and the count, with its Report.
func TestCheckEvictingTarget(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 8000, 500) // about 4.5 MB
	small := redistest.Config{Lines: []string{"maxmemory 3mb", "maxmemory-policy allkeys-lru"}}
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}, migrate.Snapshot{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			dst := redistest.Start(t, small)
			_, err := runMigration(t, src.Option(), dst.Option(), s)
			wantRefused(t, err, "maxmemory", "allkeys-lru", "WithEvictingTarget")
			if n := dst.DBSize(t, 0); n != 0 {
				t.Fatalf("target holds %d keys after the refusal, want none", n)
			}

			rep, err := runMigration(t, src.Option(), dst.Option(), s, migrate.WithEvictingTarget())
			if rep == nil {
				t.Fatal("no report")
			}
			n := evictedKeys(t, dst)
			if n == 0 {
				t.Fatalf("the target evicted no key (report %v, err %v); the test needs a smaller target", rep, err)
			}
			if !errors.Is(err, migrate.ErrEvicted) {
				t.Fatalf("err = %v, want ErrEvicted (the target evicted %d keys)", err, n)
			}
			if said := evictedCount(t, err); said > n {
				t.Errorf("error %q says more keys evicted than the target's %d", err, n)
			}
			if rep.Keys == 0 {
				t.Errorf("report %v counts no key copied", rep)
			}
		})
	}
	t.Run("plan", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, small)
		for _, opts := range [][]migrate.Option{nil, {migrate.WithEvictingTarget()}} {
			m, err := migrate.New(src.Option(), dst.Option(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			p, err := m.Plan(context.Background())
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			if opts == nil {
				for _, step := range p.Steps {
					if !errors.Is(step.Err, migrate.ErrUnsupported) || !strings.Contains(step.Err.Error(), "WithEvictingTarget") {
						t.Errorf("plan step %s: %v, want the eviction refusal", step.Strategy, step.Err)
					}
				}
				if p.Chosen != "" {
					t.Errorf("plan chose %q, want none", p.Chosen)
				}
			} else if p.Chosen == "" {
				t.Errorf("with WithEvictingTarget, plan chose none:\n%v", p)
			}
		}
	})
	t.Run("fits", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{Lines: []string{"maxmemory 64mb", "maxmemory-policy allkeys-lru"}})
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
		if err != nil {
			t.Fatalf("a target with room enough: %v", err)
		}
		if rep.Keys != 8000 || dst.DBSize(t, 0) != 8000 {
			t.Errorf("%d keys copied, %d on the target, want 8000", rep.Keys, dst.DBSize(t, 0))
		}
	})
	t.Run("part of the source fits", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{})
		redistest.AddKeys(t, src, 0, "k:", 8000, 500)
		redistest.AddKeys(t, src, 1, "k:", 100, 500)
		dst := redistest.Start(t, small)
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithDatabases(1))
		if err != nil {
			t.Fatalf("db 1 (50 KB) into a 3 MB target: %v", err)
		}
		if rep.Keys != 100 || dst.DBSize(t, 1) != 100 {
			t.Errorf("%d keys copied, %d on the target, want 100", rep.Keys, dst.DBSize(t, 1))
		}
	})
}

// TestCheckEvictingClusterTarget: the evictions of every master of a cluster target are
// counted.
func TestCheckEvictingClusterTarget(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 16000, 500) // about 9 MB
	dst := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{
		Lines: []string{"maxmemory 3mb", "maxmemory-policy allkeys-lru"}}})
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	wantRefused(t, err, "maxmemory", "WithEvictingTarget")
	_, err = runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithEvictingTarget())
	var n int64
	for _, s := range dst.Masters {
		n += evictedKeys(t, s)
	}
	if n == 0 {
		t.Fatalf("the target evicted no key (err %v); the test needs a smaller target", err)
	}
	if !errors.Is(err, migrate.ErrEvicted) {
		t.Fatalf("err = %v, want ErrEvicted (the target evicted %d keys)", err, n)
	}
	if said := evictedCount(t, err); said > n {
		t.Errorf("error %q says more keys evicted than the target's %d", err, n)
	}
}

// TestCheckSameServer: a server given as both source and target is refused at once by
// every strategy and by Plan, whatever address names it; and so is a cluster named by
// different nodes.
func TestCheckSameServer(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Config{})
	redistest.AddKeys(t, s, 0, "k:", 100, 10)
	other := redistest.OptionFor("localhost:" + strconv.Itoa(s.Port))
	strategies := []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{},
		migrate.Replication{}, migrate.Auto{}}
	for _, st := range strategies {
		t.Run(st.Name(), func(t *testing.T) {
			start := time.Now()
			rep, err := runMigration(t, s.Option(), other, st, migrate.WithDiscardTarget(), migrate.WithConflict(migrate.Replace))
			wantRefused(t, err, "same server")
			// Generous for a loaded machine; MigrateKeys used to wait 5 s per batch.
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("the refusal took %v", d)
			}
			if rep.Keys != 0 {
				t.Errorf("report %v", rep)
			}
		})
	}
	m, err := migrate.New(s.Option(), other)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := m.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Chosen != "" || len(p.Steps) == 0 {
		t.Fatalf("plan chose %q, want none: %v", p.Chosen, p)
	}
	for _, step := range p.Steps {
		if step.OK || !errors.Is(step.Err, migrate.ErrUnsupported) || !strings.Contains(step.Err.Error(), "same server") {
			t.Errorf("plan step %s: %v, want the same-server refusal", step.Strategy, step.Err)
		}
	}
	if s.DBSize(t, 0) != 100 {
		t.Errorf("the server holds %d keys, want 100", s.DBSize(t, 0))
	}
}

func TestCheckSameCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	c.AddKeys(t, "k:", 100, 10)
	other := c.Option()
	other.InitAddress = []string{c.Masters[2].Addr}
	for _, st := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{}, migrate.Auto{}} {
		t.Run(st.Name(), func(t *testing.T) {
			start := time.Now()
			_, err := runMigration(t, c.Option(), other, st, migrate.WithConflict(migrate.Replace))
			wantRefused(t, err, "same cluster")
			// Generous for a loaded machine; MigrateKeys used to wait 5 s per batch.
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("the refusal took %v", d)
			}
		})
	}
}

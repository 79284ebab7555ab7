package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// slowSync makes a source wait before it forks the snapshot of a diskless transfer, which
// leaves a window for a write that the snapshot holds although it came after the start.
var slowSync = []string{"repl-diskless-sync yes", "repl-diskless-sync-delay 2"}

// migrateWithLateWrite starts migrating src into dst with opts and, once src has a
// replica waiting for its snapshot (the migration's own, before the fork), runs write. It
// fails the test unless the snapshot is still to be forked after write, so that what write
// did is in it.
func migrateWithLateWrite(t *testing.T, src *redistest.Server, dst rueidis.ClientOption, write func(), opts ...migrate.Option) (*migrate.Report, time.Duration, error) {
	t.Helper()
	m, err := migrate.New(src.Option(), dst, append([]migrate.Option{migrate.WithStrategy(migrate.Snapshot{})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		rep *migrate.Report
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		rep, err := m.Migrate(ctx)
		done <- result{rep, err}
	}()
	info := func() string {
		s, _ := src.Do(t, 0, "INFO", "replication").ToString()
		return s
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(info(), "state=wait_bgsave") {
		select {
		case r := <-done:
			t.Fatalf("the migration ended (%v, %v) before the source had a replica", r.rep, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica waits for the source's snapshot after 30s:\n%s", info())
		}
		time.Sleep(5 * time.Millisecond)
	}
	write()
	if s := info(); !strings.Contains(s, "state=wait_bgsave") {
		t.Fatalf("the source forked its snapshot before the write ended: the test proves nothing:\n%s", s)
	}
	r := <-done
	return r.rep, time.Since(start), r.err
}

// TestSnapshotDatabasesSelected checks that a database WithDatabases leaves out is never
// copied, even when the source showed no keys in it at the start: a file from elsewhere that
// holds it, or keys written to it before the snapshot's fork.
func TestSnapshotDatabasesSelected(t *testing.T) {
	t.Parallel()
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		redistest.SetKeys(t, src, 0, "a", 20, redistest.Same("db0"))
		redistest.SetKeys(t, src, 3, "b", 30, redistest.Same("db3"))
		src.Do(t, 0, "SAVE")
		data, err := os.ReadFile(filepath.Join(src.Dir, "dump.rdb"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "other.rdb")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// The source now shows database 0 only; the file still holds 3.
		src.Do(t, 3, "FLUSHDB")
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{FromFile: path}, migrate.WithDatabases(0))
		if err != nil {
			t.Fatal(err)
		}
		if n := dst.DBSize(t, 3); n != 0 {
			t.Errorf("target database 3 holds %d keys, want none: WithDatabases(0)", n)
		}
		if n := dst.DBSize(t, 0); n != 20 {
			t.Errorf("target database 0 holds %d keys, want 20", n)
		}
		assertCopied(t, rep, map[int]int64{0: 20})
	})
	t.Run("replication", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{Lines: slowSync}, redistest.Config{})
		redistest.SetKeys(t, src, 0, "a", 20, redistest.Same("db0"))
		rep, _, err := migrateWithLateWrite(t, src, dst.Option(), func() { src.Do(t, 3, "SET", "late", "db3") },
			migrate.WithDatabases(0), migrate.WithVerify())
		if err != nil {
			t.Fatal(err)
		}
		if n := dst.DBSize(t, 3); n != 0 {
			t.Errorf("target database 3 holds %d keys, want none: WithDatabases(0)", n)
		}
		redistest.AssertSame(t, src, dst, 0)
		assertCopied(t, rep, map[int]int64{0: 20})
		if v := rep.Verify; v == nil || !v.Equal() || v.Compared != 20 {
			t.Errorf("verify: %v, want 20 keys compared and equal", v)
		}
	})
}

// TestSnapshotDatabasesLate checks where a database that gains its first keys after the
// migration started (before the snapshot's fork) goes by default: into the same number on
// a standalone target; into a cluster only when WithDBPrefix says how, else the migration
// stops at once, naming it, with db 0's keys untouched.
func TestSnapshotDatabasesLate(t *testing.T) {
	t.Parallel()
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{Lines: slowSync}, redistest.Config{})
		redistest.SetKeys(t, src, 0, "a", 20, redistest.Same("db0"))
		rep, _, err := migrateWithLateWrite(t, src, dst.Option(), func() { redistest.SetKeys(t, src, 1, "b", 5, redistest.Same("db1")) })
		if err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, 0, 1)
		assertCopied(t, rep, map[int]int64{0: 20, 1: 5})
	})
	t.Run("standalone without the database", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{Lines: slowSync}, redistest.Config{Lines: []string{"databases 4"}})
		redistest.SetKeys(t, src, 0, "a", 20, redistest.Same("db0"))
		_, _, err := migrateWithLateWrite(t, src, dst.Option(), func() { redistest.SetKeys(t, src, 5, "b", 5, redistest.Same("db5")) })
		if err == nil || !strings.Contains(err.Error(), "database 5") || !strings.Contains(err.Error(), "WithDatabases") ||
			!strings.Contains(err.Error(), "WithDBPrefix") {
			t.Fatalf("err = %v, want an error naming database 5, WithDatabases and WithDBPrefix", err)
		}
	})

	src := redistest.Start(t, redistest.Config{Lines: slowSync})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	cl := dst.Client(t)
	const n = 100
	redistest.SetKeys(t, src, 0, "user:", n, redistest.Same("db0-value"))
	reset := func() {
		src.Do(t, 1, "FLUSHDB")
		dst.Flush(t)
	}
	lateDB1 := func() { redistest.SetKeys(t, src, 1, "user:", 10, redistest.Same("db1-value")) }
	get := func(key string) string {
		v, err := cl.Do(context.Background(), cl.B().Get().Key(key).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			t.Fatal(err)
		}
		return v
	}

	// Not parallel: they share the source and the cluster.
	t.Run("cluster", func(t *testing.T) {
		reset()
		rep, took, err := migrateWithLateWrite(t, src, dst.Option(), lateDB1, migrate.WithConflict(migrate.Replace))
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "database 1") ||
			!strings.Contains(err.Error(), "WithDatabases") || !strings.Contains(err.Error(), "WithDBPrefix") {
			t.Fatalf("err = %v, want ErrUnsupported naming database 1, WithDatabases and WithDBPrefix", err)
		}
		if took > 30*time.Second {
			t.Errorf("the migration took %v to fail", took)
		}
		for i := range n {
			if v := get(fmt.Sprintf("user:%d", i)); v != "" && v != "db0-value" {
				t.Errorf("user:%d = %q on the cluster, want db 0's value", i, v)
			}
		}
		if held := dst.DBSize(t); rep.Keys > held || rep.Failed != 0 || rep.Databases[1] != (migrate.Counts{}) {
			t.Errorf("report %+v (db 1: %+v) with %d keys on the cluster: want no more copied than held, db 1 not counted", rep.Counts, rep.Databases[1], held)
		}
	})
	t.Run("file into cluster", func(t *testing.T) {
		reset()
		other := redistest.Start(t, redistest.Config{})
		redistest.SetKeys(t, other, 0, "user:", 5, redistest.Same("file-db0"))
		redistest.SetKeys(t, other, 3, "user:", 5, redistest.Same("file-db3"))
		other.Do(t, 0, "SAVE")
		// The source shows database 0 only; the file holds 0 and 3.
		m, err := migrate.New(src.Option(), dst.Option(), migrate.WithConflict(migrate.Replace),
			migrate.WithStrategy(migrate.Snapshot{FromFile: filepath.Join(other.Dir, "dump.rdb")}))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		_, err = m.Migrate(context.Background())
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "database 3") {
			t.Fatalf("err = %v, want ErrUnsupported naming database 3", err)
		}
		for i := range 5 {
			if v := get(fmt.Sprintf("user:%d", i)); v != "" && v != "file-db0" {
				t.Errorf("user:%d = %q on the cluster, want the file's db 0 value", i, v)
			}
		}
	})
	t.Run("cluster with databases", func(t *testing.T) {
		reset()
		rep, _, err := migrateWithLateWrite(t, src, dst.Option(), lateDB1,
			migrate.WithConflict(migrate.Replace), migrate.WithDatabases(0))
		if err != nil {
			t.Fatal(err)
		}
		if v := get("user:7"); v != "db0-value" {
			t.Errorf("user:7 = %q on the cluster, want db 0's value", v)
		}
		if held := dst.DBSize(t); held != n {
			t.Errorf("the cluster holds %d keys, want %d", held, n)
		}
		assertCopied(t, rep, map[int]int64{0: n})
	})
	t.Run("cluster with prefix", func(t *testing.T) {
		reset()
		rep, _, err := migrateWithLateWrite(t, src, dst.Option(), lateDB1,
			migrate.WithConflict(migrate.Replace), migrate.WithDBPrefix("db%d:"))
		if err != nil {
			t.Fatal(err)
		}
		if v, w := get("db0:user:7"), get("db1:user:7"); v != "db0-value" || w != "db1-value" {
			t.Errorf("db0:user:7 = %q and db1:user:7 = %q on the cluster, want db0-value and db1-value", v, w)
		}
		if held := dst.DBSize(t); held != n+10 {
			t.Errorf("the cluster holds %d keys, want %d", held, n+10)
		}
		assertCopied(t, rep, map[int]int64{0: n, 1: 10})
	})
}

// TestSnapshotCancelCounts cancels a Snapshot while its restores wait on a target that is
// busy (DEBUG SLEEP): no key counts as failed, and no more count as copied than the target
// holds. It is not parallel: it counts goroutines.
func TestSnapshotCancelCounts(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{Lines: quickSync}, redistest.Config{})
	src.Do(t, 0, "DEBUG", "POPULATE", "200000", "key", "20")
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slept := make(chan error, 1)
	var once bool
	progress := func(p migrate.Progress) {
		if p.Keys > 0 && !once {
			once = true
			go func() {
				c, err := dst.Connect(0)
				if err != nil {
					slept <- err
					return
				}
				defer c.Close()
				slept <- c.Do(context.Background(), c.B().Arbitrary("DEBUG", "SLEEP", "0.5").Build()).Error()
			}()
			time.AfterFunc(200*time.Millisecond, cancel)
		}
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithRateLimit(100000), migrate.WithProgress(progress))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Migrate(ctx)
	m.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	held := dst.DBSize(t, 0)
	if rep.Failed != 0 || rep.Keys == 0 || rep.Keys > held || rep.Keys >= 200000 {
		t.Errorf("report %+v with %d keys on the target: want a partial copy, nothing failed, no more copied than held", rep.Counts, held)
	}
	redistest.WaitGoroutines(t, before, 3*time.Second)
}

// TestSnapshotErrorCounts fails a Snapshot on a conflict in database 0 while the keys of
// database 1 follow: only the conflicting key counts as failed, none of database 1's.
func TestSnapshotErrorCounts(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: quickSync}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "k", 1000, redistest.Same("v"))
	src.Do(t, 1, "DEBUG", "POPULATE", "50000", "key", "20")
	dst.Do(t, 0, "SET", "k999", "target")
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{})
	if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), "k999") {
		t.Fatalf("err = %v, want ErrConflict naming k999", err)
	}
	if rep.Failed != 1 || rep.Databases[0].Failed != 1 {
		t.Errorf("report %+v (db 0: %+v, db 1: %+v), want the one conflicting key failed", rep.Counts, rep.Databases[0], rep.Databases[1])
	}
	for db := range 2 {
		held := dst.DBSize(t, db)
		if db == 0 {
			held-- // the target's own k999
		}
		if c := rep.Databases[db]; c.Keys > held {
			t.Errorf("report db %d: %+v, and the target holds %d of its keys", db, c, held)
		}
	}
}

// TestSnapshotLoadFailsCounts checks that ToFile counts no key as copied when its Load hook
// fails: the target then holds none of them.
func TestSnapshotLoadFailsCounts(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: quickSync}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "k", 50, redistest.Same("v"))
	boom := errors.New("boom")
	s := migrate.Snapshot{ToFile: filepath.Join(t.TempDir(), "snap.rdb"),
		Load: func(context.Context, string) error { return boom }}
	rep, err := runMigration(t, src.Option(), dst.Option(), s)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	if rep.Keys != 0 || rep.Bytes != 0 || rep.Failed != 0 || rep.Scanned != 50 {
		t.Errorf("report %+v, want 50 keys scanned and none copied", rep.Counts)
	}
}

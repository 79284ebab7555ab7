package migrate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCheckpointSnapshotResume kills a Snapshot in a child process five times while it
// restores, and between kills the source deletes and changes keys the killed run may have
// written: the resumed run restores a new snapshot, and the target ends equal to the source,
// with no key the source deleted.
func TestCheckpointSnapshotResume(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	fillCheckpointSource(t, src, 2000)
	k := newKilledRun(t, "snapshot", src.Addr, dst.Addr)
	var deleted rueidis.Commands // EXISTS of each key deleted, on the target
	c0, c3, d0 := src.Client(t, 0), src.Client(t, 3), dst.Client(t, 0)
	ctx := context.Background()
	k.killFiveTimes(t, func() time.Duration { return time.Duration(150+rand.Intn(400)) * time.Millisecond }, func(kill int) {
		var del, set rueidis.Commands
		for i := range 100 {
			key := fmt.Sprintf("db0:k:%d", kill*100+i)
			del = append(del, c0.B().Del().Key(key).Build())
			set = append(set, c3.B().Set().Key(fmt.Sprintf("db3:k:%d", kill*100+i)).Value("changed").Build())
			deleted = append(deleted, d0.B().Exists().Key(key).Build())
		}
		c0.DoMulti(ctx, del...)
		c3.DoMulti(ctx, set...)
	})
	left := 0
	for _, r := range d0.DoMulti(ctx, deleted...) {
		if n, _ := r.AsInt64(); n == 1 {
			left++
		}
	}
	if left == 0 {
		t.Error("the killed runs wrote none of the keys the source deleted since: the test shows nothing")
	}
	rep, err := k.run(0)
	if err != nil {
		t.Fatal(err)
	}
	checkResumed(t, rep)
	if !strings.Contains(rep.Resumed, "new snapshot") {
		t.Errorf("Report.Resumed %q, want it to say a new snapshot is restored", rep.Resumed)
	}
	t.Logf("%d keys the killed runs wrote were deleted on the source; resumed from %s: %v", left, rep.Resumed, rep)
	redistest.AssertSame(t, src, dst, 0, 3)
	k.checkComplete(t)
}

// TestCheckpointSnapshotFollowResume kills a following Snapshot in a child process five
// times, while it restores and while it follows, under a writer of commands whose replay
// twice or never would show (INCR, LPUSH, APPEND, transactions, scripts, FLUSHDB); each run
// resumes, the last cuts over, and the target ends equal to the source, counters exact.
func TestCheckpointSnapshotFollowResume(t *testing.T) {
	t.Parallel()
	// The backlog holds the writes made while no run follows, as it must (repl-backlog-size).
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync, "repl-backlog-size 64mb"}}, redistest.Config{})
	loadFunction(t, src)
	redistest.AddKeys(t, src, 0, "bulk:", 1500, 10)
	w := startFollowWriter(t, src, 2*time.Millisecond)
	k := newKilledRun(t, "snapshot-follow", src.Addr, dst.Addr, "MIGRATE_CHECKPOINT_DATABASES=0,1,2")
	following := 0
	n := 0
	k.killFiveTimes(t, func() time.Duration {
		// Alternately while it restores and once it follows.
		n++
		if n%2 == 1 {
			return time.Duration(100+rand.Intn(300)) * time.Millisecond
		}
		return time.Duration(1500+rand.Intn(800)) * time.Millisecond
	}, func(kill int) {
		var saved struct{ Follow *struct{ Offset int64 } }
		if b, err := os.ReadFile(k.file); err == nil && json.Unmarshal(b, &saved) == nil && saved.Follow != nil {
			following++
		}
	})
	if following == 0 {
		t.Error("no kill came while the migration followed the stream")
	}
	rounds, rep := k.cutOver(t, w)
	t.Logf("%d writer rounds, %d kills while following; resumed from %s: %v", rounds, following, rep.Resumed, rep)
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
	if n, _ := dst.Do(t, 0, "EXISTS", "migrate:offset").AsInt64(); n != 0 {
		t.Error("the offset key is left on the target after the cutover")
	}
	k.checkComplete(t)
}

// TestCheckpointFollowBacklogGap stops a following Snapshot, then has the source write
// more than its backlog holds: the resumed run fails with ErrFollowLost, saying how many
// bytes are missing and naming repl-backlog-size, and leaves the target as it was.
func TestCheckpointFollowBacklogGap(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync, "repl-backlog-size 16kb"}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	store := migrate.CheckpointFile(t.TempDir() + "/checkpoint.json")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := migrateWithin(t, ctx, src, dst, migrate.WithStrategy(migrate.Snapshot{}), migrate.WithSpoolDir(t.TempDir()),
		migrate.WithFollow(func(context.Context) error {
			src.Do(t, 0, "INCR", "n")
			for v, _ := dst.Do(t, 0, "GET", "n").ToString(); v != "1"; v, _ = dst.Do(t, 0, "GET", "n").ToString() {
				time.Sleep(10 * time.Millisecond)
			}
			cancel() // as a kill would stop it
			return ctx.Err()
		}), migrate.WithCheckpoint(store))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want it cancelled", err)
	}
	offset, _ := dst.Do(t, 0, "GET", "migrate:offset").ToString()
	big := strings.Repeat("y", 64<<10)
	for i := range 4 {
		src.Do(t, 0, "SET", fmt.Sprintf("big%d", i), big)
	}
	_, err = followUntil(t, src, dst, func(context.Context) error { return nil }, migrate.WithCheckpoint(store))
	t.Logf("resumed: %v", err)
	if !errors.Is(err, migrate.ErrFollowLost) || !strings.Contains(err.Error(), "repl-backlog-size") || !strings.Contains(err.Error(), "bytes of writes are missing") {
		t.Fatalf("resumed run: %v, want ErrFollowLost saying how many bytes are missing and naming repl-backlog-size", err)
	}
	if now, _ := dst.Do(t, 0, "GET", "migrate:offset").ToString(); now != offset || offset == "" {
		t.Errorf("the offset key holds %q, was %q", now, offset)
	}
	if n, _ := dst.Do(t, 0, "EXISTS", "big0").AsInt64(); n != 0 {
		t.Error("a write after the gap is on the target")
	}
}

// TestFollowTargetConnectionKilled kills the connections to the target several times while
// a Snapshot follows a writer's stream: the offset key says whether the batch under way
// landed, and the follow goes on with no write lost or applied twice.
func TestFollowTargetConnectionKilled(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	followUnderFault(t, src, dst, "the connection was killed", func() error {
		for range 100 {
			time.Sleep(10 * time.Millisecond)
			if err := dst.Do(t, 0, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Error(); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestCheckpointSnapshotTargetHeldKeys: a Snapshot interrupted while it restored into a
// target that held keys at the start is not resumed: its keys cannot be told from the
// target's. The error says what to do, and the target's keys are left alone.
func TestCheckpointSnapshotTargetHeldKeys(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 3000, 10)
	dst.Do(t, 0, "SET", "mine", "1")
	store := migrate.CheckpointFile(t.TempDir() + "/checkpoint.json")
	opts := []migrate.Option{migrate.WithStrategy(migrate.Snapshot{}), migrate.WithCheckpoint(store),
		migrate.WithRateLimit(2000), migrate.WithBatchSize(50)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := migrateWithin(t, ctx, src, dst, append(opts, migrate.WithProgress(func(p migrate.Progress) {
		if p.Scanned > 0 {
			cancel()
		}
	}))...); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want it cancelled", err)
	}
	_, err := migrateWithin(t, context.Background(), src, dst, opts...)
	t.Logf("resumed: %v", err)
	if !errors.Is(err, migrate.ErrCheckpoint) || !strings.Contains(err.Error(), "WithConflict(Replace)") {
		t.Fatalf("resumed run: %v, want ErrCheckpoint naming WithConflict(Replace)", err)
	}
	if v, _ := dst.Do(t, 0, "GET", "mine").ToString(); v != "1" {
		t.Error("the target's own key is gone")
	}
}

// migrateWithin runs a migration from src to dst under ctx, for at most 30 seconds.
func migrateWithin(t *testing.T, ctx context.Context, src, dst *redistest.Server, opts ...migrate.Option) (*migrate.Report, error) {
	t.Helper()
	m, err := migrate.New(src.Option(), dst.Option(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return m.Migrate(ctx)
}

// logLines keeps what a slog handler writes, for a test to count messages.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines hold s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestCheckpointSnapshotResumeIntoCluster stops a Snapshot into a cluster target while it
// restores, deletes on the source keys it wrote, and resumes: the keys it wrote are deleted
// on every master before the new snapshot is restored, and the target ends equal.
func TestCheckpointSnapshotResumeIntoCluster(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "k:", 3000, 10)
	store := migrate.CheckpointFile(t.TempDir() + "/checkpoint.json")
	run := func(ctx context.Context, opts ...migrate.Option) (*migrate.Report, error) {
		m, err := migrate.New(src.Option(), dst.Option(), append(opts, migrate.WithStrategy(migrate.Snapshot{}),
			migrate.WithCheckpoint(store), migrate.WithRateLimit(3000), migrate.WithBatchSize(50))...)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return m.Migrate(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := run(ctx, migrate.WithProgress(func(p migrate.Progress) {
		if p.Keys >= 500 {
			cancel()
		}
	})); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want it cancelled", err)
	}
	c, dc := src.Client(t, 0), dst.Client(t)
	var del, exists rueidis.Commands
	for i := range 1000 {
		del = append(del, c.B().Del().Key(fmt.Sprintf("k:%d", i)).Build())
		exists = append(exists, dc.B().Exists().Key(fmt.Sprintf("k:%d", i)).Build())
	}
	left := 0
	for _, r := range dc.DoMulti(context.Background(), exists...) {
		if n, _ := r.AsInt64(); n == 1 {
			left++
		}
	}
	c.DoMulti(context.Background(), del...)
	if left == 0 {
		t.Fatal("the stopped run wrote none of the keys the source then deleted: the test shows nothing")
	}
	rep, err := run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys written and then deleted on the source; resumed from %s: %v", left, rep.Resumed, rep)
	checkResumed(t, rep)
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")

}

// TestCheckpointSnapshotFollowResumeIntoCluster kills a following Snapshot into a cluster
// target five times, while it restores and while it follows, under a writer whose
// transactions, scripts and DELs are on one slot or span slots (INCR, LPUSH, APPEND): each
// run resumes where the slots' offset keys say, the last cuts over, and the target ends
// equal to the source, counters exact, the offset keys gone.
func TestCheckpointSnapshotFollowResumeIntoCluster(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync, "repl-backlog-size 64mb"}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "bulk:", 1500, 10)
	srcClient := src.Client(t, 0)
	w := startClusterWriter(t, srcClient, true, 2*time.Millisecond)
	k := newKilledRun(t, "snapshot-follow", src.Addr, dst.Masters[0].Addr)
	following, n, most := 0, 0, 0
	k.killFiveTimes(t, func() time.Duration {
		n++
		if n%2 == 1 {
			return time.Duration(100+rand.Intn(300)) * time.Millisecond
		}
		return time.Duration(1500+rand.Intn(800)) * time.Millisecond
	}, func(int) {
		var saved struct{ Follow *struct{ Offset int64 } }
		if b, err := os.ReadFile(k.file); err == nil && json.Unmarshal(b, &saved) == nil && saved.Follow != nil {
			following++
		}
		most = max(most, len(clusterOffsetKeys(t, dst)))
	})
	if following == 0 {
		t.Error("no kill came while the migration followed the stream")
	}
	rounds, rep := k.cutOver(t, w)
	t.Logf("%d writer rounds, %d kills while following, up to %d offset keys; resumed from %s: %v", rounds, following, most, rep.Resumed, rep)
	time.Sleep(200 * time.Millisecond) // the writer's keys of 150 ms expire on both sides
	redistest.AssertSameSides(t, redistest.Side{Client: srcClient}, dst.Side(t), "")
	assertSameClusterCounters(t, srcClient, dst.Client(t), true)
	if keys := clusterOffsetKeys(t, dst); len(keys) != 0 {
		t.Errorf("offset keys left on the target: %v", keys)
	}
	k.checkComplete(t)
}

// clusterOffsetKeys returns the offset keys on the masters of c.
func clusterOffsetKeys(t *testing.T, c *redistest.Cluster) []string {
	t.Helper()
	var keys []string
	for _, m := range c.Masters {
		keys = append(keys, redistest.Keys(t, m.Client(t, 0), "migrate:offset*")...)
	}
	return keys
}

// TestFollowClusterTargetConnectionKilled kills the connections of a following Snapshot to
// a master of a cluster target, again and again under a writer: each batch under way
// is read back from its slots' offset keys, and the target ends exact.
func TestFollowClusterTargetConnectionKilled(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
	srcClient := src.Client(t, 0)
	w := startClusterWriter(t, srcClient, true, 2*time.Millisecond)
	var log logLines
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}), migrate.WithSpoolDir(t.TempDir()),
		migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))), migrate.WithFollow(func(context.Context) error {
			for range 100 {
				time.Sleep(10 * time.Millisecond)
				if err := dst.Masters[0].Do(t, 0, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Error(); err != nil {
					return err
				}
			}
			_, err := w.Stop()
			return err
		}))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	time.Sleep(200 * time.Millisecond) // the writer's keys of 150 ms expire on both sides
	recovered := log.count("reading the offset keys of its slots")
	t.Logf("report %+v; %d batches under way when a connection was killed, %d slots' shares of which had landed", rep, recovered, log.count("had landed"))
	if recovered == 0 {
		t.Error("no kill came while a batch was under way")
	}
	if os.Getenv("DEBUGLOG") != "" {
		t.Log(log.b.String()) // DEBUGLOG=1 shows the log
	}
	redistest.AssertSameSides(t, redistest.Side{Client: srcClient}, dst.Side(t), "")
	assertSameClusterCounters(t, srcClient, dst.Client(t), true)
	if keys := clusterOffsetKeys(t, dst); len(keys) != 0 {
		t.Errorf("offset keys left on the target: %v", keys)
	}
}

// TestCheckpointSnapshotFollowResumeClusterSource is TestCheckpointSnapshotFollowResume
// from a cluster source: each master's stream continues from its own offset key.
func TestCheckpointSnapshotFollowResumeClusterSource(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{fastSync, "repl-backlog-size 64mb"}}})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 1500, 10)
	srcClient := src.Client(t)
	w := startClusterWriter(t, srcClient, false, 2*time.Millisecond)
	k := newKilledRun(t, "snapshot-follow", src.Masters[0].Addr, dst.Addr)
	following, n := 0, 0
	k.killFiveTimes(t, func() time.Duration {
		n++
		if n%2 == 1 {
			return time.Duration(100+rand.Intn(300)) * time.Millisecond
		}
		return time.Duration(1500+rand.Intn(800)) * time.Millisecond
	}, func(int) {
		var saved struct{ Masters []struct{ Addr string } }
		if b, err := os.ReadFile(k.file); err == nil && json.Unmarshal(b, &saved) == nil && len(saved.Masters) == len(src.Masters) {
			following++
		}
	})
	if following == 0 {
		t.Error("no kill came while the migration followed the streams")
	}
	_, rep := k.cutOver(t, w)
	t.Logf("%d kills while following; resumed from %s: %v", following, rep.Resumed, rep)
	time.Sleep(200 * time.Millisecond) // the writer's keys of 150 ms expire on both sides
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
	assertSameClusterCounters(t, srcClient, dst.Client(t, 0), false)
	if keys := redistest.Keys(t, dst.Client(t, 0), "migrate:offset*"); len(keys) != 0 {
		t.Errorf("offset keys left on the target: %v", keys)
	}
	k.checkComplete(t)
}

// TestFollowClusterTargetRefuses: a write a master of a cluster target refuses within its
// slot's transaction (WRONGTYPE) stops the follow with an error naming it, the other slots'
// writes applied; the offset keys are deleted, so that a resume starts over rather than
// past the missing write.
func TestFollowClusterTargetRefuses(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	src.Do(t, 0, "SET", "k", "v")
	dc := dst.Client(t)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}), migrate.WithSpoolDir(t.TempDir()),
		migrate.WithCheckpoint(migrate.CheckpointFile(t.TempDir()+"/checkpoint.json")), migrate.WithFollow(func(ctx context.Context) error {
			if err := dc.Do(ctx, dc.B().Set().Key("l").Value("a string").Build()).Error(); err != nil {
				return err
			}
			src.Do(t, 0, "INCR", "n")
			src.Do(t, 0, "LPUSH", "l", "x")
			<-ctx.Done()
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = m.Migrate(ctx)
	t.Logf("Migrate: %v", err)
	for _, want := range []string{"apply LPUSH", `"l"`, "WRONGTYPE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate: %v, want it to name %s", err, want)
		}
	}
	if n, _ := dc.Do(ctx, dc.B().Get().Key("n").Build()).ToString(); n != "1" {
		t.Errorf("the other slot's write is not on the target")
	}
	if keys := clusterOffsetKeys(t, dst); len(keys) != 0 {
		t.Errorf("offset keys left on the target after a refused write: %v", keys)
	}
}

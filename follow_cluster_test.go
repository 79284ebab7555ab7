package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// clusterWriter writes to a source through c with commands whose replay twice, out of
// order or on the wrong node would show: counters, pushes, appends, transactions on one
// slot and, when crossSlot (a standalone source), transactions, scripts and DELs whose
// keys span slots.
type clusterWriter struct {
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	rounds atomic.Int64
	err    error
}

func startClusterWriter(t *testing.T, c rueidis.Client, crossSlot bool, interval time.Duration) *clusterWriter {
	t.Helper()
	w := &clusterWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n := strconv.Itoa(i)
			b := c.B()
			var res []rueidis.RedisResult
			do := func(cmds ...rueidis.Completed) { res = append(res, c.DoMulti(ctx, cmds...)...) }
			do(b.Incr().Key("c:counter").Build(),
				b.Lpush().Key("c:list").Element(n).Build(),
				b.Append().Key("c:append").Value(n+",").Build(),
				b.Hincrby().Key("c:hash").Field("f"+strconv.Itoa(i%7)).Increment(1).Build(),
				b.Set().Key("c:tmp:"+n).Value(n).Px(150*time.Millisecond).Build(),
				b.Set().Key("c:del:"+n).Value(n).Build(),
				b.Set().Key("c:ttl:"+strconv.Itoa(i%10)).Value(n).Ex(time.Duration(100+i)*time.Second).Build())
			// A transaction on one slot, by a hash tag: both or neither.
			do(b.Multi().Build(), b.Incr().Key("{tx}:count").Build(), b.Lpush().Key("{tx}:list").Element(n).Build(), b.Exec().Build())
			// A script on one slot.
			do(b.Eval().Script("redis.call('INCR', KEYS[1]); return redis.call('RPUSH', KEYS[2], ARGV[1])").
				Numkeys(2).Key("{ev}:count", "{ev}:list").Arg(n).Build())
			if crossSlot {
				do(b.Multi().Build(), b.Incr().Key("x:count").Build(), b.Rpush().Key("y:list").Element(n).Build(), b.Exec().Build())
				do(b.Eval().Script("redis.call('INCR', KEYS[1]); return redis.call('APPEND', KEYS[2], ARGV[1])").
					Numkeys(2).Key("ex:count", "ey:append").Arg(n).Build())
				if i > 0 {
					do(b.Del().Key("c:del:"+strconv.Itoa(i-1), "c:tmp:"+strconv.Itoa(i-1), "c:nothing").Build())
				}
			} else if i > 0 {
				do(b.Del().Key("c:del:" + strconv.Itoa(i-1)).Build())
			}
			cancel()
			for _, r := range res {
				if err := r.Error(); err != nil {
					w.err = fmt.Errorf("round %d: %w", i, err)
					return
				}
			}
			w.rounds.Add(1)
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

// Stop stops the writer after its round, and returns the rounds written and the first error.
func (w *clusterWriter) Stop() (int64, error) {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.rounds.Load(), w.err
}

// assertSameClusterCounters compares the writer's counters and lengths on both sides.
func assertSameClusterCounters(t *testing.T, src, dst rueidis.Client, crossSlot bool) {
	t.Helper()
	cmds := [][]string{{"GET", "c:counter"}, {"LLEN", "c:list"}, {"STRLEN", "c:append"}, {"GET", "{tx}:count"},
		{"LLEN", "{tx}:list"}, {"GET", "{ev}:count"}, {"LLEN", "{ev}:list"}}
	if crossSlot {
		cmds = append(cmds, []string{"GET", "x:count"}, []string{"LLEN", "y:list"}, []string{"GET", "ex:count"}, []string{"STRLEN", "ey:append"})
	}
	ctx := context.Background()
	for _, args := range cmds {
		a, err := src.Do(ctx, src.B().Arbitrary(args...).Build()).ToAny()
		if err != nil {
			t.Errorf("source %s: %v", strings.Join(args, " "), err)
		}
		b, err := dst.Do(ctx, dst.B().Arbitrary(args...).Build()).ToAny()
		if err != nil {
			t.Errorf("target %s: %v", strings.Join(args, " "), err)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: source %v, target %v", strings.Join(args, " "), a, b)
		}
	}
}

// followCluster runs a following Snapshot from src to dst under w, whose cutover stops w a
// moment after it is called, and returns the report, the rounds written, and those written
// when the cutover was called.
func followCluster(t *testing.T, src, dst rueidis.ClientOption, w *clusterWriter, opts ...migrate.Option) (*migrate.Report, int64, int64) {
	t.Helper()
	var atCutover atomic.Int64
	cutover := func(ctx context.Context) error {
		atCutover.Store(w.rounds.Load())
		time.Sleep(300 * time.Millisecond) // writes go on while following
		_, err := w.Stop()
		return err
	}
	opts = append([]migrate.Option{migrate.WithStrategy(migrate.Snapshot{}), migrate.WithFollow(cutover),
		migrate.WithSpoolDir(t.TempDir())}, opts...)
	m, err := migrate.New(src, dst, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	rounds, werr := w.Stop()
	if werr != nil {
		t.Fatal(werr)
	}
	t.Logf("report %+v; %d rounds, %d at cutover", rep, rounds, atCutover.Load())
	if rounds < 20 || rounds == atCutover.Load() {
		t.Errorf("%d rounds written, %d at cutover: the test did not write during the follow", rounds, atCutover.Load())
	}
	if rep.Followed < rounds {
		t.Errorf("Report.Followed %d, want at least %d", rep.Followed, rounds)
	}
	return rep, rounds, atCutover.Load()
}

// TestFollowIntoCluster follows a standalone source into a 3-master cluster under a writer
// whose transactions, scripts and DELs are on one slot or span slots: after the cutover the
// cluster holds exactly the source's data.
func TestFollowIntoCluster(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "bulk:", 2000, 10)
	w := startClusterWriter(t, src.Client(t, 0), true, 2*time.Millisecond)
	followCluster(t, src.Option(), dst.Option(), w)
	time.Sleep(200 * time.Millisecond) // the short-lived keys expire on both sides
	srcSide := redistest.Side{Client: src.Client(t, 0)}
	redistest.AssertSameSides(t, srcSide, dst.Side(t), "")
	assertSameClusterCounters(t, srcSide.Client, dst.Client(t), true)
}

// TestFollowIntoClusterRefused: a write whose keys span slots and which cannot be split
// stops following with an error naming it, after the writes before it.
func TestFollowIntoClusterRefused(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	src.Do(t, 0, "SET", "a", "1")
	cutover := func(ctx context.Context) error {
		src.Do(t, 0, "SET", "before", "1")
		src.Do(t, 0, "RENAME", "a", "b") // a and b are in different slots
		src.Do(t, 0, "SET", "after", "1")
		return nil
	}
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{}, migrate.WithFollow(cutover), migrate.WithSpoolDir(t.TempDir()))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "RENAME") || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("Migrate: %v; want an error wrapping ErrUnsupported that names RENAME and the slots", err)
	}
	c := dst.Client(t)
	if v, _ := c.Do(context.Background(), c.B().Get().Key("before").Build()).ToString(); v != "1" {
		t.Errorf("the write before RENAME: %q, want 1", v)
	}
	if n, _ := c.Do(context.Background(), c.B().Exists().Key("after").Build()).AsInt64(); n != 0 {
		t.Errorf("the write after RENAME was applied")
	}
}

// TestFollowIntoClusterFlush: FLUSHALL and FLUSHDB of the source, which name no key, empty
// every master of the cluster target, in their place among the writes.
func TestFollowIntoClusterFlush(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "old:", 300, 10)
	cutover := func(ctx context.Context) error {
		src.Do(t, 0, "SET", "before", "1")
		src.Do(t, 0, "FLUSHALL")
		src.Do(t, 0, "SET", "between", "1")
		src.Do(t, 0, "MSET", "x", "1", "y", "2", "z", "3") // three slots: applied pair by pair
		src.Do(t, 0, "FLUSHDB")
		src.Do(t, 0, "SET", "after", "1")
		src.Do(t, 0, "MSET", "x", "1", "y", "2")
		return nil
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(cutover), migrate.WithSpoolDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	if rep.Followed < 7 {
		t.Errorf("Report.Followed %d, want at least 7", rep.Followed)
	}
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
	var total int64
	for _, n := range dst.Masters {
		k, _ := n.Do(t, 0, "DBSIZE").AsInt64()
		total += k
	}
	if total != 3 {
		t.Errorf("the cluster target holds %d keys, want 3 (after, x, y)", total)
	}
}

// TestFollowFromCluster follows every master of a 3-master cluster source, into a
// standalone server and into another cluster, under a writer: after the cutover the
// target holds exactly the source's data.
func TestFollowFromCluster(t *testing.T) {
	t.Parallel()
	for _, into := range []string{"standalone", "cluster"} {
		t.Run(into, func(t *testing.T) {
			t.Parallel()
			src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{fastSync}}})
			src.AddKeys(t, "bulk:", 1000, 10)
			var dstOpt rueidis.ClientOption
			var dstSide redistest.Side
			if into == "cluster" {
				dst := redistest.StartCluster(t, redistest.ClusterConfig{})
				dstOpt, dstSide = dst.Option(), dst.Side(t)
			} else {
				dst := redistest.Start(t, redistest.Config{})
				dstOpt, dstSide = dst.Option(), redistest.Side{Client: dst.Client(t, 0)}
			}
			srcClient := src.Client(t)
			w := startClusterWriter(t, srcClient, false, 2*time.Millisecond)
			rep, _, _ := followCluster(t, src.Option(), dstOpt, w)
			var offsets int64
			for _, m := range src.Masters {
				n, _ := strconv.ParseInt(m.Info(t, "master_repl_offset"), 10, 64)
				offsets += n
			}
			if rep.SourceOffset <= 0 || rep.SourceOffset > offsets {
				t.Errorf("Report.SourceOffset %d, want the sum of the masters' offsets the target holds, at most %d", rep.SourceOffset, offsets)
			}
			time.Sleep(200 * time.Millisecond) // the short-lived keys expire on both sides
			redistest.AssertSameSides(t, src.Side(t), dstSide, "")
			assertSameClusterCounters(t, srcClient, dstSide.Client, false)
		})
	}
}

// TestFollowFromClusterSlotMoved: a slot of the cluster source that moves to another master
// while following, and gets a write there, stops the migration with an error saying so.
func TestFollowFromClusterSlotMoved(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{fastSync}}})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 100, 10)
	const key = "moved:x"
	slot, err := src.Masters[0].Do(t, 0, "CLUSTER", "KEYSLOT", key).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	do := func(c rueidis.Client, args ...string) rueidis.RedisResult {
		return c.Do(context.Background(), c.B().Arbitrary(args...).Build())
	}
	var from, to *redistest.Server
	for _, m := range src.Masters {
		if err := do(m.Client(t, 0), "GET", key).Error(); err == nil || rueidis.IsRedisNil(err) {
			from = m
		} else if to == nil {
			to = m
		}
	}
	sl := strconv.FormatInt(slot, 10)
	fc, tc := from.Client(t, 0), to.Client(t, 0)
	if n, _ := do(fc, "CLUSTER", "COUNTKEYSINSLOT", sl).AsInt64(); n != 0 {
		t.Fatalf("slot %d holds %d keys; the test moves an empty slot", slot, n)
	}
	fromID, toID := src.ID(t, from), src.ID(t, to)
	var moveErr error
	cutover := func(ctx context.Context) error {
		for _, c := range []struct {
			c        rueidis.Client
			how, arg string
		}{{tc, "IMPORTING", fromID}, {fc, "MIGRATING", toID}, {tc, "NODE", toID}, {fc, "NODE", toID}} {
			if err := do(c.c, "CLUSTER", "SETSLOT", sl, c.how, c.arg).Error(); err != nil {
				moveErr = err
			}
		}
		if err := do(tc, "SET", key, "1").Error(); err != nil {
			moveErr = err
		}
		return nil
	}
	_, err = runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{}, migrate.WithFollow(cutover), migrate.WithSpoolDir(t.TempDir()))
	if moveErr != nil {
		t.Fatalf("move slot %d: %v", slot, moveErr)
	}
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "slot "+sl) || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("Migrate: %v; want an error wrapping ErrUnsupported that says slot %d moved", err, slot)
	}
	t.Logf("Migrate: %v", err)
}

// TestFollowClusterCancel: cancelling while following a cluster source into a cluster
// returns promptly, and leaves no spool file and no goroutine.
func TestFollowClusterCancel(t *testing.T) {
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{fastSync}}})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	src.AddKeys(t, "bulk:", 300, 10)
	w := startClusterWriter(t, src.Client(t), false, 2*time.Millisecond)
	assertFollowCancel(t, src.Option(), dst.Option(), func() { w.Stop() })
}

// TestFollowIntoClusterDatabases: the stream's writes to several databases go into the
// cluster's database 0 with WithDBPrefix; with WithDatabases(0) those to database 1 are
// dropped; with neither, the migration is refused with an error that says how to map them.
func TestFollowIntoClusterDatabases(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: []string{fastSync}})
	src.Do(t, 0, "SET", "a", "0")
	src.Do(t, 1, "SET", "a", "1")
	writes := func(ctx context.Context) error {
		c0, c1 := src.Client(t, 0), src.Client(t, 1)
		for i := range 20 {
			n := strconv.Itoa(i)
			c0.Do(ctx, c0.B().Incr().Key("count").Build())
			c1.Do(ctx, c1.B().Lpush().Key("list").Element(n).Build())
			c1.DoMulti(ctx, c1.B().Multi().Build(), c1.B().Incr().Key("x").Build(), c1.B().Incr().Key("y").Build(), c1.B().Exec().Build())
		}
		return nil
	}
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(writes), migrate.WithSpoolDir(t.TempDir()), migrate.WithDBPrefix("db%d:"))
	if err != nil {
		t.Fatal(err)
	}
	migrateOK(t, m)
	vr, err := migrate.Verify(context.Background(), src.Option(), dst.Option(), migrate.WithDBPrefix("db%d:"))
	if err != nil {
		t.Fatal(err)
	}
	if !vr.Equal() || vr.Compared < 6 {
		t.Errorf("Verify: %s", vr)
	}
	c := dst.Client(t)
	if v, _ := c.Do(context.Background(), c.B().Get().Key("db1:y").Build()).ToString(); v != "20" {
		t.Errorf("db1:y on the target: %q, want 20", v)
	}

	// Database 0 only into another cluster: the writes to database 1 are dropped.
	other := redistest.StartCluster(t, redistest.ClusterConfig{})
	m, err = migrate.New(src.Option(), other.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(writes), migrate.WithSpoolDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background()); !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "WithDBPrefix") {
		t.Errorf("two databases into a cluster: %v; want an error wrapping ErrUnsupported that names WithDBPrefix", err)
	}
	m.Close()
	m, err = migrate.New(src.Option(), other.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(writes), migrate.WithSpoolDir(t.TempDir()), migrate.WithDatabases(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Migrate(context.Background()); err != nil {
		t.Fatalf("WithDatabases(0): %v", err)
	}
	oc := other.Client(t)
	if n, _ := oc.Do(context.Background(), oc.B().Exists().Key("list").Build()).AsInt64(); n != 0 {
		t.Errorf("a write to database 1 reached the cluster with WithDatabases(0)")
	}
}

// TestFollowFromClusterFlushRefused: a FLUSHALL sent to one master of a cluster source
// empties that master's slots only, which no replay elsewhere can say: it stops following
// with an error naming it.
func TestFollowFromClusterFlushRefused(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{fastSync}}})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 100, 10)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}), migrate.WithSpoolDir(t.TempDir()),
		migrate.WithFollow(func(ctx context.Context) error {
			c := src.Masters[1].Client(t, 0)
			return c.Do(ctx, c.B().Flushall().Build()).Error()
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = m.Migrate(ctx)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "FLUSHALL") || !strings.Contains(err.Error(), src.Masters[1].Addr) {
		t.Fatalf("Migrate: %v; want an error wrapping ErrUnsupported that names FLUSHALL and master %s", err, src.Masters[1].Addr)
	}
}

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
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

// followLib is a function library whose function writes, for FCALL in the stream.
const followLib = "#!lua name=followlib\nredis.register_function('bump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"

// followWriter writes to the source, in several databases, with commands whose replay
// twice or out of order would show: counters, appends, pushes, transactions, scripts.
type followWriter struct {
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	rounds atomic.Int64
	err    error
}

// startFollowWriter writes a round every interval until stopped. Round 40 flushes
// database 2 (which got keys in the rounds before).
func startFollowWriter(t *testing.T, s *redistest.Server, interval time.Duration) *followWriter {
	t.Helper()
	c0, c1, c2 := s.Client(t, 0), s.Client(t, 1), s.Client(t, 2)
	w := &followWriter{stop: make(chan struct{}), done: make(chan struct{})}
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
			b := c0.B()
			cmds := rueidis.Commands{
				b.Incr().Key("f:counter").Build(),
				b.Lpush().Key("f:list").Element(n).Build(),
				b.Append().Key("f:append").Value(n + ",").Build(),
				b.Hincrby().Key("f:hash").Field("f" + strconv.Itoa(i%7)).Increment(1).Build(),
				b.Zincrby().Key("f:zset").Increment(1.5).Member("m" + strconv.Itoa(i%5)).Build(),
				b.Xadd().Key("f:stream").Id("*").FieldValue().FieldValue("n", n).Build(),
				b.Setrange().Key("f:range").Offset(int64(i % 20)).Value(n).Build(),
				b.Set().Key("f:tmp:" + n).Value(n).Px(150 * time.Millisecond).Build(),
				b.Set().Key("f:del:" + n).Value(n).Build(),
				b.Del().Key("f:del:" + strconv.Itoa(i-1)).Build(),
				b.Set().Key("f:ttl:" + strconv.Itoa(i%10)).Value(n).Build(),
				b.Expire().Key("f:ttl:" + strconv.Itoa(i%10)).Seconds(int64(100 + i)).Build(),
				b.Eval().Script("redis.call('INCR', KEYS[1]); return redis.call('RPUSH', KEYS[2], ARGV[1])").Numkeys(2).Key("f:evalcount", "f:evallist").Arg(n).Build(),
				b.Fcall().Function("bump").Numkeys(1).Key("f:fcall").Arg("3").Build(),
			}
			if i%3 == 0 {
				cmds = append(cmds, b.Persist().Key("f:ttl:"+strconv.Itoa((i+5)%10)).Build())
			}
			res := c0.DoMulti(ctx, cmds...)
			// A transaction: both or neither.
			tx := c0.DoMulti(ctx, b.Multi().Build(), b.Incr().Key("f:tx").Build(), b.Lpush().Key("f:txlist").Element(n).Build(), b.Exec().Build())
			res = append(res, tx...)
			res = append(res, c1.DoMulti(ctx,
				c1.B().Incr().Key("f1:counter").Build(),
				c1.B().Rpush().Key("f1:list").Element(n).Build())...)
			if i == 40 {
				res = append(res, c2.Do(ctx, c2.B().Flushdb().Build()))
			} else {
				res = append(res, c2.Do(ctx, c2.B().Set().Key("f2:"+n).Value(n).Build()))
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
func (w *followWriter) Stop() (int64, error) {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.rounds.Load(), w.err
}

// loadFunction loads followLib on s.
func loadFunction(t *testing.T, s *redistest.Server) {
	t.Helper()
	if err := s.Do(t, 0, "FUNCTION", "LOAD", followLib).Error(); err != nil {
		t.Fatal(err)
	}
}

// assertSameCounters compares counters and lengths the writer keeps, on both sides.
func assertSameCounters(t *testing.T, src, dst *redistest.Server) {
	t.Helper()
	for _, c := range []struct {
		db   int
		args []string
	}{
		{0, []string{"GET", "f:counter"}}, {0, []string{"LLEN", "f:list"}}, {0, []string{"GET", "f:tx"}},
		{0, []string{"LLEN", "f:txlist"}}, {0, []string{"GET", "f:evalcount"}}, {0, []string{"GET", "f:fcall"}},
		{0, []string{"XLEN", "f:stream"}}, {1, []string{"GET", "f1:counter"}}, {2, []string{"DBSIZE"}},
	} {
		a, _ := src.Do(t, c.db, c.args...).ToAny()
		b, _ := dst.Do(t, c.db, c.args...).ToAny()
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("db %d %s: source %v, target %v", c.db, strings.Join(c.args, " "), a, b)
		}
	}
}

// spoolFiles returns the spool files left in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "migrate-follow-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFollowExact copies a source under a writer that runs during the copy and the follow;
// the cutover function stops the writer, and the target ends equal to the source.
func TestFollowExact(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	loadFunction(t, src)
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	redistest.AddKeys(t, src, 1, "bulk:", 3000, 10)
	src.Do(t, 2, "SET", "f2:first", "1")
	w := startFollowWriter(t, src, 2*time.Millisecond)
	spool := t.TempDir()

	var atCutover, stopOffset int64
	var following bool
	var commands int64
	var progressMu sync.Mutex
	cutover := func(ctx context.Context) error {
		atCutover = w.rounds.Load()
		// Keep writing a little while the follow goes on, as an application that moves.
		time.Sleep(300 * time.Millisecond)
		_, err := w.Stop()
		stopOffset, _ = strconv.ParseInt(src.Info(t, "master_repl_offset"), 10, 64)
		// The migration acknowledges what it applied: WAIT on the source sees it.
		c := src.Client(t, 0)
		waited := c.DoMulti(ctx, c.B().Set().Key("f:waited").Value("1").Build(), c.B().Wait().Numreplicas(1).Timeout(5000).Build())
		if n, _ := waited[1].AsInt64(); n != 1 {
			t.Errorf("WAIT 1 on the source: %d replicas acknowledged the last write, want 1", n)
		}
		return err
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(cutover), migrate.WithSpoolDir(spool), migrate.WithDatabases(0, 1, 2),
		migrate.WithProgress(func(p migrate.Progress) {
			progressMu.Lock()
			following = following || p.Following
			commands = max(commands, p.Commands)
			progressMu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	rounds, _ := w.Stop()
	t.Logf("report %+v; %d rounds, %d at cutover", rep, rounds, atCutover)
	if atCutover == 0 || rounds == atCutover {
		t.Errorf("%d rounds written, %d at cutover: the test did not write during the follow", rounds, atCutover)
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
	// Both sides now expire keys on their own: let the short-lived ones go first.
	time.Sleep(200 * time.Millisecond)
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
	if rep.Followed < rounds {
		t.Errorf("Report.Followed %d, want at least %d", rep.Followed, rounds)
	}
	if rep.SourceOffset < stopOffset || stopOffset == 0 {
		t.Errorf("Report.SourceOffset %d, source's master_repl_offset when the writer stopped %d", rep.SourceOffset, stopOffset)
	}
	progressMu.Lock()
	if !following || commands != rep.Followed {
		t.Errorf("Progress: Following %v, at most %d commands; want true and %d", following, commands, rep.Followed)
	}
	progressMu.Unlock()
	if left := spoolFiles(t, spool); len(left) > 0 {
		t.Errorf("spool files left: %v", left)
	}
	vr, err := migrate.Verify(context.Background(), src.Option(), dst.Option(), migrate.WithDatabases(0, 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if !vr.Equal() {
		t.Errorf("Verify: %s", vr)
	}
}

// TestFollowRefused: the strategies that copy one moment refuse WithFollow, and Auto
// passes over them to one that follows.
func TestFollowRefused(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	hook := func(context.Context) error { return nil }
	for _, s := range []migrate.Strategy{migrate.MigrateKeys{}} {
		m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s), migrate.WithFollow(hook))
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Migrate(context.Background())
		m.Close()
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "WithFollow") {
			t.Errorf("%s: %v, want a refusal of WithFollow wrapping ErrUnsupported", s.Name(), err)
		}
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}), migrate.WithFollow(hook),
		migrate.WithConflict(migrate.Skip))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Migrate(context.Background())
	m.Close()
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "Skip") {
		t.Errorf("Snapshot with WithFollow and Skip: %v, want a refusal wrapping ErrUnsupported", err)
	}
	m, err = migrate.New(src.Option(), dst.Option(), migrate.WithFollow(hook))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := m.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range plan.Steps {
		follows := st.Strategy == "snapshot" || st.Strategy == "replication" || st.Strategy == "dump-restore"
		if refused := st.Err != nil && strings.Contains(st.Err.Error(), "WithFollow"); refused == follows {
			t.Errorf("Plan: %s: %v", st.Strategy, st.Err)
		}
	}
	if plan.Chosen != "snapshot" {
		t.Errorf("Plan chose %q, want snapshot", plan.Chosen)
	}
	rep := migrateOK(t, m)
	if rep.Strategy != "snapshot" {
		t.Errorf("Auto with WithFollow ran %s, want snapshot", rep.Strategy)
	}
	redistest.AssertSame(t, src, dst, 0)
}

// followUntil runs a following Snapshot from src to dst, with cutover as the cutover
// function, and returns the report and error.
func followUntil(t *testing.T, src, dst *redistest.Server, cutover func(context.Context) error, opts ...migrate.Option) (*migrate.Report, error) {
	t.Helper()
	opts = append([]migrate.Option{migrate.WithStrategy(migrate.Snapshot{}), migrate.WithFollow(cutover),
		migrate.WithSpoolDir(t.TempDir())}, opts...)
	m, err := migrate.New(src.Option(), dst.Option(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return m.Migrate(ctx)
}

// infoInt returns a numeric INFO field of s.
func infoInt(t *testing.T, s *redistest.Server, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s.Info(t, name), 10, 64)
	if err != nil {
		t.Fatalf("INFO %s: %v", name, err)
	}
	return n
}

// TestFollowSlowRestore holds the restore slow while the source takes more writes than its
// output buffer for replicas may hold: the stream goes to the spool, the source never cuts
// the link, and the result is exact.
func TestFollowSlowRestore(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync,
		"client-output-buffer-limit replica 1mb 0 0"}}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "bulk:", 3000, 10)
	// 64 KiB a round while the restore runs for about a second and a half: megabytes, far
	// over the source's hard limit of 1 MiB.
	big := strings.Repeat("x", 8<<10)
	c := src.Client(t, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Once the snapshot has been transferred (the replica is online): a source buffers
		// the writes made during the transfer for any replica, and that is not the point.
		online := func() bool {
			info, _ := c.Do(context.Background(), c.B().Info().Section("replication").Build()).ToString()
			return strings.Contains(redistest.InfoField(info, "slave0"), "state=online")
		}
		for !online() {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cmds := rueidis.Commands{c.B().Incr().Key("big:count").Build()}
			for k := range 8 {
				n := strconv.Itoa((i*8 + k) % 500)
				cmds = append(cmds, c.B().Set().Key("big:"+n).Value(big+n).Build())
			}
			for _, r := range c.DoMulti(context.Background(), cmds...) {
				if err := r.Error(); err != nil {
					t.Error(err)
					return
				}
			}
			written.Add(int64(8 * len(big)))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var stopOnce sync.Once
	stopWriter := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopWriter()
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		// On a busy machine the writer may not have written enough during the restore yet.
		for deadline := time.Now().Add(30 * time.Second); written.Load() < 4<<20 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		stopWriter()
		return nil
	}, migrate.WithRateLimit(2000))
	if err != nil {
		t.Fatalf("Migrate: %v\nsource log:\n%s", err, src.Log())
	}
	t.Logf("report %+v; %d bytes written during the migration", rep, written.Load())
	if written.Load() < 4<<20 {
		t.Errorf("only %d bytes written during the migration; the test does not exceed the source's limit", written.Load())
	}
	if full, partial := infoInt(t, src, "sync_full"), infoInt(t, src, "sync_partial_ok"); full != 1 || partial != 0 {
		t.Errorf("source served %d full and %d partial synchronizations, want 1 and 0: the link was cut", full, partial)
	}
	if strings.Contains(src.Log(), "output buffer") {
		t.Errorf("the source closed its replica for its output buffer:\n%s", src.Log())
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestFollowLinkDropped kills the replication link mid-follow: the follow continues with a
// partial synchronization, and nothing is lost or applied twice.
func TestFollowLinkDropped(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	loadFunction(t, src)
	redistest.AddKeys(t, src, 0, "bulk:", 1000, 10)
	w := startFollowWriter(t, src, 2*time.Millisecond)
	rep, err := followUntil(t, src, dst, func(context.Context) error {
		for range 2 {
			time.Sleep(150 * time.Millisecond)
			if err := src.Do(t, 0, "CLIENT", "KILL", "TYPE", "replica").Error(); err != nil {
				return err
			}
		}
		time.Sleep(150 * time.Millisecond)
		_, err := w.Stop()
		return err
	}, migrate.WithDatabases(0, 1, 2))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("report %+v", rep)
	if full, partial := infoInt(t, src, "sync_full"), infoInt(t, src, "sync_partial_ok"); full != 1 || partial < 2 {
		t.Errorf("source served %d full and %d partial synchronizations, want 1 and at least 2", full, partial)
	}
	time.Sleep(200 * time.Millisecond)
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
}

// TestFollowBacklogLost drops the link while the source writes more than its backlog holds:
// the follow cannot continue, and says so, naming repl-backlog-size.
func TestFollowBacklogLost(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync, "repl-backlog-size 16kb"}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	big := strings.Repeat("y", 64<<10)
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		// One transaction: the link drops, then the source writes more than its backlog
		// holds before the migration can ask for the rest.
		c := src.Client(t, 0)
		// A write the target gets first, so that it holds more than the snapshot.
		if err := c.Do(ctx, c.B().Set().Key("k2").Value("v2").Build()).Error(); err != nil {
			return err
		}
		for n, _ := dst.Do(t, 0, "EXISTS", "k2").AsInt64(); n != 1; n, _ = dst.Do(t, 0, "EXISTS", "k2").AsInt64() {
			time.Sleep(10 * time.Millisecond)
		}
		res := c.DoMulti(ctx, c.B().Multi().Build(),
			c.B().Arbitrary("CLIENT", "KILL", "TYPE", "replica").Build(),
			c.B().Set().Key("big1").Value(big).Build(),
			c.B().Set().Key("big2").Value(big).Build(),
			c.B().Exec().Build())
		for _, r := range res {
			if err := r.Error(); err != nil {
				return err
			}
		}
		<-ctx.Done() // the migration stops following on its own
		return nil
	})
	t.Logf("report %+v; error %v", rep, err)
	if !errors.Is(err, migrate.ErrFollowLost) || !strings.Contains(err.Error(), "repl-backlog-size") {
		t.Fatalf("Migrate: %v, want an error wrapping ErrFollowLost that names repl-backlog-size", err)
	}
	if rep.SourceOffset == 0 {
		t.Errorf("Report.SourceOffset 0, want where the target stopped")
	}
	for _, k := range []string{"k", "k2"} {
		if got, _ := dst.Do(t, 0, "GET", k).ToString(); got == "" {
			t.Errorf("target lost %s", k)
		}
	}
}

// TestFollowCancel cancels a migration while it follows: Migrate returns within a second,
// leaves no goroutine and no spool file. Not parallel: it counts goroutines.
func TestFollowCancel(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
	w := redistest.StartWriter(t, src, 0, "w:", 2*time.Millisecond, time.Minute)
	assertFollowCancel(t, src.Option(), dst.Option(), func() { w.Stop() })
}

// assertFollowCancel runs a following Snapshot from src into dst, cancels it 200 ms into the
// follow, and checks that Migrate returns context.Canceled within a second and leaves no
// spool file and no goroutine. stopWriter ends the test's writer once Migrate returned.
func assertFollowCancel(t *testing.T, src, dst rueidis.ClientOption, stopWriter func()) {
	t.Helper()
	before := runtime.NumGoroutine()
	spool := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled atomic.Int64
	m, err := migrate.New(src, dst, migrate.WithStrategy(migrate.Snapshot{}), migrate.WithSpoolDir(spool),
		migrate.WithFollow(func(ctx context.Context) error {
			time.Sleep(200 * time.Millisecond)
			cancelled.Store(time.Now().UnixNano())
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Migrate(ctx)
	late := time.Since(time.Unix(0, cancelled.Load()))
	m.Close()
	stopWriter()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Migrate: %v, want context.Canceled", err)
	}
	if late > time.Second {
		t.Errorf("Migrate returned %v after the cancellation", late)
	}
	if left := spoolFiles(t, spool); len(left) > 0 {
		t.Errorf("spool files left: %v", left)
	}
	redistest.WaitGoroutines(t, before+1, 3*time.Second) // the writer's goroutine ended too, but its client's may linger
}

// TestFollowDatabases follows database 0 only: the writes to the others are dropped (the
// target's own keys there stay), and a SWAPDB with a database left out stops the follow
// with an error that names it.
func TestFollowDatabases(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	loadFunction(t, src)
	redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
	dst.Do(t, 1, "SET", "mine", "target's own")
	w := startFollowWriter(t, src, 2*time.Millisecond)
	rep, err := followUntil(t, src, dst, func(context.Context) error {
		time.Sleep(200 * time.Millisecond)
		_, err := w.Stop()
		return err
	}, migrate.WithDatabases(0))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("report %+v", rep)
	time.Sleep(200 * time.Millisecond)
	redistest.AssertSame(t, src, dst, 0)
	for db, want := range map[int]int64{1: 1, 2: 0} {
		if n, _ := dst.Do(t, db, "DBSIZE").AsInt64(); n != want {
			t.Errorf("target db %d has %d keys, want %d: writes to a database left out were applied", db, n, want)
		}
	}

	// FLUSHDB would delete the keys the target held before: refused.
	src3, dst3 := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src3.Do(t, 0, "SET", "k", "v")
	dst3.Do(t, 0, "SET", "mine", "1")
	_, err = followUntil(t, src3, dst3, func(ctx context.Context) error {
		src3.Do(t, 0, "FLUSHDB")
		<-ctx.Done()
		return nil
	})
	t.Logf("Migrate: %v", err)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "FLUSHDB") {
		t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported that names FLUSHDB", err)
	}
	if n, _ := dst3.Do(t, 0, "EXISTS", "mine").AsInt64(); n != 1 {
		t.Errorf("the target's own key is gone")
	}

	// SWAPDB 0 1 cannot be replayed when database 1 is not copied.
	src2, dst2 := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src2.Do(t, 0, "SET", "k", "v")
	_, err = followUntil(t, src2, dst2, func(ctx context.Context) error {
		src2.Do(t, 0, "SET", "before", "1")
		src2.Do(t, 0, "SWAPDB", "0", "1")
		<-ctx.Done()
		return nil
	}, migrate.WithDatabases(0))
	t.Logf("Migrate: %v", err)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "SWAPDB") {
		t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported that names SWAPDB", err)
	}
	if v, _ := dst2.Do(t, 0, "GET", "before").ToString(); v != "1" {
		t.Errorf("the write before SWAPDB is not on the target")
	}
}

// TestFollowTargetRefuses: a command of the stream the target refuses (here disabled on
// the target) stops the follow with an error that names the command, the key and the reply.
func TestFollowTargetRefuses(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}},
		redistest.Config{Rename: map[string]string{"SETRANGE": "", "PUBLISH": ""}})
	src.Do(t, 0, "SET", "k", "v")
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		src.Do(t, 0, "INCR", "n")
		src.Do(t, 0, "PUBLISH", "news", "not data") // not replayed, so not refused
		src.Do(t, 0, "SETRANGE", "r", "3", "x")
		<-ctx.Done()
		return nil
	})
	t.Logf("Migrate: %v", err)
	for _, want := range []string{"SETRANGE", `"r"`, "unknown command", dst.Addr} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate: %v, want it to name %s", err, want)
		}
	}
	if n, _ := dst.Do(t, 0, "GET", "n").ToString(); n != "1" {
		t.Errorf("the write before the refused one is not on the target")
	}
	if rep.Followed != 1 || rep.SourceOffset == 0 {
		t.Errorf("report: Followed %d, SourceOffset %d; want 1 and where it stopped", rep.Followed, rep.SourceOffset)
	}
}

// TestFollowMatch follows the keys WithMatch selects: a write to other keys is dropped, one
// whose keys are partly selected stops the follow with an error that names it.
func TestFollowMatch(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src.Do(t, 0, "SET", "a:1", "1")
	src.Do(t, 0, "SET", "b:1", "1")
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		c := src.Client(t, 0)
		for _, cmd := range [][]string{
			{"INCR", "a:1"}, {"INCR", "b:1"}, {"RPUSH", "a:list", "x", "y"}, {"SET", "b:2", "v"},
			{"ZADD", "a:z", "1", "m"}, {"ZUNIONSTORE", "a:u", "2", "a:z", "a:z"}, {"ZUNIONSTORE", "b:u", "1", "b:z"},
			{"MSET", "a:3", "1", "a:4", "2"}, {"DEL", "b:1"}, {"EXPIRE", "a:1", "1000"},
		} {
			if err := c.Do(ctx, c.B().Arbitrary(cmd...).Build()).Error(); err != nil {
				return err
			}
		}
		return nil
	}, migrate.WithMatch("a:*"))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("report %+v", rep)
	want := redistest.Keys(t, src.Client(t, 0), "a:*")
	if got := redistest.Keys(t, dst.Client(t, 0), "*"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("target keys %v, want %v", got, want)
	}
	if d := redistest.Diff(t, src, dst, 0, "a:*"); len(d) > 0 {
		t.Errorf("source and target differ:\n%s", strings.Join(d, "\n"))
	}

	// MSET of a selected and an unselected key cannot be replayed.
	src2, dst2 := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src2.Do(t, 0, "SET", "a:1", "1")
	_, err = followUntil(t, src2, dst2, func(ctx context.Context) error {
		src2.Do(t, 0, "MSET", "a:2", "1", "b:2", "2")
		<-ctx.Done()
		return nil
	}, migrate.WithMatch("a:*"))
	t.Logf("Migrate: %v", err)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "MSET") || !strings.Contains(err.Error(), `"b:2"`) {
		t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported that names MSET and b:2", err)
	}
	if n, _ := dst2.Do(t, 0, "EXISTS", "a:2").AsInt64(); n != 0 {
		t.Errorf("the refused MSET was applied in part")
	}
}

// TestFollowSync follows a source whose PSYNC is disabled, over SYNC: exact, though it
// could not continue after a dropped link.
func TestFollowSync(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}, Rename: map[string]string{"PSYNC": ""}}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
	w := redistest.StartWriter(t, src, 0, "w:", 2*time.Millisecond, time.Minute)
	rep, err := followUntil(t, src, dst, func(context.Context) error {
		time.Sleep(200 * time.Millisecond)
		_, err := w.Stop()
		return err
	})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("report %+v", rep)
	if rep.Followed == 0 {
		t.Errorf("Report.Followed 0: nothing followed")
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestFollowDBPrefix follows two databases merged into database 0 with WithDBPrefix: the
// keys of the stream are renamed as those of the copy; a command whose keys are not at
// fixed places stops the follow with an error that names it.
func TestFollowDBPrefix(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "0")
	src.Do(t, 1, "SET", "k", "1")
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		for db := range 2 {
			c := src.Client(t, db)
			for _, cmd := range [][]string{
				{"INCR", "k"}, {"RPUSH", "l", "a", "b"}, {"MSET", "m1", "1", "m2", "2"}, {"RENAME", "m1", "m3"},
				{"XADD", "s", "*", "f", "v"}, {"XGROUP", "CREATE", "s", "g", "0"}, {"PEXPIRE", "m2", "100000"},
				{"FUNCTION", "LOAD", "REPLACE", followLib},
			} {
				if err := c.Do(ctx, c.B().Arbitrary(cmd...).Build()).Error(); err != nil {
					return err
				}
			}
		}
		return nil
	}, migrate.WithDBPrefix("db%d:"))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("report %+v", rep)
	for db := range 2 {
		p := fmt.Sprintf("db%d:", db)
		for _, k := range []string{"k", "l", "m2", "m3", "s"} {
			a, _ := src.Do(t, db, "DEBUG", "DIGEST-VALUE", k).ToAny()
			b, _ := dst.Do(t, 0, "DEBUG", "DIGEST-VALUE", p+k).ToAny()
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("db %d key %s: source digest %v, target %s%s %v", db, k, a, p, k, b)
			}
		}
		if ttl, _ := dst.Do(t, 0, "PTTL", p+"m2").AsInt64(); ttl < 90000 {
			t.Errorf("target %sm2 PTTL %d, want the source's", p, ttl)
		}
		if g, _ := dst.Do(t, 0, "XINFO", "GROUPS", p+"s").ToArray(); len(g) != 1 {
			t.Errorf("target %ss has %d groups, want 1", p, len(g))
		}
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); n != 10 {
		t.Errorf("target has %d keys, want 10", n)
	}

	src2, dst2 := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src2.Do(t, 0, "SET", "k", "0")
	_, err = followUntil(t, src2, dst2, func(ctx context.Context) error {
		src2.Do(t, 0, "ZADD", "z", "1", "a")
		src2.Do(t, 0, "ZUNIONSTORE", "u", "1", "z")
		<-ctx.Done()
		return nil
	}, migrate.WithDBPrefix("db%d:"))
	t.Logf("Migrate: %v", err)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "ZUNIONSTORE") {
		t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported that names ZUNIONSTORE", err)
	}
	if n, _ := dst2.Do(t, 0, "EXISTS", "db0:z").AsInt64(); n != 1 {
		t.Errorf("the write before ZUNIONSTORE is not on the target")
	}
}

// TestFollowVersions follows a writer on each server release of the version matrix, into
// the same release: disk-based snapshots (before 7.0's diskless default) and diskless
// ones, effects of scripts, transactions, expirations.
func TestFollowVersions(t *testing.T) {
	t.Parallel()
	for _, rel := range redistest.Releases(t) {
		for _, diskless := range []string{"no", "yes"} {
			t.Run(rel.Name+"/diskless-"+diskless, func(t *testing.T) {
				t.Parallel()
				src := redistest.StartRelease(t, rel, redistest.Config{Lines: []string{fastSync, "repl-diskless-sync " + diskless}})
				dst := redistest.StartRelease(t, rel, redistest.Config{})
				redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
				c := src.Client(t, 0)
				stop := make(chan struct{})
				done := make(chan error, 1)
				go func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							done <- nil
							return
						case <-time.After(2 * time.Millisecond):
						}
						n := strconv.Itoa(i)
						b := c.B()
						for _, r := range c.DoMulti(context.Background(),
							b.Incr().Key("v:counter").Build(), b.Lpush().Key("v:list").Element(n).Build(),
							b.Set().Key("v:tmp:"+n).Value(n).Px(100*time.Millisecond).Build(),
							b.Multi().Build(), b.Incr().Key("v:tx").Build(), b.Append().Key("v:append").Value(n).Build(), b.Exec().Build(),
							b.Eval().Script("return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)").Numkeys(1).Key("v:hash").Arg("f"+strconv.Itoa(i%3)).Build(),
							b.Expire().Key("v:list").Seconds(int64(1000+i)).Build()) {
							if err := r.Error(); err != nil {
								done <- err
								return
							}
						}
					}
				}()
				rep, err := followUntil(t, src, dst, func(context.Context) error {
					time.Sleep(200 * time.Millisecond)
					close(stop)
					return <-done
				})
				if err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				if rep.Followed == 0 {
					t.Errorf("report %+v: nothing followed", rep)
				}
				time.Sleep(150 * time.Millisecond)
				redistest.AssertSame(t, src, dst, 0)
			})
		}
	}
}

// TestFollowTargetRefusesInTransaction: a transaction with a command the target refuses
// stops the follow at that command, and none of the transaction is applied.
func TestFollowTargetRefusesInTransaction(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}},
		redistest.Config{Rename: map[string]string{"LPUSH": ""}})
	src.Do(t, 0, "SET", "k", "v")
	rep, err := followUntil(t, src, dst, func(ctx context.Context) error {
		c := src.Client(t, 0)
		c.Do(ctx, c.B().Incr().Key("n").Build())
		c.DoMulti(ctx, c.B().Multi().Build(), c.B().Incr().Key("tx").Build(), c.B().Lpush().Key("l").Element("x").Build(), c.B().Exec().Build())
		<-ctx.Done()
		return nil
	})
	t.Logf("Migrate: %v", err)
	for _, want := range []string{"apply LPUSH", `"l"`, "unknown command"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate: %v, want it to name %s", err, want)
		}
	}
	if n, _ := dst.Do(t, 0, "GET", "n").ToString(); n != "1" {
		t.Errorf("the write before the transaction is not on the target")
	}
	if n, _ := dst.Do(t, 0, "EXISTS", "tx").AsInt64(); n != 0 {
		t.Errorf("part of the refused transaction was applied")
	}
	if rep.Followed != 1 {
		t.Errorf("Report.Followed %d, want 1", rep.Followed)
	}
}

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	src, dst := startPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	loadFunction(t, src)
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	redistest.AddKeys(t, src, 1, "bulk:", 3000, 10)
	src.Do(t, 2, "SET", "f2:first", "1")
	w := startFollowWriter(t, src, 2*time.Millisecond)
	spool := t.TempDir()

	var atCutover, stopOffset int64
	var following bool
	var progressMu sync.Mutex
	cutover := func(ctx context.Context) error {
		atCutover = w.rounds.Load()
		// Keep writing a little while the follow goes on, as an application that moves.
		time.Sleep(300 * time.Millisecond)
		_, err := w.Stop()
		stopOffset, _ = strconv.ParseInt(infoField(t, src, "master_repl_offset"), 10, 64)
		return err
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}),
		migrate.WithFollow(cutover), migrate.WithSpoolDir(spool), migrate.WithDatabases(0, 1, 2),
		migrate.WithProgress(func(p migrate.Progress) {
			progressMu.Lock()
			following = following || p.Following
			progressMu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	rounds, _ := w.Stop()
	t.Logf("report %+v; %d rounds, %d at cutover", rep, rounds, atCutover)
	if rounds < 50 || rounds == atCutover {
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
	if !following {
		t.Errorf("Progress never said Following")
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

var _ = errors.Is
var _ = os.Remove
var _ = runtime.NumGoroutine

// TestFollowRefused: the strategies that copy one moment refuse WithFollow, and Auto
// passes over them to one that follows.
func TestFollowRefused(t *testing.T) {
	t.Parallel()
	src, dst := startPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	hook := func(context.Context) error { return nil }
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}} {
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
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithFollow(hook))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	if rep.Strategy != "snapshot" {
		t.Errorf("Auto with WithFollow ran %s, want snapshot", rep.Strategy)
	}
	redistest.AssertSame(t, src, dst, 0)
}

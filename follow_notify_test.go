package migrate_test

import (
	"context"
	"errors"
	"log/slog"
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

// noPsync is a source that refuses PSYNC and SYNC, as managed services do, with the
// keyspace notifications a following DumpRestore needs.
var noPsync = redistest.Config{Rename: map[string]string{"PSYNC": "", "SYNC": ""}, Lines: []string{"notify-keyspace-events KEA"}}

// startRenamer renames, moves and expires keys of db 0 every interval until the test ends:
// the writes followFollowWriter does not make.
func startRenamer(t *testing.T, s *redistest.Server, interval time.Duration) (stop func()) {
	t.Helper()
	c := s.Client(t, 0)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n := strconv.Itoa(i)
			b := c.B()
			c.DoMulti(ctx,
				b.Set().Key("r:"+n).Value(n).Build(),
				b.Rename().Key("r:"+n).Newkey("r:renamed:"+n).Build(),
				b.Rpush().Key("r:moved:"+n).Element(n).Build(),
				b.Move().Key("r:moved:"+n).Db(1).Build(),
				b.Pexpire().Key("r:renamed:"+strconv.Itoa(i-3)).Milliseconds(50).Build(),
				b.Sadd().Key("r:set").Member(n).Build(),
				b.Srem().Key("r:set").Member(strconv.Itoa(i-2)).Build(),
			)
			cancel()
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); <-finished }) }
	t.Cleanup(stop)
	return stop
}

// TestFollowNotifyExact follows, through keyspace notifications, a source that refuses
// PSYNC under a writer that runs during the copy and the follow (every type, TTLs,
// deletes, renames, moves, expiring keys, transactions, scripts, a FLUSHDB of database 2);
// after the cutover the target equals the source.
func TestFollowNotifyExact(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
	loadFunction(t, src)
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	redistest.AddKeys(t, src, 1, "bulk:", 3000, 10)
	src.Do(t, 2, "SET", "f2:first", "1")
	w := startFollowWriter(t, src, 2*time.Millisecond)
	stopRenamer := startRenamer(t, src, 3*time.Millisecond)

	var atCutover int64
	var progressMu sync.Mutex
	var following bool
	var maxLag int64
	cutover := func(ctx context.Context) error {
		atCutover = w.rounds.Load()
		src.Do(t, 0, "SWAPDB", "1", "3")   // no key is notified: a repair pass follows
		time.Sleep(300 * time.Millisecond) // writes go on while the application moves
		stopRenamer()
		_, err := w.Stop()
		return err
	}
	rep := followNotify(t, src.Option(), dst.Option(), cutover, migrate.WithDatabases(0, 1, 2, 3), migrate.WithBatchSize(64),
		migrate.WithProgress(func(p migrate.Progress) {
			progressMu.Lock()
			following = following || p.Following
			maxLag = max(maxLag, p.LagKeys)
			progressMu.Unlock()
		}))
	rounds, werr := w.Stop()
	if werr != nil {
		t.Fatal(werr)
	}
	t.Logf("report %s (repairs %d, re-walks %d); %d rounds, %d at cutover; max queue %d", rep, rep.Repairs, rep.Rewalks, rounds, atCutover, maxLag)
	if atCutover == 0 || rounds == atCutover {
		t.Errorf("%d rounds written, %d at cutover: the test did not write during the follow", rounds, atCutover)
	}
	if rep.Repairs == 0 {
		t.Errorf("the source swapped databases during the migration, and no repair pass followed")
	}
	if rep.Followed == 0 {
		t.Errorf("Report.Followed 0: no key copied again")
	}
	progressMu.Lock()
	if !following {
		t.Errorf("Progress never said Following")
	}
	progressMu.Unlock()
	time.Sleep(200 * time.Millisecond) // the short-lived keys expire on both sides
	redistest.AssertSame(t, src, dst, 0, 1, 2, 3)
	assertSameCounters(t, src, dst)
	vr, err := migrate.Verify(context.Background(), src.Option(), dst.Option(), migrate.WithDatabases(0, 1, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if !vr.Equal() {
		t.Errorf("Verify: %s", vr)
	}
}

// testLogger logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestFollowNotifyFlags: a source whose notify-keyspace-events lack flags is refused, the
// refusal naming them; WithSourceNotifications sets them for the migration and puts the old
// value back, after a cutover and after a cancellation alike.
func TestFollowNotifyFlags(t *testing.T) {
	t.Parallel()
	cfg := noPsync
	cfg.Lines = []string{"notify-keyspace-events Ex"}
	src, dst := redistest.StartPair(t, cfg, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	flags := func() string {
		v, err := src.Do(t, 0, "CONFIG", "GET", "notify-keyspace-events").AsStrMap()
		if err != nil {
			t.Fatalf("CONFIG GET notify-keyspace-events: %v", err)
		}
		return v["notify-keyspace-events"]
	}
	before := flags()
	hook := func(context.Context) error { return nil }
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithFollow(hook))
	want := `lacks the flags "g$lshzetd"` // E is there, x too; A would be all the others
	if redistest.Version(t) < 60200 {
		want = `lacks the flags "g$lshzet"`
	}
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Migrate: %v, want a refusal that says it %s", err, want)
	}
	if n := dst.Do(t, 0, "DBSIZE"); n.Error() != nil || mustInt(t, n) != 0 {
		t.Errorf("the refused migration wrote to the target")
	}

	// Allowed: the flags are set while following, and put back at the end.
	var during string
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithSourceNotifications(),
		migrate.WithFollow(func(context.Context) error {
			during = flags()
			src.Do(t, 0, "SET", "k2", "v2")
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	migrateOK(t, m)
	if !strings.ContainsAny(during, "KE") || !strings.Contains(during, "A") {
		t.Errorf("notify-keyspace-events while following: %q, want K or E, and A", during)
	}
	if got := flags(); got != before {
		t.Errorf("notify-keyspace-events after the migration: %q, want %q put back", got, before)
	}
	redistest.AssertSame(t, src, dst, 0)

	// Cancelled while following: put back too.
	dst.Do(t, 0, "FLUSHALL")
	ctx, cancel := context.WithCancel(context.Background())
	m, err = migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithSourceNotifications(),
		migrate.WithConflict(migrate.Replace),
		migrate.WithFollow(func(ctx context.Context) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Migrate(ctx)
	m.Close()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Migrate: %v, want context.Canceled", err)
	}
	if got := flags(); got != before {
		t.Errorf("notify-keyspace-events after a cancelled migration: %q, want %q put back", got, before)
	}
}

func mustInt(t *testing.T, r interface{ AsInt64() (int64, error) }) int64 {
	t.Helper()
	n, err := r.AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFollowNotifyLoss: the source kills the subscription while following (CLIENT KILL
// TYPE pubsub, then its output buffer limit under bursts of writes); each loss is
// detected and repaired, and the end is exact.
func TestFollowNotifyLoss(t *testing.T) {
	t.Parallel()
	cfg := noPsync
	cfg.Lines = append(cfg.Lines, "client-output-buffer-limit pubsub 4kb 0 0")
	src, dst := redistest.StartPair(t, cfg, redistest.Config{})
	redistest.AddKeys(t, src, 0, "bulk:", 2000, 10)
	c := src.Client(t, 0)
	burst := func(prefix string, n int) {
		cmds := make([]rueidis.Completed, 0, 2*n)
		for i := range n {
			k := prefix + strconv.Itoa(i)
			cmds = append(cmds, c.B().Set().Key(k).Value("new").Build(), c.B().Del().Key("bulk:"+strconv.Itoa(i)).Build())
		}
		for _, r := range c.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Error(err)
			}
		}
	}
	cutover := func(ctx context.Context) error {
		// Killed: the writes until the subscription is back are not notified.
		src.Do(t, 0, "CLIENT", "KILL", "TYPE", "pubsub")
		burst("lost:", 50)
		time.Sleep(300 * time.Millisecond)
		// A burst whose notifications overflow the subscriber's output buffer.
		burst("overflow:", 500)
		time.Sleep(300 * time.Millisecond)
		return nil
	}
	rep := followNotify(t, src.Option(), dst.Option(), cutover)
	t.Logf("report %s", rep)
	if rep.Repairs < 2 {
		t.Errorf("Report.Repairs %d, want at least 2 (a kill, an overflow)", rep.Repairs)
	}
	if n := src.Info(t, "client_output_buffer_limit_disconnections"); n == "0" {
		t.Errorf("the source never cut the subscriber for its output buffer: the test did not test that")
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestFollowNotifyAuto: Auto with WithFollow, on a source that refuses PSYNC and notifies
// its writes, chooses DumpRestore and says why Snapshot was passed over.
func TestFollowNotifyAuto(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 500, 10)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithFollow(func(context.Context) error {
		src.Do(t, 0, "DEL", "k:1")
		src.Do(t, 0, "SET", "k:new", "v")
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	if rep.Strategy != "dump-restore" {
		t.Fatalf("Auto chose %s, want dump-restore; steps %v", rep.Strategy, rep.Steps)
	}
	for _, st := range rep.Steps {
		if st.Strategy == "snapshot" && (st.Err == nil || !strings.Contains(st.Err.Error(), "PSYNC")) {
			t.Errorf("Auto's verdict on snapshot: %v, want why: PSYNC refused", st.Err)
		}
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestFollowNotifyCutoverFails: the cutover function's error stops following, and Migrate
// returns it.
func TestFollowNotifyCutoverFails(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 100, 10)
	boom := errors.New("the application could not move")
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}),
		migrate.WithFollow(func(context.Context) error { return boom }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Migrate: %v, want the cutover's error", err)
	}
	if rep.Keys != 100 {
		t.Errorf("Report.Keys %d, want 100", rep.Keys)
	}
}

// TestFollowNotifyCluster follows a cluster source through the keyspace notifications of
// each master under a writer, one master failing over while following (its replica,
// promoted, is subscribed to and a repair pass follows): the end is exact.
func TestFollowNotifyCluster(t *testing.T) {
	t.Parallel()
	node := redistest.Config{Lines: []string{"notify-keyspace-events KEA"}}
	src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1, Node: node})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 1000, 10)
	c := src.Client(t)
	done, finished := make(chan struct{}), make(chan struct{})
	var rounds atomic.Int64
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			n := strconv.Itoa(i)
			b := c.B()
			// Errors while a master fails over are expected: the source holds what it holds.
			c.DoMulti(ctx,
				b.Incr().Key("c:"+strconv.Itoa(i%50)).Build(),
				b.Rpush().Key("l:"+strconv.Itoa(i%20)).Element(n).Build(),
				b.Set().Key("tmp:"+n).Value(n).Px(100*time.Millisecond).Build(),
				b.Del().Key("bulk:"+n).Build(),
				b.Hset().Key("h:"+strconv.Itoa(i%30)).FieldValue().FieldValue("f", n).Build())
			cancel()
			rounds.Add(1)
		}
	}()
	stop := sync.OnceFunc(func() { close(done); <-finished })
	t.Cleanup(stop)
	cutover := func(ctx context.Context) error {
		src.Masters[0].Stop() // its replica is promoted after cluster-node-timeout
		src.WaitOK(t, src.Replicas[0])
		time.Sleep(500 * time.Millisecond)
		stop()
		return nil
	}
	rep := followNotify(t, src.Option(), dst.Option(), cutover)
	t.Logf("report %s; %d rounds", rep, rounds.Load())
	if rep.Repairs == 0 {
		t.Errorf("a master failed over while following, and no repair pass followed")
	}
	time.Sleep(150 * time.Millisecond) // the short-lived keys expire on both sides
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
}

// followNotify runs a following DumpRestore from src to dst with cutover, logging to the
// test, and returns its Report once it succeeded.
func followNotify(t *testing.T, src, dst rueidis.ClientOption, cutover func(context.Context) error, opts ...migrate.Option) *migrate.Report {
	t.Helper()
	opts = append([]migrate.Option{migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithFollow(cutover),
		migrate.WithLogger(testLogger(t))}, opts...)
	m, err := migrate.New(src, dst, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return migrateOK(t, m)
}

// TestFollowNotifyACL: a user with the rights the README lists follows; one without the
// keyspace channels is refused before any key is written, the refusal saying what to grant.
func TestFollowNotifyACL(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
	fillSmall(t, src)
	rules := "+scan +dump +pexpiretime +mget +info +config|get +exists +psubscribe +ping +memory|usage"
	setUser(t, src, rules)
	hook := func(context.Context) error { return nil }
	_, err := runMigration(t, asMig(src), dst.Option(), migrate.DumpRestore{}, migrate.WithFollow(hook))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "&__keyspace@0__:*") {
		t.Fatalf("Migrate without the channels: %v, want a refusal naming them", err)
	}
	if n := mustInt(t, dst.Do(t, 0, "DBSIZE")); n != 0 {
		t.Errorf("the refused migration wrote %d keys", n)
	}
	setUser(t, src, rules+" &__keyspace@0__:*")
	m, err := migrate.New(asMig(src), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithFollow(func(context.Context) error {
		src.Do(t, 0, "SET", "s:0", "changed")
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	migrateOK(t, m)
	redistest.AssertSame(t, src, dst, 0)
}

// TestFollowNotifyVersions follows a source of each release of the version matrix (the
// notification classes differ: streams from 5.0, module types from 6.2), with
// WithSourceNotifications, under writes of several types during the follow.
func TestFollowNotifyVersions(t *testing.T) {
	t.Parallel()
	for _, rel := range redistest.Releases(t) {
		t.Run(rel.Name, func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{Binary: rel.Binary, Rename: map[string]string{"PSYNC": "", "SYNC": ""}})
			dst := redistest.Start(t, redistest.Config{Binary: rel.Binary})
			redistest.AddKeys(t, src, 0, "k:", 300, 10)
			cutover := func(context.Context) error {
				for i := range 20 {
					n := strconv.Itoa(i)
					for _, args := range [][]string{{"INCR", "c"}, {"RPUSH", "l", n}, {"HSET", "h", n, n}, {"SADD", "s", n},
						{"XADD", "x", "*", "f", n}, {"EXPIRE", "k:" + n, "100"}, {"DEL", "k:1" + n}, {"RENAME", "k:2" + n, "r:" + n}} {
						if err := src.Do(t, 0, args...).Error(); err != nil {
							return err
						}
					}
				}
				return nil
			}
			rep := followNotify(t, src.Option(), dst.Option(), cutover, migrate.WithSourceNotifications())
			if rep.Followed == 0 {
				t.Errorf("no key copied again: %s", rep)
			}
			redistest.AssertSame(t, src, dst, 0)
		})
	}
}

// TestFollowNotifyTargetHeldKeys: a following DumpRestore refuses a target that already
// holds selected keys, which its repair passes could not tell from its own, and leaves
// them; keys outside the selection (WithMatch) are no obstacle.
func TestFollowNotifyTargetHeldKeys(t *testing.T) {
	t.Parallel()
	cfg := noPsync
	cfg.Lines = []string{"notify-keyspace-events KEA"}
	src, dst := redistest.StartPair(t, cfg, redistest.Config{})
	src.Do(t, 0, "SET", "app:1", "v")
	dst.Do(t, 0, "SET", "app:own", "theirs")
	dst.Do(t, 0, "SET", "other:own", "theirs")
	hook := func(context.Context) error { return nil }
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithFollow(hook))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "already holds keys among those selected") {
		t.Fatalf("Migrate: %v, want a refusal saying the target holds selected keys", err)
	}
	get := func(key string) string { v, _ := dst.Do(t, 0, "GET", key).ToString(); return v }
	if get("app:own") != "theirs" || get("app:1") != "" || mustInt(t, dst.Do(t, 0, "DBSIZE")) != 2 {
		t.Fatalf("the refused migration changed the target")
	}

	_, err = runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithMatch("app:[0-9]*"), migrate.WithFollow(hook))
	if err != nil {
		t.Fatalf("Migrate with WithMatch leaving the target's keys out: %v", err)
	}
	if got := get("app:1"); got != "v" || get("app:own") != "theirs" || get("other:own") != "theirs" {
		t.Fatalf("target app:1 = %q; the target's own keys must stay", got)
	}
}

// TestFollowNotifyProbe: a source that refuses CONFIG GET, as managed services do. Without
// WithNotificationProbe the follow is refused, saying so; with it, probe keys show that the
// notifications cover every write, the follow ends exact under a writer, and the probe keys
// are gone. A source whose notifications lack classes is refused with them named.
func TestFollowNotifyProbe(t *testing.T) {
	t.Parallel()
	cfg := noPsync
	cfg.Rename = map[string]string{"PSYNC": "", "SYNC": "", "CONFIG": ""}
	src, dst := redistest.StartPair(t, cfg, redistest.Config{})
	fillSmall(t, src)
	hook := func(context.Context) error { return nil }
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithFollow(hook))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "WithNotificationProbe") {
		t.Fatalf("Migrate without the probe: %v, want a refusal naming WithNotificationProbe", err)
	}
	if n := mustInt(t, dst.Do(t, 0, "DBSIZE")); n != 0 {
		t.Fatalf("the refused migration wrote %d keys", n)
	}

	loadFunction(t, src)
	w := startFollowWriter(t, src, 2*time.Millisecond)
	rep := followNotify(t, src.Option(), dst.Option(), func(context.Context) error {
		time.Sleep(200 * time.Millisecond)
		_, err := w.Stop()
		return err
	}, migrate.WithNotificationProbe(), migrate.WithDatabases(0, 1, 2))
	if _, err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if rep.Keys == 0 {
		t.Fatalf("nothing copied: %v", rep)
	}
	time.Sleep(200 * time.Millisecond) // the short-lived keys expire on both sides
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
	for _, db := range []int{0, 1, 2} {
		if keys, _ := src.Do(t, db, "KEYS", "migrate:notify-probe:*").AsStrSlice(); len(keys) > 0 {
			t.Errorf("probe keys left on the source in db %d: %q", db, keys)
		}
	}

	// Keyspace channels only, without lists, sets and expired keys: named.
	cfg.Lines = []string{"notify-keyspace-events K$ghzt"}
	src2, dst2 := redistest.StartPair(t, cfg, redistest.Config{})
	src2.Do(t, 0, "SET", "k", "v")
	_, err = runMigration(t, src2.Option(), dst2.Option(), migrate.DumpRestore{}, migrate.WithFollow(hook), migrate.WithNotificationProbe())
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), `no notification came of the classes "lsx"`) {
		t.Fatalf("Migrate from a source lacking classes: %v, want a refusal naming \"lsx\"", err)
	}
	if keys, _ := src2.Do(t, 0, "KEYS", "migrate:notify-probe:*").AsStrSlice(); len(keys) > 0 {
		t.Errorf("probe keys left on the source: %q", keys)
	}
}

// TestFollowNotifyJoinedMaster: a master that joins the source cluster while following, its
// notifications off, stops the follow with an error naming it and the flags it lacks:
// writes to the slots it serves would not be seen.
func TestFollowNotifyJoinedMaster(t *testing.T) {
	t.Parallel()
	node := redistest.Config{Lines: []string{"notify-keyspace-events KEA"}}
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: node})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 300, 10)
	var joined *redistest.Server
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithFollow(func(ctx context.Context) error {
		joined = src.AddNode(t, redistest.Config{Lines: []string{`notify-keyspace-events ""`}})
		if err := src.MoveSlots(ctx, 0, 4, src.Masters[0], joined, 0); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return errors.New("following went on for 20 s after a master without notifications joined")
		}
	}))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "joined the source cluster") ||
		joined == nil || !strings.Contains(err.Error(), joined.Addr) {
		t.Fatalf("Migrate: %v, want a refusal naming the master that joined", err)
	}
}

// TestFollowNotifyProbeCluster: WithNotificationProbe on a cluster source that refuses
// CONFIG GET probes each master, and the follow ends exact.
func TestFollowNotifyProbeCluster(t *testing.T) {
	t.Parallel()
	node := redistest.Config{Lines: []string{"notify-keyspace-events KEA"}, Rename: map[string]string{"CONFIG": ""}}
	src := redistest.StartCluster(t, redistest.ClusterConfig{Node: node})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "bulk:", 300, 10)
	c := src.Client(t)
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithNotificationProbe(),
		migrate.WithFollow(func(ctx context.Context) error {
			for i := range 50 {
				if err := c.Do(ctx, c.B().Incr().Key("c:"+strconv.Itoa(i%7)).Build()).Error(); err != nil {
					return err
				}
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Keys < 300 {
		t.Errorf("report %v: want the 300 keys copied", rep)
	}
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
	for _, m := range src.Masters {
		if keys := redistest.Keys(t, m.Client(t, 0), "migrate:notify-probe:*"); len(keys) > 0 {
			t.Errorf("probe keys left on %s: %q", m.Addr, keys)
		}
	}
}

package migrate_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// asVersion runs a MigrateKeys as if the servers ran other Redis versions, to reach what
// older servers get.
type asVersion struct {
	migrate.MigrateKeys
	source, target string
}

func (s asVersion) Check(ctx context.Context, j *migrate.Job) error {
	s.pretend(j)
	return s.MigrateKeys.Check(ctx, j)
}

func (s asVersion) Run(ctx context.Context, j *migrate.Job) error {
	s.pretend(j)
	return s.MigrateKeys.Run(ctx, j)
}

func (s asVersion) pretend(j *migrate.Job) {
	if s.source != "" {
		j.Source.Info.Version = s.source
	}
	if s.target != "" {
		j.Target.Info.Version = s.target
	}
}

// TestMigrateKeysTargetLogin copies into a target that needs a password, and into one that
// needs an ACL user, both of which MIGRATE sends from the source.
func TestMigrateKeysTargetLogin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  redistest.Config
		user string
		pass string
	}{
		{"requirepass", redistest.Config{Password: "tgt-pass-4821"}, "", "tgt-pass-4821"},
		{"acl user", redistest.Config{Users: []string{"user mover on >mover-pass-9137 ~* +@all"}}, "mover", "mover-pass-9137"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, tc.cfg)
			counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
			opt := dst.Option()
			opt.Username, opt.Password = tc.user, tc.pass
			rep, err := runMigration(t, src.Option(), opt, migrate.MigrateKeys{})
			if err != nil {
				t.Fatal(err)
			}
			redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
			if want := redistest.Total(counts, redistest.DatasetDBs...); rep.Keys != want {
				t.Errorf("report %+v, want %d keys", rep.Counts, want)
			}
		})
	}
}

// TestMigrateKeysWrongTargetPassword expects a clear error that names the target and holds
// no password, whether this program's login fails or the one MIGRATE sends from the source.
func TestMigrateKeysWrongTargetPassword(t *testing.T) {
	t.Parallel()
	t.Run("option", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{Password: "right-pass-3390"})
		redistest.SetKeys(t, src, 0, "k:", 10, redistest.Numbered("v"))
		opt := dst.Option()
		opt.Password = "wrong-pass-7712"
		_, err := runMigration(t, src.Option(), opt, migrate.MigrateKeys{})
		assertErrorSays(t, err, []string{"target " + dst.Addr, "Password"}, []string{"wrong-pass-7712", "right-pass-3390"})
		if n := dst.DBSize(t, 0); n != 0 {
			t.Errorf("target has %d keys, want none", n)
		}
	})
	t.Run("relayed by MIGRATE", func(t *testing.T) {
		t.Parallel()
		// This program logs in to dst; MIGRATE, sent to other, fails with the same password.
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{Password: "alpha-pass-5521"})
		other := redistest.Start(t, redistest.Config{Password: "beta-pass-6634"})
		redistest.SetKeys(t, src, 0, "k:", 10, redistest.Numbered("v"))
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{TargetAddr: other.Addr})
		assertErrorSays(t, err, []string{"target " + dst.Addr, other.Addr, "check the target's Password"},
			[]string{"alpha-pass-5521", "beta-pass-6634"})
		if errors.Is(err, migrate.ErrConflict) || errors.Is(err, migrate.ErrUnsupported) {
			t.Errorf("error %v wraps a misleading sentinel", err)
		}
	})
	t.Run("echoed by the target", func(t *testing.T) {
		t.Parallel()
		// Without AUTH the target answers MIGRATE's "AUTH <password>" with an unknown
		// command error that quotes its arguments. This program logs in with HELLO.
		src, dst := redistest.StartPair(t, redistest.Config{},
			redistest.Config{Password: "gamma-pass-8847", Rename: map[string]string{"AUTH": ""}})
		redistest.SetKeys(t, src, 0, "k:", 10, redistest.Numbered("v"))
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
		assertErrorSays(t, err, []string{"target " + dst.Addr, "<password>"}, []string{"gamma-pass-8847"})
	})
}

// TestMigrateKeysMoveOrCopy checks that the source keeps every key by default, and that
// with Move it keeps only the keys it was not asked to migrate.
func TestMigrateKeysMoveOrCopy(t *testing.T) {
	t.Parallel()
	t.Run("copy", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
		if err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
		for _, db := range redistest.DatasetDBs {
			if n := src.DBSize(t, db); n != int64(counts[db]) {
				t.Errorf("source db %d has %d keys, want its %d", db, n, counts[db])
			}
		}
		if want := redistest.Total(counts, redistest.DatasetDBs...); rep.Keys != want {
			t.Errorf("report %+v, want %d keys", rep.Counts, want)
		}
	})
	t.Run("move", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
		// The reference is the source as it was, TTLs included, copied by the core strategy.
		ref := redistest.Start(t, redistest.Config{})
		if _, err := runMigration(t, src.Option(), ref.Option(), migrate.DumpRestore{}); err != nil {
			t.Fatal(err)
		}
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{Move: true}, migrate.WithDatabases(0, 3))
		if err != nil {
			t.Fatal(err)
		}
		for _, db := range []int{0, 3} {
			if n := src.DBSize(t, db); n != 0 {
				t.Errorf("source db %d keeps %d keys after Move, want none", db, n)
			}
		}
		redistest.AssertSame(t, ref, src, 15) // not asked to migrate
		redistest.AssertSame(t, ref, dst, 0, 3)
		if n := dst.DBSize(t, 15); n != 0 {
			t.Errorf("target db 15 has %d keys, want none", n)
		}
		if want := redistest.Total(counts, 0, 3); rep.Keys != want || rep.Expired != 0 || rep.Failed != 0 {
			t.Errorf("report %+v, want %d keys and nothing else", rep.Counts, want)
		}
	})
}

// TestMigrateKeysExpiring copies, slowly, keys of which a third expire once the walk has
// seen them: they are counted as expired or copied, never as an error, and the others are
// all copied.
func TestMigrateKeysExpiring(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "k:", 200, redistest.Numbered("v"))
	c := src.Client(t, 0)
	ctx := context.Background()
	short := make([]string, 100)
	cmds := make(rueidis.Commands, len(short))
	for i := range short {
		short[i] = "short:" + strconv.Itoa(i)
		cmds[i] = c.B().Set().Key(short[i]).Value("x").Build()
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	// At 200 keys a second, in batches of 20, the copy takes 1.5 s, and the walk sees every
	// key at once (one SCAN). At the first progress report the short keys get 1 ms to live.
	var expireErr error
	var once sync.Once
	expire := func(p migrate.Progress) {
		if p.Scanned == 0 {
			return
		}
		once.Do(func() {
			for i, k := range short {
				cmds[i] = c.B().Pexpire().Key(k).Milliseconds(1).Build()
			}
			for _, r := range c.DoMulti(ctx, cmds...) {
				expireErr = errors.Join(expireErr, r.Error())
			}
		})
	}
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{},
		migrate.WithRateLimit(200), migrate.WithProgress(expire))
	if err != nil {
		t.Fatal(err)
	}
	if expireErr != nil {
		t.Fatal(expireErr)
	}
	for i := range 200 {
		k := "k:" + strconv.Itoa(i)
		if v := dst.Get(t, k); v != "v"+strconv.Itoa(i) {
			t.Errorf("target %s = %q", k, v)
		}
	}
	if rep.Scanned != 300 || rep.Keys+rep.Expired != 300 || rep.Expired == 0 || rep.Failed != 0 {
		t.Errorf("report %+v, want 300 scanned, some expired, the others copied", rep.Counts)
	}
}

// TestMigrateKeysUnreachableTarget sends MIGRATE to a closed port: the error says the source
// could not reach that address and how to fix it, and nothing is copied.
func TestMigrateKeysUnreachableTarget(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "k:", 10, redistest.Numbered("v"))
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{TargetAddr: closed, Timeout: time.Second})
	assertErrorSays(t, err, []string{"source " + src.Addr, "could not reach the target at " + closed, "TargetAddr"}, nil)
	for _, sentinel := range []error{migrate.ErrConflict, migrate.ErrUnsupported, migrate.ErrIncompatible, migrate.ErrTooLarge} {
		if errors.Is(err, sentinel) {
			t.Errorf("error %v wraps %v", err, sentinel)
		}
	}
	var e *migrate.Error
	if !errors.As(err, &e) || e.Side != migrate.Source {
		t.Errorf("error %v is not the source's *Error", err)
	}
	if n := dst.DBSize(t, 0); n != 0 || rep.Keys != 0 {
		t.Errorf("target has %d keys, report %+v; want nothing copied", n, rep.Counts)
	}
	if n := src.DBSize(t, 0); n != 10 {
		t.Errorf("source has %d keys, want its 10", n)
	}
}

// TestMigrateKeysCheckRefuses expects Check to refuse, wrapping ErrUnsupported, where
// MIGRATE cannot run, and nothing to change on either side.
func TestMigrateKeysCheckRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src, dst redistest.Config
		srcUser  string // ACL user of the source, whose password is "app-pass"
		dstPass  string
		replica  bool // the source replicates another server
		cluster  bool // the target is a cluster node that serves every slot
		strategy migrate.Strategy
		says     string
	}{
		{name: "MIGRATE renamed", src: redistest.Config{Rename: map[string]string{"MIGRATE": ""}},
			strategy: migrate.MigrateKeys{}, says: "renamed or disabled"},
		{name: "ACL without migrate", src: redistest.Config{Users: []string{"user app on >app-pass ~* +@all -migrate"}},
			srcUser: "app", strategy: migrate.MigrateKeys{}, says: "may not run MIGRATE"},
		{name: "move from a replica", replica: true, strategy: migrate.MigrateKeys{Move: true}, says: "replica"},
		{name: "copy from a read-only replica", replica: true, strategy: migrate.MigrateKeys{}, says: "read-only replica"},
		{name: "password, source before 4.0.7", dst: redistest.Config{Password: "tgt-pass-1"}, dstPass: "tgt-pass-1",
			strategy: asVersion{source: "4.0.6"}, says: "4.0.7"},
		{name: "ACL user, source before 6.0", dst: redistest.Config{Users: []string{"user mover on >tgt-pass-2 ~* +@all"}},
			dstPass: "tgt-pass-2", strategy: asVersion{source: "5.0.14"}, says: "AUTH2"},
		{name: "older target", strategy: asVersion{target: "6.2.0"}, says: "upgrade the target"},
		{name: "cluster target with TargetAddr", dst: redistest.Config{Lines: []string{"cluster-enabled yes"}}, cluster: true,
			strategy: migrate.MigrateKeys{TargetAddr: "127.0.0.1:1"}, says: "TargetAddr names one server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var src *redistest.Server
			if tc.replica {
				// Diskless sync would wait 5 s for more replicas.
				primary := redistest.Start(t, redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}})
				redistest.SetKeys(t, primary, 0, "k:", 10, redistest.Numbered("v"))
				src = redistest.Start(t, redistest.Config{Lines: []string{"replicaof " + primary.Host + " " + strconv.Itoa(primary.Port)}})
				waitReplica(t, src, 10)
			} else {
				src = redistest.Start(t, tc.src)
				redistest.SetKeys(t, src, 0, "k:", 10, redistest.Numbered("v"))
			}
			dst := redistest.Start(t, tc.dst)
			if tc.cluster {
				dst.Do(t, 0, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
			}
			srcOpt, dstOpt := src.Option(), dst.Option()
			if tc.srcUser != "" {
				srcOpt.Username, srcOpt.Password = tc.srcUser, "app-pass"
			}
			if tc.dstPass != "" {
				dstOpt.Password = tc.dstPass
				if len(tc.dst.Users) > 0 {
					dstOpt.Username = "mover"
				}
			}
			rep, err := runMigration(t, srcOpt, dstOpt, tc.strategy)
			if !errors.Is(err, migrate.ErrUnsupported) {
				t.Fatalf("error %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if rep.Keys != 0 || dst.DBSize(t, 0) != 0 {
				t.Errorf("report %+v, target has %d keys; want nothing copied", rep.Counts, dst.DBSize(t, 0))
			}
			for i := range 10 {
				if v := src.Get(t, "k:"+strconv.Itoa(i)); v != "v"+strconv.Itoa(i) {
					t.Errorf("source k:%d = %q, want it unchanged", i, v)
				}
			}
		})
	}
}

// waitReplica waits until s, a replica, holds n keys in database 0.
func waitReplica(t *testing.T, s *redistest.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.DBSize(t, 0) != n {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not receive %d keys", s.Addr, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkMigrateKeys measures, for keys of three sizes and three batch sizes, the keys
// copied a second and how long each MIGRATE blocked the source (from INFO commandstats):
// what MigrateKeys' batch size is chosen on. Run it with
// go test -run '^$' -bench MigrateKeys -benchtime 3x .
func BenchmarkMigrateKeys(b *testing.B) {
	for _, kind := range []struct {
		name string
		n    int
		cmd  func(c rueidis.Client, key string, i int) rueidis.Completed
	}{
		{"string 100 B", 20000, func(c rueidis.Client, k string, _ int) rueidis.Completed {
			return c.B().Set().Key(k).Value(strings.Repeat("v", 100)).Build()
		}},
		{"hash 100 fields", 6000, func(c rueidis.Client, k string, i int) rueidis.Completed {
			h := c.B().Hset().Key(k).FieldValue()
			for f := range 100 {
				h = h.FieldValue("field-"+strconv.Itoa(f), "value-"+strconv.Itoa(f*i))
			}
			return h.Build()
		}},
		{"string 10 KB", 3000, func(c rueidis.Client, k string, _ int) rueidis.Completed {
			return c.B().Set().Key(k).Value(strings.Repeat("v", 10000)).Build()
		}},
	} {
		b.Run(kind.name, func(b *testing.B) {
			src, dst := redistest.Start(b, redistest.Config{}), redistest.Start(b, redistest.Config{})
			c := src.Client(b, 0)
			cmds := make(rueidis.Commands, kind.n)
			for i := range cmds {
				cmds[i] = kind.cmd(c, "key:"+strconv.Itoa(i), i)
			}
			for _, r := range c.DoMulti(context.Background(), cmds...) {
				if err := r.Error(); err != nil {
					b.Fatal(err)
				}
			}
			for _, batch := range []int{100, 256, 1000} {
				b.Run("batch "+strconv.Itoa(batch), func(b *testing.B) {
					src.Do(b, 0, "CONFIG", "RESETSTAT")
					var elapsed time.Duration
					for range b.N {
						dst.Do(b, 0, "FLUSHALL")
						m, err := migrate.New(src.Option(), dst.Option(),
							migrate.WithStrategy(migrate.MigrateKeys{}), migrate.WithBatchSize(batch))
						if err != nil {
							b.Fatal(err)
						}
						start := time.Now()
						rep, err := m.Migrate(context.Background())
						elapsed += time.Since(start)
						m.Close()
						if err != nil || rep.Keys != int64(kind.n) {
							b.Fatalf("report %v, error %v", rep, err)
						}
					}
					b.ReportMetric(float64(kind.n*b.N)/elapsed.Seconds(), "keys/s")
					b.ReportMetric(migrateMillis(b, src), "ms/MIGRATE")
				})
			}
		})
	}
}

// migrateMillis returns the average time the server spent in MIGRATE, from INFO
// commandstats.
func migrateMillis(b *testing.B, s *redistest.Server) float64 {
	for _, kv := range strings.Split(s.Info(b, "cmdstat_migrate"), ",") {
		if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
			us, _ := strconv.ParseFloat(v, 64)
			return us / 1000
		}
	}
	return 0
}

// TestMigrateKeysFullTarget copies into a small noeviction target that fills up: MIGRATE
// fails with OOM in the middle of a batch, and the report counts as copied exactly the keys
// the target holds, the others of the failed batches as failed.
func TestMigrateKeysFullTarget(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{Lines: []string{"maxmemory 4mb", "maxmemory-policy noeviction"}})
	const keys = 6000
	redistest.AddKeys(t, src, 0, "k:", keys, 1000)
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
	if err == nil || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("Migrate: %v, want the target's OOM", err)
	}
	held := dst.DBSize(t, 0)
	if held == 0 || held == keys {
		t.Fatalf("the target holds %d keys: the test needs a target that fills up part way", held)
	}
	if rep.Keys != held {
		t.Errorf("report %+v: %d keys copied, and the target holds %d", rep.Counts, rep.Keys, held)
	}
	if rep.Failed == 0 || rep.Keys+rep.Failed+rep.Skipped+rep.Expired > keys {
		t.Errorf("report %+v: want failed keys, and no more keys counted than the %d on the source", rep.Counts, keys)
	}
}

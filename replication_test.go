package migrate_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// fastSync makes a source start a full sync at once, instead of waiting
// repl-diskless-sync-delay (5 s by default) for more replicas.
const fastSync = "repl-diskless-sync-delay 0"

// TestReplicationUnderWriteLoad writes to the source while it syncs; the Cutover hook stops
// the writer, and every write must reach the target.
func TestReplicationUnderWriteLoad(t *testing.T) {
	t.Parallel()
	// rdb-key-save-delay (µs a key) stretches the transfer to about half a second.
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync, "rdb-key-save-delay 100"}}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	redistest.AddKeys(t, src, 1, "bulk:", 5000, 10)
	w := redistest.StartWriter(t, src, 0, "load:", 2*time.Millisecond, 8*time.Second)

	var writes int
	var roleAtCutover string
	cutover := func(ctx context.Context) error {
		roleAtCutover = dst.Info(t, "role")
		var err error
		writes, err = w.Stop()
		return err
	}
	var progress []migrate.Progress // the callback runs on one goroutine, and Migrate waits for its last call
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}), migrate.WithFollow(cutover),
		migrate.WithProgress(func(p migrate.Progress) { progress = append(progress, p) }))
	if err != nil {
		t.Fatal(err)
	}
	before := w.Writes()
	report := migrateOK(t, m)

	if roleAtCutover != "slave" {
		t.Errorf("role of the target during Cutover %q, want slave", roleAtCutover)
	}
	if writes-before < 50 {
		t.Errorf("only %d writes during the migration; the test does not load the source", writes-before)
	}
	dbs := append([]int{1}, redistest.DatasetDBs...)
	redistest.AssertSame(t, src, dst, dbs...)
	if got := dst.Do(t, 0, "GET", "load:counter"); redistest.Int(t, got) != int64(writes) {
		t.Errorf("target counter %d, want %d writes", redistest.Int(t, got), writes)
	}
	if got := dst.Info(t, "role"); got != "master" {
		t.Errorf("target role %q after Migrate, want master", got)
	}
	if want := dst.DBSize(t, dbs...); report.Keys != want || report.Databases[1].Keys != 5000 {
		t.Errorf("report %d keys (db 1: %d), want %d (db 1: 5000), the keys the target holds",
			report.Keys, report.Databases[1].Keys, want)
	}
	if report.Bytes < 5000*10 {
		t.Errorf("report %d bytes, less than the values copied", report.Bytes)
	}
	for i := 1; i < len(progress); i++ {
		if p, q := progress[i-1], progress[i]; q.Keys < p.Keys || q.Bytes < p.Bytes || q.Scanned < p.Scanned {
			t.Errorf("progress went back: %+v then %+v", p.Counts, q.Counts)
		}
	}
	if last := progress[len(progress)-1]; !last.Done || last.Counts != report.Counts {
		t.Errorf("last progress %+v (done %v), want the report's %+v", last.Counts, last.Done, report.Counts)
	}
}

// TestReplicationSlaveofFallback copies into a target where only SLAVEOF is allowed.
func TestReplicationSlaveofFallback(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}},
		redistest.Config{Rename: map[string]string{"REPLICAOF": ""}})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}))
	if err != nil {
		t.Fatal(err)
	}
	migrateOK(t, m)
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
	if got := dst.Info(t, "role"); got != "master" {
		t.Errorf("target role %q, want master", got)
	}
}

// TestReplicationAuth copies from a source that needs a password, as the default user and
// as an ACL user: masterauth and masteruser hold the source's credentials during the sync,
// and the target's earlier values afterwards.
func TestReplicationAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		src        redistest.Config
		user, pass string // the migration's source credentials
	}{
		{name: "requirepass", src: redistest.Config{Password: "src-secret", Lines: []string{fastSync}}, pass: "src-secret"},
		{name: "acl user", src: redistest.Config{Password: "admin-secret", Lines: []string{fastSync},
			Users: []string{"user copier on >copier-secret ~* &* +@all"}}, user: "copier", pass: "copier-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, tc.src, redistest.Config{Lines: []string{"masterauth old-secret", "masteruser old-user"}})
			redistest.Fill(t, src, redistest.Dataset{Small: true})
			srcOpt := src.Option()
			srcOpt.Username, srcOpt.Password = tc.user, tc.pass

			var during [2]string
			cutover := func(ctx context.Context) error {
				during = [2]string{dst.Config(t, "masterauth"), dst.Config(t, "masteruser")}
				return nil
			}
			m, err := migrate.New(srcOpt, dst.Option(), migrate.WithStrategy(migrate.Replication{}), migrate.WithFollow(cutover))
			if err != nil {
				t.Fatal(err)
			}
			migrateOK(t, m)
			redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
			if during != [2]string{tc.pass, tc.user} {
				// Compare without printing the secrets.
				t.Errorf("during the sync masterauth/masteruser were not the source's credentials (masteruser %q, want %q)", during[1], tc.user)
			}
			if got := [2]string{dst.Config(t, "masterauth"), dst.Config(t, "masteruser")}; got != [2]string{"old-secret", "old-user"} {
				t.Errorf("after the sync masterauth/masteruser not put back (masteruser %q, want old-user)", got[1])
			}
		})
	}
}

// TestReplicationCancel cancels the migration while the target receives the initial sync,
// and while it loads it: Migrate returns soon with context.Canceled, and the target is a
// master again with its configuration put back.
func TestReplicationCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		src, dst  redistest.Config
		keys      int
		when      string // the INFO field that says the phase to cancel in
		maxReturn time.Duration
	}{
		// 3,000 keys at 2 ms each: a 6 s transfer, which detaching cuts short.
		{name: "transfer", keys: 3000, when: "master_sync_in_progress", maxReturn: 2 * time.Second,
			src: redistest.Config{Password: "src-secret", Lines: []string{fastSync, "rdb-key-save-delay 2000"}}},
		// 1,000 keys at 1 ms each: a 1 s load, which Redis does not let interrupt, so
		// Migrate returns when it ends; INFO answers meanwhile every KB loaded.
		{name: "loading", keys: 1000, when: "loading", maxReturn: 8 * time.Second,
			src: redistest.Config{Password: "src-secret", Lines: []string{fastSync}},
			dst: redistest.Config{Lines: []string{"key-load-delay 1000", "loading-process-events-interval-bytes 1024"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, tc.src, tc.dst)
			redistest.AddKeys(t, src, 0, "k:", tc.keys, 10)
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelled := make(chan time.Time, 1)
			watch := dst.Client(t, 0)
			go func() {
				defer cancel()
				for ctx.Err() == nil {
					text, _ := watch.Do(ctx, watch.B().Info().Build()).ToString()
					if strings.Contains(text, "\r\n"+tc.when+":1\r\n") {
						cancelled <- time.Now()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			_, err = m.Migrate(ctx)
			returned := time.Now()
			t.Logf("Migrate: %v", err)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Migrate: %v, want context.Canceled", err)
			}
			select {
			case at := <-cancelled:
				if d := returned.Sub(at); d > tc.maxReturn {
					t.Errorf("Migrate returned %v after the cancellation, want at most %v", d, tc.maxReturn)
				}
			default:
				t.Fatalf("the target was never seen with %s:1 (Migrate: %v)", tc.when, err)
			}
			if !strings.Contains(err.Error(), "partial or empty") {
				t.Errorf("error does not warn of a partial data set: %v", err)
			}
			if got := dst.Info(t, "role"); got != "master" {
				t.Errorf("target role %q, want master", got)
			}
			if got := dst.Config(t, "masterauth"); got != "" {
				t.Errorf("target masterauth not put back to empty")
			}
		})
	}
}

// TestReplicationCheckRefuses runs Migrate against servers where Replication cannot run:
// it must fail with ErrUnsupported and a precise reason, and leave both servers as they
// were.
func TestReplicationCheckRefuses(t *testing.T) {
	t.Parallel()
	aclTarget := func(rules string) redistest.Config {
		return redistest.Config{Users: []string{"user mig on >mig-secret ~* &* " + rules}}
	}
	asMig := func(o *rueidis.ClientOption) { o.Username, o.Password = "mig", "mig-secret" }
	for _, tc := range []struct {
		name      string
		src, dst  redistest.Config
		srcOpt    func(*rueidis.ClientOption)
		dstOpt    func(*rueidis.ClientOption)
		opts      []migrate.Option
		setup     func(t *testing.T, src, dst *redistest.Server)
		want      string
		noConfigs bool // CONFIG is unusable on the target
		keep      bool // no WithDiscardTarget
		empty     bool // leave the target empty
	}{
		{name: "replicaof renamed", src: redistest.Config{Password: "src-secret"},
			dst:  redistest.Config{Rename: map[string]string{"REPLICAOF": "", "SLAVEOF": ""}},
			want: "REPLICAOF is renamed or disabled"},
		{name: "acl denies replicaof", src: redistest.Config{Password: "src-secret"},
			dst: aclTarget("+@all -replicaof -slaveof"), dstOpt: asMig, want: "may not run SLAVEOF"},
		{name: "acl denies replicaof and multi", src: redistest.Config{Password: "src-secret"},
			dst: aclTarget("+@all -replicaof -slaveof -multi"), dstOpt: asMig, want: `ACL user "mig" may not run REPLICAOF`},
		{name: "acl denies config get", src: redistest.Config{Password: "src-secret"},
			dst: aclTarget("+@all -config"), dstOpt: asMig, want: "may not run CONFIG GET"},
		{name: "acl denies config set", src: redistest.Config{Password: "src-secret"},
			dst: aclTarget("+@all -config|set"), dstOpt: asMig, want: "may not run CONFIG SET masterauth"},
		{name: "config disabled", src: redistest.Config{Password: "src-secret"},
			dst: redistest.Config{Rename: map[string]string{"CONFIG": ""}}, noConfigs: true,
			want: "CONFIG GET is renamed or disabled"},
		{name: "source user may not psync", src: redistest.Config{Users: []string{"user mig on >mig-secret ~* &* +@all -psync -sync"}},
			srcOpt: asMig, want: `source's ACL user "mig" may not run PSYNC`},
		{name: "target is a cluster node", dst: redistest.Config{Lines: []string{"cluster-enabled yes"}}, empty: true,
			want: "the target is a cluster node"},
		{name: "target is a replica", setup: func(t *testing.T, src, dst *redistest.Server) {
			// The target's masterauth is keep-me.
			other := redistest.Start(t, redistest.Config{Password: "keep-me", Lines: []string{fastSync}})
			dst.Do(t, 0, "REPLICAOF", other.Host, strconv.Itoa(other.Port))
			dst.WaitInfo(t, "master_link_status", "up")
		}, want: "already a replica"},
		{name: "target has keys", keep: true,
			want: "holds 1 key (db 0: 1), which replication would discard; give migrate.WithDiscardTarget()"},
		{name: "match", opts: []migrate.Option{migrate.WithMatch("user:*")}, want: `WithMatch("user:*")`},
		{name: "types", opts: []migrate.Option{migrate.WithTypes("hash")}, want: `WithTypes(["hash"])`},
		{name: "databases", opts: []migrate.Option{migrate.WithDatabases(0, 3)}, want: "WithDatabases([0 3])"},
		{name: "source db", srcOpt: func(o *rueidis.ClientOption) { o.SelectDB = 3 }, want: "SelectDB 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A masterauth to keep, whatever the source needs.
			tc.dst.Lines = append(tc.dst.Lines, "masterauth keep-me")
			src, dst := redistest.StartPair(t, tc.src, tc.dst)
			redistest.Fill(t, src, redistest.Dataset{Small: true})
			if !tc.empty {
				dst.Do(t, 0, "SET", "watch:me", "1")
			}
			if tc.setup != nil {
				tc.setup(t, src, dst)
			}
			before := snapshot(t, src, dst, tc.noConfigs)

			srcOpt, dstOpt := src.Option(), dst.Option()
			if tc.srcOpt != nil {
				tc.srcOpt(&srcOpt)
			}
			if tc.dstOpt != nil {
				tc.dstOpt(&dstOpt)
			}
			opts := append([]migrate.Option{migrate.WithStrategy(migrate.Replication{})}, tc.opts...)
			if !tc.keep {
				opts = append(opts, migrate.WithDiscardTarget())
			}
			m, err := migrate.New(srcOpt, dstOpt, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = m.Migrate(ctx)
			m.Close()
			t.Logf("Migrate: %v", err)
			if !errors.Is(err, migrate.ErrUnsupported) {
				t.Fatalf("Migrate: %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if after := snapshot(t, src, dst, tc.noConfigs); after != before {
				t.Errorf("servers changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestReplicationDiscardTarget copies into a target that holds keys: refused without
// WithDiscardTarget (above), an exact copy with it.
func TestReplicationDiscardTarget(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
	dst.Do(t, 0, "SET", "db0:str:int", "stale")
	dst.Do(t, 5, "SET", "only-on-target", "1")
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}), migrate.WithDiscardTarget())
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	redistest.AssertSame(t, src, dst, append([]int{5}, redistest.DatasetDBs...)...)
	want := int64(0)
	for _, n := range counts {
		want += int64(n)
	}
	if rep.Keys != want || rep.Expired != 0 || rep.Failed != 0 {
		t.Errorf("report %+v, want %d keys and nothing else", rep.Counts, want)
	}
}

// TestReplicationCutoverFails makes the hook fail: the target is detached, keeps what it
// replicated, and the error names the step.
func TestReplicationCutoverFails(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Password: "src-secret", Lines: []string{fastSync}}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	hookErr := errors.New("the load balancer refused the change")
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}),
		migrate.WithFollow(func(context.Context) error { return hookErr }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Migrate(context.Background())
	t.Logf("Migrate: %v", err)
	if !errors.Is(err, hookErr) {
		t.Fatalf("Migrate: %v, want the hook's error", err)
	}
	for _, want := range []string{"cutover", dst.Addr, "detached"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "src-secret") {
		t.Errorf("error shows the password: %v", err)
	}
	if got := dst.Info(t, "role"); got != "master" {
		t.Errorf("target role %q, want master", got)
	}
	if got := dst.Config(t, "masterauth"); got != "" {
		t.Errorf("target masterauth not put back to empty")
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
}

// TestReplicationLinkTimeout points the target at a source it cannot sync from: no server
// listens there, or the server there refuses the source's password. Migrate fails within
// LinkTimeout, saying what to check, and the target is a master again.
func TestReplicationLinkTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{name: "nothing listens", addr: func(t *testing.T) string {
			port, err := redistest.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			return "127.0.0.1:" + strconv.Itoa(port)
		}},
		{name: "wrong password", addr: func(t *testing.T) string {
			return redistest.Start(t, redistest.Config{Password: "other-secret", Lines: []string{fastSync}}).Addr
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{Password: "src-secret"}, redistest.Config{})
			addr := tc.addr(t)
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{
				SourceAddr: addr, LinkTimeout: 500 * time.Millisecond,
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			start := time.Now()
			_, err = m.Migrate(context.Background())
			t.Logf("Migrate: %v", err)
			if err == nil {
				t.Fatal("Migrate succeeded")
			}
			for _, want := range []string{"could not sync from " + addr, "masterauth/masteruser", "detached", "never seen syncing"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Migrate took %v with a 500ms LinkTimeout", d)
			}
			if got := dst.Info(t, "role"); got != "master" {
				t.Errorf("target role %q, want master", got)
			}
			if got := dst.Config(t, "masterauth"); got != "" {
				t.Errorf("target masterauth not put back to empty")
			}
		})
	}
}

// TestReplicationNoGoroutineLeak checks that no goroutine outlives Migrate and Close. It
// does not run in parallel: other tests' goroutines would blur the count.
func TestReplicationNoGoroutineLeak(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	before := runtime.NumGoroutine()
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}),
		migrate.WithProgress(func(migrate.Progress) {}))
	if err != nil {
		t.Fatal(err)
	}
	migrateOK(t, m)
	redistest.WaitGoroutines(t, before, 5*time.Second)
}

// snapshot describes what Check must not change: both servers' roles, masters, replicas
// and whole data sets (DEBUG DIGEST), and the target's masterauth (as a fingerprint, never
// shown) and masteruser.
func snapshot(t *testing.T, src, dst *redistest.Server, noConfigs bool) string {
	t.Helper()
	var b strings.Builder
	for _, s := range []*redistest.Server{src, dst} {
		digest, err := s.Do(t, 0, "DEBUG", "DIGEST").ToString()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: role=%s master_host=%s connected_slaves=%s digest=%s; ", s.Addr, s.Info(t, "role"),
			s.Info(t, "master_host"), s.Info(t, "connected_slaves"), digest)
	}
	if !noConfigs {
		sum := sha256.Sum256([]byte(dst.Config(t, "masterauth")))
		fmt.Fprintf(&b, "masterauth=%x masteruser=%q", sum[:4], dst.Config(t, "masteruser"))
	}
	return b.String()
}

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// verify compares src and dst with Verify and opts, failing the test on an error.
func verify(t *testing.T, src, dst *redistest.Server, opts ...migrate.Option) *migrate.VerifyReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := migrate.Verify(ctx, src.Option(), dst.Option(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestVerify plants one difference of each kind in an exact copy and expects Verify to
// find each, and nothing before.
func TestVerify(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
	// A set emptied down to a few integers keeps its hash-table encoding; its copy is
	// loaded as an intset, so the DUMP payloads differ while the values are equal.
	for i := 0; i < 200; i++ {
		src.Do(t, 0, "SADD", "encoded", fmt.Sprint(i))
	}
	for i := 3; i < 200; i++ {
		src.Do(t, 0, "SREM", "encoded", fmt.Sprint(i))
	}
	if _, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, src, dst)
	want := 1
	for _, n := range counts {
		want += n
	}
	if !rep.Equal() || rep.Compared != int64(want) {
		t.Fatalf("exact copy: %v (examples %v), want %d keys compared and no difference", rep, rep.Examples, want)
	}

	dst.Do(t, 0, "DEL", "db0:str:int")                 // missing
	dst.Do(t, 3, "SET", "extra", "x")                  // extra
	dst.Do(t, 0, "DEL", "db0:set:small")               // type
	dst.Do(t, 0, "RPUSH", "db0:set:small", "a")        //
	dst.Do(t, 0, "HSET", "db0:hash:small", "f1", "v2") // value
	dst.Do(t, 15, "XACK", "db15:stream", "g1", "1700000000005-2")
	dst.Do(t, 0, "PEXPIRE", "db0:str:ttl", "10")    // ttl, then gone: missing
	dst.Do(t, 0, "PEXPIRE", "db0:list:ttl", "9999") // ttl
	dst.Do(t, 3, "PERSIST", "db3:ttl:1")            // ttl
	time.Sleep(20 * time.Millisecond)
	rep = verify(t, src, dst, migrate.WithVerifyExamples(100))
	got := fmt.Sprint(rep.Examples)
	for _, c := range []struct {
		n    int64
		want int64
		what string
	}{{rep.Missing, 2, "missing"}, {rep.Extra, 1, "extra"}, {rep.TypeMismatch, 1, "type"}, {rep.ValueMismatch, 2, "value"}, {rep.TTLMismatch, 2, "ttl"}} {
		if c.n != c.want {
			t.Errorf("%s: %d, want %d; examples: %s", c.what, c.n, c.want, got)
		}
	}
	for _, k := range []string{"db0:str:int", "extra", "db0:set:small", "db0:hash:small", "db15:stream", "db0:list:ttl", "db3:ttl:1"} {
		if !strings.Contains(got, fmt.Sprintf("%q", k)) {
			t.Errorf("examples do not name %q: %s", k, got)
		}
	}
	if rep.Equal() {
		t.Error("Equal() with differences")
	}

	// The same filters as a migration: only db 3 is compared.
	rep = verify(t, src, dst, migrate.WithDatabases(3))
	if rep.Extra != 1 || rep.TTLMismatch != 1 || rep.Missing+rep.TypeMismatch+rep.ValueMismatch != 0 {
		t.Errorf("db 3 only: %v", rep)
	}
	// A sample compares about that fraction.
	rep = verify(t, src, dst, migrate.WithSample(0.5))
	if rep.Compared < int64(want)/4 || rep.Compared > int64(want)*3/4 {
		t.Errorf("sample of half: %d keys compared of %d", rep.Compared, want)
	}
}

func TestMigrateWithVerify(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithVerify())
	if err != nil || rep.Verify == nil || !rep.Verify.Equal() || rep.Verify.Compared != rep.Keys {
		t.Fatalf("err %v, verify %v, want an equal verification of %d keys", err, rep.Verify, rep.Keys)
	}
	// A key on the target that the source lacks, kept by Skip, makes verification fail.
	dst.Do(t, 0, "SET", "db0:str:int", "other")
	rep, err = runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithVerify(), migrate.WithConflict(migrate.Skip))
	if !errors.Is(err, migrate.ErrMismatch) || rep.Verify.ValueMismatch != 1 {
		t.Fatalf("err %v, verify %v, want ErrMismatch with one value mismatch", err, rep.Verify)
	}
}

// TestVerifyWhileKeysExpire copies keys that expire within seconds, like sessions, then
// verifies again and again while they expire, each side at its own moment: no key may be
// counted missing or extra for having expired, while a key truly missing and a key truly
// extra are counted every time, with or without a TTL.
func TestVerifyWhileKeysExpire(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	const n = 20000
	c := src.Client(t, 0)
	cmds := make(rueidis.Commands, 0, n+2)
	for i := 0; i < n; i++ {
		ttl := 1000 + rand.Int63n(2000)
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("session:%d", i)).Value("v").PxMilliseconds(ttl).Build())
	}
	cmds = append(cmds, c.B().Set().Key("kept").Value("v").Build(), c.B().Set().Key("kept:ttl").Value("v").ExSeconds(60).Build())
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	loaded := time.Now()
	if _, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}); err != nil {
		t.Fatal(err)
	}
	dst.Do(t, 0, "DEL", "kept", "kept:ttl") // truly missing
	dst.Do(t, 0, "SET", "stray", "x")       // truly extra
	for runs := 0; runs < 2 || time.Since(loaded) < 3500*time.Millisecond; runs++ {
		rep := verify(t, src, dst, migrate.WithVerifyExamples(5))
		if rep.Missing != 2 || rep.Extra != 1 || rep.TypeMismatch+rep.ValueMismatch+rep.TTLMismatch != 0 {
			t.Errorf("verify %d, %v after the load: %v, examples %v; want only \"kept\" and \"kept:ttl\" missing and \"stray\" extra",
				runs, time.Since(loaded).Round(time.Millisecond), rep, rep.Examples)
		}
		got := fmt.Sprint(rep.Examples)
		if !strings.Contains(got, `"kept": missing`) || !strings.Contains(got, `"kept:ttl": missing`) || !strings.Contains(got, `"stray": extra`) {
			t.Errorf("verify %d: examples %s do not name the true differences", runs, got)
		}
	}
	if n := dst.DBSize(t, 0); n != 1 {
		t.Errorf("target holds %d keys after the expiry window, want only the stray one", n)
	}
}

// TestVerifyRefusesMigrateOptions: options that only change what Migrate does mean nothing
// to Verify, which says so rather than ignoring them.
func TestVerifyRefusesMigrateOptions(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	for _, tc := range []struct {
		opt  migrate.Option
		name string
	}{
		{migrate.WithStrategy(migrate.DumpRestore{}), "WithStrategy"},
		{migrate.WithConflict(migrate.Replace), "WithConflict"},
		{migrate.WithDiscardTarget(), "WithDiscardTarget"},
		{migrate.WithProgress(func(migrate.Progress) {}), "WithProgress"},
		{migrate.WithVerify(), "WithVerify"},
	} {
		_, err := migrate.Verify(context.Background(), src.Option(), dst.Option(), migrate.WithMatch("k*"), tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), "leave") {
			t.Errorf("Verify with %s: %v, want a refusal naming it", tc.name, err)
		}
	}
	// The options that say what to compare and how to read are taken.
	rep := verify(t, src, dst, migrate.WithMatch("k*"), migrate.WithTypes("string"), migrate.WithDatabases(0),
		migrate.WithScanCount(10), migrate.WithBatchSize(10), migrate.WithConcurrency(2), migrate.WithRateLimit(1000),
		migrate.WithReadFromReplicas(), migrate.WithSample(1), migrate.WithTTLTolerance(time.Second), migrate.WithVerifyExamples(3))
	if rep.Missing != 1 || rep.Compared != 1 {
		t.Errorf("verify: %v, want the one key compared and missing", rep)
	}
}

// TestWithVerifyWhileKeysExpire copies session-like keys that expire during the copy and
// its verification: WithVerify must not call an exact copy a mismatch.
func TestWithVerifyWhileKeysExpire(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	const n = 10000
	c := src.Client(t, 0)
	cmds := make(rueidis.Commands, 0, n)
	for i := 0; i < n; i++ {
		ttl := 200 + rand.Int63n(1500)
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("session:%d", i)).Value("v").PxMilliseconds(ttl).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithVerify(), migrate.WithConflict(migrate.Replace), migrate.WithBatchSize(64))
		if err != nil {
			t.Fatalf("run %d: %v (verify %v, examples %v)", i, err, rep.Verify, rep.Verify.Examples)
		}
		if rep.Verify == nil || !rep.Verify.Equal() {
			t.Fatalf("run %d: verify %v", i, rep.Verify)
		}
	}
}

package migrate_test

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

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

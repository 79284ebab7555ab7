package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

func TestDumpRestoreFilters(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	for _, tc := range []struct {
		name  string
		opts  []migrate.Option
		keep  func(db int, key, typ string) bool
		check []int
	}{
		{"match", []migrate.Option{migrate.WithMatch("*:str:*")},
			func(db int, k, typ string) bool { return strings.Contains(k, ":str:") }, redistest.DatasetDBs},
		{"types", []migrate.Option{migrate.WithTypes("hash", "stream")},
			func(db int, k, typ string) bool { return typ == "hash" || typ == "stream" }, redistest.DatasetDBs},
		{"databases", []migrate.Option{migrate.WithDatabases(3)},
			func(db int, k, typ string) bool { return db == 3 }, redistest.DatasetDBs},
		{"all three", []migrate.Option{migrate.WithDatabases(0, 15), migrate.WithTypes("list"), migrate.WithMatch("db15:*")},
			func(db int, k, typ string) bool { return db == 15 && typ == "list" }, redistest.DatasetDBs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := redistest.Start(t, redistest.Config{})
			rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, db := range tc.check {
				sc, dc := src.Client(t, db), dst.Client(t, db)
				for _, k := range redistest.Keys(t, sc, "") {
					typ, _ := sc.Do(context.Background(), sc.B().Type().Key(k).Build()).ToString()
					exists, _ := dc.Do(context.Background(), dc.B().Exists().Key(k).Build()).AsInt64()
					if keep := tc.keep(db, k, typ); keep != (exists == 1) {
						t.Errorf("db %d %q (%s): on target = %v, want %v", db, k, typ, exists == 1, keep)
					} else if keep {
						want++
					}
				}
			}
			if rep.Keys != want {
				t.Errorf("report Keys = %d, want %d", rep.Keys, want)
			}
		})
	}
}

// TestDumpRestoreSelectDB copies only the source option's database when it is not 0.
func TestDumpRestoreSelectDB(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	opt := src.Option()
	opt.SelectDB = 15
	if _, err := runMigration(t, opt, dst.Option(), migrate.DumpRestore{}); err != nil {
		t.Fatal(err)
	}
	redistest.AssertSame(t, src, dst, 15)
	if n := dst.DBSize(t, 0) + dst.DBSize(t, 3); n != 0 {
		t.Errorf("target databases 0 and 3 got %d keys, want none", n)
	}
}

func TestDumpRestoreRateLimit(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	const keys, limit = 1500, 1000.0
	c := src.Client(t, 0)
	cmds := make(rueidis.Commands, 0, keys)
	for i := 0; i < keys; i++ {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("v").Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithRateLimit(limit))
	if err != nil {
		t.Fatal(err)
	}
	rate := float64(rep.Keys) / rep.Duration.Seconds()
	if rep.Keys != keys || rate > limit*1.2 || rate < limit*0.8 {
		t.Errorf("copied %d keys at %.0f keys/s, want %d at %.0f ±20%%", rep.Keys, rate, keys, limit)
	}
}

func TestDumpRestoreWrongPassword(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Password: "s3cret-source"}, redistest.Config{Password: "s3cret-target"})
	src.Do(t, 0, "SET", "k", "v")
	for _, side := range []migrate.Side{migrate.Source, migrate.Target} {
		so, do := src.Option(), dst.Option()
		wrong := "wrong-pass-" + string(side)
		if side == migrate.Source {
			so.Password = wrong
		} else {
			do.Password = wrong
		}
		start := time.Now()
		_, err := runMigration(t, so, do, migrate.DumpRestore{})
		var me *migrate.Error
		if !errors.As(err, &me) || me.Side != side {
			t.Fatalf("%s: err = %v, want a *migrate.Error for the %s", side, err, side)
		}
		msg := err.Error()
		addr := map[migrate.Side]string{migrate.Source: src.Addr, migrate.Target: dst.Addr}[side]
		if !strings.Contains(msg, string(side)) || !strings.Contains(msg, addr) || !strings.Contains(msg, "Password") {
			t.Errorf("%s: error does not name the side, address and what to fix: %v", side, msg)
		}
		for _, p := range []string{wrong, "s3cret-source", "s3cret-target"} {
			if strings.Contains(msg, p) {
				t.Errorf("%s: error shows a password: %v", side, msg)
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: took %v to fail", side, time.Since(start))
		}
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target got %d keys after failed runs", n)
	}
}

func TestDumpRestoreUnreachable(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	_, err = runMigration(t, src.Option(), rueidis.ClientOption{InitAddress: []string{addr}}, migrate.DumpRestore{})
	var me *migrate.Error
	if !errors.As(err, &me) || me.Side != migrate.Target || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want a target error naming %s", err, addr)
	}
}

func TestDumpRestoreTooLarge(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{Lines: []string{"proto-max-bulk-len 1mb"}})
	src.Do(t, 0, "SET", "small", "v")
	huge := make([]byte, 2<<20)
	rand.Read(huge) // random, so the dump is not compressed below the limit
	src.Do(t, 0, "SET", "huge", string(huge))
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if !errors.Is(err, migrate.ErrTooLarge) || !strings.Contains(err.Error(), `"huge"`) || !strings.Contains(err.Error(), "proto-max-bulk-len") {
		t.Fatalf("err = %v, want ErrTooLarge naming the key and proto-max-bulk-len", err)
	}
	if n, _ := dst.Do(t, 0, "EXISTS", "huge").AsInt64(); n != 0 {
		t.Error("the huge key reached the target")
	}
}

// TestDumpRestoreExpiring copies keys that expire during the copy: they count as Expired,
// never as errors, and the rest arrive.
func TestDumpRestoreExpiring(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	c := src.Client(t, 0)
	var cmds rueidis.Commands
	for i := 0; i < 2000; i++ {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("keep%d", i)).Value("v").Build())
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("gone%d", i)).Value("v").PxMilliseconds(300).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	// 4,000 keys at 5,000 keys/s: the short-lived ones expire while the copy runs.
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithRateLimit(5000), migrate.WithBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expired == 0 || rep.Keys+rep.Expired != rep.Scanned || rep.Failed != 0 {
		t.Errorf("report %+v: want some expired keys, and copied+expired = scanned", rep.Counts)
	}
	time.Sleep(350 * time.Millisecond)
	if n := dst.DBSize(t, 0); n != 2000 {
		t.Errorf("target has %d keys, want the 2000 that do not expire", n)
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestDumpRestoreWhileWriting copies a source that is being written: no error, and each
// key ends on the target with a value it had on the source.
func TestDumpRestoreWhileWriting(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	c := src.Client(t, 0)
	const keys = 3000
	var cmds rueidis.Commands
	for i := 0; i < keys; i++ {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("0").Build())
	}
	c.DoMulti(context.Background(), cmds...)
	stop := make(chan struct{})
	writerDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				writerDone <- n
				return
			default:
			}
			// Values only grow, so a copied value must be between 0 and the last one written.
			n++
			k := fmt.Sprintf("k%d", n%keys)
			c.Do(context.Background(), c.B().Incr().Key(k).Build())
			c.Do(context.Background(), c.B().Set().Key(fmt.Sprintf("new%d", n)).Value("x").Build())
		}
	}()
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithRateLimit(20000), migrate.WithBatchSize(50))
	close(stop)
	<-writerDone
	if err != nil {
		t.Fatal(err)
	}
	sc, dc := src.Client(t, 0), dst.Client(t, 0)
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%d", i)
		got, err := dc.Do(context.Background(), dc.B().Get().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatalf("target %s: %v", k, err)
		}
		now, _ := sc.Do(context.Background(), sc.B().Get().Key(k).Build()).AsInt64()
		if got < 0 || got > now {
			t.Errorf("target %s = %d, source now %d", k, got, now)
		}
	}
	if rep.Keys < keys || rep.Failed != 0 {
		t.Errorf("report %+v, want at least %d keys and no failure", rep.Counts, keys)
	}
}

// TestDumpRestoreCancel is not parallel: it counts goroutines.
func TestDumpRestoreCancel(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	c := src.Client(t, 0)
	var cmds rueidis.Commands
	for i := 0; i < 5000; i++ {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("v").Build())
	}
	c.DoMulti(context.Background(), cmds...)
	before := runtime.NumGoroutine()
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithRateLimit(2000))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(500*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
	rep, err := m.Migrate(ctx)
	if late := time.Since(<-cancelled); late > 200*time.Millisecond {
		t.Errorf("Migrate returned %v after the cancellation", late)
	}
	m.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rep == nil || rep.Keys == 0 || rep.Keys >= 5000 {
		t.Fatalf("partial report %+v, want some keys copied", rep)
	}
	if n := dst.DBSize(t, 0); n != rep.Keys {
		t.Errorf("target has %d keys, report says %d", n, rep.Keys)
	}
	redistest.WaitGoroutines(t, before, 3*time.Second)
}

// TestDumpRestoreACLUsers copies between two ACL users that may do no more than the
// strategy needs: read on the source, write on the target. Neither may run the commands
// that read or write many strings at once (MGET, MSETNX), and the copy does without them.
func TestDumpRestoreACLUsers(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t,
		redistest.Config{Users: []string{"user reader on >r-pass ~* +@read -mget +dump +scan +info +pexpiretime +select +ping +hello +client +command"}},
		redistest.Config{Users: []string{"user writer on >w-pass ~* +restore +set +info +config|get +select +ping +hello +client +command"}})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	so, do := src.Option(), dst.Option()
	so.Username, so.Password = "reader", "r-pass"
	do.Username, do.Password = "writer", "w-pass"
	rep, err := runMigration(t, so, do, migrate.DumpRestore{})
	if err != nil {
		t.Fatal(err)
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
	if rep.Failed != 0 || rep.Keys == 0 {
		t.Errorf("report %+v", rep.Counts)
	}
	// A target user without RESTORE is refused before anything is copied.
	dst.Do(t, 0, "ACL", "SETUSER", "writer", "-restore")
	dst.Do(t, 0, "FLUSHALL")
	_, err = runMigration(t, so, do, migrate.DumpRestore{})
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "RESTORE") || !strings.Contains(err.Error(), "ACL") {
		t.Fatalf("err = %v, want ErrUnsupported naming RESTORE and the ACL", err)
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target got %d keys", n)
	}
}

// TestDumpRestoreProgress checks the progress calls: counters never go back, the last
// call is marked Done and equals the report.
func TestDumpRestoreProgress(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k", 1500, 10)
	var calls []migrate.Progress
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithRateLimit(2000), migrate.WithProgress(func(p migrate.Progress) {
		calls = append(calls, p)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 2 {
		t.Fatalf("%d progress calls for a copy of %v, want several", len(calls), rep.Duration)
	}
	// Calls come every 250 ms; a busy machine delays one tick and brings the next closer.
	for i := 1; i < len(calls); i++ {
		if calls[i].Keys < calls[i-1].Keys || calls[i].Elapsed-calls[i-1].Elapsed < 100*time.Millisecond && !calls[i].Done {
			t.Errorf("call %d: %+v after %+v", i, calls[i], calls[i-1])
		}
	}
	last := calls[len(calls)-1]
	if !last.Done || last.Keys != rep.Keys || last.Total != rep.Keys || last.Strategy != "dump-restore" {
		t.Errorf("last call %+v, report %+v", last, rep.Counts)
	}
}

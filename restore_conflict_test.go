package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// restoringStrategies are the strategies that write through the restorer.
var restoringStrategies = []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}}

// setSameKey writes key of typ ("string" or "hash") with the same value on every server given,
// expiring at expireAt (Unix milliseconds) on each where it is not 0.
func setSameKey(t *testing.T, typ, key string, at map[*redistest.Server]int64) {
	t.Helper()
	for s, expireAt := range at {
		if typ == "string" {
			s.Do(t, 0, "SET", key, "v")
		} else {
			s.Do(t, 0, "HSET", key, "f1", "v1", "f2", "v2")
		}
		if expireAt > 0 {
			s.Do(t, 0, "PEXPIREAT", key, strconv.FormatInt(expireAt, 10))
		}
	}
}

// TestRestoreSameValueOtherExpiry (issue 16.5): under Fail, a key the target holds with the
// source's value but another expiry is a conflict, in both directions, and the target's key
// is left as it was.
func TestRestoreSameValueOtherExpiry(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		for _, typ := range []string{"string", "hash"} {
			for _, tc := range []struct {
				name     string
				src, dst bool // which side has a TTL
			}{{"ttl-on-target", false, true}, {"ttl-on-source", true, false}} {
				t.Run(s.Name()+"/"+typ+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
					at := time.Now().Add(20 * time.Second).UnixMilli()
					srcAt, dstAt := int64(0), int64(0)
					if tc.src {
						srcAt = at
					}
					if tc.dst {
						dstAt = at
					}
					setSameKey(t, typ, "k1", map[*redistest.Server]int64{src: srcAt})
					setSameKey(t, typ, "k1", map[*redistest.Server]int64{dst: dstAt})
					rep, err := runMigration(t, src.Option(), dst.Option(), s)
					if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), "expires") {
						t.Fatalf("err = %v, want ErrConflict naming k1 and both expiries (report %+v)", err, rep.Counts)
					}
					t.Logf("error: %v", err)
					if rep.Failed != 1 || rep.Skipped != 0 || rep.Keys != 0 {
						t.Errorf("report %+v, want the key counted once, as failed", rep.Counts)
					}
					pttl, err := dst.Do(t, 0, "PTTL", "k1").AsInt64()
					if err != nil {
						t.Fatal(err)
					}
					if tc.dst && (pttl <= 0 || pttl > 20000) || !tc.dst && pttl != -1 {
						t.Errorf("target's k1 has PTTL %d, want it untouched (TTL on the target: %v)", pttl, tc.dst)
					}
				})
			}
		}
	}
}

// TestRestoreAlreadyThereIsSkipped (issue 16.5): keys the target already holds with the
// source's value and expiry are counted as Skipped under Fail, each once, and the
// migration succeeds.
func TestRestoreAlreadyThereIsSkipped(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
			at := time.Now().Add(time.Minute).UnixMilli()
			both := map[*redistest.Server]int64{src: at, dst: at}
			setSameKey(t, "string", "s-ttl", both)
			setSameKey(t, "hash", "h-ttl", both)
			setSameKey(t, "string", "s", map[*redistest.Server]int64{src: 0, dst: 0})
			setSameKey(t, "hash", "h", map[*redistest.Server]int64{src: 0, dst: 0})
			src.Do(t, 0, "SET", "new", "n")
			rep, err := runMigration(t, src.Option(), dst.Option(), s)
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if rep.Keys != 1 || rep.Skipped != 4 || rep.Failed != 0 {
				t.Errorf("report %+v, want 1 key copied and 4 skipped", rep.Counts)
			}
			if v, _ := dst.Do(t, 0, "GET", "new").ToString(); v != "n" {
				t.Errorf("target's new = %q, want n", v)
			}
		})
	}
}

// TestRestoreAlreadyThereBefore70 runs TestRestoreAlreadyThereIsSkipped's and
// TestRestoreAgainOverIdenticalHashtables's cases between servers of Redis 6.2, which have
// no PEXPIRETIME (the expiry is read with PTTL) and DUMP ziplists.
func TestRestoreAlreadyThereBefore70(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartRelease(t, redistest.FindRelease(t, "redis-6.2"), redistest.Config{}), redistest.StartRelease(t, redistest.FindRelease(t, "redis-6.2"), redistest.Config{})
	at := time.Now().Add(time.Minute).UnixMilli()
	setSameKey(t, "string", "s-ttl", map[*redistest.Server]int64{src: at, dst: at})
	setSameKey(t, "hash", "h-ttl", map[*redistest.Server]int64{src: at, dst: at})
	const n = 10
	fillHashtableKeys(t, src.Client(t, 0), n)
	fillHashtableKeys(t, dst.Client(t, 0), n)
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if rep.Skipped != 2+2*n || rep.Keys != 0 || rep.Failed != 0 {
		t.Errorf("report %+v, want all %d keys skipped", rep.Counts, 2+2*n)
	}
	dst.Do(t, 0, "PEXPIREAT", "h-ttl", strconv.FormatInt(at+5000, 10))
	rep, err = runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), `"h-ttl"`) {
		t.Errorf("err = %v, want ErrConflict naming h-ttl, whose expiry differs (report %+v)", err, rep.Counts)
	}
}

// fillHashtableKeys writes n hashes of five fields of 65 bytes and n sets of 20 members of 65
// bytes: hashtables, whose DUMP payloads depend on the order of their members.
func fillHashtableKeys(t *testing.T, c rueidis.Client, n int) {
	t.Helper()
	var cmds rueidis.Commands
	for i := range n {
		h := c.B().Hset().Key(fmt.Sprintf("hash:%d", i)).FieldValue()
		for f := range 5 {
			h = h.FieldValue(fmt.Sprintf("field-%d-%s", f, strings.Repeat("f", 57)), strings.Repeat(strconv.Itoa(f+i), 65)[:65])
		}
		cmds = append(cmds, h.Build())
		members := make([]string, 20)
		for m := range members {
			members[m] = fmt.Sprintf("member-%03d-%s", m, strings.Repeat("m", 54))
		}
		cmds = append(cmds, c.B().Sadd().Key(fmt.Sprintf("set:%d", i)).Member(members...).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestoreAgainOverIdenticalHashtables (issue 16.8): the same migration run again under
// Fail over the target it filled meets only identical keys, though their payloads differ
// (hashtables): it succeeds and skips them all.
func TestRestoreAgainOverIdenticalHashtables(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
			const n = 30
			fillHashtableKeys(t, src.Client(t, 0), n)
			rep, err := runMigration(t, src.Option(), dst.Option(), s)
			if err != nil || rep.Keys != 2*n {
				t.Fatalf("first run: %v, report %+v", err, rep.Counts)
			}
			rep, err = runMigration(t, src.Option(), dst.Option(), s)
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if rep.Skipped != 2*n || rep.Keys != 0 || rep.Failed != 0 {
				t.Errorf("second run: report %+v, want all %d keys skipped", rep.Counts, 2*n)
			}
			redistest.AssertSame(t, src, dst, 0)
		})
	}
}

// TestRestoreAgainIntoCluster (issue 17.3): a migration from a standalone server into a
// cluster run again with Skip meets existing strings, whose SET ... NX answers nil: that
// is an answer, not a failover, and the run ends at once with every key skipped.
func TestRestoreAgainIntoCluster(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{})
			dst := redistest.StartCluster(t, redistest.ClusterConfig{})
			redistest.AddKeys(t, src, 0, "str:", 200, 16)
			fillHashtableKeys(t, src.Client(t, 0), 10)
			const total = 200 + 2*10
			rep, err := runMigration(t, src.Option(), dst.Option(), s)
			if err != nil || rep.Keys != total {
				t.Fatalf("first run: %v, report %+v", err, rep.Counts)
			}
			start := time.Now()
			rep, err = runMigration(t, src.Option(), dst.Option(), s, migrate.WithConflict(migrate.Skip))
			took := time.Since(start)
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if rep.Skipped != total || rep.Keys != 0 || rep.Failed != 0 {
				t.Errorf("second run: report %+v, want all %d keys skipped", rep.Counts, total)
			}
			if took > 15*time.Second {
				t.Errorf("second run took %v: it waited for a failover that was not happening", took)
			}
			// Under Fail, identical keys are no conflict either.
			start = time.Now()
			rep, err = runMigration(t, src.Option(), dst.Option(), s)
			took = time.Since(start)
			if err != nil {
				t.Fatalf("third run, under Fail: %v", err)
			}
			if rep.Skipped != total || rep.Keys != 0 || rep.Failed != 0 || took > 15*time.Second {
				t.Errorf("third run, under Fail: report %+v in %v, want all %d keys skipped at once", rep.Counts, took, total)
			}
		})
	}
}

// TestRestoreCancelledCounts (issues 16.11, 17.8): a migration cancelled mid-copy counts
// no key as failed, and exactly the keys the target holds as copied.
func TestRestoreCancelledCounts(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
			redistest.AddKeys(t, src, 0, "str:", 20000, 32)
			fillHashtableKeys(t, src.Client(t, 0), 2000)
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s),
				migrate.WithBatchSize(200), migrate.WithConcurrency(4))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dc := dst.Client(t, 0)
			go func() { // cancel once the copy is well under way
				for ctx.Err() == nil {
					if n, err := dc.Do(context.Background(), dc.B().Dbsize().Build()).AsInt64(); err == nil && n > 3000 {
						cancel()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			rep, err := m.Migrate(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled (report %+v)", err, rep.Counts)
			}
			held, err := dc.Do(context.Background(), dc.B().Dbsize().Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed != 0 || rep.Keys != held {
				t.Errorf("report %+v; the target holds %d keys: want 0 failed and as many copied as held", rep.Counts, held)
			}
		})
	}
}

// TestRestoreStoppedByConflictCounts (issue 16.11): a migration that one conflict stops
// counts that key alone as failed, not the keys of the batches it cut short, and as copied
// exactly the keys it wrote.
func TestRestoreStoppedByConflictCounts(t *testing.T) {
	t.Parallel()
	for _, s := range restoringStrategies {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
			redistest.AddKeys(t, src, 0, "str:", 20000, 32)
			fillHashtableKeys(t, src.Client(t, 0), 2000)
			dst.Do(t, 0, "SET", "str:5000", "another value")
			rep, err := runMigration(t, src.Option(), dst.Option(), s, migrate.WithBatchSize(200), migrate.WithConcurrency(4))
			if !errors.Is(err, migrate.ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict (report %+v)", err, rep.Counts)
			}
			held := dst.DBSize(t, 0)
			if rep.Failed != 1 || rep.Keys != held-1 {
				t.Errorf("report %+v; the target holds %d keys, one of them its own: want 1 failed and %d copied", rep.Counts, held, held-1)
			}
		})
	}
}

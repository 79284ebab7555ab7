package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// smallBulk is the target's proto-max-bulk-len in these tests, far below their big keys.
var smallBulk = redistest.Config{Lines: []string{"proto-max-bulk-len 1mb"}}

// fillBig writes, on s, one key of each type that is copied in pieces: name+":str", a
// string of strSize random bytes, and name+":hash", ":set", ":zset", ":list" and ":stream"
// of n elements of about 40 bytes each (over 1 MB from 30,000), some with a TTL.
func fillBig(t *testing.T, s *redistest.Server, name string, strSize, n int) {
	t.Helper()
	c := s.Client(t, 0)
	ctx := context.Background()
	if strSize > 0 {
		v := make([]byte, strSize)
		rand.New(rand.NewSource(1)).Read(v)
		if err := c.Do(ctx, c.B().Set().Key(name+":str").Value(rueidis.BinaryString(v)).ExSeconds(3600).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	var cmds rueidis.Commands
	flush := func() {
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
		cmds = cmds[:0]
	}
	rnd := rand.New(rand.NewSource(2))
	// Many elements a command, for a quick fill.
	var fields, members, zargs []string
	for i := 0; i < n; i++ {
		// Random, so that DUMP's compression does not bring a payload below the limit.
		e := fmt.Sprintf("%08d-%016x%016x", i, rnd.Uint64(), rnd.Uint64())
		fields = append(fields, e, fmt.Sprint(i))
		members = append(members, e)
		zargs = append(zargs, strconv.FormatFloat(float64(i)/3, 'g', -1, 64), e)
		if i%2 == 0 {
			cmds = append(cmds, c.B().Xadd().Key(name+":stream").Id(fmt.Sprintf("%d-%d", 1000+i, i%3)).FieldValue().FieldValue("f", e).FieldValue("g", "v").Build())
		}
		if len(members) == 1000 || i == n-1 {
			cmds = append(cmds,
				c.B().Arbitrary("HSET").Keys(name+":hash").Args(fields...).Build(),
				c.B().Sadd().Key(name+":set").Member(members...).Build(),
				c.B().Arbitrary("ZADD").Keys(name+":zset").Args(zargs...).Build(),
				c.B().Rpush().Key(name+":list").Element(members...).Build(),
			)
			fields, members, zargs = nil, nil, nil
		}
		if len(cmds) >= 2000 {
			flush()
		}
	}
	cmds = append(cmds,
		c.B().Zadd().Key(name+":zset").ScoreMember().ScoreMember(1e-300, "tiny").ScoreMember(0.1, "tenth").Build(),
		c.B().Arbitrary("ZADD").Keys(name+":zset").Args("-inf", "low", "+inf", "high").Build(),
		c.B().Expire().Key(name+":hash").Seconds(3600).Build(),
		c.B().Expire().Key(name+":list").Seconds(7200).Build(),
		// A deleted entry, so the stream's last ID and counters are not its last entry's.
		c.B().Xadd().Key(name+":stream").Id("999999999-0").FieldValue().FieldValue("gone", "x").Build(),
		c.B().Xdel().Key(name+":stream").Id("999999999-0").Build(),
	)
	flush()
}

// partialKeys returns the temporary keys of piecewise copies left on s.
func partialKeys(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	return redistest.Keys(t, s.Client(t, 0), "migrate:partial:*")
}

// TestDumpRestoreBigKeys copies keys larger than WithKeyBudget (a 40 MB string,
// collections of 30,000 elements, a stream) in pieces: exact, TTLs kept, no temporary key
// left, and the string never held whole in memory.
func TestDumpRestoreBigKeys(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	fillBig(t, src, "big", 40<<20, 30000)
	redistest.SetKeys(t, src, 0, "small:", 500, redistest.Numbered("v"))

	// Garbage may not pile up to the size of the live heap before a collection, which
	// would hide what is held.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithKeyBudget(256<<10))
	close(stop)
	<-sampled

	if rep.Keys != 506 || rep.Failed != 0 || rep.Skipped != 0 {
		t.Errorf("report %+v: want 506 keys copied", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
	if ttl := redistest.Int(t, dst.Do(t, 0, "PTTL", "big:str")); ttl < 3500_000 {
		t.Errorf("big:str TTL %d ms on the target, want about an hour", ttl)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
	// The 40 MB string goes in windows of at most 256 KiB: the heap never grows by its size
	// (the migration's connections and buffers take about 10 MB).
	grew := int64(peak.Load()) - int64(before.HeapAlloc)
	t.Logf("the heap grew by %d KiB", grew>>10)
	if grew > 24<<20 {
		t.Errorf("the heap grew by %d MB during the copy of a 40 MB string, want it bounded well below", grew>>20)
	}
}

// TestDumpRestoreBigKeysBulk copies collections larger than the target's
// proto-max-bulk-len in pieces, which a RESTORE could not carry, and refuses a string
// longer than it, which the target cannot hold at all.
func TestDumpRestoreBigKeysBulk(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 0, 30000)
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if rep.Keys != 5 || rep.Failed != 0 {
		t.Errorf("report %+v: want 5 keys copied", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}

	src.Do(t, 0, "SET", "big:str", strings.Repeat("x", 2<<20))
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithMatch("big:str"))
	if !errors.Is(err, migrate.ErrTooLarge) || !strings.Contains(err.Error(), `"big:str"`) || !strings.Contains(err.Error(), "proto-max-bulk-len") {
		t.Fatalf("err = %v, want ErrTooLarge naming big:str and proto-max-bulk-len", err)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
}

// TestDumpRestoreBigKeyConflict: under Fail a big key the target holds already stops the
// migration with ErrConflict naming it, and the target's key is untouched; under Skip it is
// counted as Skipped. No temporary key is left either way.
func TestDumpRestoreBigKeyConflict(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 0, 30000)
	for _, k := range []string{"big:hash", "big:set", "big:list", "big:stream"} {
		src.Do(t, 0, "DEL", k)
	}
	dst.Do(t, 0, "SET", "big:zset", "theirs")

	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), `"big:zset"`) {
		t.Fatalf("err = %v, want ErrConflict naming big:zset", err)
	}
	if v := dst.Get(t, "big:zset"); v != "theirs" {
		t.Errorf("the target's big:zset was changed (%q)", v)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}

	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithConflict(migrate.Skip))
	if rep.Skipped != 1 || rep.Failed != 0 {
		t.Errorf("report %+v: want big:zset skipped", rep.Counts)
	}
	if v := dst.Get(t, "big:zset"); v != "theirs" {
		t.Errorf("the target's big:zset was changed under Skip (%q)", v)
	}

	rep = mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithConflict(migrate.Replace))
	if rep.Keys != 1 {
		t.Errorf("report %+v: want big:zset replaced", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestDumpRestoreBigStreamWithGroups copies a big stream with two consumer groups, their
// consumers (one with no pending entry) and pending entries exactly; a pending entry whose
// message was deleted, which cannot be recreated, refuses the key with ErrIncompatible.
func TestDumpRestoreBigStreamWithGroups(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 0, 40000)
	for _, k := range []string{"big:hash", "big:set", "big:zset", "big:list"} {
		src.Do(t, 0, "DEL", k)
	}
	src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "g1", "0")
	src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "g2", "0")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", "700", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g1", "bob", "COUNT", "10", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g2", "carol", "COUNT", "3", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XGROUP", "CREATECONSUMER", "big:stream", "g2", "idle")
	src.Do(t, 0, "XACK", "big:stream", "g1", "1000-0", "1006-0")
	src.Do(t, 0, "XCLAIM", "big:stream", "g1", "bob", "0", "1012-0") // delivered twice

	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithKeyBudget(4096))
	if rep.Keys != 1 {
		t.Errorf("report %+v: want the stream copied", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}

	dst.Do(t, 0, "FLUSHALL")
	src.Do(t, 0, "XDEL", "big:stream", "1018-0") // pending in g1
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithKeyBudget(4096))
	if !errors.Is(err, migrate.ErrIncompatible) || !strings.Contains(err.Error(), `"big:stream"`) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("err = %v, want ErrIncompatible naming big:stream and the deleted pending entry", err)
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("the target holds %d keys, want none", n)
	}
}

// TestDumpRestoreBigKeyCancel cancels a migration while a big key is copied in pieces: its
// temporary key is deleted, and the key does not appear half.
func TestDumpRestoreBigKeyCancel(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	c := src.Client(t, 0)
	var cmds rueidis.Commands
	for i := 0; i < 200; i++ {
		elems := make([]string, 1000)
		for k := range elems {
			elems[k] = fmt.Sprintf("%d-%d-%016x", i, k, rand.Uint64())
		}
		cmds = append(cmds, c.B().Rpush().Key("big:list").Element(elems...).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}),
		migrate.WithKeyBudget(4096), migrate.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cancelMidPiece(t, m, dst)
}

// cancelMidPiece runs m, cancels it once a temporary key of a piecewise copy shows on dst,
// and checks that Migrate says so, that no temporary key is left, and that dst holds no key
// (the big key never appears half).
func cancelMidPiece(t *testing.T, m migrate.Migrator, dst *redistest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := m.Migrate(ctx)
		done <- err
	}()
	for len(partialKeys(t, dst)) == 0 {
		select {
		case err := <-done:
			t.Fatalf("Migrate returned (%v) before a temporary key was seen", err)
		default:
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("the target holds %d keys, want none: the big key was not whole", n)
	}
}

// TestDumpRestoreBigKeysIntoCluster copies big keys into a cluster target: each temporary
// key is in its key's slot (the key's hash tag, or its whole name), so RENAME works there.
func TestDumpRestoreBigKeysIntoCluster(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{Node: smallBulk})
	fillBig(t, src, "big", 0, 30000)
	src.Do(t, 0, "RENAME", "big:set", "{tagged}:set")
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{})
	if rep.Keys != 5 || rep.Failed != 0 {
		t.Errorf("report %+v: want 5 keys copied", rep.Counts)
	}
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
}

package migrate_test

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// heapPeak samples the heap in use until the returned function is called, which returns
// by how much its peak passed what was in use at the start.
func heapPeak(t *testing.T) func() int64 {
	t.Helper()
	// Garbage may not pile up to the size of the live heap before a collection, which
	// would hide what is held.
	old := debug.SetGCPercent(10)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-sampled
		debug.SetGCPercent(old)
		return int64(peak.Load()) - int64(before.HeapInuse)
	}
}

// TestSnapshotHugeValues reads, through Snapshot, values the target cannot take in one
// command (its proto-max-bulk-len is 1 MB) or larger than WithKeyBudget: a hash, a set, a
// sorted set and a list of 60,000 elements, a stream with consumer groups, pending entries
// and a consumer without any, and strings of 20 MB and 16 MB (one plain, one that the RDB
// holds LZF-compressed). Each is copied in pieces as the RDB streams in, exact, with its
// TTL, no temporary key left, and the heap never grows by a value's size.
func TestSnapshotHugeValues(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 0, 60000)
	src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "g1", "0")
	src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "g2", "$")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", "20000", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g1", "bob", "COUNT", "20", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XGROUP", "CREATECONSUMER", "big:stream", "g2", "idle")
	src.Do(t, 0, "XACK", "big:stream", "g1", "1000-0", "1006-0")
	src.Do(t, 0, "XCLAIM", "big:stream", "g1", "bob", "0", "1012-0") // delivered twice
	redistest.SetKeys(t, src, 0, "small:", 300, redistest.Numbered("v"))

	grew := heapPeak(t)
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.Snapshot{})
	growth := grew()
	if rep.Keys != 305 || rep.Failed != 0 || rep.Skipped != 0 {
		t.Errorf("report %+v: want 305 keys copied", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
	t.Logf("collections: the heap in use grew by %d KiB", growth>>10)
	if growth > 32<<20 {
		t.Errorf("the heap grew by %d MB while collections of about 10 MB each were copied, want it bounded well below", growth>>20)
	}

	// Strings: the target must hold them, so its limit is raised; the key budget is not.
	for _, s := range []*redistest.Server{src, dst} {
		s.Do(t, 0, "FLUSHALL")
	}
	dst.Do(t, 0, "CONFIG", "SET", "proto-max-bulk-len", "64mb")
	fillBig(t, src, "big", 20<<20, 0)
	src.Do(t, 0, "SET", "big:lzf", strings.Repeat("0123456789abcdef", 1<<20), "PX", "7200000")
	grew = heapPeak(t)
	rep = mustMigrate(t, src.Option(), dst.Option(), migrate.Snapshot{}, migrate.WithKeyBudget(2<<20))
	growth = grew()
	if rep.Keys != 4 { // and the small zset and empty stream fillBig leaves
		t.Errorf("report %+v: want the two strings copied", rep.Counts)
	}
	redistest.AssertSame(t, src, dst, 0)
	t.Logf("strings: the heap in use grew by %d KiB", growth>>10)
	if growth > 24<<20 {
		t.Errorf("the heap grew by %d MB while strings of 20 MB were copied with a key budget of 2 MB", growth>>20)
	}
}

// TestSnapshotHugeValueCancel cancels a Snapshot while a huge list is copied in pieces:
// its temporary key is deleted, and the list does not appear half.
func TestSnapshotHugeValueCancel(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 0, 200000)
	for _, k := range []string{"big:hash", "big:set", "big:zset", "big:stream"} {
		src.Do(t, 0, "DEL", k)
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Snapshot{}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cancelMidPiece(t, m, dst)
}

// TestSnapshotHugeValueRefusals checks what a huge value copied in pieces cannot carry: a
// string longer than the target's proto-max-bulk-len fails with ErrTooLarge before a byte
// is written; a pending entry whose message was deleted refuses its stream with
// ErrIncompatible, or leaves it out under WithIncompatible(SkipIncompatible).
func TestSnapshotHugeValueRefusals(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	fillBig(t, src, "big", 3<<20, 0)
	_, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{})
	if !errors.Is(err, migrate.ErrTooLarge) || !strings.Contains(err.Error(), `"big:str"`) {
		t.Errorf("err = %v, want ErrTooLarge naming big:str", err)
	}
	src.Do(t, 0, "FLUSHALL")
	fillBig(t, src, "big", 0, 60000)
	for _, k := range []string{"big:hash", "big:set", "big:zset", "big:list"} {
		src.Do(t, 0, "DEL", k)
	}
	src.Do(t, 0, "XGROUP", "CREATE", "big:stream", "g1", "0")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", "10", "STREAMS", "big:stream", ">")
	src.Do(t, 0, "XDEL", "big:stream", "1004-1") // pending in g1
	src.Do(t, 0, "SET", "small", "v")
	_, err = runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{})
	if !errors.Is(err, migrate.ErrIncompatible) || !strings.Contains(err.Error(), `"big:stream"`) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("err = %v, want ErrIncompatible naming big:stream and the deleted pending entry", err)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
	dst.Do(t, 0, "FLUSHALL")
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.Snapshot{}, migrate.WithIncompatible(migrate.SkipIncompatible))
	if rep.Skipped != 1 || rep.Keys != 1 || len(rep.Incompatible.Keys) != 1 || rep.Incompatible.Keys[0].Key != "big:stream" {
		t.Errorf("report %+v %+v: want big:stream left out and listed, small copied", rep.Counts, rep.Incompatible)
	}
	if n := dst.DBSize(t, 0); n != 1 || len(partialKeys(t, dst)) != 0 {
		t.Errorf("the target holds %d keys, want only small", n)
	}
}

// TestBigKeysNarrowUser copies with a target user that may RESTORE but not write a key in
// pieces: Plan warns of what it lacks for big keys; small keys are copied all the same; a
// key too big stops the migration with an error that names the command to grant.
func TestBigKeysNarrowUser(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, smallBulk)
	setUser(t, dst, rulesOf(leastPrivilege[1].dst, "")+" +exists +unlink +multi +discard")
	redistest.SetKeys(t, src, 0, "small:", 50, redistest.Numbered("v"))
	m, err := migrate.New(src.Option(), asMig(dst), migrate.WithStrategy(migrate.Snapshot{}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	plan, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, w := range plan.Warnings {
		warned = warned || strings.Contains(w, "copied in pieces") && strings.Contains(w, "+rpush") && strings.Contains(w, "+renamenx")
	}
	if !warned {
		t.Errorf("Plan warnings %q: want the big-key commands the target's user lacks", plan.Warnings)
	}
	if rep := mustMigrate(t, src.Option(), asMig(dst), migrate.Snapshot{}); rep.Keys != 50 {
		t.Errorf("report %+v: want the 50 small keys copied", rep.Counts)
	}
	fillBig(t, src, "big", 0, 60000)
	for _, k := range []string{"big:hash", "big:set", "big:zset", "big:stream"} {
		src.Do(t, 0, "DEL", k)
	}
	_, err = runMigration(t, src.Option(), asMig(dst), migrate.Snapshot{}, migrate.WithConflict(migrate.Replace))
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "RPUSH") || !strings.Contains(err.Error(), "+rpush") || !strings.Contains(err.Error(), `"big:list"`) {
		t.Errorf("err = %v, want one naming RPUSH, +rpush and the key", err)
	}
	if left := partialKeys(t, dst); len(left) > 0 {
		t.Errorf("temporary keys left on the target: %q", left)
	}
}

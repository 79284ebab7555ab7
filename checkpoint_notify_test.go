package migrate_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCheckpointFollowNotifyResume kills a DumpRestore that follows keyspace notifications
// in a child process five times, while it walks and while it follows, under a writer of
// commands whose loss would show (INCR, LPUSH, APPEND, DEL, EXPIRE, a FLUSHDB); each run
// resumes with a compare-and-repair pass, the last cuts over, and the target ends equal to
// the source, counters exact.
func TestCheckpointFollowNotifyResume(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
	loadFunction(t, src)
	redistest.AddKeys(t, src, 0, "bulk:", 2000, 10)
	w := startFollowWriter(t, src, 4*time.Millisecond)
	k := newKilledRun(t, "dump-restore-follow", src.Addr, dst.Addr, "MIGRATE_CHECKPOINT_DATABASES=0,1,2")
	var walking, following int
	n := 0
	k.killFiveTimes(t, func() time.Duration {
		// Three times while it walks (2000 keys at 2000 a second), then once it follows.
		n++
		if n <= 3 {
			return time.Duration(100+rand.Intn(300)) * time.Millisecond
		}
		return time.Duration(1500+rand.Intn(800)) * time.Millisecond
	}, func(kill int) {
		var saved struct {
			DatabasesDone []int `json:"databases_done"`
		}
		if b, err := os.ReadFile(k.file); err == nil && json.Unmarshal(b, &saved) == nil {
			if len(saved.DatabasesDone) == 3 {
				following++
			} else {
				walking++
			}
		}
	})
	if walking == 0 || following == 0 {
		t.Errorf("%d kills while walking, %d once following: want both", walking, following)
	}
	rounds, rep := k.cutOver(t, w)
	if rep.Repairs < 1 || !strings.Contains(rep.Resumed, "compare-and-repair") {
		t.Errorf("the last run made %d repair passes, resumed from %q: want a compare-and-repair pass", rep.Repairs, rep.Resumed)
	}
	t.Logf("%d writer rounds, %d kills while walking, %d following; resumed from %s: %v", rounds, walking, following, rep.Resumed, rep)
	time.Sleep(200 * time.Millisecond) // the writer's short-lived keys expire on both sides
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
	k.checkComplete(t)
}

// TestCheckpointFollowNotifyWalkDone resumes a following DumpRestore from checkpoints as a
// run killed while following (its walk done) or while walking leaves them, after writes,
// deletes and a new key made while no run listened: the resumed run repairs them with a
// compare-and-repair pass and follows to the cutover. The keys the interrupted run wrote are
// no conflicts when the target held none at the first start; when it held some, a key the
// source changed since stops the run under Fail, the error saying why.
func TestCheckpointFollowNotifyWalkDone(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		edit    func(saved map[string]any)
		resumed string // in Report.Resumed
		walked  bool
		fails   bool
	}{
		{name: "walk done", edit: func(map[string]any) {}, resumed: "the walk was done"},
		{name: "walk under way", edit: func(s map[string]any) { delete(s, "databases_done") }, resumed: "after the walk", walked: true},
		{name: "target held keys", edit: func(s map[string]any) {
			delete(s, "databases_done")
			s["target_held"] = map[string]any{"0": 5}
		}, fails: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, noPsync, redistest.Config{})
			redistest.AddKeys(t, src, 0, "k:", 200, 10)
			src.Do(t, 0, "SET", "n", "1")
			file := filepath.Join(t.TempDir(), "checkpoint.json")
			store := migrate.CheckpointFile(file)
			nop := func(context.Context) error { return nil }
			followNotify(t, src.Option(), dst.Option(), nop, migrate.WithCheckpoint(store))

			// The checkpoint as a run killed before its cutover leaves it.
			var saved map[string]any
			b, err := os.ReadFile(file)
			if err != nil || json.Unmarshal(b, &saved) != nil {
				t.Fatalf("checkpoint %q: %v", b, err)
			}
			if done, _ := saved["databases_done"].([]any); !slices.Equal(done, []any{0.0}) {
				t.Fatalf("the checkpoint says databases %v were done, want [0]", done)
			}
			delete(saved, "complete")
			delete(saved, "cutover")
			c.edit(saved)
			if b, err = json.Marshal(saved); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			// Writes no run hears.
			src.Do(t, 0, "INCR", "n")
			src.Do(t, 0, "DEL", "k:1", "k:2")
			src.Do(t, 0, "SET", "k:3", "changed")
			src.Do(t, 0, "EXPIRE", "k:4", "500")
			src.Do(t, 0, "SET", "new", "v")

			opts := []migrate.Option{migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithFollow(nop), migrate.WithCheckpoint(store)}
			rep, err := migrateWithin(t, context.Background(), src, dst, opts...)
			if c.fails {
				if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), "held keys when the migration first started") {
					t.Fatalf("resumed run: %v; want ErrConflict saying the target held keys", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Repairs < 1 || (rep.Scanned > 0) != c.walked || rep.Failed != 0 || !strings.Contains(rep.Resumed, c.resumed) {
				t.Errorf("resumed run: %d repair passes, %d keys walked, %d failed, resumed from %q; want a repair pass, a walk %v, and %q",
					rep.Repairs, rep.Scanned, rep.Failed, rep.Resumed, c.walked, c.resumed)
			}
			redistest.AssertSame(t, src, dst, 0)
			if v, _ := dst.Do(t, 0, "GET", "n").ToString(); v != "2" {
				t.Errorf("the counter on the target: %q, want 2", v)
			}
			again, err := migrateWithin(t, context.Background(), src, dst, opts...)
			if err != nil || !again.AlreadyComplete {
				t.Errorf("a run after the end: %v, %v; want it complete", again, err)
			}
		})
	}
}

package migrate

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestKeyQueue: a key waits once however often it is named, keys come out in the order
// first named, and past its limit the queue empties itself and says so once.
func TestKeyQueue(t *testing.T) {
	q := newKeyQueue(3)
	q.add(0, "a")
	q.add(0, "b")
	q.add(0, "a")
	q.add(1, "a")
	if n := q.len(); n != 3 {
		t.Fatalf("len %d, want 3", n)
	}
	at := q.position()
	got := q.take(2)
	if len(got) != 2 || got[0].key != "a" || got[1].key != "b" || got[0].db != 0 {
		t.Fatalf("take: %+v", got)
	}
	if q.reached(at) {
		t.Errorf("reached before the third key was taken")
	}
	q.add(0, "a") // named again once taken: waits again, after the others
	q.take(1)
	if !q.reached(at) {
		t.Errorf("not reached once every key named before the marker was taken")
	}
	q.add(0, "c")
	q.add(0, "d")
	if q.takeOverflow() {
		t.Errorf("overflow before the limit")
	}
	q.add(0, "e") // the fourth: past the limit
	if !q.takeOverflow() || q.len() != 0 {
		t.Errorf("past the limit: overflow not said, or %d keys still wait", q.len())
	}
	if q.takeOverflow() {
		t.Errorf("overflow said twice")
	}
}

// TestFollowNotifyRewalk: more keys written while following than the queue holds make a
// re-walk, and the end is exact. Not parallel: it lowers the queue's limit for its run.
func TestFollowNotifyRewalk(t *testing.T) {
	defer func(n int) { notifyQueueLimit = n }(notifyQueueLimit)
	notifyQueueLimit = 100
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{"notify-keyspace-events KEA"}}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k:", 1000, 10)
	c := src.Client(t, 0)
	cutover := func(ctx context.Context) error {
		// Many keys at once, faster than they are copied: the queue overflows.
		for round := range 5 {
			cmds := make(rueidis.Commands, 0, 500)
			for i := range 500 {
				cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("k:%d", (round*500+i)%1500)).Value(strconv.Itoa(round)).Build())
			}
			cmds = append(cmds, c.B().Del().Key(fmt.Sprintf("k:%d", round)).Build())
			for _, r := range c.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	m, err := New(src.Option(), dst.Option(), WithStrategy(DumpRestore{}), WithFollow(cutover))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rewalks == 0 {
		t.Errorf("Report.Rewalks 0: the queue never overflowed (%s)", rep)
	}
	redistest.AssertSame(t, src, dst, 0)
}

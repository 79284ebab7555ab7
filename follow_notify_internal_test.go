package migrate

import "testing"

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

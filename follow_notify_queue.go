package migrate

import (
	"sync"
	"time"
)

// queuedKey is one key named by a notification, waiting to be copied again.
type queuedKey struct {
	db  int
	key string
	seq int64     // the queue's position when it was first named since it was last taken
	at  time.Time // when
}

// keyQueue holds the keys notifications named, each once, in the order they were first
// named, up to limit keys. Past the limit it empties itself and says so (takeOverflow): a
// repair pass then covers every key, and no name is lost.
type keyQueue struct {
	limit int
	wake  chan struct{} // told when a key is added

	mu       sync.Mutex
	seq      int64 // keys added so far
	order    []queuedKey
	head     int // order[:head] were taken
	in       map[dbKey]bool
	overflow bool
}

type dbKey struct {
	db  int
	key string
}

func newKeyQueue(limit int) *keyQueue {
	return &keyQueue{limit: limit, in: map[dbKey]bool{}}
}

// add queues key of database db, unless it waits already.
func (q *keyQueue) add(db int, key string) {
	q.mu.Lock()
	k := dbKey{db, key}
	switch {
	case q.in[k]:
	case len(q.in) >= q.limit:
		q.overflow = true
		q.clearLocked()
	default:
		q.seq++
		q.in[k] = true
		q.order = append(q.order, queuedKey{db: db, key: key, seq: q.seq, at: time.Now()})
	}
	q.mu.Unlock()
	if q.wake != nil {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// position returns the position of the last key added: a marker read now says that every
// key named before it is at or below this position.
func (q *keyQueue) position() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seq
}

// take removes and returns up to n keys, the first named first.
func (q *keyQueue) take(n int) []queuedKey {
	q.mu.Lock()
	defer q.mu.Unlock()
	end := min(len(q.order), q.head+n)
	if end == q.head {
		return nil
	}
	out := make([]queuedKey, end-q.head)
	copy(out, q.order[q.head:end])
	clear(q.order[q.head:end])
	q.head = end
	for _, k := range out {
		delete(q.in, dbKey{k.db, k.key})
	}
	if q.head == len(q.order) {
		q.order, q.head = q.order[:0], 0
	} else if q.head > 4096 && q.head*2 > len(q.order) {
		q.order = append(q.order[:0], q.order[q.head:]...)
		q.head = 0
	}
	return out
}

// reached reports whether every key added up to position at has been taken.
func (q *keyQueue) reached(at int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == len(q.order) || q.order[q.head].seq > at
}

// takeOverflow reports, once, that the queue overflowed since the last call.
func (q *keyQueue) takeOverflow() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	o := q.overflow
	q.overflow = false
	return o
}

// clear drops every queued key: a repair pass starting now covers them.
func (q *keyQueue) clear() {
	q.mu.Lock()
	q.clearLocked()
	q.mu.Unlock()
}

func (q *keyQueue) clearLocked() {
	clear(q.order)
	q.order, q.head = q.order[:0], 0
	clear(q.in)
}

// len returns how many keys wait.
func (q *keyQueue) len() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int64(len(q.order) - q.head)
}

// oldest returns when the key waiting longest was named; zero when none waits.
func (q *keyQueue) oldest() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.order) {
		return time.Time{}
	}
	return q.order[q.head].at
}

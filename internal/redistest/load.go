package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// AddKeys writes n string keys, prefix followed by 0 to n-1, each holding size bytes, into
// database db of s, in pipelined batches. It is the bulk a test needs to make a copy take
// a while.
func AddKeys(t testing.TB, s *Server, db int, prefix string, n, size int) {
	t.Helper()
	c := s.Client(t, db)
	value := strings.Repeat("v", size)
	for start := 0; start < n; start += 1000 {
		end := min(start+1000, n)
		cmds := make(rueidis.Commands, 0, end-start)
		for i := start; i < end; i++ {
			cmds = append(cmds, c.B().Set().Key(prefix+strconv.Itoa(i)).Value(value).Build())
		}
		for _, r := range c.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Fatalf("redistest: add keys to %s db %d: %v", s.Addr, db, err)
			}
		}
	}
}

// Writer writes to a server at a steady, bounded rate from its own goroutine, as an
// application would while a migration runs.
type Writer struct {
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	writes   atomic.Int64
	err      error
}

// StartWriter starts writing to database db of s: every interval it increments
// prefix+"counter" (INCR) and sets prefix+N to N (SET), N counting from 0, until Stop is
// called or limit has passed. The test's cleanup stops it.
func StartWriter(t testing.TB, s *Server, db int, prefix string, interval, limit time.Duration) *Writer {
	t.Helper()
	c := s.Client(t, db)
	w := &Writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		end := time.After(limit)
		for {
			select {
			case <-w.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n := strconv.FormatInt(w.writes.Load(), 10)
			res := c.DoMulti(ctx,
				c.B().Incr().Key(prefix+"counter").Build(),
				c.B().Set().Key(prefix+n).Value(n).Build())
			cancel()
			for _, r := range res {
				if err := r.Error(); err != nil {
					w.err = fmt.Errorf("redistest: write to %s db %d: %w", s.Addr, db, err)
					return
				}
			}
			w.writes.Add(1)
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return w
}

// Writes returns how many rounds of writes (an INCR and a SET each) succeeded so far.
func (w *Writer) Writes() int { return int(w.writes.Load()) }

// Stop stops the writer and waits for its last write. It returns how many rounds of writes
// succeeded, and the first failed write's error. It may be called more than once.
func (w *Writer) Stop() (int, error) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	return w.Writes(), w.err
}

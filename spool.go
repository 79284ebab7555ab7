package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// A spool is the file where a following Snapshot keeps what the source sends on its
// replication connection: first the RDB, then the stream of writes. One goroutine appends
// at the source's pace; readers follow the file's tail at the target's. So neither the
// source's buffers for its replica nor this process's memory grow with a slow restore.
//
// Positions are offsets in the file. The RDB starts at 0 and ends at rdbEnd, which is
// known from the start when the source gave the RDB's length, and once its end mark
// arrived for a diskless transfer; the stream starts at streamStart, after the mark.
type spool struct {
	f    *os.File
	path string

	mu          sync.Mutex
	size        int64         // bytes appended
	changed     chan struct{} // closed and replaced whenever size, rdbEnd or err change
	err         error         // why appending stopped, once it did
	rdbEnd      int64         // -1 until known
	streamStart int64         // -1 until known
	mark        []byte        // the end mark of a diskless RDB
	tail        []byte        // the last len(mark) bytes appended, to find the mark
	marks       []arrival     // when the bytes not yet applied arrived, coalesced
	freed       int64         // the bytes before this offset no longer take disk space
}

// spoolFreeStep is how many applied bytes accumulate before their disk space is freed.
const spoolFreeStep = 8 << 20

// free gives back the disk space of the bytes before the stream's position applied, which
// no reader needs any more (the RDB's included), a few megabytes at a time.
func (s *spool) free(applied int64) {
	s.mu.Lock()
	end := (s.streamStart + applied) &^ 4095
	from := s.freed
	if s.streamStart < 0 || end-from < spoolFreeStep {
		s.mu.Unlock()
		return
	}
	s.freed = end
	s.mu.Unlock()
	if err := punchHole(s.f.Fd(), from, end-from); err != nil {
		s.mu.Lock()
		s.freed = 1 << 62 // not supported here: stop trying
		s.mu.Unlock()
	}
}

// arrival says that the bytes up to end arrived at time at, or later.
type arrival struct {
	end int64
	at  time.Time
}

// newSpool creates the spool file in dir (os.TempDir() when ""). rdbLen is the RDB's length
// when the source gave it; otherwise mark is the 40-byte mark that ends the RDB.
func newSpool(dir string, rdbLen int64, mark []byte) (*spool, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "migrate-follow-*.spool")
	if err != nil {
		return nil, fmt.Errorf("create the spool file for the replication stream (WithSpoolDir): %w", err)
	}
	s := &spool{f: f, path: f.Name(), changed: make(chan struct{}), rdbEnd: -1, streamStart: -1}
	if mark == nil {
		s.rdbEnd, s.streamStart = rdbLen, rdbLen
	} else {
		s.mark = mark
	}
	return s, nil
}

// remove closes and deletes the file.
func (s *spool) remove() {
	s.f.Close()
	os.Remove(s.path)
}

// notify wakes every waiter; s.mu is held.
func (s *spool) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// append writes p at the end of the file. It reports whether this write completed the RDB
// (its length reached, or its end mark last in what arrived).
func (s *spool) append(p []byte) (rdbDone bool, err error) {
	if _, err := s.f.Write(p); err != nil {
		return false, fmt.Errorf("write the spool file %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.size
	s.size += int64(len(p))
	now := time.Now()
	if n := len(s.marks); n > 0 && now.Sub(s.marks[n-1].at) < 10*time.Millisecond {
		s.marks[n-1].end = s.size
	} else {
		s.marks = append(s.marks, arrival{end: s.size, at: now})
	}
	if s.streamStart < 0 {
		// A diskless transfer: the source sends nothing after the mark until it is
		// acknowledged, so the mark is the last thing received, as Redis finds it.
		s.tail = append(s.tail, p...)
		if over := len(s.tail) - len(s.mark); over > 0 {
			s.tail = s.tail[:copy(s.tail, s.tail[over:])]
		}
		if bytes.Equal(s.tail, s.mark) {
			s.rdbEnd, s.streamStart, s.tail = s.size-int64(len(s.mark)), s.size, nil
			rdbDone = true
		}
	} else if before < s.rdbEnd && s.size >= s.rdbEnd {
		rdbDone = true
	}
	s.notify()
	return rdbDone, nil
}

// fail records why nothing more will be appended, for the readers waiting.
func (s *spool) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.notify()
	}
}

// state returns the size, the end of the RDB (-1 unknown), why appending stopped, and a
// channel closed at the next change.
func (s *spool) state() (size, rdbEnd int64, err error, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, s.rdbEnd, s.err, s.changed
}

// received returns the bytes of the stream received so far (after the RDB).
func (s *spool) received() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streamStart < 0 {
		return 0
	}
	return s.size - s.streamStart
}

// lag forgets the arrivals of the stream's bytes before applied, which the target now
// holds, and returns the bytes of the stream received and not applied, and when the oldest
// of them arrived (zero when none). Before the RDB's end is known it returns nothing.
func (s *spool) lag(applied int64) (lag int64, oldest time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streamStart < 0 {
		return 0, time.Time{}
	}
	pos := s.streamStart + applied
	i := 0
	for i < len(s.marks) && s.marks[i].end <= pos {
		i++
	}
	s.marks = s.marks[:copy(s.marks, s.marks[i:])]
	if len(s.marks) > 0 {
		oldest = s.marks[0].at
	}
	return s.size - pos, oldest
}

// rdbReader returns a reader of the RDB: it follows the file as it grows, holding back
// what may be the end mark, and ends at the RDB's end. Closing it, from any goroutine,
// makes a waiting Read return.
func (s *spool) rdbReader(ctx context.Context) *spoolReader {
	return &spoolReader{s: s, ctx: ctx, rdb: true, closed: make(chan struct{})}
}

// streamReader returns a reader of the stream after the RDB, which must be complete.
func (s *spool) streamReader(ctx context.Context) *spoolReader {
	s.mu.Lock()
	start := s.streamStart
	s.mu.Unlock()
	return &spoolReader{s: s, ctx: ctx, pos: start, closed: make(chan struct{})}
}

// spoolReader reads the spool from pos, waiting for more as long as the file grows.
type spoolReader struct {
	s         *spool
	ctx       context.Context
	pos       int64
	rdb       bool // stops at the RDB's end
	closed    chan struct{}
	closeOnce sync.Once
}

var errSpoolClosed = errors.New("spool reader closed")

func (r *spoolReader) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	return nil
}

func (r *spoolReader) Read(p []byte) (int, error) {
	for {
		size, rdbEnd, err, changed := r.s.state()
		limit := size
		if r.rdb {
			switch {
			case rdbEnd >= 0:
				limit = rdbEnd
			default:
				limit = size - int64(len(r.s.mark))
			}
			if r.pos >= rdbEnd && rdbEnd >= 0 {
				return 0, io.EOF
			}
		}
		if r.pos < limit {
			n := int(min(int64(len(p)), limit-r.pos))
			n, rerr := r.s.f.ReadAt(p[:n], r.pos)
			r.pos += int64(n)
			if n > 0 {
				return n, nil
			}
			if rerr != nil && rerr != io.EOF {
				return 0, fmt.Errorf("read the spool file %s: %w", r.s.path, rerr)
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		select {
		case <-changed:
		case <-r.closed:
			return 0, errSpoolClosed
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// available returns how many bytes after the reader's position are in the file.
func (r *spoolReader) available() int64 {
	size, _, _, _ := r.s.state()
	return size - r.pos
}

package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// subscription is the connection on which the source sends the keyspace notifications of
// the selected databases. It is a plain RESP2 connection of its own, not a rueidis client:
// the order of what arrives on it is what proves a marker (see mark), and a dropped
// connection must be seen, never silently made again.
type subscription struct {
	j        *Job
	q        *keyQueue
	keyspace bool     // __keyspace@<db>__:<key> channels; else __keyevent@<db>__:<event>
	patterns []string // PSUBSCRIBE's

	mu      sync.Mutex
	rs      *replStream // the connection; replStream gives the dial, AUTH and writes
	closed  bool
	marker  int64      // the last marker sent
	waiting chan int64 // told the queue position when the pong of marker arrives
}

// subscribe subscribes to the notifications of the selected databases (of keyspace
// channels where flags has K, else of keyevent ones), and returns once the source
// confirmed. Messages are read by read.
func subscribe(ctx context.Context, j *Job, flags string, q *keyQueue) (*subscription, error) {
	s := &subscription{j: j, q: q, keyspace: strings.Contains(flags, "K")}
	for _, db := range j.Databases {
		if s.keyspace {
			match := j.Match
			if match == "" {
				match = "*"
			}
			s.patterns = append(s.patterns, fmt.Sprintf("__keyspace@%d__:%s", db, match))
		} else {
			s.patterns = append(s.patterns, fmt.Sprintf("__keyevent@%d__:*", db))
		}
	}
	if err := s.reopen(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// reopen opens a new connection and subscribes on it, in place of the current one. It
// tries for a few seconds: a source that restarts or fails over takes a moment.
func (s *subscription) reopen(ctx context.Context) error {
	var last error
	for attempt := range 10 {
		if attempt > 0 {
			if err := sleepCtx(ctx, time.Duration(min(attempt, 5))*200*time.Millisecond); err != nil {
				return err
			}
		}
		rs, err := s.open(ctx)
		if err == nil {
			s.mu.Lock()
			if s.rs != nil {
				s.rs.Close()
			}
			s.rs = rs
			if s.closed {
				rs.Close()
			}
			s.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrUnsupported) || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return s.j.Source.Err("subscribe to keyspace notifications", "", fmt.Errorf("the subscription dropped and could not be made again: %w", last))
}

// open connects, authenticates and subscribes.
func (s *subscription) open(ctx context.Context) (*replStream, error) {
	e := s.j.Source
	raw, err := dialEndpoint(ctx, e)
	if err != nil {
		return nil, e.Err("connect to subscribe", "", explainDial(e.Option, e.Addr, err))
	}
	conn := &idleConn{Conn: raw, timeout: notifyIdleTimeout}
	rs := &replStream{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	rs.stop = context.AfterFunc(ctx, func() { raw.Close() })
	ok := false
	defer func() {
		if !ok {
			rs.Close()
		}
	}()
	if err := rs.auth(e); err != nil {
		return nil, e.Err("auth on the subscription", "", ctxErr(ctx, err))
	}
	if err := rs.send(append([]string{"PSUBSCRIBE"}, s.patterns...)...); err != nil {
		return nil, e.Err("psubscribe", "", ctxErr(ctx, err))
	}
	for range s.patterns {
		msg, err := readRESP(rs.br)
		if err != nil {
			var reply subError
			if errors.As(err, &reply) && isRefusal("-"+string(reply)) {
				return nil, e.Err("psubscribe", "", fmt.Errorf(
					"the source refuses PSUBSCRIBE %s (%s): a following DumpRestore reads the keyspace notifications; grant +psubscribe and the channels &__keyspace@* and &__keyevent@* to the user: %w",
					strings.Join(s.patterns, " "), string(reply), ErrUnsupported))
			}
			return nil, e.Err("psubscribe", "", ctxErr(ctx, err))
		}
		if len(msg) < 1 || !strings.EqualFold(msg[0], "psubscribe") {
			return nil, e.Err("psubscribe", "", fmt.Errorf("unexpected reply %q", msg))
		}
	}
	ok = true
	return rs, nil
}

// conn returns the current connection.
func (s *subscription) conn() *replStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rs
}

// close closes the connection for good.
func (s *subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.rs != nil {
		s.rs.Close()
	}
}

// read queues the keys the notifications name until the connection fails, and returns
// why. A PING's reply tells a marker's waiter the queue position it proves.
func (s *subscription) read(ctx context.Context) error {
	rs := s.conn()
	for {
		msg, err := readRESP(rs.br)
		if err != nil {
			return err
		}
		switch {
		case len(msg) == 4 && msg[0] == "pmessage":
			s.named(msg[2], msg[3])
		case len(msg) == 2 && msg[0] == "pong":
			s.pong(msg[1])
		}
	}
}

// named queues the key that a message on channel names.
func (s *subscription) named(channel, payload string) {
	prefix, rest, ok := strings.Cut(channel, "__:")
	if !ok {
		return
	}
	at := strings.LastIndexByte(prefix, '@')
	if at < 0 {
		return
	}
	db, err := strconv.Atoi(prefix[at+1:])
	if err != nil {
		return
	}
	key, event := rest, payload
	if !s.keyspace {
		key, event = payload, rest
	}
	if event == "keymiss" {
		return // a read that found nothing changes nothing
	}
	if s.j.Match != "" && !globMatch(s.j.Match, key) {
		return
	}
	s.q.add(db, key)
}

// mark sends a marker on the subscription, and returns a channel that gives the queue
// position once its reply arrived: every notification published before the marker was
// sent is then in the queue at or below that position. The channel is closed without a
// value when the connection drops first.
func (s *subscription) mark() <-chan int64 {
	ch := make(chan int64, 1)
	s.mu.Lock()
	s.marker++
	token := "migrate-marker-" + strconv.FormatInt(s.marker, 10)
	s.waiting = ch
	rs := s.rs
	s.mu.Unlock()
	if err := rs.send("PING", token); err != nil {
		s.mu.Lock()
		if s.waiting == ch {
			s.waiting = nil
		}
		s.mu.Unlock()
		close(ch) // the reader sees the connection fail, and a repair follows
	}
	return ch
}

// pong tells the marker's waiter, if token is the last marker sent.
func (s *subscription) pong(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting == nil || token != "migrate-marker-"+strconv.FormatInt(s.marker, 10) {
		return
	}
	s.waiting <- s.q.position()
	s.waiting = nil
}

// ping keeps the connection alive and shows a dead one (its reads time out).
func (s *subscription) ping() {
	if rs := s.conn(); rs != nil {
		_ = rs.send("PING") // a failure is the reader's to see
	}
}

// subError is an error reply read by readRESP.
type subError string

func (e subError) Error() string { return string(e) }

// readRESP reads one RESP2 reply that a subscribed connection gets: an array of bulk
// strings and integers (the integers as text), or an error.
func readRESP(br *bufio.Reader) ([]string, error) {
	line, err := respLine(br)
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '-':
		return nil, subError(line[1:])
	case '+', ':':
		return []string{line[1:]}, nil
	case '*':
	default:
		return nil, fmt.Errorf("unexpected reply %q on the subscription", line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("bad array header %q on the subscription", line)
	}
	out := make([]string, 0, n)
	for range n {
		l, err := respLine(br)
		if err != nil {
			return nil, err
		}
		switch l[0] {
		case ':', '+':
			out = append(out, l[1:])
			continue
		case '$':
		default:
			return nil, fmt.Errorf("unexpected element %q on the subscription", l)
		}
		size, err := strconv.Atoi(l[1:])
		if err != nil || size < -1 {
			return nil, fmt.Errorf("bad bulk header %q on the subscription", l)
		}
		if size < 0 {
			out = append(out, "")
			continue
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		out = append(out, string(buf[:size]))
	}
	return out, nil
}

// respLine reads one CRLF-terminated line, without it.
func respLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", fmt.Errorf("reply line longer than %d bytes on the subscription", br.Size())
	}
	if err != nil {
		return "", err
	}
	l := strings.TrimRight(string(b), "\r\n")
	if l == "" {
		return "", fmt.Errorf("empty line on the subscription")
	}
	return l, nil
}

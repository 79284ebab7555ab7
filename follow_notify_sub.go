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
)

// subscription is the connection on which one server (the source, or one master of a
// cluster source) sends the keyspace notifications of the selected databases. It is a
// plain RESP2 connection of its own, not a rueidis client: the order of what arrives on it
// is what proves a marker (see mark), and a dropped connection must be seen, never
// silently made again. Once dropped, it is replaced by a new one (notifyFollow.subscribe).
type subscription struct {
	j        *Job
	e        *Endpoint // the server subscribed to
	q        *keyQueue
	keyspace bool        // __keyspace@<db>__:<key> channels; else __keyevent@<db>__:<event>
	patterns []string    // PSUBSCRIBE's
	rs       *replStream // the connection; replStream gives the dial, AUTH and writes

	mu      sync.Mutex
	dead    bool       // the connection failed or was closed
	marker  int64      // the last marker sent
	waiting chan int64 // told the queue position when the pong of marker arrives
}

// subscribe opens a subscription to the notifications of the selected databases on e (of
// keyspace channels where flags has K, else of keyevent ones), and returns once e
// confirmed. Messages are read by read.
func subscribe(ctx context.Context, j *Job, e *Endpoint, flags string, q *keyQueue) (*subscription, error) {
	s := &subscription{j: j, e: e, q: q, keyspace: strings.Contains(flags, "K")}
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
	rs, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	s.rs = rs
	return s, nil
}

// open connects, authenticates and subscribes.
func (s *subscription) open(ctx context.Context) (*replStream, error) {
	e := s.e
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
					"the source refuses PSUBSCRIBE %s (%s): a following DumpRestore reads the keyspace notifications; grant the user +psubscribe and these patterns "+
						"as they are (an ACL lets PSUBSCRIBE use a pattern it names exactly): %s, or allchannels: %w",
					strings.Join(s.patterns, " "), string(reply), "&"+strings.Join(s.patterns, " &"), ErrUnsupported))
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

// close closes the connection for good; a marker's waiter learns it.
func (s *subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = true
	s.rs.Close()
	if s.waiting != nil {
		close(s.waiting)
		s.waiting = nil
	}
}

// read queues the keys the notifications name until the connection fails or is closed,
// and returns why. A PING's reply tells a marker's waiter the queue position it proves.
func (s *subscription) read() error {
	defer s.close()
	for {
		msg, err := readRESP(s.rs.br)
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
	defer s.mu.Unlock()
	if s.dead {
		close(ch)
		return ch
	}
	if s.waiting != nil {
		close(s.waiting)
	}
	s.marker++
	s.waiting = ch
	_ = s.rs.send("PING", s.token()) // a failure is the reader's to see, which closes ch
	return ch
}

func (s *subscription) token() string { return "migrate-marker-" + strconv.FormatInt(s.marker, 10) }

// pong tells the marker's waiter, if token is the last marker sent.
func (s *subscription) pong(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting == nil || token != s.token() {
		return
	}
	s.waiting <- s.q.position()
	s.waiting = nil
}

// ping keeps the connection alive and shows a dead one (its reads time out).
func (s *subscription) ping() {
	_ = s.rs.send("PING") // a failure is the reader's to see
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

// subscribe makes sure that every server holding selected keys (the source, or each master
// of a cluster source that serves slots) has a live subscription: it replaces those that
// dropped, closes those of servers that no longer serve slots, and, when it changed any
// and repair is set, asks for a repair pass (for why, or because the masters changed)
// before it clears n.gap. A server that cannot be subscribed to now (restarting, failing
// over) is tried again as clusterRetry says; a refusal is returned at once.
func (n *notifyFollow) subscribe(ctx context.Context, repair bool, why error) error {
	var wait clusterRetry
	changed := false
	for {
		eps, err := n.servers(ctx)
		if err == nil {
			var ch bool
			ch, err = n.subscribeTo(eps)
			changed = changed || ch
			if err == nil {
				if changed && repair {
					if why == nil {
						why = errors.New("the masters of the source cluster changed")
					}
					n.needRepair(why.Error())
				}
				n.gap.Store(false)
				return nil
			}
		}
		if errors.Is(err, ErrUnsupported) || ctx.Err() != nil {
			return err
		}
		n.j.Logger.Info("dump-restore: follow: cannot subscribe to the source's notifications now; trying again", "error", err)
		if werr := wait.wait(ctx); werr != nil {
			if _, ok := werr.(*clusterWaitError); ok {
				return n.j.Source.Err("subscribe to keyspace notifications", "", fmt.Errorf(
					"the subscription could not be made again for %s: %w", clusterSettleWait, err))
			}
			return werr
		}
	}
}

// servers returns the servers to subscribe to: the source, or the masters of a cluster
// source that serve slots, none of them failing.
func (n *notifyFollow) servers(ctx context.Context) ([]*Endpoint, error) {
	return notifyServers(ctx, n.j.Source)
}

// notifyServers returns the servers of source e whose notifications a follow reads: e, or
// the masters of a cluster that serve slots, none of them failing.
func notifyServers(ctx context.Context, e *Endpoint) ([]*Endpoint, error) {
	if !e.Cluster() {
		return []*Endpoint{e}, nil
	}
	t, err := e.topology(ctx)
	if err != nil {
		return nil, err
	}
	ids, _ := t.masters()
	eps := make([]*Endpoint, 0, len(ids))
	for _, id := range ids {
		node := t.nodes[id]
		if node.failed {
			return nil, fmt.Errorf("master %s is failing", node.addr)
		}
		eps = append(eps, e.nodeEndpoint(node.addr))
	}
	return eps, nil
}

// subscribeTo makes the subscriptions those of eps, each live.
func (n *notifyFollow) subscribeTo(eps []*Endpoint) (changed bool, err error) {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	want := map[string]bool{}
	for _, e := range eps {
		want[e.Addr] = true
	}
	for addr, s := range n.subs {
		if !want[addr] || s.isDead() {
			s.close()
			delete(n.subs, addr)
			changed = true
		}
	}
	for _, e := range eps {
		if n.subs[e.Addr] != nil {
			continue
		}
		if err := n.checkJoined(e); err != nil {
			return changed, err
		}
		s, err := subscribe(n.subCtx, n.j, e, n.flags, n.q)
		if err != nil {
			return changed, err
		}
		n.subs[e.Addr], changed = s, true
		n.j.Logger.Info("dump-restore: follow: subscribed to keyspace notifications", "server", e.Addr, "channels", s.patterns)
		n.spawn(func() error {
			err := s.read()
			if n.subCtx.Err() == nil {
				n.gap.Store(true) // until subscribe made it again, and asked for a repair pass
				n.j.Logger.Warn("dump-restore: follow: a subscription to the source's notifications dropped; subscribing again",
					"server", s.e.Addr, "error", err)
				select {
				case n.lost <- fmt.Errorf("the subscription to %s dropped: %v", s.e.Addr, err):
				default:
				}
			}
			return nil
		})
	}
	return changed, nil
}

// closeSubscriptions closes every subscription.
func (n *notifyFollow) closeSubscriptions() {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	for _, s := range n.subs {
		s.close()
	}
}

// live returns the subscriptions.
func (n *notifyFollow) live() []*subscription {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	out := make([]*subscription, 0, len(n.subs))
	for _, s := range n.subs {
		out = append(out, s)
	}
	return out
}

// mark sends a marker on every subscription (see subscription.mark) and returns a channel
// that gives the highest queue position they proved, once each came back; it is closed
// without a value when one of them dropped first.
func (n *notifyFollow) mark() <-chan int64 {
	var chans []<-chan int64
	for _, s := range n.live() {
		chans = append(chans, s.mark())
	}
	out := make(chan int64, 1)
	if len(chans) == 0 {
		close(out)
		return out
	}
	go func() {
		var at int64
		for _, ch := range chans {
			v, ok := <-ch
			if !ok {
				close(out)
				return
			}
			at = max(at, v)
		}
		out <- at
	}()
	return out
}

// isDead reports whether the connection failed or was closed.
func (s *subscription) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// checkJoined checks the flags of a master that joined the source cluster after the follow
// began (its notify-keyspace-events were not read then): they must carry every class and the
// kind of channel subscribed to, else following stops, saying so; the migration never sets
// them on a server it did not start with. A server that refuses CONFIG GET is probed when
// WithNotificationProbe allows it.
func (n *notifyFollow) checkJoined(e *Endpoint) error {
	if n.checked[e.Addr] {
		return nil
	}
	ctx := n.subCtx
	c, err := n.j.Source.node(e.Addr)
	if err != nil {
		return err
	}
	value, ok := configGet(ctx, c, "notify-keyspace-events")
	if !ok && n.j.ProbeNotifications {
		flags, err := probeNotifications(ctx, n.j, []*Endpoint{e})
		if err == nil && flags != n.flags {
			err = fmt.Errorf("it sends its notifications on %s channels only, and the follow reads %s ones", channelKind(flags), channelKind(n.flags))
		}
		if err != nil {
			return n.j.Source.Err("check the notifications of "+e.Addr, "", unsupported(
				"the master %s joined the source cluster while following, and its keyspace notifications do not cover every write: %v", e.Addr, err))
		}
		n.checked[e.Addr] = true
		return nil
	}
	missing := missingNotifyFlags(e, value)
	if ok && !strings.Contains(value, n.flags) {
		missing = n.flags + missing
	}
	switch {
	case !ok:
		return n.j.Source.Err("config get notify-keyspace-events on "+e.Addr, "", unsupported(
			"the master %s joined the source cluster while following and refuses CONFIG GET, so whether its notifications cover every write cannot be told; "+
				"give WithNotificationProbe()", e.Addr))
	case missing != "":
		return n.j.Source.Err("check the notifications of "+e.Addr, "", unsupported(
			"the master %s joined the source cluster while following, and its notify-keyspace-events (%q) lack the flags %q: "+
				"writes to its slots would not be seen; set them (CONFIG SET notify-keyspace-events KEA, or the service's console) and migrate again", e.Addr, value, missing))
	}
	n.checked[e.Addr] = true
	return nil
}

// channelKind names the channels of flags "K" or "E".
func channelKind(flags string) string {
	if flags == "K" {
		return "keyspace"
	}
	return "keyevent"
}

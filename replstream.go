package migrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// replIdleTimeout is how long the replication connection may stay silent. A master sends a
// newline every second while it prepares the snapshot, so only a dead link is this quiet;
// it is Redis's own repl-timeout default.
const replIdleTimeout = 60 * time.Second

// replStream is the snapshot a source sends to a new replica, read as a plain RDB: Read
// yields the RDB's bytes and nothing of the replication framing around them.
type replStream struct {
	conn net.Conn
	br   *bufio.Reader
	rdb  io.Reader // the RDB within the framing
	end  func() error
	stop func() bool // releases the context watch

	wmu sync.Mutex // one command written at a time: acknowledgements come from another goroutine

	// What the source said, for a replica that follows its stream (replOptions.follow).
	replID    string // the replication id of +FULLRESYNC or +CONTINUE; "" after SYNC
	offset    int64  // the source's offset where the stream after the RDB starts (+FULLRESYNC), or the one asked for (+CONTINUE)
	continued bool   // +CONTINUE: the stream goes on, no RDB comes
	eofMark   []byte // the 40-byte end mark of a diskless transfer; nil when the length is known
	rdbLen    int64  // the RDB's length when not diskless
}

// replOptions says what openReplicationWith asks of the source.
type replOptions struct {
	// follow asks for the stream of writes after the RDB (no REPLCONF rdb-only), as a
	// replica that stays attached.
	follow bool
	// replID and offset, when replID is set, ask to continue the stream at offset (the
	// next byte wanted) with PSYNC <replID> <offset> instead of a full synchronization.
	replID string
	offset int64
}

func (s *replStream) Read(p []byte) (int, error) { return s.rdb.Read(p) }

// Close closes the connection: the source sees its replica leave, and stops sending.
func (s *replStream) Close() error {
	s.stop()
	return s.conn.Close()
}

// complete checks, once the RDB reader reached the RDB's end, that the transfer ended there.
func (s *replStream) complete() error { return s.end() }

// openReplication connects to the source as a replica would, asks for a full
// synchronization (PSYNC, or SYNC where PSYNC is refused), and returns the RDB it sends.
// Cancelling ctx closes the connection, which unblocks every read.
func openReplication(ctx context.Context, e *Endpoint, log *slog.Logger) (*replStream, error) {
	return openReplicationWith(ctx, e, log, replOptions{})
}

// openReplicationWith is openReplication as o asks: a replica that wants the stream after
// the RDB too, or one that continues a stream it lost. With o.follow the framing of the RDB
// is read and left to the caller (eofMark, rdbLen), and the bytes that follow the framing
// line are read from br.
func openReplicationWith(ctx context.Context, e *Endpoint, log *slog.Logger, o replOptions) (*replStream, error) {
	raw, err := dialEndpoint(ctx, e)
	if err != nil {
		return nil, e.Err("connect for replication", "", explainDial(e.Option, e.Addr, err))
	}
	conn := &idleConn{Conn: raw, timeout: replIdleTimeout}
	s := &replStream{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	fail := func(op string, err error) error { return e.Err(op, "", ctxErr(ctx, err)) }

	if err := s.auth(e); err != nil {
		return nil, fail("auth on the replication connection", err)
	}
	// eof: the source may stream the RDB without writing it to its disk (diskless);
	// psync2: we understand its replies. rdb-only (Redis 7.0): we want the snapshot and
	// not the stream of writes after it, so the source neither buffers those for us nor
	// keeps us attached. Older servers refuse what they do not know; that is harmless.
	capa := [][]string{{"REPLCONF", "capa", "eof", "capa", "psync2"}}
	if e.Info.AtLeast(7, 0, 0) && !o.follow && o.replID == "" {
		capa = append(capa, []string{"REPLCONF", "rdb-only", "1"})
	}
	for _, args := range capa {
		reply, err := s.call(args...)
		if err != nil {
			return nil, fail("replconf", err)
		}
		if reply[0] == '-' {
			if isAuthReply(reply) {
				return nil, fail("replconf", explainConnect(errors.New(reply[1:])))
			}
			log.Debug("snapshot: source refused an optional REPLCONF", "args", strings.Join(args[1:], " "), "reply", reply[1:])
		}
	}

	if o.replID != "" {
		return s.continueStream(e, log, o, fail)
	}
	reply, err := s.call("PSYNC", "?", "-1")
	if err != nil {
		return nil, fail("psync", err)
	}
	cmd := "PSYNC"
	switch {
	case reply[0] == '-' && isAuthReply(reply):
		return nil, fail("psync", explainConnect(errors.New(reply[1:])))
	case reply[0] == '-' && !isRefusal(reply):
		return nil, fail("psync", fmt.Errorf("the source cannot send a snapshot now: %s", reply[1:]))
	case reply[0] == '-':
		// Renamed, or not allowed to this user: SYNC may still be there.
		log.Info("snapshot: the source refused PSYNC; trying SYNC", "source", e.Addr, "reply", reply[1:])
		cmd = "SYNC"
		if err := s.send("SYNC"); err != nil {
			return nil, fail("sync", err)
		}
		if reply, err = s.framingLine(); err != nil {
			return nil, fail("sync", err)
		}
		if reply[0] == '-' && isRefusal(reply) {
			return nil, fail("sync", syncRefused(reply[1:]))
		}
	case strings.HasPrefix(reply, "+FULLRESYNC"):
		log.Debug("snapshot: full resynchronization", "source", e.Addr, "reply", reply[1:])
		if f := strings.Fields(reply); len(f) == 3 {
			s.replID = f[1]
			s.offset, _ = strconv.ParseInt(f[2], 10, 64)
		}
		if reply, err = s.framingLine(); err != nil {
			return nil, fail("psync", err)
		}
	default:
		return nil, fail("psync", fmt.Errorf("unexpected reply %q to PSYNC ? -1", reply))
	}
	switch {
	case reply[0] == '-':
		return nil, fail(strings.ToLower(cmd), fmt.Errorf("the source could not send its snapshot (see its log): %s", reply[1:]))
	case strings.HasPrefix(reply, "$EOF:"):
		mark := []byte(reply[5:])
		if len(mark) != 40 {
			return nil, fail(strings.ToLower(cmd), fmt.Errorf("bad end-of-transfer mark in %q", reply))
		}
		m := &markReader{r: s.br, mark: mark}
		s.rdb, s.end = m, m.complete
		s.eofMark = mark
	case reply[0] == '$':
		n, err := strconv.ParseInt(reply[1:], 10, 64)
		if err != nil || n < 0 {
			return nil, fail(strings.ToLower(cmd), fmt.Errorf("bad snapshot length in %q", reply))
		}
		l := &io.LimitedReader{R: s.br, N: n}
		s.rdb = l
		s.rdbLen = n
		s.end = func() error {
			if l.N != 0 {
				return fmt.Errorf("%w: the RDB ended %d bytes before the end of the transfer", ErrCorruptRDB, l.N)
			}
			return nil
		}
	default:
		return nil, fail(strings.ToLower(cmd), fmt.Errorf("unexpected reply %q where the snapshot should start", reply))
	}
	log.Info("snapshot: receiving the source's snapshot", "source", e.Addr, "command", cmd, "diskless", strings.HasPrefix(reply, "$EOF:"))
	ok = true
	return s, nil
}

// dialEndpoint opens a plain connection to the endpoint as rueidis would: its DialCtxFn or
// DialFn when set, else its Dialer, with TLS when TLSConfig is set.
func dialEndpoint(ctx context.Context, e *Endpoint) (net.Conn, error) {
	opt := e.Option
	d := opt.Dialer
	if d.Timeout == 0 {
		d.Timeout = rueidis.DefaultDialTimeout
	}
	switch {
	case opt.DialCtxFn != nil:
		return opt.DialCtxFn(ctx, e.Addr, &d, opt.TLSConfig)
	case opt.DialFn != nil:
		return opt.DialFn(e.Addr, &d, opt.TLSConfig)
	case opt.TLSConfig != nil:
		td := tls.Dialer{NetDialer: &d, Config: opt.TLSConfig}
		return td.DialContext(ctx, "tcp", e.Addr)
	}
	return d.DialContext(ctx, "tcp", e.Addr)
}

// auth authenticates as the option's user, if it names one or a password.
func (s *replStream) auth(e *Endpoint) error {
	user, pass := e.Option.Username, e.Option.Password
	if fn := e.Option.AuthCredentialsFn; fn != nil {
		c, err := fn(rueidis.AuthCredentialsContext{Address: s.conn.RemoteAddr()})
		if err != nil {
			return fmt.Errorf("AuthCredentialsFn: %w", err)
		}
		user, pass = c.Username, c.Password
	}
	if pass == "" {
		return nil
	}
	args := []string{"AUTH", pass}
	if user != "" {
		args = []string{"AUTH", user, pass}
	}
	reply, err := s.call(args...)
	if err != nil {
		return err
	}
	if reply[0] == '-' {
		// The reply never holds the password; errors.New keeps it out of any format verb.
		return explainConnect(errors.New(reply[1:]))
	}
	return nil
}

// call sends one command and reads its one-line reply.
func (s *replStream) call(args ...string) (string, error) {
	if err := s.send(args...); err != nil {
		return "", err
	}
	return s.line()
}

// send writes one command in RESP. It may be called from several goroutines.
func (s *replStream) send(args ...string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b.Bytes())
	return err
}

// continueStream asks the source to go on with the stream at o.offset (PSYNC <replid>
// <offset>), after a dropped link or when a checkpoint resumes. Only +CONTINUE will do: a
// full synchronization would copy everything again over a target that already holds data.
// It first reads the source's INFO replication, where allowed, so that a stream the source
// can no longer continue fails with how much is missing, without making it fork for a full
// synchronization nobody reads.
func (s *replStream) continueStream(e *Endpoint, log *slog.Logger, o replOptions, fail func(string, error) error) (*replStream, error) {
	at := strconv.FormatInt(o.offset, 10)
	if info, err := s.info("replication"); err != nil {
		log.Debug("snapshot: follow: INFO replication on the replication connection failed; asking PSYNC anyway", "error", err)
	} else if gap := backlogGap(info, o.replID, o.offset); gap != "" {
		return nil, fail("psync", fmt.Errorf("%s: %w", gap, ErrFollowLost))
	}
	reply, err := s.call("PSYNC", o.replID, at)
	if err != nil {
		return nil, fail("psync", err)
	}
	switch {
	case strings.HasPrefix(reply, "+CONTINUE"):
		s.replID, s.offset, s.continued = o.replID, o.offset, true
		if f := strings.Fields(reply); len(f) == 2 {
			s.replID = f[1] // the source changed its replication id (a failover); the offsets go on
		}
		log.Info("snapshot: follow: the source continues its stream", "source", e.Addr, "offset", o.offset)
		return s, nil
	case strings.HasPrefix(reply, "+FULLRESYNC"):
		return nil, fail("psync", fmt.Errorf(
			"the source no longer holds its writes from offset %d in its replication backlog, so the stream cannot continue where the link dropped "+
				"and a full copy would start over a target that already holds data; the target holds the writes up to that offset only. "+
				"Raise the source's repl-backlog-size (CONFIG SET repl-backlog-size) so that it holds the writes of a longer outage, and migrate again: %w",
			o.offset, ErrFollowLost))
	case reply[0] == '-' && isAuthReply(reply):
		return nil, fail("psync", explainConnect(errors.New(reply[1:])))
	}
	return nil, fail("psync", fmt.Errorf("the source refuses to continue its stream at offset %d (%s): %w", o.offset, reply, ErrFollowLost))
}

// info reads INFO section on the connection, before any PSYNC.
func (s *replStream) info(section string) (*ServerInfo, error) {
	l, err := s.call("INFO", section)
	if err != nil {
		return nil, err
	}
	n, perr := strconv.Atoi(strings.TrimPrefix(l, "$"))
	if l[0] != '$' || perr != nil || n < 0 {
		return nil, fmt.Errorf("INFO %s: %s", section, l)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(s.br, buf); err != nil {
		return nil, err
	}
	return parseInfo(string(buf[:n])), nil
}

// backlogGap says, from the source's INFO replication, why it cannot continue the stream of
// replID at offset (the next byte wanted): how many bytes of writes its backlog no longer
// holds, or that its history is another. "" when it can, or INFO does not tell.
func backlogGap(info *ServerInfo, replID string, offset int64) string {
	f := info.Fields
	num := func(k string) (int64, bool) {
		n, err := strconv.ParseInt(f[k], 10, 64)
		return n, err == nil
	}
	first, ok1 := num("repl_backlog_first_byte_offset")
	size, _ := num("repl_backlog_size")
	active, ok2 := num("repl_backlog_active")
	if f["master_replid"] == "" || !ok1 || !ok2 {
		return ""
	}
	second, _ := num("second_repl_offset")
	if f["master_replid"] != replID && (f["master_replid2"] != replID || offset > second) {
		return fmt.Sprintf("the source's replication history (replid %s) is not the one followed (replid %s): it restarted without its data, "+
			"or is another server, so its stream cannot continue at offset %d; migrate again from the start", f["master_replid"], replID, offset)
	}
	if active == 0 || offset < first {
		missing := first - offset
		if active == 0 {
			last, _ := num("master_repl_offset")
			missing = last + 1 - offset
		}
		return fmt.Sprintf("the source no longer holds its writes from offset %d: its replication backlog (repl-backlog-size, %d bytes) starts at offset %d, "+
			"so %d bytes of writes are missing and the stream cannot continue; the target holds the writes up to offset %d. "+
			"Raise the source's repl-backlog-size (CONFIG SET repl-backlog-size) above the writes of the longest interruption, and migrate again from the start",
			offset, size, first, missing, offset-1)
	}
	return ""
}

// line reads the next non-empty line, without its CRLF; a master sends bare newlines to
// keep the link alive while it prepares the snapshot.
func (s *replStream) line() (string, error) {
	for {
		b, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return "", fmt.Errorf("reply line longer than %d bytes: not a Redis server?", s.br.Size())
		}
		if err == io.EOF {
			return "", fmt.Errorf("the source closed the connection (its log may say why): %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return "", fmt.Errorf("read reply: %w", err)
		}
		if l := strings.TrimRight(string(b), "\r\n"); l != "" {
			return l, nil
		}
	}
}

// framingLine reads the line that announces the RDB ("$<len>" or "$EOF:<mark>") or an error.
func (s *replStream) framingLine() (string, error) {
	l, err := s.line()
	if err == nil && l[0] != '$' && l[0] != '-' {
		err = fmt.Errorf("unexpected line %q where the snapshot should start", l)
	}
	return l, err
}

// syncRefused explains a refused SYNC after a refused PSYNC.
func syncRefused(reply string) error {
	why := "the source refuses both PSYNC and SYNC"
	switch {
	case strings.Contains(reply, "unknown command"):
		why = "PSYNC and SYNC are renamed or disabled (rename-command) on the source"
	case strings.HasPrefix(reply, "NOPERM"):
		why = "the source's ACL user may not run PSYNC or SYNC (it needs +psync or +sync, and +replconf)"
	}
	return fmt.Errorf("%s; Snapshot reads the snapshot through them, DumpRestore{} copies key by key without them: %w: %s",
		why, ErrUnsupported, reply)
}

// isRefusal reports whether an error reply means the command is renamed or not allowed.
func isRefusal(reply string) bool {
	return strings.Contains(reply, "unknown command") || strings.HasPrefix(reply, "-NOPERM")
}

func isAuthReply(reply string) bool {
	return strings.HasPrefix(reply, "-NOAUTH") || strings.HasPrefix(reply, "-WRONGPASS")
}

// idleConn fails a read after timeout of silence, so a dead link does not hang forever.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// markReader reads a diskless transfer: the RDB followed by a 40-byte mark, found as Redis
// finds it, as the last bytes received. It holds back the last 40 bytes it read until it
// knows they are not the mark, and returns io.EOF after the mark.
type markReader struct {
	r    io.Reader
	mark []byte
	buf  []byte // read and not yet returned; its last len(mark) bytes are held back
	seen bool   // the mark arrived
}

func (m *markReader) Read(p []byte) (int, error) {
	for {
		give := len(m.buf)
		if !m.seen {
			give -= len(m.mark)
		}
		if give > 0 {
			n := copy(p, m.buf[:give])
			m.buf = m.buf[:copy(m.buf, m.buf[n:])]
			return n, nil
		}
		if m.seen {
			return 0, io.EOF
		}
		if m.buf == nil {
			m.buf = make([]byte, 0, 64<<10)
		}
		n, err := m.r.Read(m.buf[len(m.buf):cap(m.buf)])
		m.buf = m.buf[:len(m.buf)+n]
		if bytes.HasSuffix(m.buf, m.mark) {
			m.buf, m.seen = m.buf[:len(m.buf)-len(m.mark)], true
			continue
		}
		if err == io.EOF {
			return 0, fmt.Errorf("%w: the source closed the connection before the end of the transfer", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, err
		}
	}
}

// complete reports whether the transfer ended with the mark, once the RDB reader has
// drained every byte before it.
func (m *markReader) complete() error {
	if !m.seen || len(m.buf) > 0 {
		return fmt.Errorf("%w: the end-of-transfer mark does not follow the RDB's end", ErrCorruptRDB)
	}
	return nil
}

// checkSync reports, without starting a synchronization, whether the source refuses both
// PSYNC and SYNC to this user, as far as it tells (Redis 7 answers for PSYNC and SYNC only
// through ACL DRYRUN: a user who may not run it leaves the answer to the sync itself).
func checkSync(ctx context.Context, e *Endpoint) error {
	return checkEither(ctx, e, "Snapshot, which reads the snapshot through them (DumpRestore{} copies key by key without them),",
		[]string{"PSYNC", "?", "-1"}, []string{"SYNC"})
}

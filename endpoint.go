package migrate

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// Endpoint is one side of a migration: the server as the user described it, the facts
// read from it, and its clients, one per database. A Redis Cluster is one Endpoint too: its
// client sends each command to the node that serves its key, and the library keeps a
// client per node for what must go to one node (walking the keys, replication).
type Endpoint struct {
	Side   Side
	Addr   string               // the first of Option.InitAddress, for messages
	Option rueidis.ClientOption // as given to New, with client-side caching disabled and, where none is set, a bounded RetryDelay
	Info   *ServerInfo          // read when the migration starts

	mu      sync.Mutex
	clients map[int]rueidis.Client
	nodes   map[string]rueidis.Client // one client per cluster node, by address
	known   []string                  // cluster node addresses, from the last topology
}

func newEndpoint(side Side, opt rueidis.ClientOption) *Endpoint {
	// The library never uses client-side caching, and CLIENT TRACKING may be refused.
	opt.DisableCache = true
	if opt.RetryDelay == nil {
		opt.RetryDelay = retryDelay // bounded, and not for a stalled server (retry.go)
	}
	addr := "(no address)"
	if len(opt.InitAddress) > 0 {
		addr = opt.InitAddress[0]
	}
	return &Endpoint{Side: side, Addr: addr, Option: opt, clients: map[int]rueidis.Client{}}
}

// Client returns the client of database db, connecting on first use. The error names the
// side, the address and the database. On a cluster it is a cluster client, which sends each
// command to the node that serves its key's slot and follows MOVED and ASK redirections; a
// cluster has only database 0, and Client refuses any other.
func (e *Endpoint) Client(db int) (rueidis.Client, error) {
	if db != 0 && e.Cluster() {
		return nil, e.Err(fmt.Sprintf("connect to db %d", db), "", fmt.Errorf(
			"a cluster has only database 0: %w", ErrUnsupported))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[db]; ok {
		return c, nil
	}
	if e.clients == nil {
		return nil, e.Err("connect", "", fmt.Errorf("endpoint is closed"))
	}
	opt := e.Option
	opt.SelectDB = db
	c, err := rueidis.NewClient(opt)
	if err != nil {
		op := "connect"
		if db != 0 {
			op = fmt.Sprintf("connect to db %d", db)
		}
		return nil, e.Err(op, "", explainDial(opt, e.Addr, err))
	}
	e.clients[db] = pinned{c}
	return e.clients[db], nil
}

// pinned is a client that keeps the read-only commands it sends out of rueidis's pool of
// commands. rueidis sends a read-only command again on a new connection when its connection
// fails (retryDelay bounds it), and recycles it once answered, while the writer of the
// failed connection may still be reading it: a data race that CLIENT KILL during a copy
// shows. Writes are never sent twice, nor recycled after a failure.
type pinned struct{ rueidis.Client }

func (c pinned) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if cmd.IsReadOnly() {
		cmd.Pin()
	}
	return c.Client.Do(ctx, cmd)
}

func (c pinned) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	for i := range cmds {
		if cmds[i].IsReadOnly() {
			cmds[i].Pin()
		}
	}
	return c.Client.DoMulti(ctx, cmds...)
}

// clientCtx is Client for a step of a migration under way: a server reached before (probe
// read its INFO) whose connection fails while connecting is waited for, as reconnectRetry
// says, until ctx ends: it may be restarting, or our connection was killed.
func (e *Endpoint) clientCtx(ctx context.Context, db int) (rueidis.Client, error) {
	reconnect := reconnectRetry()
	for {
		c, err := e.Client(db)
		if err == nil || e.Info == nil || !reconnectable(ctx, err) {
			return c, err
		}
		if werr := reconnect.wait(ctx); werr != nil {
			if w, ok := werr.(*clusterWaitError); ok {
				return nil, e.explainReconnect(w, err)
			}
			return nil, werr
		}
	}
}

// Default returns the client of the database the user's option selects.
func (e *Endpoint) Default() (rueidis.Client, error) { return e.Client(e.Option.SelectDB) }

// Err wraps err in an *Error that names this side, its address, the operation and the key.
// A stall (no answer within ConnWriteTimeout) is explained.
func (e *Endpoint) Err(op, key string, err error) error {
	return &Error{Side: e.Side, Addr: e.Addr, Op: op, Key: key, Err: e.explainStall(err)}
}

// close closes every client; Client fails afterwards.
func (e *Endpoint) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.clients {
		c.Close()
	}
	for _, c := range e.nodes {
		c.Close()
	}
	e.clients, e.nodes = nil, nil
}

// explainConnect adds what to do to the common connection failures.
func explainConnect(err error) error {
	switch classifyReply(err) {
	case replyWrongPass:
		return fmt.Errorf("authentication failed; check Username and Password: %w", err)
	case replyNoAuth:
		return fmt.Errorf("the server needs a password; set Password (and Username for an ACL user): %w", err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("nothing listens there; check the address: %w", err)
	}
	if why := tlsFailure(err); why != "" {
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

// notTLS explains a TLS client's failure to connect to a plain server.
const notTLS = "the server does not speak TLS: use redis:// or leave TLSConfig nil, or connect to the server's tls-port"

// tlsFailure says in words why a TLS handshake failed, when err says it: "" otherwise.
func tlsFailure(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		header    tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		return "the server's certificate is not signed by a CA this client trusts; set TLSConfig.RootCAs to a pool " +
			"that holds the CA that signed it"
	case errors.As(err, &hostname):
		return "the server's certificate is not valid for the name the client checks (TLSConfig.ServerName, or the " +
			"address's host when ServerName is empty); set TLSConfig.ServerName to a name the certificate holds"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, not yet valid, or not for a server); renew it"
	case errors.As(err, &header):
		return notTLS
	case strings.Contains(msg, "tls: certificate required"):
		return "the server asks for a client certificate (tls-auth-clients yes); set TLSConfig.Certificates to one " +
			"signed by a CA the server trusts (its tls-ca-cert-file)"
	case strings.Contains(msg, "tls: unknown certificate authority"), strings.Contains(msg, "tls: bad certificate"):
		return "the server refuses the client certificate; TLSConfig.Certificates must hold one signed by a CA the " +
			"server trusts (its tls-ca-cert-file)"
	}
	return ""
}

// explainDial is explainConnect for a failure to connect to addr with opt. Where the error
// alone does not tell whether client and server disagree about TLS (a reset, an early end,
// a timeout), it asks the server: a plain PING when the client spoke TLS, a bare TLS
// handshake, which checks no certificate and sends no data, when it did not. It asks only
// on this failure path, and not when opt dials by its own DialFn or DialCtxFn.
func explainDial(opt rueidis.ClientOption, addr string, err error) error {
	if err == nil || tlsFailure(err) != "" || opt.DialFn != nil || opt.DialCtxFn != nil || !connectionLost(err) {
		return explainConnect(err)
	}
	timeout := opt.Dialer.Timeout
	if timeout <= 0 || timeout > tlsProbeTimeout {
		timeout = tlsProbeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if opt.TLSConfig == nil {
		if speaksTLS(ctx, addr) {
			return fmt.Errorf("the server speaks TLS: use rediss:// or set TLSConfig: %w", err)
		}
		return explainConnect(err)
	}
	if speaksPlain(ctx, addr) {
		return fmt.Errorf("%s: %w", notTLS, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return explainConnect(err) // a silent server says nothing about certificates
	}
	certs := "set TLSConfig.Certificates to a client certificate"
	if len(opt.TLSConfig.Certificates) > 0 || opt.TLSConfig.GetClientCertificate != nil {
		certs = "check that TLSConfig.Certificates holds a client certificate"
	}
	return fmt.Errorf("the server closed the TLS connection: if it asks for a client certificate (tls-auth-clients), "+
		"%s signed by a CA the server trusts (its tls-ca-cert-file): %w", certs, err)
}

// tlsProbeTimeout bounds each question explainDial asks the server.
const tlsProbeTimeout = 2 * time.Second

// connectionLost reports whether err is the server closing or ignoring the connection, as
// a server does to a client that speaks the other protocol.
func connectionLost(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// speaksTLS reports whether the server at addr completes a TLS handshake, or answers one
// with a TLS alert; it checks no certificate and sends no data.
func speaksTLS(ctx context.Context, addr string) bool {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only asks whether the server speaks TLS
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return true
	}
	var alert tls.AlertError
	return errors.As(err, &alert)
}

// speaksPlain reports whether the server at addr answers a plain PING in RESP.
func speaksPlain(ctx context.Context, addr string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"))
}

// tlsFact describes, for Plan, how this side is reached over TLS, and which of its server's
// own connections speak TLS (tls-replication, for a replica's link to its master;
// tls-cluster, for the cluster bus and MIGRATE), where CONFIG GET says.
func (e *Endpoint) tlsFact(ctx context.Context) string {
	var parts []string
	if cfg := e.Option.TLSConfig; cfg != nil {
		name := "name from the address"
		if cfg.ServerName != "" {
			name = "name " + cfg.ServerName
		}
		verify := "verified"
		if cfg.InsecureSkipVerify {
			verify = "NOT verified (InsecureSkipVerify)"
		}
		parts = append(parts, name, verify)
		if len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil {
			parts = append(parts, "client certificate")
		}
	}
	text := "off"
	if len(parts) > 0 {
		text = "on: " + strings.Join(parts, ", ")
	}
	c, err := e.Default()
	if err != nil {
		return text
	}
	var own []string
	for _, name := range []string{"tls-replication", "tls-cluster"} {
		if v, ok := configGet(ctx, c, name); ok && v == "yes" {
			own = append(own, name+" yes")
		}
	}
	if len(own) > 0 {
		text += "; server: " + strings.Join(own, ", ")
	}
	return text
}

// probe connects and reads INFO, so wrong addresses and passwords fail before any copying.
func (e *Endpoint) probe(ctx context.Context) error {
	c, err := e.Default()
	if err != nil {
		return err
	}
	info, err := readInfo(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return e.Err("info", "", ctx.Err())
		}
		if _, refused := rueidis.IsRedisErr(err); !refused {
			return e.Err("info", "", e.unreachable(ctx, err)) // no answer: nothing to decide on
		}
		// INFO may be refused on managed services; decide on defaults then.
		info = &ServerInfo{Keyspace: map[int]int64{}, Fields: map[string]string{}, Mode: "standalone", Role: "master"}
	}
	e.Info = info
	if info.Mode == "cluster" {
		return e.probeCluster(ctx)
	}
	return nil
}

// probeCluster reads the cluster's masters and sums their keys: INFO on the cluster client
// reached one node only.
func (e *Endpoint) probeCluster(ctx context.Context) error {
	t, err := e.topology(ctx)
	if err != nil {
		return e.plainPorts(ctx, err)
	}
	ids, _ := t.masters()
	e.Info.Masters = len(ids)
	e.Info.Role = "master"
	var keys int64
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			continue
		}
		c, err := e.node(n.addr)
		if err != nil {
			return e.plainPorts(ctx, err)
		}
		text, err := c.Do(ctx, c.B().Info().Section("keyspace").Build()).ToString()
		if err != nil {
			if ctx.Err() != nil {
				return e.Err("info", "", ctx.Err())
			}
			continue
		}
		keys += parseInfo(text).Keyspace[0]
	}
	e.Info.Keyspace = map[int]int64{}
	if keys > 0 {
		e.Info.Keyspace[0] = keys
	}
	return nil
}

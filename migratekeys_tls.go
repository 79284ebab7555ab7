package migrate

import (
	"context"
	"fmt"
	"net"

	"github.com/redis/rueidis"
)

// MIGRATE over TLS. The source connects to the target itself, and its MIGRATE speaks TLS
// exactly when it runs with tls-cluster yes, whatever the target: Redis 6.0 to 6.2 create
// the connection with connCreateTLS() when server.tls_cluster is set, Redis 7 with
// connTypeOfCluster(), the same rule, on a standalone source as on a cluster node
// (tls-replication plays no part; without tls-cluster a TLS port answers IOERR). Over TLS
// the source presents its tls-client-cert-file, or its tls-cert-file, and checks the
// target's certificate against its tls-ca-cert-file, not the target's host name.

// tlsSide is what a server says of its TLS settings, as CONFIG GET reads them.
type tlsSide struct {
	// value is tls-cluster ("yes" or "no"), "" when it could not be read.
	value string
	// noTLS: the server answers CONFIG GET but knows no tls-cluster setting (built
	// without TLS, or older than Redis 6.0): it cannot speak TLS.
	noTLS bool
	// refusal is why it could not be read, for a message.
	refusal string
	addr    string // the server asked
}

// checkTLS refuses a migration whose MIGRATE would not speak the protocol of the port it
// connects to: a TLS target from a source without tls-cluster yes (MIGRATE would go plain
// to a TLS port, or could not speak TLS at all), and a plain target from a source with
// tls-cluster yes (it would speak TLS to a plain port). Where the source will not say
// (CONFIG GET refused), a TLS target is refused unless MigrateKeys.TargetAddr is set, which
// confirms that the user knows the source's settings. It changes nothing.
func (p *migration) checkTLS(ctx context.Context, confirmed bool) error {
	j := p.j
	const op = "check migrate over TLS"
	dst := p.targetTLS(ctx)
	src, err := p.sourceTLSCluster(ctx)
	if err != nil {
		return err
	}
	switch {
	case dst.tls && src.value == "yes", !dst.tls && src.value != "yes":
		return nil
	case dst.tls && src.value == "" && !src.noTLS && confirmed:
		return nil // the user set TargetAddr: MIGRATE's IOERR will tell otherwise
	}
	dst.read(ctx, p.j.Target) // for the message
	srcName := "the source"
	if j.Source.Cluster() {
		srcName = "the source's node " + src.addr
	}
	if !dst.tls {
		// MIGRATE would speak TLS to a plain port.
		fix := "reach the target over TLS (rediss://, TLSConfig) at its tls-port, where MIGRATE would then go"
		if dst.tlsPort != "" && dst.tlsPort != "0" && !j.Target.Cluster() {
			fix = fmt.Sprintf("set MigrateKeys.TargetAddr to %s, the target's tls-port", net.JoinHostPort(p.host, dst.tlsPort))
		} else if dst.tlsPort == "0" {
			fix = "give the target a tls-port and reach it over TLS (rediss://, TLSConfig)"
		}
		unset := "set tls-cluster no on the source (CONFIG SET tls-cluster no)"
		if j.Source.Cluster() {
			unset = "on a cluster source tls-cluster also makes the cluster bus speak TLS, so leave it"
		}
		return j.Target.Err(op, "", unsupported(
			"%s runs with tls-cluster yes, so its MIGRATE speaks TLS, and the target is reached without TLS at %s, "+
				"a plain port; %s; or %s; or use DumpRestore or Snapshot, which connect from this program",
			srcName, p.addr, fix, unset))
	}
	// A TLS target, and a source that does not (or may not) speak TLS.
	need := "the source needs tls-cert-file and tls-key-file, and a tls-ca-cert-file that holds the CA that signed " +
		"the target's certificate"
	if dst.authClients == "yes" || dst.authClients == "optional" {
		need += fmt.Sprintf("; the target asks clients for a certificate (tls-auth-clients %s), so the source's "+
			"tls-client-cert-file (or tls-cert-file) must be signed by a CA in the target's tls-ca-cert-file", dst.authClients)
	}
	plain := ""
	if dst.port != "" && dst.port != "0" && !j.Target.Cluster() {
		plain = fmt.Sprintf("; or set MigrateKeys.TargetAddr to %s, the target's plain port, where MIGRATE "+
			"sends the data unencrypted", net.JoinHostPort(p.host, dst.port))
	}
	bus := ""
	if j.Source.Cluster() {
		bus = " on every node of the source (it also makes the cluster bus speak TLS)"
	}
	switch {
	case src.noTLS:
		return j.Source.Err(op, "", unsupported(
			"the target is reached over TLS at %s (a TLS port), and %s knows no tls-cluster setting: its redis-server "+
				"is built without TLS, or older than Redis 6.0, and its MIGRATE cannot speak TLS; use DumpRestore or "+
				"Snapshot, which connect from this program%s", p.addr, srcName, plain))
	case src.value == "":
		return j.Source.Err(op, "", unsupported(
			"the target is reached over TLS at %s (a TLS port), which MIGRATE speaks only when the source runs "+
				"with tls-cluster yes, and %s's tls-cluster could not be read (CONFIG GET tls-cluster: %s); "+
				"confirm it (redis-cli CONFIG GET tls-cluster, or the service's settings) and, if it is yes, set "+
				"MigrateKeys.TargetAddr to the target's address as the source reaches it to go ahead (%s); "+
				"or use DumpRestore or Snapshot, which connect from this program%s",
			p.addr, srcName, src.refusal, need, plain))
	}
	return j.Source.Err(op, "", unsupported(
		"the target is reached over TLS at %s (a TLS port), and %s runs with tls-cluster no, so its MIGRATE "+
			"would connect without TLS; set tls-cluster yes%s (CONFIG SET tls-cluster yes; %s); or use DumpRestore "+
			"or Snapshot, which connect from this program%s",
		p.addr, srcName, bus, need, plain))
}

// targetTLS is what MIGRATE meets at the target's address.
type targetTLS struct {
	tls                        bool   // the port MIGRATE connects to speaks TLS
	port, tlsPort, authClients string // the target's settings, "" when unread
	done                       bool   // read has run
}

// read reads the target's port, tls-port and tls-auth-clients, where CONFIG GET answers.
func (t *targetTLS) read(ctx context.Context, e *Endpoint) {
	if t.done {
		return
	}
	t.done = true
	c, err := e.Default()
	if err != nil {
		return
	}
	t.port, _ = configGet(ctx, c, "port")
	t.tlsPort, _ = configGet(ctx, c, "tls-port")
	t.authClients, _ = configGet(ctx, c, "tls-auth-clients")
}

// targetTLS says whether the port MIGRATE connects to speaks TLS. It is the port this
// program reaches the target at (a cluster target's nodes at the ports the cluster
// announces to this program's kind of client), unless TargetAddr names another: its port
// is then compared with the target's port and tls-port, where CONFIG GET reads them, and
// taken to speak as the target's address does (an address translated on the way) when
// neither matches.
func (p *migration) targetTLS(ctx context.Context) *targetTLS {
	t := &targetTLS{tls: p.j.Target.Option.TLSConfig != nil}
	if p.addr == p.j.Target.Addr || p.j.Target.Cluster() {
		return t
	}
	t.read(ctx, p.j.Target)
	switch p.port {
	case t.tlsPort:
		t.tls = true
	case t.port:
		t.tls = false
	}
	return t
}

// sourceTLSCluster reads the source's tls-cluster: on each master of a cluster source, which
// each run MIGRATE for their keys, the first one that is not yes.
func (p *migration) sourceTLSCluster(ctx context.Context) (tlsSide, error) {
	e := p.j.Source
	if !e.Cluster() {
		c, err := e.Default()
		if err != nil {
			return tlsSide{}, err
		}
		s := readTLSCluster(ctx, c, e.Addr)
		return s, ctx.Err()
	}
	t, err := e.topology(ctx)
	if err != nil {
		return tlsSide{}, err
	}
	ids, _ := t.masters()
	s := tlsSide{value: "yes"}
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			continue
		}
		c, err := e.node(n.addr)
		if err != nil {
			return tlsSide{}, err
		}
		if s = readTLSCluster(ctx, c, n.addr); s.value != "yes" {
			break
		}
	}
	return s, ctx.Err()
}

// readTLSCluster reads tls-cluster from the server at addr, through c.
func readTLSCluster(ctx context.Context, c rueidis.Client, addr string) tlsSide {
	s := tlsSide{addr: addr}
	res := c.Do(ctx, c.B().ConfigGet().Parameter("tls-cluster").Build())
	if err := res.Error(); err != nil {
		s.refusal = err.Error()
		return s
	}
	if m, err := res.AsStrMap(); err == nil { // RESP3 replies a map, RESP2 a flat array
		v, ok := m["tls-cluster"]
		s.value, s.noTLS = v, !ok
	} else if arr, err := res.AsStrSlice(); err == nil {
		if len(arr) >= 2 {
			s.value = arr[1]
		} else {
			s.noTLS = true
		}
	} else {
		s.refusal = err.Error()
	}
	return s
}

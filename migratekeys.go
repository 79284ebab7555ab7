package migrate

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// MigrateKeys copies each key with the source's own MIGRATE command: the source connects to
// the target itself and sends it a batch of keys at a time, each key into the same database
// number, with its TTL. The values never pass through this program. MIGRATE sends each
// key's remaining TTL, which the target counts from when it receives the batch, so a copy
// may expire later than its source by the batch's transfer time: milliseconds for small
// values on a fast link, more for large batches on a slow one (raise WithTTLTolerance for
// WithVerify then); the other strategies copy absolute expiries.
//
// It needs, on the source, SCAN, EXISTS, MULTI and MIGRATE (with COPY and REPLACE, Redis
// 3.0; MIGRATE ... KEYS sends a batch at once from Redis 3.0.6, one MIGRATE per key before)
// and a network path from the source to the target (see TargetAddr). The target's user, whose
// Username and Password MIGRATE sends, needs RESTORE and SELECT; a target with a password
// needs MIGRATE's AUTH on the source (Redis 4.0.7), or AUTH2 for an ACL user (Redis 6.0).
// The target must read the source's RDB version: the same Redis version or newer.
//
// Clusters work on either side (MIGRATE ... KEYS is needed then, Redis 3.0.6). To a cluster
// target, each batch is split by the node that serves each key's slot, read from the
// target's slot map, and each part goes to that node at the address the cluster announces,
// into database 0 (TargetAddr is refused). From a cluster source, each key is sent by the
// master that holds it, one MIGRATE per slot (a cluster node refuses a command on keys of
// several slots); the MULTI blocks of one node are pipelined, which keeps a cluster copy
// close to a standalone one (the README gives the bench's figures).
// When a slot moves or a node fails over meanwhile (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a
// source node that does not answer, a target node the source cannot reach), the keys are
// sent again once the slot maps are read again, the MOVED redirections followed, for up to
// a minute; past that the error names the slot or the node. ASK is followed from a cluster source
// only: a cluster node's MIGRATE sends RESTORE-ASKING, which the node importing a slot
// accepts, and a standalone server's sends RESTORE, which it refuses (MOVED back to the
// owner). From a standalone source, the keys of a slot being moved wait for the move to end,
// and Check refuses a target with slots left open (MIGRATING or IMPORTING), which
// DumpRestore and Snapshot handle.
//
// Over TLS: the source's MIGRATE speaks TLS exactly when the source runs with tls-cluster
// yes (Redis 6.0 and newer, standalone or cluster; tls-replication plays no part), presenting
// its tls-client-cert-file or tls-cert-file and checking the target's certificate against its
// tls-ca-cert-file, not the host name. So a target reached over TLS (its TLSConfig set, or a
// TargetAddr at its tls-port) needs a source with tls-cluster yes, and a plain one a source
// without; Check reads both sides' settings (CONFIG GET) and refuses a mismatch, saying what
// to set. When the source will not say, a TLS target is refused unless TargetAddr is set,
// which confirms it.
//
// A MIGRATE that fails reports only its first error, and the target may hold any part of
// its batch. Its keys are then settled one by one, with EXISTS on both sides (and their
// values, when a key may have been refused): those the target holds are counted as copied,
// the others sent again or counted in Report.Failed, so that no key is lost or counted
// twice. This costs round trips only after a failure, never on the normal path. A key
// whose batch failed because the migration was cancelled is not counted as failed.
//
// A target that restarts during the copy, or a connection that is cut (CLIENT KILL of ours
// to the source, or of the source's to the target), costs no restart either: once both
// sides answer, the keys of the MIGRATE whose reply was lost are settled that way and the
// others sent again, for up to 30 s. A target that stops answering (MIGRATE's IOERR while
// this program's own PING to it times out) or a source that does not answer within its
// ConnWriteTimeout ends the copy with an error that says so.
//
// The source is only read unless Move is set. Conflicts follow WithConflict. Under Fail (the
// default) and Skip, EXISTS on the target finds before each batch the keys it already
// holds. Under Fail a key it holds with another type, value or expiry (expiries further
// apart than WithTTLTolerance) stops the migration before the batch is sent: the error
// wraps ErrConflict and names the key, counted in Report.Failed. One it holds with the
// source's value and expiry (a migration run again) is left alone and counted in
// Report.Skipped; values are compared by DUMP payload, and element by element when the
// payloads differ (another encoding of the same value). Under Skip they are left alone and
// counted in Report.Skipped. Under Replace MIGRATE overwrites them (REPLACE) and they count
// as copied. Should a writer create keys on the target meanwhile, MIGRATE refuses them and
// stores the batch's other keys, and MigrateKeys finds which it refused by their values.
//
// Each batch of WithBatchSize keys (default 256) is one MIGRATE, which blocks the source
// until the target has stored the whole batch, a network round trip included. A batch of
// 256 keeps each such stall of the source to a few milliseconds for small values, far
// below what clients notice, and larger batches copy only a little faster
// (BenchmarkMigrateKeys measures it; the README gives the figures). The stall grows with
// the bytes a batch carries, so lower WithBatchSize for large values. The source runs one
// MIGRATE at a time, so at most two are in flight, whatever WithConcurrency says: the second
// keeps the source busy while this program handles the first's reply; more would only
// queue and stall other clients longer.
//
// Report.Expired counts the keys that were gone from the source when their batch moved:
// EXISTS runs in the same MULTI as MIGRATE, so it sees exactly the keys MIGRATE sees (a key
// whose TTL ends in the instant between MIGRATE's look-up and its reading of the TTL is
// counted as copied but not sent). A key the walk returns twice (SCAN may, when the source's
// tables shrink meanwhile) is counted a second time under Skip, as skipped, and under
// Replace, as copied (or expired when moving). Report.Bytes stays 0: MIGRATE does not say
// what it sent, and asking would cost as much as the copy.
//
// The zero value copies to the target's address as given to New, with a 5 s timeout.
type MigrateKeys struct {
	// TargetAddr is the target's address, "host:port", as the source reaches it: MIGRATE
	// connects from the source, not from this program. The default is the target's
	// address as given to New; set it when the source sees the target under another name
	// (containers, NAT, tunnels). It is not checked to lead to the same server.
	TargetAddr string
	// Move deletes each key from the source once the target holds it (MIGRATE without
	// COPY). The default copies: the source keeps every key. After a network error a moved
	// batch may be on both sides, never on neither.
	Move bool
	// Timeout is MIGRATE's timeout: how long the source waits, at any moment of a transfer,
	// for the target to connect, read or answer. Zero or less means 5 s.
	Timeout time.Duration
}

const (
	defaultMigrateTimeout = 5 * time.Second
	// maxMigrates is how many MIGRATE commands are in flight at once: the source runs one
	// at a time, so a second keeps it busy and more only make other clients wait.
	maxMigrates = 2
)

// Name returns "migrate-keys".
func (MigrateKeys) Name() string { return "migrate-keys" }

// Check verifies, without changing anything, that TargetAddr is an address, that the target
// is not a cluster, that the source's version has the MIGRATE options this migration needs
// (COPY, REPLACE, AUTH, AUTH2), that Move is not asked of a replica, that the source runs
// MULTI and MIGRATE (a MIGRATE of a missing key, which answers NOKEY without connecting),
// that a cluster target has no slot being moved when the source is a standalone server
// (whose MIGRATE cannot follow ASK), that the target's user may RESTORE, and that the target
// reads the source's RDB version.
func (m MigrateKeys) Check(ctx context.Context, j *Job) error {
	if err := refuseFollow(j, "MigrateKeys"); err != nil {
		return err
	}
	p, err := m.plan(j)
	if err != nil {
		return err
	}
	if err := checkTargetDatabases(j); err != nil {
		return err
	}
	const op = "check migrate"
	src := j.Source.Info
	switch {
	case j.Target.Cluster() && m.TargetAddr != "":
		return j.Target.Err(op, "", unsupported(
			"the target is a cluster, and TargetAddr names one server; leave it empty: each batch goes to the node that serves its slot, at the address the cluster announces"))
	case j.DBPrefix != "":
		return j.Target.Err(op, "", unsupported(
			"WithDBPrefix(%q) renames keys, and MIGRATE keeps their names; use DumpRestore or Snapshot, or WithDBPrefix(\"\")", j.DBPrefix))
	case (j.Source.Cluster() || j.Target.Cluster()) && !p.batched:
		return j.Source.Err(op, "", unsupported(
			"MIGRATE ... KEYS needs Redis 3.0.6 and the source runs %s; use DumpRestore", describeVersion(src)))
	case !src.AtLeast(3, 0, 0):
		return j.Source.Err(op, "", unsupported(
			"the source runs %s, and MIGRATE's COPY and REPLACE need Redis 3.0; use DumpRestore", describeVersion(src)))
	case m.Move && src.Role == "slave":
		return j.Source.Err(op, "", unsupported(
			"the source is a replica, and Move would delete keys on it; move from its primary, or copy without Move"))
	case len(p.auth) > 0 && p.auth[0] == "AUTH2" && !src.AtLeast(6, 0, 0):
		return j.Source.Err(op, "", unsupported(
			"the target's ACL user needs MIGRATE's AUTH2, which needs Redis 6.0, and the source runs %s; use DumpRestore",
			describeVersion(src)))
	case len(p.auth) > 0 && !src.AtLeast(4, 0, 7):
		return j.Source.Err(op, "", unsupported(
			"the target needs a password, which MIGRATE sends only from Redis 4.0.7 (AUTH), and the source runs %s; use DumpRestore",
			describeVersion(src)))
	}
	if err := p.checkTLS(ctx, m.TargetAddr != ""); err != nil {
		return err
	}
	if j.Target.Cluster() && !j.Source.Cluster() {
		open, err := openSlots(ctx, j.Target)
		if err != nil {
			return err
		}
		if len(open) > 0 {
			return j.Target.Err(op, "", unsupported(
				"the target has slots being moved (MIGRATING or IMPORTING: %s), a reshard under way or interrupted; "+
					"a standalone source's MIGRATE sends RESTORE, which the node importing a slot refuses, so the keys of those slots "+
					"could not be written until the move ends; finish it (redis-cli --cluster fix) or use DumpRestore or Snapshot, which follow ASK",
				describeOpenSlots(open)))
		}
	}
	if err := p.checkAccess(ctx); err != nil {
		return err
	}
	return checkPayloadsAsIs(j)
}

// Run migrates every selected database, one after the other.
func (m MigrateKeys) Run(ctx context.Context, j *Job) error {
	p, err := m.plan(j)
	if err != nil {
		return err
	}
	if j.Logger != nil {
		j.Logger.Info("migrate-keys: plan", "target_addr", p.addr, "move", !p.copy, "conflict", j.Conflict.String(),
			"batched", p.batched, "auth", p.authKind(), "timeout", p.timeout)
	}
	if err := p.readTopology(ctx); err != nil {
		return err
	}
	for _, db := range j.Databases {
		if j.checkpoint.skipDB(db) {
			continue // copied whole before an interruption (WithCheckpoint)
		}
		if err := p.copyDB(ctx, db); err != nil {
			return resumeHint(ctx, j, err)
		}
		if err := j.checkpoint.dbDone(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// migration is what a MigrateKeys run decided once: where, how and with which options.
type migration struct {
	j          *Job
	addr       string // the target as the source reaches it
	host, port string
	timeout    time.Duration
	copy       bool
	auth       []string // AUTH password, AUTH2 username password, or nothing
	password   string   // the target's, to keep out of errors
	batched    bool     // MIGRATE ... KEYS (Redis 3.0.6)
	// reached says a MIGRATE has stored keys: the source reaches the target, so that an
	// IOERR later is a target restarting or a connection cut, waited for (retry.go), not an
	// address to fix.
	reached atomic.Bool

	mu               sync.Mutex
	srcTopo, dstTopo *topology // slot maps of the sides that are clusters
	// srcMoved and dstMoved are the owners MOVED redirections named, by slot: fresher than
	// a slot map read from a node that has not heard of the move yet.
	srcMoved, dstMoved map[uint16]string
}

func (m MigrateKeys) plan(j *Job) (*migration, error) {
	p := &migration{j: j, addr: m.TargetAddr, timeout: m.Timeout, copy: !m.Move,
		batched: j.Source.Info.AtLeast(3, 0, 6)}
	if p.addr == "" {
		p.addr = j.Target.Addr
	}
	if p.timeout <= 0 {
		p.timeout = defaultMigrateTimeout
	}
	host, port, err := net.SplitHostPort(p.addr)
	if err == nil && host == "" {
		err = fmt.Errorf("no host")
	} else if _, perr := strconv.Atoi(port); err == nil && perr != nil {
		err = fmt.Errorf("port %q is not a number", port)
	}
	if err != nil {
		return nil, fmt.Errorf("target address %q, where the source would send the keys, is not host:port; "+
			"set MigrateKeys.TargetAddr: %w", p.addr, err)
	}
	p.host, p.port = host, port
	user, pass, err := targetCredentials(j)
	if err != nil {
		return nil, err
	}
	p.password = pass
	switch {
	case pass == "":
	case user == "" || user == "default":
		p.auth = []string{"AUTH", pass}
	default:
		p.auth = []string{"AUTH2", user, pass}
	}
	return p, nil
}

// targetCredentials returns what the target's option logs in with, calling its
// AuthCredentialsFn if it has one.
func targetCredentials(j *Job) (user, pass string, err error) {
	o := j.Target.Option
	if o.AuthCredentialsFn == nil {
		return o.Username, o.Password, nil
	}
	var ac rueidis.AuthCredentialsContext
	if a, err := net.ResolveTCPAddr("tcp", j.Target.Addr); err == nil {
		ac.Address = a
	}
	cr, err := o.AuthCredentialsFn(ac)
	if err != nil {
		return "", "", j.Target.Err("get credentials for MIGRATE", "", err)
	}
	return cr.Username, cr.Password, nil
}

func (p *migration) authKind() string {
	if len(p.auth) == 0 {
		return "none"
	}
	return p.auth[0]
}

// args returns MIGRATE's arguments for keys of database db: one key in the key position, or
// several after KEYS. They hold the target's password: never print them.
func (p *migration) args(host, port string, db int, keys ...string) []string {
	key := ""
	if !p.batched {
		key = keys[0]
	}
	ms := max(1, p.timeout.Milliseconds())
	args := []string{host, port, key, strconv.Itoa(p.j.TargetDB(db)), strconv.FormatInt(ms, 10)}
	if p.copy {
		args = append(args, "COPY")
	}
	if p.j.Conflict == Replace {
		args = append(args, "REPLACE")
	}
	args = append(args, p.auth...)
	if p.batched {
		args = append(args, "KEYS")
		args = append(args, keys...)
	}
	return args
}

// probe runs, in a MULTI as Run does, a MIGRATE of a key that does not exist: the source
// answers NOKEY before connecting anywhere, or refuses the command.
func (p *migration) probe(ctx context.Context) error {
	c, err := p.j.Source.Default()
	if err != nil {
		return err
	}
	if p.j.Source.Cluster() {
		// MULTI and EXEC have no key: a cluster client would send them anywhere.
		t, err := p.j.Source.topology(ctx)
		if err != nil {
			return err
		}
		if c, err = p.j.Source.node(t.ownerAddr(0)); err != nil {
			return err
		}
	}
	args := []string{p.host, p.port, probeKey(), "0", "1", "COPY"}
	res := c.DoMulti(ctx,
		c.B().Multi().Build(),
		c.B().Arbitrary("MIGRATE").Args(args...).Build(),
		c.B().Exec().Build())
	for i, name := range []string{"MULTI", "MIGRATE"} {
		if err := res[i].Error(); err != nil {
			return refusal(ctx, p.j.Source, name, err)
		}
	}
	arr, err := res[2].ToArray()
	if err == nil && len(arr) > 0 {
		err = arr[0].Error()
	}
	if err != nil {
		return refusal(ctx, p.j.Source, "MIGRATE", err)
	}
	return nil
}

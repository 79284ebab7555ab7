package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// MigrateKeys copies each key with the source's own MIGRATE command: the source connects to
// the target itself and sends it a batch of keys at a time, each key into the same database
// number, with its TTL. The values never pass through this program.
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
// several slots); the MULTI blocks of one node are pipelined, so on the strings bench
// (three masters each side, loopback) it ran at 0.65 to 0.8 times its standalone speed.
// When a slot moves or a node fails over meanwhile (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a
// source node that does not answer), the part is sent again once the slot maps are read
// again, the MOVED and ASK redirections followed, for up to 30 s.
//
// The source is only read unless Move is set. Conflicts follow WithConflict. Under Fail (the
// default) and Skip, EXISTS on the target finds before each batch the keys it already
// holds. Under Fail a key it holds with another value stops the migration before the batch
// is sent: the error wraps ErrConflict and names the key, counted in Report.Failed. One it
// holds with the same DUMP payload (a migration run again) is left alone and not counted;
// large sets and hashes list their members in each server's order, so theirs may differ and
// conflict. Under Skip they are left alone and counted in Report.Skipped. Under Replace
// MIGRATE overwrites them (REPLACE). Should a writer create keys on the target meanwhile,
// MIGRATE refuses them and stores the batch's other keys, and MigrateKeys finds which it
// refused by their values.
//
// Each batch of WithBatchSize keys (default 256) is one MIGRATE, which blocks the source
// until the target has stored the whole batch, a network round trip included. Measured on
// loopback (Redis 7.0, two busy cores; BenchmarkMigrateKeys), a MIGRATE of 256 keys blocked
// the source 2–3 ms for strings of 100 bytes, 6–8 ms for hashes of 100 fields and 10–14 ms
// for strings of 10 KB; batches of 1,000 blocked it 7–9, 20–25 and 34–37 ms and copied at
// most a quarter faster. So 256 keeps every stall far below 100 ms, with room for a slower
// link and larger values. The stall grows with the bytes a batch carries (here about 4 ms
// more per MB), so lower WithBatchSize for large values. The source runs one MIGRATE at a
// time, so at most two are in flight, whatever WithConcurrency says: the second keeps the
// source busy while this program handles the first's reply; more would only queue and stall
// other clients longer.
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
// that the target's user may RESTORE, and that the target reads the source's RDB version.
func (m MigrateKeys) Check(ctx context.Context, j *Job) error {
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
	case j.prefix != nil && *j.prefix != "":
		return j.Target.Err(op, "", unsupported(
			"WithDBPrefix(%q) renames keys, and MIGRATE keeps their names; use DumpRestore or Snapshot, or WithDBPrefix(\"\")", *j.prefix))
	case (j.Source.Cluster() || j.Target.Cluster()) && !p.batched:
		return j.Source.Err(op, "", unsupported(
			"MIGRATE ... KEYS needs Redis 3.0.6 and the source runs %s; use DumpRestore", describeVersion(src)))
	case m.TargetAddr == "" && j.Target.Option.TLSConfig != nil:
		return j.Target.Err(op, "", unsupported(
			"the target is reached over TLS, which MIGRATE speaks only when the source runs with tls-cluster yes; "+
				"set MigrateKeys.TargetAddr to confirm the address the source should use"))
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
	if err := p.probe(ctx); err != nil {
		return err
	}
	if err := checkRestore(ctx, j.Target); err != nil {
		return err
	}
	return checkRDBVersions(j)
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
		if err := p.copyDB(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// readTopology reads who serves which slot on the sides that are clusters.
func (p *migration) readTopology(ctx context.Context) error {
	var src, dst *topology
	var err error
	if p.j.Source.Cluster() {
		if src, err = p.j.Source.topology(ctx); err != nil {
			return err
		}
	}
	if p.j.Target.Cluster() {
		if dst, err = p.j.Target.topology(ctx); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.srcTopo, p.dstTopo = src, dst
	p.mu.Unlock()
	return nil
}

// migrateGroup is keys that one MIGRATE sends: from one source node to one target node,
// and of one slot when the source is a cluster (which refuses a command on several).
type migrateGroup struct {
	src        rueidis.Client
	srcAddr    string // the source node's, on a cluster
	host, port string
	keys       []string
	res        []rueidis.RedisResult // the replies, when sent in a pipeline with others
}

// groups splits keys into the MIGRATE commands that can carry them; src is the source's
// client when it is not a cluster.
//
// asks sends the keys of some slots of a cluster target elsewhere: to the node an ASK
// redirection named, which imports the slot.
func (p *migration) groups(src rueidis.Client, keys []string, asks map[uint16]string) ([]migrateGroup, error) {
	p.mu.Lock()
	st, dt := p.srcTopo, p.dstTopo
	srcMoved, dstMoved := maps.Clone(p.srcMoved), maps.Clone(p.dstMoved)
	p.mu.Unlock()
	if st == nil && dt == nil {
		return []migrateGroup{{src: src, host: p.host, port: p.port, keys: keys}}, nil
	}
	type groupKey struct {
		src, dst string
		slot     int
	}
	index := map[groupKey]int{}
	var out []migrateGroup
	for _, k := range keys {
		slot := keySlot(k)
		gk := groupKey{slot: -1}
		if st != nil {
			gk.src, gk.slot = srcMoved[slot], int(slot)
			if gk.src == "" {
				gk.src = st.ownerAddr(slot)
			}
			if gk.src == "" {
				return nil, p.j.Source.Err("migrate", k, fmt.Errorf("%w: no node of the source cluster serves slot %d", errRedirected, slot))
			}
		}
		if dt != nil {
			if gk.dst = asks[slot]; gk.dst == "" {
				gk.dst = dstMoved[slot]
			}
			if gk.dst == "" {
				gk.dst = dt.ownerAddr(slot)
			}
			if gk.dst == "" {
				return nil, p.j.Target.Err("migrate", k, fmt.Errorf("%w: no node of the target cluster serves slot %d", errRedirected, slot))
			}
		}
		i, ok := index[gk]
		if !ok {
			g := migrateGroup{src: src, srcAddr: gk.src, host: p.host, port: p.port}
			if st != nil {
				c, err := p.j.Source.node(gk.src)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", errRedirected, err) // a node that failed
				}
				g.src = c
			}
			if dt != nil {
				g.host, g.port, _ = net.SplitHostPort(gk.dst)
			}
			i = len(out)
			index[gk] = i
			out = append(out, g)
		}
		out[i].keys = append(out[i].keys, k)
	}
	// Those of one source node together, to be pipelined.
	sort.SliceStable(out, func(a, b int) bool { return out[a].srcAddr < out[b].srcAddr })
	return out, nil
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

func (p *migration) copyDB(ctx context.Context, db int) error {
	j := p.j
	src, err := j.Source.Client(db)
	if err != nil {
		return err
	}
	dst, err := j.Target.Client(j.TargetDB(db))
	if err != nil {
		return err
	}
	workers := max(1, min(j.Concurrency, maxMigrates))
	walk := func(ctx context.Context, emit func([]string) error) error { return j.ScanKeys(ctx, db, emit) }
	return fanOut(ctx, workers, walk, func(gctx context.Context, keys []string) error {
		if gctx.Err() != nil {
			return nil // another batch failed; its error is the group's
		}
		// A batch runs under ctx, not gctx: when another batch fails, the MIGRATE under
		// way completes on the source all the same, and its reply is needed to count
		// what it did.
		return p.batch(ctx, src, dst, db, keys)
	})
}

// batch migrates keys of database db, counts the outcome, and returns the error that stops
// the migration.
func (p *migration) batch(ctx context.Context, src, dst rueidis.Client, db int, keys []string) error {
	var counts Counts
	defer func() { p.j.Count(db, counts) }()
	// SCAN may return a key twice, and twice in one MIGRATE would conflict with itself.
	keys = unique(keys)
	if p.j.Conflict != Replace {
		var err error
		if keys, err = p.unheld(ctx, src, dst, db, keys, &counts); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if !p.batched {
		return p.eachKey(ctx, src, dst, db, keys, &counts)
	}
	// A group without a source client is keys still to be split into groups.
	queue := []migrateGroup{{keys: keys}}
	asks := map[uint16]string{}
	for attempt := 0; len(queue) > 0; {
		var err error
		if queue[0].src == nil {
			var gs []migrateGroup
			if gs, err = p.groups(src, queue[0].keys, asks); err == nil {
				queue = append(gs, queue[1:]...)
				continue
			}
		} else {
			p.pipeline(ctx, db, queue)
			g := queue[0]
			if err = p.send(ctx, g, src, dst, db, &counts); err == nil {
				queue = queue[1:]
				continue
			}
			queue[0] = migrateGroup{keys: g.keys}
		}
		if !errors.Is(err, errRedirected) {
			return err
		}
		// A slot moved, or a node failed over: read the slot maps again and resend.
		if attempt++; attempt > clusterRetries {
			return p.migrateErr(ctx, db, fmt.Errorf("the clusters kept moving for %d attempts: %w", clusterRetries, err))
		}
		p.redirected(err, asks)
		p.j.Logger.Info("migrate-keys: a slot moved or a node failed; reading the slot maps again", "attempt", attempt, "error", err)
		if err := sleepCtx(ctx, clusterRetryDelay); err != nil {
			return err
		}
		if err := p.readTopology(ctx); err != nil {
			return err
		}
	}
	return nil
}

// commands are the MULTI block that migrates group g. EXISTS in the same MULTI sees the
// keys MIGRATE sees: nothing runs in between, and both judge expiry at the same instant.
func (p *migration) commands(g migrateGroup, db int) rueidis.Commands {
	c := g.src
	return rueidis.Commands{
		c.B().Multi().Build(),
		c.B().Exists().Key(g.keys...).Build(),
		c.B().Arbitrary("MIGRATE").Args(p.args(g.host, g.port, db, g.keys...)...).Build(),
		c.B().Exec().Build(),
	}
}

// pipeline sends at once the MULTI blocks of the first groups that share a source node
// and were not sent yet, and keeps their replies in them: a cluster source makes small
// groups, one per slot, and a round trip each would dominate.
func (p *migration) pipeline(ctx context.Context, db int, groups []migrateGroup) {
	if len(groups) < 2 || groups[0].res != nil {
		return
	}
	node := groups[0].src
	n := 0
	var cmds rueidis.Commands
	for n < len(groups) && groups[n].src == node && groups[n].res == nil {
		cmds = append(cmds, p.commands(groups[n], db)...)
		n++
	}
	if n < 2 {
		return
	}
	res := node.DoMulti(ctx, cmds...)
	for i := range n {
		groups[i].res = res[4*i : 4*i+4]
	}
}

// errRedirected marks an error of a cluster that moved: MOVED, ASK, TRYAGAIN, CLUSTERDOWN, or
// a source node that does not answer.
var errRedirected = errors.New("the cluster moved")

const (
	clusterRetries    = 120
	clusterRetryDelay = 250 * time.Millisecond
)

// redirected learns from a redirection where a slot is: a MOVED names its new owner (on
// the source, or on the target when MIGRATE relays it), an ASK relayed from the target the
// node importing it, for this batch only. An ASK on the source passes once the slot has
// moved, and a node that does not answer may be one that failed: the slot maps tell then.
func (p *migration) redirected(err error, asks map[uint16]string) {
	msg := err.Error()
	relayedMsg, fromTarget := relayed(err)
	if fromTarget {
		msg = relayedMsg
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot, addr, ok := redirection(msg, "MOVED "); ok {
		m := &p.srcMoved
		if fromTarget {
			m = &p.dstMoved
		}
		if *m == nil {
			*m = map[uint16]string{}
		}
		(*m)[slot] = addr
		return
	}
	if slot, addr, ok := redirection(msg, "ASK "); ok && fromTarget {
		asks[slot] = addr
		return
	}
	if !strings.Contains(msg, "MOVED") && !strings.Contains(msg, "ASK") {
		p.srcMoved = nil // a node failed: trust the slot maps again
	}
}

// redirection returns the slot and address of a MOVED or ASK redirection (kind) in msg.
func redirection(msg, kind string) (uint16, string, bool) {
	_, rest, ok := strings.Cut(msg, kind)
	if !ok {
		return 0, "", false
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, "", false
	}
	slot, err2 := strconv.Atoi(f[0])
	if err2 != nil || slot < 0 || slot >= slotCount {
		return 0, "", false
	}
	return uint16(slot), f[1], true
}

// isRedirect reports whether err says a slot is elsewhere or the cluster is changing.
func isRedirect(err error) bool {
	msg := err.Error()
	if m, ok := relayed(err); ok {
		msg = m
	}
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "EXECABORT"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// send migrates keys from the source node srcNode to host:port in one MULTI, and counts
// the outcome. An error that a moving cluster explains wraps errRedirected, and nothing of
// the keys was counted then.
func (p *migration) send(ctx context.Context, g migrateGroup, src, dst rueidis.Client, db int, counts *Counts) error {
	clustered := p.j.Source.Cluster() || p.j.Target.Cluster()
	keys := g.keys
	res := g.res
	if res == nil {
		res = g.src.DoMulti(ctx, p.commands(g, db)...)
	}
	if clustered && ctx.Err() == nil {
		for _, r := range res {
			err := r.Error()
			if err == nil {
				if arr, aerr := r.ToArray(); aerr == nil && len(arr) == 2 {
					err = arr[1].Error()
				}
			}
			if err == nil {
				continue
			}
			if _, isRedis := rueidis.IsRedisErr(err); isRedirect(err) || (!isRedis && p.j.Source.Cluster()) {
				return fmt.Errorf("%w: %v", errRedirected, p.redact(err))
			}
		}
	}
	fail := func(n int64, err error) error {
		if ctx.Err() == nil {
			counts.Failed += n
		}
		return p.migrateErr(ctx, db, err)
	}
	for _, r := range res[:3] {
		if err := r.Error(); err != nil {
			return fail(int64(len(keys)), err)
		}
	}
	arr, err := res[3].ToArray()
	if err == nil && len(arr) != 2 {
		err = fmt.Errorf("EXEC replied %d results, want 2", len(arr))
	}
	if err != nil {
		return fail(int64(len(keys)), err)
	}
	present, err := arr[0].AsInt64()
	if err != nil {
		return fail(int64(len(keys)), err)
	}
	counts.Expired += int64(len(keys)) - present
	err = arr[1].Error()
	if err == nil { // OK, or NOKEY when every key was gone
		counts.Keys += present
		return nil
	}
	if !isRelayedBusyKey(err) {
		// The target may hold some of these keys: MIGRATE reports only its first error.
		return fail(present, err)
	}
	// A writer created some keys on the target since unheld looked: the target refused
	// them and stored the others; find which.
	busy, err := p.busyKeys(ctx, src, dst, db, keys)
	if err != nil {
		return err
	}
	counts.Keys += max(0, present-int64(len(busy)))
	return p.conflict(db, busy, counts)
}

// eachKey migrates keys with one MIGRATE each, for sources older than Redis 3.0.6; each
// reply says what happened to its key.
func (p *migration) eachKey(ctx context.Context, src, dst rueidis.Client, db int, keys []string, counts *Counts) error {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = src.B().Arbitrary("MIGRATE").Args(p.args(p.host, p.port, db, k)...).Build()
	}
	var busy []string
	var first error
	for i, r := range src.DoMulti(ctx, cmds...) {
		s, err := r.ToString()
		switch {
		case err == nil && s == "NOKEY":
			counts.Expired++
		case err == nil:
			counts.Keys++
		case isRelayedBusyKey(err):
			busy = append(busy, keys[i])
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			counts.Failed++
			if first == nil {
				first = p.migrateErr(ctx, db, err)
			}
		}
	}
	if first != nil {
		return first
	}
	if len(busy) > 0 && p.j.Conflict == Fail {
		// Created by a writer since unheld looked, unless the same value.
		var err error
		if busy, err = p.busyKeys(ctx, src, dst, db, busy); err != nil {
			return err
		}
	}
	return p.conflict(db, busy, counts)
}

// conflict counts the keys the target refused because it holds them, and under Fail returns
// the error that names the first.
func (p *migration) conflict(db int, busy []string, counts *Counts) error {
	if len(busy) == 0 {
		return nil
	}
	if p.j.Conflict == Skip {
		counts.Skipped += int64(len(busy))
		return nil
	}
	counts.Failed += int64(len(busy))
	return p.j.Target.Err(fmt.Sprintf("migrate into db %d", db), busy[0], ErrConflict)
}

// unheld returns the keys the target does not hold, the ones to send. Under Skip it counts
// the others as Skipped. Under Fail it leaves alone, uncounted, those the target holds with
// the source's value (a key the walk returned twice, a migration run again), and returns
// the error that stops the migration if it holds any with another value, before anything of
// the batch is sent.
func (p *migration) unheld(ctx context.Context, src, dst rueidis.Client, db int, keys []string, counts *Counts) ([]string, error) {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = dst.B().Exists().Key(k).Build()
	}
	var send, held []string
	for i, r := range dst.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, p.j.Target.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if n > 0 {
			held = append(held, keys[i])
		} else {
			send = append(send, keys[i])
		}
	}
	if len(held) == 0 || p.j.Conflict == Skip {
		counts.Skipped += int64(len(held))
		return send, nil
	}
	conflicts, err := p.differing(ctx, src, dst, db, held)
	if err != nil {
		return nil, err
	}
	return send, p.conflict(db, conflicts, counts)
}

// busyKeys returns, after a MIGRATE the target refused with BUSYKEY, the keys it refused:
// MIGRATE's error does not name them. A moved key is deleted from the source once the
// target holds it, so the refused ones are those still there. A copied key is the same on
// both sides, so the refused ones are those the target holds with another value.
func (p *migration) busyKeys(ctx context.Context, src, dst rueidis.Client, db int, keys []string) ([]string, error) {
	if p.copy {
		return p.differing(ctx, src, dst, db, keys)
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = src.B().Exists().Key(k).Build()
	}
	var busy []string
	for i, r := range src.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, p.j.Source.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if n > 0 {
			busy = append(busy, keys[i])
		}
	}
	return busy, nil
}

// differing returns the keys both sides hold with different DUMP payloads. Payloads of
// large sets and hashes list their members in each server's own order, so an equal value may
// count as different; never the other way round.
func (p *migration) differing(ctx context.Context, src, dst rueidis.Client, db int, keys []string) ([]string, error) {
	dumps := func(c rueidis.Client) []rueidis.RedisResult {
		cmds := make(rueidis.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = c.B().Dump().Key(k).Build()
		}
		return c.DoMulti(ctx, cmds...)
	}
	mine, theirs := dumps(src), dumps(dst)
	var diff []string
	for i, k := range keys {
		a, err := mine[i].ToString()
		if rueidis.IsRedisNil(err) {
			continue // gone from the source: nothing to send
		}
		if err != nil {
			return nil, p.j.Source.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		b, err := theirs[i].ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, p.j.Target.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		if !sameValue(a, b) {
			diff = append(diff, k)
		}
	}
	return diff, nil
}

// sameValue compares two DUMP payloads without their footers (RDB version and checksum),
// so a newer target's copy of a value still matches the source's.
func sameValue(a, b string) bool {
	const footer = 10
	if len(a) < footer || len(b) < footer {
		return a == b
	}
	return a[:len(a)-footer] == b[:len(b)-footer]
}

// relayedPrefix starts the error MIGRATE replies when the target refused a command.
const relayedPrefix = "Target instance replied with error: "

// relayed returns the target's own error when err is one MIGRATE relays.
func relayed(err error) (string, bool) {
	_, msg, ok := strings.Cut(err.Error(), relayedPrefix)
	return msg, ok
}

// redact returns err without the target's password, which a server may quote: an unknown
// command's error repeats its first arguments, so a source without MIGRATE, or a target
// without AUTH, would echo it.
func (p *migration) redact(err error) error {
	if p.password == "" || !strings.Contains(err.Error(), p.password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p.password, "<password>"))
}

func isRelayedBusyKey(err error) bool {
	msg, ok := relayed(err)
	return ok && strings.HasPrefix(msg, "BUSYKEY")
}

// migrateErr explains an error of MIGRATE: the source's (it could not reach the target) or
// the target's, which MIGRATE relays. MIGRATE's arguments, which hold the password, are
// never part of it, and the password is cut from what the servers say.
func (p *migration) migrateErr(ctx context.Context, db int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	j := p.j
	err = p.redact(err)
	msg, fromTarget := relayed(err)
	if !fromTarget {
		op := fmt.Sprintf("migrate db %d to %s", db, p.addr)
		if strings.HasPrefix(err.Error(), "IOERR") {
			err = fmt.Errorf("the source could not reach the target at %s, or it did not answer within MIGRATE's timeout of %v: %w; "+
				"set MigrateKeys.TargetAddr to the target's address as the source sees it (the source connects to it, not this program), "+
				"or raise MigrateKeys.Timeout if the target is slow", p.addr, p.timeout, err)
		}
		return j.Source.Err(op, "", err)
	}
	op := fmt.Sprintf("migrate into db %d", db)
	if p.addr != j.Target.Addr {
		op += " (the source reaches it at " + p.addr + ")"
	}
	switch {
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "without any password configured"):
		err = fmt.Errorf("the target refused the login MIGRATE sent from the source; check the target's Password "+
			"(and Username for an ACL user), which MIGRATE passes on: %w", err)
	case strings.HasPrefix(msg, "NOPERM"):
		err = fmt.Errorf("the target's user may not run what MIGRATE sends (RESTORE, SELECT); grant them on the target: %w", err)
	case strings.Contains(msg, "payload version or checksum are wrong"), strings.Contains(msg, "Bad data format"):
		err = fmt.Errorf("%w: the target runs %s and the source %s; upgrade the target: %v",
			ErrIncompatible, describeVersion(j.Target.Info), describeVersion(j.Source.Info), err)
	case strings.HasPrefix(msg, "OOM"):
		err = fmt.Errorf("the target is out of memory (maxmemory %d bytes): %w", j.Target.Info.MaxMemory, err)
	}
	return j.Target.Err(op, "", err)
}

// unique returns keys without repeats, in order.
func unique(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

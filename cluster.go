package migrate

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// clusterNode is one node of a Redis Cluster, as CLUSTER NODES describes it.
type clusterNode struct {
	id string
	// addr is where clients reach the node: the endpoint the cluster announces for it (see
	// endpointType), "" when it announces none.
	addr string
	// ip, port and hostname are as CLUSTER NODES gives them (ip:port@cport,hostname).
	ip, port, hostname string
	master             bool
	masterID           string // the master's id, for a replica
	flagged            bool   // flagged fail, fail?, noaddr or handshake
	failed             bool   // flagged, or without an address
	myself             bool   // the node that answered
}

// endpointType is how a cluster names its nodes to clients, as CLUSTER SLOTS and CLUSTER
// SHARDS give them and as rueidis connects to them (cluster-preferred-endpoint-type, Redis
// 7): by IP, by the hostname each node announces (cluster-announce-hostname; managed
// services do so), or by no name at all, clients reaching every node at the host they reached
// the cluster at. CLUSTER NODES always gives the IP, and the hostname after it.
type endpointType uint8

const (
	endpointIP endpointType = iota
	endpointHostname
	endpointUnknown
)

func (p endpointType) String() string {
	switch p {
	case endpointHostname:
		return "hostname"
	case endpointUnknown:
		return "unknown-endpoint"
	}
	return "ip"
}

// topology is who serves which slot, as read from CLUSTER NODES.
type topology struct {
	nodes map[string]*clusterNode // by id
	owner [slotCount]string       // the id of the master that serves each slot, "" for none
	// migrating maps a slot that its owner is moving (CLUSTER SETSLOT MIGRATING) to the id of
	// the node importing it; only an owner's own line says so.
	migrating map[uint16]string
	// endpoints is how the cluster names its nodes; the addresses follow it.
	endpoints endpointType
}

// parseClusterNodes reads the reply of CLUSTER NODES, and gives each node the address a
// client reaches it at when the cluster names its nodes by endpoints. self is the address of
// the node that answered, for nodes whose endpoint is empty (a node that does not know its
// own IP, or a cluster that names no endpoint).
func parseClusterNodes(text, self string, endpoints endpointType) (*topology, error) {
	t := &topology{nodes: map[string]*clusterNode{}, migrating: map[uint16]string{}}
	text = strings.TrimPrefix(text, "txt:") // RESP3 verbatim string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := &clusterNode{id: f[0], masterID: f[3]}
		n.ip, n.port, n.hostname = splitNodeAddr(f[1])
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				n.master = true
			case "myself":
				n.myself = true
			case "fail", "fail?", "noaddr", "handshake":
				n.flagged = true
			}
		}
		t.nodes[n.id] = n
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				// [slot->-importing-id] on the owner, [slot-<-migrating-id] on the importer.
				slot, to, ok := strings.Cut(strings.Trim(s, "[]"), "->-")
				if v, err := strconv.Atoi(slot); ok && err == nil && v >= 0 && v < slotCount {
					t.migrating[uint16(v)] = to
				}
				continue
			}
			lo, hi, ok := strings.Cut(s, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 0 || b >= slotCount || a > b {
				return nil, fmt.Errorf("CLUSTER NODES: bad slot range %q", s)
			}
			for i := a; i <= b; i++ {
				t.owner[i] = n.id
			}
		}
	}
	if len(t.nodes) == 0 {
		return nil, fmt.Errorf("CLUSTER NODES replied no node")
	}
	t.locate(endpoints, self)
	return t, nil
}

// splitNodeAddr splits the address field of a CLUSTER NODES line: "ip:port@cport", then
// ",hostname" from Redis 7 (empty when none is announced), then ",key=value" fields from
// Redis 7.2. An IPv6 address comes without brackets.
func splitNodeAddr(field string) (ip, port, hostname string) {
	parts := strings.Split(field, ",")
	addr, _, _ := strings.Cut(parts[0], "@")
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		ip, port = strings.Trim(addr[:i], "[]"), addr[i+1:]
	} else {
		ip = addr
	}
	for i, p := range parts[1:] {
		if h, ok := strings.CutPrefix(p, "hostname="); ok {
			hostname = h
		} else if i == 0 && !strings.Contains(p, "=") {
			hostname = p
		}
	}
	return ip, port, hostname
}

// locate sets the address of every node as a cluster that names its nodes by endpoints
// gives it to clients, and as rueidis connects to it: the IP or the hostname, or the host of
// self when that is empty. A node without a port ("noaddr"), or without the hostname the
// cluster would name it by (CLUSTER SLOTS then says "?"), has none: clients cannot reach it.
func (t *topology) locate(endpoints endpointType, self string) {
	t.endpoints = endpoints
	shost, _, _ := net.SplitHostPort(self)
	for _, n := range t.nodes {
		host := n.ip
		switch endpoints {
		case endpointHostname:
			host = n.hostname
		case endpointUnknown:
			host = ""
		}
		switch {
		case n.port == "" || n.port == "0" || endpoints == endpointHostname && host == "":
			n.addr = ""
		case host == "":
			n.addr = net.JoinHostPort(shost, n.port)
		default:
			n.addr = net.JoinHostPort(host, n.port)
		}
		n.failed = n.flagged || n.addr == ""
	}
}

// slotEndpoint is one node of a reply of CLUSTER SLOTS: the endpoint the cluster names it
// by (null for none), and its id.
type slotEndpoint struct {
	endpoint string
	null     bool
	id       string
}

// slotEndpoints reads the nodes of a reply of CLUSTER SLOTS: an array of slot ranges, each
// [first, last, node...], each node [endpoint, port, id, metadata]; servers before Redis 7
// give no metadata, and no endpoint but the IP.
func slotEndpoints(reply rueidis.RedisMessage) []slotEndpoint {
	var eps []slotEndpoint
	ranges, _ := reply.ToArray()
	for _, r := range ranges {
		v, _ := r.ToArray()
		for i := 2; i < len(v); i++ {
			nv, _ := v[i].ToArray()
			if len(nv) < 3 {
				continue
			}
			var ep slotEndpoint
			ep.id, _ = nv[2].ToString()
			if ep.null = nv[0].IsNil(); !ep.null {
				var err error
				if ep.endpoint, err = nv[0].ToString(); err != nil {
					continue
				}
			}
			eps = append(eps, ep)
		}
	}
	return eps
}

// endpointTypeOf says how a cluster names its nodes to clients, comparing the endpoint that
// CLUSTER SLOTS gives each node (eps) with the IP and the hostname that CLUSTER NODES gave the
// same node (t).
func endpointTypeOf(eps []slotEndpoint, t *topology) endpointType {
	for _, ep := range eps {
		n := t.nodes[ep.id]
		switch {
		case ep.null:
			return endpointUnknown
		case ep.endpoint == "?":
			return endpointHostname // preferred, but this node announces none
		case n == nil:
			continue
		case ep.endpoint == "" && n.ip != "":
			return endpointUnknown
		case ep.endpoint == n.hostname && ep.endpoint != n.ip:
			return endpointHostname
		case ep.endpoint == n.ip:
			return endpointIP
		}
	}
	return endpointIP
}

// masters returns the masters that serve at least one slot, with their slots, in slot order.
func (t *topology) masters() (ids []string, slots map[string][]uint16) {
	slots = map[string][]uint16{}
	for s, id := range t.owner {
		if id == "" {
			continue
		}
		if _, ok := slots[id]; !ok {
			ids = append(ids, id)
		}
		slots[id] = append(slots[id], uint16(s))
	}
	return ids, slots
}

// replicasOf returns the replicas of master id that the cluster does not flag as failing,
// by id. Whether one has synced is for the caller to ask it (see outOfSync).
func (t *topology) replicasOf(id string) []*clusterNode {
	var rs []*clusterNode
	for _, n := range t.nodes {
		if !n.master && n.masterID == id && !n.failed {
			rs = append(rs, n)
		}
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].id < rs[b].id })
	return rs
}

// unnamed says which masters of slots the cluster gives no endpoint to clients, for a
// message: it names its nodes by hostname, and they announce none. "" when there are none.
func (t *topology) unnamed(slots []uint16) string {
	seen := map[string]bool{}
	var out []string
	for _, s := range slots {
		n := t.nodes[t.owner[s]]
		if n == nil || seen[n.id] || n.flagged || n.addr != "" || t.endpoints != endpointHostname || n.port == "0" {
			continue
		}
		seen[n.id] = true
		out = append(out, fmt.Sprintf("master %s (%s) announces no hostname, which its cluster names nodes by "+
			"(cluster-preferred-endpoint-type hostname): set cluster-announce-hostname on it", n.id, net.JoinHostPort(n.ip, n.port)))
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

// ownerAddr returns the address of the master that serves slot, "" when none does.
func (t *topology) ownerAddr(slot uint16) string {
	if n := t.nodes[t.owner[slot]]; n != nil {
		return n.addr
	}
	return ""
}

// topology reads who serves which slot, asking every master for its own migrating slots.
// Each node's address is the endpoint the cluster announces for it to clients, as rueidis
// uses it: CLUSTER SLOTS, read beside CLUSTER NODES in the same round trip, tells whether
// that is the IP or the hostname (see endpointType). It fails on an endpoint that is not a
// cluster.
func (e *Endpoint) topology(ctx context.Context) (*topology, error) {
	c, err := e.Client(0)
	if err != nil {
		return nil, err
	}
	text, slots, err := readClusterNodes(ctx, c)
	self := e.Addr
	if err != nil && ctx.Err() == nil {
		// The node the client asked may be the one that failed: ask the others.
		for _, addr := range e.knownNodes() {
			nc, nerr := e.node(addr)
			if nerr != nil {
				continue
			}
			if text, slots, err = readClusterNodes(ctx, nc); err == nil {
				self = addr
				break
			}
		}
	}
	if err != nil {
		return nil, e.Err("cluster nodes", "", ctxErr(ctx, err))
	}
	t, err := parseClusterNodes(text, self, endpointIP)
	if err != nil {
		return nil, e.Err("cluster nodes", "", err)
	}
	if slots != nil {
		if p := endpointTypeOf(slotEndpoints(*slots), t); p != endpointIP {
			t.locate(p, self)
		}
	}
	e.mu.Lock()
	e.known = e.known[:0]
	for _, n := range t.nodes {
		if n.addr != "" {
			e.known = append(e.known, n.addr)
		}
	}
	e.mu.Unlock()
	// Only an owner's own line says which of its slots it is moving.
	t.migrating = map[uint16]string{}
	ids, _ := t.masters()
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			continue
		}
		nc, err := e.node(n.addr)
		if err != nil {
			continue // failing: the next reading will tell
		}
		text, err := nc.Do(ctx, nc.B().ClusterNodes().Build()).ToString()
		if err != nil {
			if ctx.Err() != nil {
				return nil, e.Err("cluster nodes", "", ctx.Err())
			}
			continue // failing: the next reading will tell
		}
		own, err := parseClusterNodes(text, n.addr, t.endpoints)
		if err != nil {
			return nil, e.Err("cluster nodes on "+n.addr, "", err)
		}
		for s, to := range own.migrating {
			if own.owner[s] != "" && own.nodes[own.owner[s]].myself {
				t.migrating[s] = to
			}
		}
	}
	return t, nil
}

// readClusterNodes reads CLUSTER NODES, and CLUSTER SLOTS from the same node in the same
// round trip; slots is nil when the node refuses CLUSTER SLOTS (the IP is then assumed).
func readClusterNodes(ctx context.Context, c rueidis.Client) (text string, slots *rueidis.RedisMessage, err error) {
	res := c.DoMulti(ctx, c.B().ClusterNodes().Build(), c.B().ClusterSlots().Build())
	if text, err = res[0].ToString(); err != nil {
		return "", nil, err
	}
	if m, err := res[1].ToMessage(); err == nil {
		slots = &m
	}
	return text, slots, nil
}

// knownNodes returns the addresses of the nodes the last topology named, and those of the
// option.
func (e *Endpoint) knownNodes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append(append([]string(nil), e.known...), e.Option.InitAddress...)
}

// node returns a client of the one node at addr of a cluster endpoint, connecting on first
// use; it never follows redirections.
func (e *Endpoint) node(addr string) (rueidis.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.nodes[addr]; ok {
		return c, nil
	}
	if e.clients == nil {
		return nil, e.Err("connect to node "+addr, "", fmt.Errorf("endpoint is closed"))
	}
	opt := e.Option
	opt.InitAddress = []string{addr}
	opt.SelectDB = 0
	opt.ForceSingleClient = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, e.Err("connect to node "+addr, "", explainConnect(err))
	}
	if e.nodes == nil {
		e.nodes = map[string]rueidis.Client{}
	}
	e.nodes[addr] = c
	return c, nil
}

// dropNode closes the client of a node that failed, so the next use reconnects.
func (e *Endpoint) dropNode(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.nodes[addr]; ok {
		c.Close()
		delete(e.nodes, addr)
	}
}

// Cluster reports whether this side is a Redis Cluster (INFO's redis_mode:cluster), as read
// when the migration started.
func (e *Endpoint) Cluster() bool { return e.Info != nil && e.Info.Mode == "cluster" }

// A cluster that is changing (a master failing over, a slot moving) is waited for by one
// policy, clusterRetry, wherever a step meets it: reading the source, writing the target,
// MIGRATE, and the walk of a cluster's slots.
const (
	// clusterSettleWait bounds how long a step waits for a cluster that is changing to serve
	// a slot again before it gives up with an error. A failover takes cluster-node-timeout
	// (15 s by default) before the masters agree that a master failed, then an election among
	// its replicas of a second or so, tried again after twice the node timeout when it gets no
	// majority in time. A minute covers a failover with the default timeout and a slow
	// election; a master that failed with no replica to take over never settles.
	clusterSettleWait = time.Minute
	// clusterRetryDelay is the first pause before a step tries again; each pause doubles, up
	// to clusterRetryMaxDelay, so that a long failover costs the cluster few tries and a short
	// one (a slot moved) little time.
	clusterRetryDelay    = 100 * time.Millisecond
	clusterRetryMaxDelay = time.Second
)

// clusterRetry is how a step tries again while a cluster changes: it pauses, longer each
// time, for at most clusterSettleWait since the first failed try, or since reset for a step
// that made progress meanwhile. The zero value is ready; one clusterRetry serves one step.
// reconnectRetry (retry.go) is the same policy with another bound, for a server that restarts.
type clusterRetry struct {
	limit time.Duration // how long it waits in all; zero for clusterSettleWait
	first time.Time     // the first failed try since the start or reset
	pause time.Duration // the next pause
	tries int           // failed tries since first
}

// wait notes a failed try and pauses before the next one. It returns ctx's error when ctx
// ends first, and a *clusterWaitError, without pausing, once clusterSettleWait has passed
// since the first failed try: the step then gives up (see clusterWaitError.explain).
func (r *clusterRetry) wait(ctx context.Context) error {
	now := time.Now()
	if r.first.IsZero() {
		r.first, r.pause = now, clusterRetryDelay
	}
	r.tries++
	limit := r.limit
	if limit == 0 {
		limit = clusterSettleWait
	}
	if waited := now.Sub(r.first); waited >= limit {
		return &clusterWaitError{waited: waited, tries: r.tries}
	}
	if err := sleepCtx(ctx, r.pause); err != nil {
		return err
	}
	r.pause = min(2*r.pause, clusterRetryMaxDelay)
	return nil
}

// reset starts the policy again: the step made progress.
func (r *clusterRetry) reset() { *r = clusterRetry{limit: r.limit} }

// clusterWaitError is a step that waited for a cluster to settle, in vain: for how long,
// and how many tries failed.
type clusterWaitError struct {
	waited time.Duration
	tries  int
}

func (w *clusterWaitError) Error() string {
	text := "waited " + w.waited.Round(time.Second).String()
	if w.tries > 1 {
		text += fmt.Sprintf(" (%d tries)", w.tries)
	}
	return text
}

// explain returns the error of a step that gave up waiting for side's cluster to serve what
// (a slot and its node, slots) again: how long it waited, the last try's error err, and what
// to check. An *Error keeps its side, address, operation and key, the explanation inside.
func (w *clusterWaitError) explain(side Side, what string, err error) error {
	wrap := func(err error) error {
		return fmt.Errorf("%v for the %s cluster to serve %s again, in vain: %w; check the cluster (CLUSTER NODES): "+
			"a master that failed with no replica to take over, or a slot left open by an interrupted reshard "+
			"(redis-cli --cluster fix)", w, side, what, err)
	}
	if e, ok := err.(*Error); ok {
		c := *e
		c.Err = wrap(e.Err)
		return &c
	}
	return wrap(err)
}

// describeSlot names slot and the node that serves it, for a message: "slot 42 (node
// 10.0.0.1:7000)". It reads the topology, within a few seconds: call it only on the way to
// an error.
func (e *Endpoint) describeSlot(ctx context.Context, slot uint16) string {
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if t, err := e.topology(tctx); err == nil {
		if addr := t.ownerAddr(slot); addr != "" {
			return fmt.Sprintf("slot %d (node %s)", slot, addr)
		}
		return fmt.Sprintf("slot %d (which no node serves)", slot)
	}
	return fmt.Sprintf("slot %d", slot)
}

// openSlots returns the slots that a master of cluster e is moving away (MIGRATING) or
// importing (IMPORTING), each with the address of the node that says so: a reshard under
// way, or one interrupted. Only a node's own line of CLUSTER NODES shows them, so every
// master is asked, those without slots too (a new master imports).
func openSlots(ctx context.Context, e *Endpoint) (map[uint16]string, error) {
	t, err := e.topology(ctx)
	if err != nil {
		return nil, err
	}
	open := map[uint16]string{}
	for _, n := range t.nodes {
		if !n.master || n.failed {
			continue
		}
		c, err := e.node(n.addr)
		if err != nil {
			return nil, err
		}
		text, err := c.Do(ctx, c.B().ClusterNodes().Build()).ToString()
		if err != nil {
			return nil, e.Err("cluster nodes on "+n.addr, "", ctxErr(ctx, err))
		}
		for _, line := range strings.Split(strings.TrimPrefix(text, "txt:"), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 || !strings.Contains(","+f[2]+",", ",myself,") {
				continue
			}
			for _, s := range f[8:] {
				// [slot->-importing-id] on the owner, [slot-<-migrating-id] on the importer.
				s = strings.Trim(s, "[]")
				slot, _, ok := strings.Cut(s, "->-")
				if !ok {
					slot, _, ok = strings.Cut(s, "-<-")
				}
				if v, err := strconv.Atoi(slot); ok && err == nil && v >= 0 && v < slotCount {
					open[uint16(v)] = n.addr
				}
			}
		}
	}
	return open, nil
}

// describeOpenSlots names the first few open slots, in order, and the nodes that say so.
func describeOpenSlots(open map[uint16]string) string {
	return describeSlots(slices.Sorted(maps.Keys(open)), func(s uint16) string { return fmt.Sprintf("slot %d on %s", s, open[s]) })
}

// describeSlots names the first few of slots, in their order, for a message: each as name
// gives it.
func describeSlots(slots []uint16, name func(uint16) string) string {
	var parts []string
	for i, s := range slots {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(slots)-i))
			break
		}
		parts = append(parts, name(s))
	}
	return strings.Join(parts, ", ")
}

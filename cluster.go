package migrate

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// clusterNode is one node of a Redis Cluster, as CLUSTER NODES describes it.
type clusterNode struct {
	id, addr string
	master   bool
	masterID string // the master's id, for a replica
	failed   bool   // flagged fail or fail?, or without an address
	myself   bool   // the node that answered
}

// topology is who serves which slot, as read from CLUSTER NODES.
type topology struct {
	nodes map[string]*clusterNode // by id
	owner [slotCount]string       // the id of the master that serves each slot, "" for none
	// migrating maps a slot that its owner is moving (CLUSTER SETSLOT MIGRATING) to the id of
	// the node importing it; only an owner's own line says so.
	migrating map[uint16]string
}

// parseClusterNodes reads the reply of CLUSTER NODES. self is the address of the node that
// answered, for a line whose address is empty.
func parseClusterNodes(text, self string) (*topology, error) {
	t := &topology{nodes: map[string]*clusterNode{}, migrating: map[uint16]string{}}
	text = strings.TrimPrefix(text, "txt:") // RESP3 verbatim string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := &clusterNode{id: f[0], masterID: f[3]}
		// ip:port@cport[,hostname]
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || port == "0") {
			if port == "0" {
				addr = ""
			} else {
				shost, _, _ := net.SplitHostPort(self)
				addr = net.JoinHostPort(shost, port)
			}
		}
		n.addr = addr
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				n.master = true
			case "myself":
				n.myself = true
			case "fail", "fail?", "noaddr", "handshake":
				n.failed = true
			}
		}
		if n.addr == "" {
			n.failed = true
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
	return t, nil
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

// replicaOf returns a healthy replica of master id, or nil.
func (t *topology) replicaOf(id string) *clusterNode {
	for _, n := range t.nodes {
		if !n.master && n.masterID == id && !n.failed {
			return n
		}
	}
	return nil
}

// ownerAddr returns the address of the master that serves slot, "" when none does.
func (t *topology) ownerAddr(slot uint16) string {
	if n := t.nodes[t.owner[slot]]; n != nil {
		return n.addr
	}
	return ""
}

// topology reads who serves which slot, asking every master for its own migrating slots.
// It fails on an endpoint that is not a cluster.
func (e *Endpoint) topology(ctx context.Context) (*topology, error) {
	c, err := e.Client(0)
	if err != nil {
		return nil, err
	}
	text, err := c.Do(ctx, c.B().ClusterNodes().Build()).ToString()
	self := e.Addr
	if err != nil && ctx.Err() == nil {
		// The node the client asked may be the one that failed: ask the others.
		for _, addr := range e.knownNodes() {
			nc, nerr := e.node(addr)
			if nerr != nil {
				continue
			}
			if text, err = nc.Do(ctx, nc.B().ClusterNodes().Build()).ToString(); err == nil {
				self = addr
				break
			}
		}
	}
	if err != nil {
		return nil, e.Err("cluster nodes", "", ctxErr(ctx, err))
	}
	t, err := parseClusterNodes(text, self)
	if err != nil {
		return nil, e.Err("cluster nodes", "", err)
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
		own, err := parseClusterNodes(text, n.addr)
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

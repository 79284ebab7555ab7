package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"

	"github.com/redis/rueidis"
)

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
	// settle marks keys whose MIGRATE failed: the target may hold some of them, so what it
	// holds is found (settle) before the others are sent again.
	settle bool
}

// addr returns the target node of g on a cluster target, "" on a standalone one.
func (g migrateGroup) addr() string {
	if g.host == "" {
		return ""
	}
	return net.JoinHostPort(g.host, g.port)
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

// errRedirected marks an error of a cluster that moved: MOVED, ASK, TRYAGAIN, CLUSTERDOWN, or
// a source node that does not answer.
var errRedirected = errors.New("the cluster moved")

// redirected learns from a redirection where a slot is: a MOVED names its new owner (on
// the source, or on the target when MIGRATE relays it), an ASK relayed from the target the
// node importing it, for this batch only and from a cluster source only (see below). An
// ASK on the source passes once the slot has moved, and a node that does not answer may be
// one that failed: the slot maps tell then.
func (p *migration) redirected(err error, asks map[uint16]string) {
	var r *retryError
	if !errors.As(err, &r) {
		r = &retryError{}
	}
	slot, addr, ask, ok := redirection(r.reply)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !ok:
		// A node failed: trust the slot maps again.
		p.srcMoved, p.dstMoved = nil, nil
	case !ask:
		m := &p.srcMoved
		if r.fromTarget {
			m = &p.dstMoved
		}
		if *m == nil {
			*m = map[uint16]string{}
		}
		(*m)[slot] = addr
	case r.fromTarget && p.j.Source.Cluster():
		// Only a cluster node's MIGRATE sends RESTORE-ASKING, which the importing node
		// accepts; it answers a standalone source's RESTORE with MOVED back to the owner.
		// That source waits for the move to end, sending to the owner.
		asks[slot] = addr
	}
}

package migrate

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// slotWalk walks the keys of a cluster slot by slot; see ScanKeys.
type slotWalk struct {
	j     *Job
	e     *Endpoint
	match string
	count bool
	fn    func([]string) error
	fnMu  sync.Mutex    // fn is never called twice at once
	cp    *checkpointer // WithCheckpoint's, when the walk is ScanKeys': slots done are skipped and recorded
	c     rueidis.Client
	limit int
	chunk int // slots per GETKEYSINSLOT round trip

	mu      sync.Mutex
	avoid   map[string]bool   // replicas found out of sync during the walk, by id: read no more
	dropped bool              // a replica joined avoid since takeDropped last looked
	skipped map[string]string // why each replica was last passed over, by id, to log a change once
}

func (j *Job) scanCluster(ctx context.Context, e *Endpoint, match string, count bool, fn func([]string) error) error {
	c, err := e.Client(0)
	if err != nil {
		return err
	}
	w := &slotWalk{j: j, e: e, match: match, count: count, fn: fn, c: c, limit: j.BatchLimit()}
	if count {
		w.cp = j.checkpoint
	}
	// About ScanCount keys per round trip.
	perSlot := max(1, int(e.Info.Keyspace[0]/slotCount))
	w.chunk = min(512, max(1, j.ScanCount/perSlot))

	todo := make(map[uint16]bool, slotCount)
	first := true
	var wait clusterRetry // for slots without a reachable node, since the walk last progressed
	for {
		t, err := e.topology(ctx)
		if err != nil {
			return err
		}
		if first {
			for s, id := range t.owner {
				if id != "" && !w.cp.slotDone(uint16(s)) {
					todo[uint16(s)] = true
				}
			}
			first = false
		}
		if len(todo) == 0 {
			return nil
		}
		// Group the slots left by their master; the walk reads them there or on one of its
		// replicas in sync.
		groups := map[string][]uint16{}
		var orphans []uint16
		for s := range todo {
			n := t.nodes[t.owner[s]]
			if n == nil || n.failed && (!j.ReadFromReplicas || len(t.replicasOf(n.id)) == 0) {
				orphans = append(orphans, s)
				continue
			}
			groups[n.id] = append(groups[n.id], s)
		}
		var mu sync.Mutex
		progressed := false
		g, gctx := errgroup.WithContext(ctx)
		for id, slots := range groups {
			sort.Slice(slots, func(a, b int) bool { return slots[a] < slots[b] })
			g.Go(func() error {
				n := t.nodes[id]
				if j.ReadFromReplicas {
					n = w.readFrom(gctx, t, n)
				}
				if n.failed {
					return nil // no replica in sync either: the slots wait for a failover
				}
				done, err := w.walkNode(gctx, t, n, slots)
				mu.Lock()
				for _, s := range done {
					delete(todo, s)
					progressed = true
				}
				mu.Unlock()
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
		if w.takeDropped() {
			continue // a replica fell out of sync: read its master's slots left at once
		}
		if progressed {
			wait.reset()
		}
		j.Logger.Info("walk: slots to read again once the cluster says who serves them", "side", e.Side, "slots", len(todo))
		if err := wait.wait(ctx); err != nil {
			if w, ok := err.(*clusterWaitError); ok {
				err = w.explain(e.Side, fmt.Sprintf("%d slot(s) (%s), with no reachable node", len(todo), describeSlots(slices.Sorted(maps.Keys(todo)), func(s uint16) string { return strconv.Itoa(int(s)) })),
					fmt.Errorf("%d of them without a master that serves them%s", len(orphans), t.unnamed(orphans)))
			}
			return e.Err("walk cluster", "", err)
		}
	}
}

// readFrom returns the node to read master m's slots from: the first of its replicas that is
// in sync (see outOfSync) and was not found out of sync earlier in this walk, else m
// itself. It logs each replica it passes over, and why, once per reason.
func (w *slotWalk) readFrom(ctx context.Context, t *topology, m *clusterNode) *clusterNode {
	for _, r := range t.replicasOf(m.id) {
		w.mu.Lock()
		out := w.avoid[r.id]
		w.mu.Unlock()
		if out {
			continue
		}
		why := ""
		if c, err := w.e.node(r.addr); err != nil {
			why = err.Error()
		} else {
			// INFO replication says whether the link is up; INFO persistence whether the
			// replica is loading. Older servers take one section per INFO.
			res := c.DoMulti(ctx, c.B().Info().Section("replication").Build(), c.B().Info().Section("persistence").Build())
			repl, err := res[0].ToString()
			pers, _ := res[1].ToString()
			if err != nil {
				why = "INFO replication: " + ctxErr(ctx, err).Error()
			} else {
				why = outOfSync(repl + "\n" + pers)
			}
		}
		if why == "" {
			return r
		}
		w.passOver(r, m, why)
	}
	return m
}

// dropReplica marks replica r, found out of sync during the walk, to be read no more: its
// master's slots left are read on the master.
func (w *slotWalk) dropReplica(t *topology, r *clusterNode, why string) {
	w.mu.Lock()
	if w.avoid == nil {
		w.avoid = map[string]bool{}
	}
	w.avoid[r.id] = true
	w.dropped = true
	w.mu.Unlock()
	maddr := ""
	if m := t.nodes[r.masterID]; m != nil {
		maddr = m.addr
	}
	w.j.Logger.Warn("walk: a replica fell out of sync during the walk; its master's slots left are read on the master",
		"side", w.e.Side, "replica", r.addr, "master", maddr, "reason", why)
}

// takeDropped reports whether a replica fell out of sync since the last call.
func (w *slotWalk) takeDropped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dropped
	w.dropped = false
	return d
}

// passOver logs, once per reason, that the walk reads master m rather than its replica r.
func (w *slotWalk) passOver(r, m *clusterNode, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.skipped == nil {
		w.skipped = map[string]string{}
	}
	if w.skipped[r.id] == why {
		return
	}
	w.skipped[r.id] = why
	w.j.Logger.Info("walk: reading a master rather than its replica, which is not in sync",
		"side", w.e.Side, "replica", r.addr, "master", m.addr, "reason", why)
}

// outOfSync reads INFO (the replication section, and persistence's loading field where
// given) of a replica, and says why the replica's data cannot stand for its master's: its
// link to the master is down, a sync is in progress (a replica that has never synced holds
// nothing), it is loading, or it is no replica. "" means in sync, up to the lag of
// asynchronous replication.
func outOfSync(info string) string {
	f := parseInfo(info).Fields
	switch {
	case f["role"] != "" && f["role"] != "slave":
		return "it is a " + f["role"] + " now"
	case f["master_sync_in_progress"] == "1":
		return "a sync from its master is in progress (master_sync_in_progress:1)"
	case f["loading"] == "1":
		return "it is loading its data (loading:1)"
	case f["master_link_status"] != "up":
		return "its link to its master is not up (master_link_status:" + f["master_link_status"] + ")"
	}
	return ""
}

// walkNode reads slots on node n, in chunks, and returns those it read whole. A node that
// fails is not an error: its slots are left for the next round.
func (w *slotWalk) walkNode(ctx context.Context, t *topology, n *clusterNode, slots []uint16) (done []uint16, err error) {
	nc, err := w.e.node(n.addr)
	if err != nil {
		w.j.Logger.Warn("walk: cannot reach a node; its slots wait for the cluster", "side", w.e.Side, "node", n.addr, "error", err)
		return nil, nil
	}
	// The master whose slots these are: n, or the master of the replica n.
	master := n.id
	// A replica answers, in the same transaction as the keys, whether it is still in sync:
	// a replica that loses its link or starts a full sync during the walk is read no more.
	replica := !n.master
	extra := 1 // CLUSTER NODES
	if replica {
		master = n.masterID
		extra = 2 // and INFO replication
	}
	for start := 0; start < len(slots); start += w.chunk {
		chunk := slots[start:min(start+w.chunk, len(slots))]
		cmds := make(rueidis.Commands, 0, len(chunk)+extra+2)
		cmds = append(cmds, nc.B().Multi().Build())
		for _, s := range chunk {
			cmds = append(cmds, nc.B().ClusterGetkeysinslot().Slot(int64(s)).Count(1<<31-1).Build())
		}
		cmds = append(cmds, nc.B().ClusterNodes().Build())
		if replica {
			cmds = append(cmds, nc.B().Info().Section("replication").Build())
		}
		cmds = append(cmds, nc.B().Exec().Build())
		res := nc.DoMulti(ctx, cmds...)
		arr, err := res[len(res)-1].ToArray()
		if err == nil && len(arr) != len(chunk)+extra {
			err = fmt.Errorf("EXEC replied %d results, want %d", len(arr), len(chunk)+extra)
		}
		if err == nil && replica {
			info, ierr := arr[len(chunk)+1].ToString()
			if why := outOfSync(info); ierr != nil || why != "" {
				w.dropReplica(t, n, cmp.Or(why, fmt.Sprint(ierr)))
				return done, nil
			}
		}
		var view *topology
		if err == nil {
			var text string
			if text, err = arr[len(chunk)].ToString(); err == nil {
				view, err = parseClusterNodes(text, n.addr, t.endpoints)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return done, w.e.Err("walk cluster", "", ctx.Err())
			}
			if _, ok := rueidis.IsRedisErr(err); ok && replica {
				// MASTERDOWN (replica-serve-stale-data no), LOADING, ...: read the master.
				w.dropReplica(t, n, err.Error())
				return done, nil
			}
			if kind := classifyReply(err); kind != replyLost && kind != replyMoving {
				return done, w.e.Err("cluster getkeysinslot on "+n.addr, "", err)
			}
			w.j.Logger.Warn("walk: a node failed; its slots wait for the cluster", "side", w.e.Side, "node", n.addr, "error", err)
			w.e.dropNode(n.addr)
			return done, nil
		}
		var keys []string
		before := len(done) // the slots of this chunk read whole come after
		for i, s := range chunk {
			if view.owner[s] != master {
				continue // moved meanwhile: read it from its new owner
			}
			got, err := arr[i].AsStrSlice()
			if err != nil {
				return done, w.e.Err("cluster getkeysinslot on "+n.addr, "", err)
			}
			to := view.migrating[s] // said by n itself, in the same instant, when n is the master
			if to == "" {
				to = t.migrating[s]
			}
			if to != "" {
				// Being moved: the keys already moved are on the importing node.
				more, err := w.importing(ctx, t, view, to, s)
				if err != nil {
					return done, err
				}
				got = union(got, more)
			}
			keys = append(keys, got...)
			done = append(done, s)
		}
		var g *slotGroup
		if w.cp != nil {
			g = &slotGroup{slots: slices.Clone(done[before:])}
		}
		if err := w.emit(ctx, keys, g); err != nil {
			return done, err
		}
		if g != nil {
			w.cp.slotsGiven(g)
		}
	}
	return done, nil
}

// importing reads the keys of slot on the node importing it.
func (w *slotWalk) importing(ctx context.Context, t, view *topology, id string, slot uint16) ([]string, error) {
	n := view.nodes[id]
	if n == nil {
		n = t.nodes[id]
	}
	if n == nil || n.addr == "" {
		return nil, nil
	}
	c, err := w.e.node(n.addr)
	if err != nil {
		return nil, err
	}
	keys, err := c.Do(ctx, c.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(1<<31-1).Build()).AsStrSlice()
	if err != nil {
		return nil, w.e.Err("cluster getkeysinslot "+strconv.Itoa(int(slot))+" on "+n.addr, "", ctxErr(ctx, err))
	}
	return keys, nil
}

// emit filters keys and hands them to fn in batches, each recorded in g (checkpoint) when g
// is not nil.
func (w *slotWalk) emit(ctx context.Context, keys []string, g *slotGroup) error {
	j := w.j
	if w.match != "" {
		kept := keys[:0]
		for _, k := range keys {
			if globMatch(w.match, k) {
				kept = append(kept, k)
			}
		}
		keys = kept
	}
	for start := 0; start < len(keys); start += w.limit {
		batch := append([]string(nil), keys[start:min(start+w.limit, len(keys))]...)
		if len(j.Types) > 0 {
			var err error
			if batch, err = keepTypes(ctx, w.e, w.c, 0, batch, j.Types); err != nil {
				return err
			}
		}
		if len(batch) == 0 {
			continue
		}
		if err := j.Wait(ctx, len(batch)); err != nil {
			return err
		}
		w.fnMu.Lock()
		if w.count {
			j.Count(0, Counts{Scanned: int64(len(batch))})
		}
		if g != nil {
			w.cp.slotBatch(g, batch)
		}
		err := w.fn(batch)
		w.fnMu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func union(a, b []string) []string {
	seen := make(map[string]bool, len(a))
	for _, k := range a {
		seen[k] = true
	}
	for _, k := range b {
		if !seen[k] {
			seen[k] = true
			a = append(a, k)
		}
	}
	return a
}

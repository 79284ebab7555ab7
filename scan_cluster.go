package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// clusterFailoverWait is how long a cluster walk waits for slots without a reachable owner
// to get one (a failover) before it gives up.
const clusterFailoverWait = 60 * time.Second

// slotWalk walks the keys of a cluster slot by slot; see ScanKeys.
type slotWalk struct {
	j     *Job
	e     *Endpoint
	match string
	count bool
	fn    func([]string) error
	fnMu  sync.Mutex // fn is never called twice at once
	c     rueidis.Client
	limit int
	chunk int // slots per GETKEYSINSLOT round trip
}

func (j *Job) scanCluster(ctx context.Context, e *Endpoint, match string, count bool, fn func([]string) error) error {
	c, err := e.Client(0)
	if err != nil {
		return err
	}
	w := &slotWalk{j: j, e: e, match: match, count: count, fn: fn, c: c, limit: j.batchLimit()}
	// About ScanCount keys per round trip.
	perSlot := max(1, int(e.Info.Keyspace[0]/slotCount))
	w.chunk = min(512, max(1, j.ScanCount/perSlot))

	todo := make(map[uint16]bool, slotCount)
	first := true
	var stuckSince time.Time
	for {
		t, err := e.topology(ctx)
		if err != nil {
			return err
		}
		if first {
			for s, id := range t.owner {
				if id != "" {
					todo[uint16(s)] = true
				}
			}
			first = false
		}
		if len(todo) == 0 {
			return nil
		}
		// Group the slots left by the node to read them from.
		groups := map[string][]uint16{}
		var orphans []uint16
		for s := range todo {
			n := t.nodes[t.owner[s]]
			if n != nil && j.replicas {
				if r := t.replicaOf(n.id); r != nil {
					n = r
				}
			}
			if n == nil || n.failed {
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
				done, err := w.walkNode(gctx, t, t.nodes[id], slots)
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
		if progressed || stuckSince.IsZero() {
			stuckSince = time.Now()
		}
		if time.Since(stuckSince) > clusterFailoverWait {
			return e.Err("walk cluster", "", fmt.Errorf(
				"%d slot(s) (%s) have had no reachable node for %v (orphans: %d); check the cluster (CLUSTER NODES) and run again",
				len(todo), slotSample(todo), clusterFailoverWait, len(orphans)))
		}
		j.Logger.Info("walk: slots to read again once the cluster says who serves them", "side", e.Side, "slots", len(todo))
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return e.Err("walk cluster", "", err)
		}
	}
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
	if !n.master {
		master = n.masterID
	}
	for start := 0; start < len(slots); start += w.chunk {
		chunk := slots[start:min(start+w.chunk, len(slots))]
		cmds := make(rueidis.Commands, 0, len(chunk)+3)
		cmds = append(cmds, nc.B().Multi().Build())
		for _, s := range chunk {
			cmds = append(cmds, nc.B().ClusterGetkeysinslot().Slot(int64(s)).Count(1<<31-1).Build())
		}
		cmds = append(cmds, nc.B().ClusterNodes().Build(), nc.B().Exec().Build())
		res := nc.DoMulti(ctx, cmds...)
		arr, err := res[len(res)-1].ToArray()
		if err == nil && len(arr) != len(chunk)+1 {
			err = fmt.Errorf("EXEC replied %d results, want %d", len(arr), len(chunk)+1)
		}
		var view *topology
		if err == nil {
			var text string
			if text, err = arr[len(chunk)].ToString(); err == nil {
				view, err = parseClusterNodes(text, n.addr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return done, w.e.Err("walk cluster", "", ctx.Err())
			}
			if _, ok := rueidis.IsRedisErr(err); ok && !isClusterDown(err) {
				return done, w.e.Err("cluster getkeysinslot on "+n.addr, "", err)
			}
			w.j.Logger.Warn("walk: a node failed; its slots wait for the cluster", "side", w.e.Side, "node", n.addr, "error", err)
			w.e.dropNode(n.addr)
			return done, nil
		}
		var keys []string
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
		if err := w.emit(ctx, keys); err != nil {
			return done, err
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

// emit filters keys and hands them to fn in batches.
func (w *slotWalk) emit(ctx context.Context, keys []string) error {
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

func isClusterDown(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && (len(re.Error()) >= 11 && re.Error()[:11] == "CLUSTERDOWN" || re.IsTryAgain())
}

// slotSample names a few slots of set, for messages.
func slotSample(set map[uint16]bool) string {
	var s []int
	for k := range set {
		s = append(s, int(k))
	}
	sort.Ints(s)
	out := ""
	for i, v := range s {
		if i == 5 {
			return out + ", ..."
		}
		if i > 0 {
			out += ", "
		}
		out += strconv.Itoa(v)
	}
	return out
}

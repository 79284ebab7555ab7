package migrate

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// checkCluster refuses what a cluster source cannot do: one file for many masters, and a
// snapshot while slots move.
func (s Snapshot) checkCluster(ctx context.Context, j *Job) error {
	switch {
	case s.BGSave:
		return j.Source.Err("check mode", "", unsupported(
			"the source is a cluster, and BGSave saves one node's dump; leave FromFile empty to read every master over replication"))
	case s.ToFile != "":
		return j.Source.Err("check mode", "", unsupported(
			"the source is a cluster, whose masters each have a snapshot, and ToFile writes one file; leave ToFile empty to restore them"))
	}
	t, err := j.Source.topology(ctx)
	if err != nil {
		return err
	}
	if len(t.migrating) > 0 {
		return j.Source.Err("check slots", "", unsupported(
			"%d slot(s) of the source cluster are being moved (CLUSTER SETSLOT MIGRATING), and each master's snapshot holds only part of them; "+
				"run once the resharding is done, or use DumpRestore{}, which follows it", len(t.migrating)))
	}
	return nil
}

// runCluster reads the snapshot of every master of a cluster source at once, over one
// replication connection each, and restores them all through one restorer.
//
// A master's snapshot may hold keys of slots it does not serve (left by an interrupted
// resharding, or imported while the snapshot was taken), so each keeps only the keys of the
// slots its master served when the migration started: every slot is taken from exactly one
// snapshot. That is complete only if no slot moved between that moment and the last
// master's snapshot: Check refuses a cluster whose slots are being moved, and once every
// master has started its snapshot the slots are read again and a change fails the
// migration, which can then be run again.
func (s Snapshot) runCluster(ctx context.Context, j *Job) error {
	t0, err := j.Source.topology(ctx)
	if err != nil {
		return err
	}
	ids, slots := t0.masters()
	r, err := newRestorer(ctx, j)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan restoreBatch, j.Concurrency)
	dbs := newSnapshotDBs(j)
	var readers, opened sync.WaitGroup
	opened.Add(len(ids))
	for _, id := range ids {
		n := t0.nodes[id]
		owned := new([slotCount]bool)
		for _, sl := range slots[id] {
			owned[sl] = true
		}
		readers.Add(1)
		g.Go(func() error {
			defer readers.Done()
			once := sync.OnceFunc(opened.Done)
			defer once()
			if n.failed {
				return j.Source.Err("connect for replication", "", fmt.Errorf(
					"master %s, which serves %d slot(s), is failing; run again once the cluster has promoted a replica", n.addr, len(slots[id])))
			}
			ne := j.Source.nodeEndpoint(n.addr)
			rs, err := openReplication(gctx, ne, j.Logger)
			once()
			if err != nil {
				return err
			}
			in := &snapshotInput{
				Reader: rs, complete: rs.complete, close: rs.Close,
				fail: func(op string, err error) error { return ne.Err(op+" of the replication snapshot", "", err) },
			}
			defer in.Close()
			defer context.AfterFunc(gctx, in.Close)()
			j.Logger.Info("snapshot: reading a cluster master", "node", n.addr, "slots", len(slots[id]))
			return s.read(gctx, j, in, batches, dbs, owned)
		})
	}
	// Every master has forked its snapshot once its stream is open: the slots must not have
	// moved since t0.
	g.Go(func() error {
		opened.Wait()
		if gctx.Err() != nil {
			return nil
		}
		t1, err := j.Source.topology(gctx)
		if err != nil {
			return err
		}
		for sl := range t0.owner {
			if t0.ownerAddr(uint16(sl)) != t1.ownerAddr(uint16(sl)) || len(t1.migrating) > 0 {
				return j.Source.Err("check slots", "", fmt.Errorf(
					"slot %d moved (or a resharding started) while the masters' snapshots started, so they may miss or repeat keys; run again, or use DumpRestore{}, which follows the cluster",
					sl))
			}
		}
		return nil
	})
	go func() {
		readers.Wait()
		close(batches)
	}()
	startRestorers(gctx, g, j.Concurrency, r, batches)
	err = g.Wait()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// nodeEndpoint is the endpoint of one node of a cluster endpoint, for a raw connection to it.
func (e *Endpoint) nodeEndpoint(addr string) *Endpoint {
	opt := e.Option
	opt.InitAddress = []string{addr}
	return &Endpoint{Side: e.Side, Addr: addr, Option: opt, Info: e.Info}
}

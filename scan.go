package migrate

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/rueidis"
)

// ScanKeys walks the keys of source database db that pass the job's filters (match and
// types) and calls fn with batches of at most BatchSize keys, in the order SCAN returns
// them. It waits for the rate limit before each batch, counts the keys as Scanned, and
// stops at fn's first error or when ctx ends. fn owns the slice it is given.
//
// SCAN may return a key more than once when the source's tables are resized during the
// walk; strategies must tolerate that.
//
// On a cluster source the walk goes slot by slot, one walk per master at once (see
// WithReadFromReplicas), and fn is never called twice at once. Each slot is read whole by
// one CLUSTER GETKEYSINSLOT, in a MULTI with CLUSTER NODES so that the node says in the same
// instant whether it still serves the slot; a slot it no longer serves (it moved, or the node
// failed) is read again from its new owner once the cluster says who that is. So a key that
// exists during the whole walk is given exactly once, resharding and failovers included; a
// slot being moved is read on both nodes and its keys given once. A key in a slot whose
// owner failed over is given as the promoted replica holds it. MATCH and TYPE are applied
// by this program. A slot is read in one reply, so a slot that holds very many keys (one
// hash tag for millions of keys) is held in memory at once.
//
// Under WithCheckpoint (DumpRestore and MigrateKeys), the walk of a standalone source starts
// where the checkpoint says and records, for each batch, the SCAN position from which it may
// continue once that batch and every batch before it are written (the strategy says so with
// checkpointer.batchWritten): the start of the SCAN page the batch's last key came from. On
// a cluster source it skips the slots the checkpoint has done, and records a group of slots
// read together as done once every batch of their keys is written.
func (j *Job) ScanKeys(ctx context.Context, db int, fn func(keys []string) error) error {
	return j.scan(ctx, j.Source, db, true, fn)
}

// scan walks the keys of database db of side e with the job's filters; count says whether
// they count as Scanned.
func (j *Job) scan(ctx context.Context, e *Endpoint, db int, count bool, fn func(keys []string) error) error {
	return j.scanMatch(ctx, e, db, j.Match, count, fn)
}

// scanMatch is scan with another MATCH pattern than the job's.
func (j *Job) scanMatch(ctx context.Context, e *Endpoint, db int, match string, count bool, fn func(keys []string) error) error {
	if e.Cluster() {
		return j.scanCluster(ctx, e, match, count, fn)
	}
	c, err := e.Client(db)
	if err != nil {
		return err
	}
	// SCAN TYPE (Redis 6.0) filters on the server, one pass per type; older servers get
	// one pass and a TYPE per key.
	passes := []string{""}
	filterByType := false
	if len(j.Types) > 0 {
		if e.Info.AtLeast(6, 0, 0) {
			passes = j.Types
		} else {
			filterByType = true
		}
	}
	// pos is where the walk may continue once the keys given so far are written: the start
	// of the SCAN page under way (checkpoint).
	var cp *checkpointer
	var pos walkPosition
	if count && j.checkpoint != nil {
		cp = j.checkpoint
		pos = cp.walkStart(db)
	}
	limit := j.BatchLimit()
	batch := make([]string, 0, limit)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		keys := batch
		batch = make([]string, 0, limit)
		if filterByType {
			var err error
			if keys, err = keepTypes(ctx, e, c, db, keys, j.Types); err != nil {
				return err
			}
		}
		if err := j.Wait(ctx, len(keys)); err != nil {
			return err
		}
		if count {
			j.Count(db, Counts{Scanned: int64(len(keys))})
		}
		if cp != nil {
			cp.emitted(keys, pos)
		}
		return fn(keys)
	}
	op := fmt.Sprintf("scan db %d", db)
	for pass, typ := range passes {
		if pass < pos.Pass {
			continue // done by an earlier run
		}
		var cursor uint64
		if pass == pos.Pass {
			cursor = pos.Cursor
		}
		for {
			pos = walkPosition{DB: db, Pass: pass, Cursor: cursor}
			args := []string{strconv.FormatUint(cursor, 10)}
			if match != "" {
				args = append(args, "MATCH", match)
			}
			args = append(args, "COUNT", strconv.Itoa(j.ScanCount))
			if typ != "" {
				args = append(args, "TYPE", typ)
			}
			page, err := e.scanPage(ctx, c, args)
			if err != nil {
				return e.Err(op, "", ctxErr(ctx, err))
			}
			for _, k := range page.Elements {
				batch = append(batch, k)
				if len(batch) == limit {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			cursor = page.Cursor
			if cursor == 0 {
				break
			}
		}
	}
	return flush()
}

// keepTypes returns the keys whose TYPE is one of types.
func keepTypes(ctx context.Context, e *Endpoint, c rueidis.Client, db int, keys, types []string) ([]string, error) {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Type().Key(k).Build()
	}
	kept := keys[:0]
	for i, r := range c.DoMulti(ctx, cmds...) {
		t, err := r.ToString()
		if err != nil {
			return nil, e.Err(fmt.Sprintf("type in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if slices.Contains(types, t) {
			kept = append(kept, keys[i])
		}
	}
	return kept, nil
}

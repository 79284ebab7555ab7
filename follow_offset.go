package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// commitAttempts bounds how many times commit opens a new connection to the target after
// one failed while a batch was under way, the first at once, then with commitBackoff more
// between each (about 5 s in all).
const (
	commitAttempts = 8
	commitBackoff  = 250 * time.Millisecond
)

// resumeDB puts a continued stream's connection in the database the stream was in where
// it continues: no SELECT comes until the stream's database changes.
func (a *applier) resumeDB(ctx context.Context) error {
	f := a.f
	if !f.continued {
		return nil
	}
	var err error
	a.srcDB = f.startDB
	if a.keepDB, err = a.dbs.keep(ctx, f.startDB); err != nil || !a.keepDB {
		return err
	}
	a.connDB, a.batchDB = f.j.TargetDB(f.startDB), f.j.TargetDB(f.startDB)
	if err := a.c.DoMulti(ctx, a.c.B().Select().Index(int64(a.connDB)).Build())[0].Error(); err != nil {
		return f.j.Target.Err(fmt.Sprintf("select db %d to apply the stream", a.connDB), "", ctxErr(ctx, err))
	}
	return nil
}

// startFollowing writes each follower's offset key at the start of its stream, once the
// snapshots are restored, then records in the checkpoint that the migration follows: from
// then on the offset keys say where the target stands.
func startFollowing(ctx context.Context, j *Job, fs []*follower) error {
	var at *followPoint
	var masters []followMaster
	syncOnly := false
	for _, f := range fs {
		key := j.offsetKey(f.node)
		if key == "" {
			return nil // a cluster target keeps none
		}
		p := f.point(f.base, 0)
		c, err := j.Target.Client(0)
		if err == nil {
			err = c.Do(ctx, c.B().Set().Key(key).Value(p.String()).Build()).Error()
		}
		if err != nil {
			return j.Target.Err("write the offset key (WithOffsetKey)", key, ctxErr(ctx, err))
		}
		at = &p
		if f.owned != nil {
			masters = append(masters, followMaster{Addr: f.node, Slots: slotRanges(f.owned)})
		}
		syncOnly = syncOnly || f.syncOnly()
	}
	if syncOnly {
		if j.checkpoint != nil {
			j.Logger.Warn("snapshot: follow: the source speaks SYNC only, whose stream cannot be continued: a resumed run will restore a new snapshot")
		}
		return nil
	}
	return j.checkpoint.following(ctx, at, masters)
}

// point is where the stream stands at offset end, in source database db. A source that
// speaks SYNC only has no replication id: "-" stands for it.
func (f *follower) point(end int64, db int) followPoint {
	id := f.currentReplID()
	if id == "" {
		id = "-"
	}
	return followPoint{ReplID: id, Offset: end, DB: db}
}

// point is where the stream stands once the batch, which ends at end, is applied.
func (a *applier) point(end int64) followPoint { return a.f.point(end, a.srcDB) }

// inDB0 returns cmd, on database 0, between SELECTs that leave the connection in db.
func (a *applier) inDB0(cmd rueidis.Completed, db int) []rueidis.Completed {
	if db == 0 {
		return []rueidis.Completed{cmd}
	}
	b := a.c.B()
	return []rueidis.Completed{b.Select().Index(0).Build(), cmd, b.Select().Index(int64(db)).Build()}
}

// currentReplID is the replication id of the stream: +CONTINUE may change it.
func (f *follower) currentReplID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replID
}

// commit applies the batch as one transaction that also sets the offset key to the
// source offset where the batch ends: the target holds the batch and says so, or neither.
// The source's own MULTI and EXEC are left out, their commands inside ours; SELECT stays,
// and is run in order within it.
//
// When the connection fails on the way, which of the batch's writes the target made would
// be unknown without the offset key: commit takes another connection and reads it. It
// holds the batch's end when the transaction landed, and the previous batch's when it did
// not, which is then sent again; so a connection killed (CLIENT KILL) or a target that
// restarts with its data (appendonly) neither drops a write nor applies one twice.
func (a *applier) commit(ctx context.Context) error {
	f := a.f
	end := f.base + a.pos
	var lost error
	for attempt := range commitAttempts {
		if attempt > 0 {
			// At once after a killed connection; a target that restarts needs longer.
			if err := sleepCtx(ctx, time.Duration(attempt-1)*commitBackoff); err != nil {
				return err
			}
			landed, err := a.landed(ctx, end)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if _, isReply := rueidis.IsRedisErr(err); isReply {
					return f.j.Target.Err("read the offset key (WithOffsetKey)", a.key, err)
				}
				if errors.Is(err, ErrFollowLost) {
					return err
				}
				lost = err
				continue
			}
			if landed {
				a.committed, a.batchDB = end, a.connDB
				return nil
			}
		}
		cmds, at := a.transaction(a.point(end).String())
		res := a.c.DoMulti(ctx, cmds...)
		if err := firstLost(res); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lost = err
			f.j.Logger.Warn("snapshot: follow: the connection to the target failed while it applied a batch; reading the offset key to learn whether it landed",
				"error", err, "from", f.base+f.applied.Load(), "to", end)
			continue
		}
		if err := a.replies(ctx, res, at); err != nil {
			return err
		}
		a.committed, a.batchDB = end, a.connDB
		return nil
	}
	return f.j.Target.Err("apply the stream", "", fmt.Errorf(
		"the connection failed while it applied the source's writes from offset %d to %d, and no new one could tell whether they landed after %d attempts; "+
			"the offset key %q says which the target holds: %w", f.base+f.applied.Load(), end, commitAttempts, a.key, lost))
}

// firstLost returns the first failure of the pipeline that is not a reply of the server:
// then what the server did is unknown.
func firstLost(res []rueidis.RedisResult) error {
	for _, r := range res {
		if err := r.Error(); err != nil {
			if _, isReply := rueidis.IsRedisErr(err); !isReply {
				return err
			}
		}
	}
	return nil
}

// transaction returns the batch wrapped in MULTI ... EXEC with the offset key set to value
// first, and for each command the index in a.cmds of the stream's command it is (-1 for
// ours).
func (a *applier) transaction(value string) ([]rueidis.Completed, []int) {
	b := a.c.B()
	cmds := make([]rueidis.Completed, 0, len(a.batch)+6)
	at := make([]int, 0, cap(cmds))
	cmds = append(cmds, b.Multi().Build())
	cmds = append(cmds, a.inDB0(b.Set().Key(a.key).Value(value).Build(), a.batchDB)...)
	for range cmds {
		at = append(at, -1)
	}
	for i, c := range a.batch {
		if n := a.cmds[i].name; n == "MULTI" || n == "EXEC" {
			continue
		}
		cmds, at = append(cmds, c), append(at, i)
	}
	return append(cmds, b.Exec().Build()), append(at, -1)
}

// landed takes a new connection to the target, in the database the batch starts in, and
// reads from the offset key whether the transaction that ends at end landed.
func (a *applier) landed(ctx context.Context, end int64) (bool, error) {
	f := a.f
	a.release()
	a.c, a.release = a.client.Dedicate()
	b := a.c.B()
	res := a.c.DoMulti(ctx, b.Select().Index(0).Build(), b.Get().Key(a.key).Build())
	if err := res[0].Error(); err != nil {
		return false, err
	}
	v, err := res[1].ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return false, err
	}
	prev, parsed := parseFollowPoint(v)
	var db int
	landed := parsed && prev.Offset == end
	switch {
	case landed:
		db = a.connDB
	case parsed && prev.Offset == a.committed:
		db = a.batchDB
	case v == "":
		return false, f.j.Target.Err("read the offset key (WithOffsetKey)", a.key, fmt.Errorf(
			"it is gone: the target lost its data (restarted without persistence?) or someone deleted it, "+
				"so which of the source's writes it holds is unknown; migrate again from the start: %w", ErrFollowLost))
	default:
		return false, f.j.Target.Err("read the offset key (WithOffsetKey)", a.key, fmt.Errorf(
			"it holds %q, neither the offset before the batch under way (%d) nor after it (%d): another program changed it, "+
				"so which of the source's writes the target holds is unknown; migrate again from the start: %w", v, a.committed, end, ErrFollowLost))
	}
	if err := a.c.DoMulti(ctx, b.Select().Index(int64(db)).Build())[0].Error(); err != nil {
		return false, err
	}
	if landed {
		f.j.Logger.Info("snapshot: follow: the batch under way had landed", "offset", end)
	}
	return landed, nil
}

// replies checks the replies of a transaction commit sent. A command refused when queued
// (the target out of memory, a command it does not know) aborts the transaction: nothing
// of the batch is applied. One refused within EXEC leaves every other applied, the offset
// key with them; the key is then deleted, so that no run resumes past the write refused.
func (a *applier) replies(ctx context.Context, res []rueidis.RedisResult, at []int) error {
	f := a.f
	for p := 1; p < len(res)-1; p++ {
		if err := res[p].Error(); err != nil {
			return a.refusedIn(ctx, at[p], err, false)
		}
	}
	msgs, err := res[len(res)-1].ToArray()
	if err != nil {
		return f.j.Target.Err("apply the stream", "", fmt.Errorf("EXEC of the source's writes from offset %d to %d: %w",
			f.base+f.applied.Load(), f.base+a.pos, err))
	}
	for k, m := range msgs {
		if err := m.Error(); err != nil {
			return a.refusedIn(ctx, at[k+1], err, true)
		}
	}
	return nil
}

// refusedIn stops following at command i of the batch (-1: the offset key's), which the
// target refused within the transaction commit sent; ran says the transaction ran, every
// other command of it applied.
func (a *applier) refusedIn(ctx context.Context, i int, err error, ran bool) error {
	f := a.f
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if i < 0 {
		return f.j.Target.Err("write the offset key (WithOffsetKey)", a.key, fmt.Errorf(
			"%w; name a key the migration's user may write in database 0 with WithOffsetKey", err))
	}
	c := a.cmds[i]
	what := "target refused"
	if strings.HasPrefix(err.Error(), "OOM") {
		what = "target, out of memory (maxmemory), refused"
	}
	if !ran {
		// Nothing of the batch is applied: apply what comes before the refused write, but
		// none of a transaction of the source's it belongs to.
		start := i
		for start > 0 && a.inMultiAt(start) {
			start--
		}
		if start < i && a.cmds[start].name != "MULTI" {
			start++
		}
		if start > 0 {
			a.batch, a.cmds, a.pos = a.batch[:start], a.cmds[:start], a.cmds[start-1].end
			if err := a.commit(ctx); err != nil {
				return err
			}
			f.st.commands.Add(int64(countCommands(a.cmds)))
			f.applied.Store(a.pos)
			f.setOffset(f.base + a.pos)
		}
		return f.j.Target.Err("apply "+c.name, c.key, fmt.Errorf(
			"the %s the source's write %s (ending at its replication offset %d): %w; following stopped, "+
				"and the target holds the source's writes up to offset %d", what, c.name, f.base+c.end, err, a.committed))
	}
	f.st.commands.Add(int64(countCommands(a.cmds)) - 1)
	f.applied.Store(a.pos)
	f.setOffset(f.base + a.pos)
	f.dropOffsetKey(ctx)
	return f.j.Target.Err("apply "+c.name, c.key, fmt.Errorf(
		"the %s the source's write %s (ending at its replication offset %d): %w; the other writes up to offset %d are applied, and following stopped: "+
			"the target lacks that write, so migrate again from the start (the offset key is deleted: a checkpoint restarts from a new snapshot)",
		what, c.name, f.base+c.end, err, f.base+a.pos))
}

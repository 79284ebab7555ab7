package migrate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// commitWait pauses before commit opens a new connection to the target after one failed
// while a batch was under way, by the policy of every step that meets a lost connection
// (retry.go's reconnectRetry, r): a killed connection is replaced at once, a target that
// restarts is waited for up to reconnectWait. Once that has passed, or when the target
// stalls, it returns the error that ends the follow: what it was doing, and lost, the last
// failure.
func (a *applier) commitWait(ctx context.Context, r *clusterRetry, attempt int, lost error, what string) error {
	t := a.f.j.Target
	switch {
	case attempt == 0:
		return nil
	case stalled(lost): // ConnWriteTimeout has waited already
		return t.Err("apply the stream", "", fmt.Errorf("%s: %w", what, lost))
	case attempt == 1:
		return ctx.Err()
	}
	err := r.wait(ctx)
	if w, ok := err.(*clusterWaitError); ok {
		return t.explainReconnect(w, t.Err("apply the stream", "", fmt.Errorf("%s: %w", what, lost)))
	}
	return err
}

// resumeDB puts a continued stream's connection in the database the stream was in where
// it continues: no SELECT comes until the stream's database changes.
func (a *applier) resumeDB(ctx context.Context) error {
	f := a.f
	if !f.continued {
		return nil
	}
	var err error
	a.srcDB, a.batchSrcDB = f.startDB, f.startDB
	if a.keepDB, err = a.dbs.keep(ctx, f.startDB); err != nil || !a.keepDB || a.cluster {
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
		p := f.point(f.base, 0)
		c, err := j.Target.Client(0)
		if err == nil {
			cmds := rueidis.Commands{c.B().Set().Key(key).Value(p.String()).Build()}
			if j.Target.Cluster() {
				// Those of an earlier run go; one slot's says where the stream starts.
				s := f.firstSlot()
				key = slotKeyName(key, s)
				cmds = append(slotKeyDels(c, j.offsetKey(f.node), f.owned), c.B().Set().Key(key).Value(slotPoint{from: p, end: f.base}.String()).Build())
				f.slotEnds()[s] = f.base
			}
			err = firstErr(c.DoMulti(ctx, cmds...))
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
	if a.cluster {
		return a.commitSlots(ctx)
	}
	f := a.f
	end := f.base + a.pos
	var lost error
	reconnect := reconnectRetry()
	for attempt := 0; ; attempt++ {
		if err := a.commitWait(ctx, &reconnect, attempt, lost, fmt.Sprintf(
			"the connection failed while it applied the source's writes from offset %d to %d, and no new one could tell whether they landed; "+
				"the offset key %q says which the target holds", f.base+f.applied.Load(), end, a.key)); err != nil {
			return err
		}
		if attempt > 0 {
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
	c, what := a.cmds[i], refusedBy(err)
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

// refusedBy says who refused a write of the stream, in an error.
func refusedBy(err error) string {
	if strings.HasPrefix(err.Error(), "OOM") {
		return "target, out of memory (maxmemory), refused"
	}
	return "target refused"
}

// On a cluster target one MULTI/EXEC cannot span slots, so each slot has its own offset
// key (slotKeyName: the key's hash tag lands on the slot). commitSlots sends the batch's
// commands of each slot, in the stream's order, in one transaction with the SET of that
// slot's key: the slot holds its share of the batch and its key says so, or neither. The
// key holds a slotPoint: where the batch starts, which every slot holds (the batch before
// it landed whole), and where it ends, up to which its slot holds the stream. A resumed
// run continues the stream from the latest start any key holds and skips, per slot, the
// commands its key covers (skipped); a killed connection is survived the same way, slot
// by slot (slotsLanded). A source transaction whose keys span slots is applied as one
// transaction per slot, in order.

// slotPoint is what an offset key of a cluster target holds.
type slotPoint struct {
	from followPoint // where the batch that wrote the key started: every slot holds the stream up to it
	end  int64       // where that batch ended: the key's slot holds the stream up to it
}

// String is what the offset key holds: the followPoint and the end.
func (p slotPoint) String() string { return p.from.String() + " " + strconv.FormatInt(p.end, 10) }

// parseSlotPoint parses what an offset key of a cluster target holds.
func parseSlotPoint(v string) (slotPoint, bool) {
	i := strings.LastIndexByte(v, ' ')
	if i < 0 {
		return slotPoint{}, false
	}
	from, ok := parseFollowPoint(v[:i])
	end, err := strconv.ParseInt(v[i+1:], 10, 64)
	if !ok || err != nil || end < from.Offset {
		return slotPoint{}, false
	}
	return slotPoint{from: from, end: end}, true
}

// slotKeyDels returns a DEL of each offset key of a cluster target made of name, of the
// slots owned (nil: all), one key a command: a cluster node takes several only of one slot.
func slotKeyDels(c rueidis.Client, name string, owned *[slotCount]bool) rueidis.Commands {
	var dels rueidis.Commands
	for s := range slotCount {
		if owned == nil || owned[s] {
			dels = append(dels, c.B().Del().Key(slotKeyName(name, uint16(s))).Build())
		}
	}
	return dels
}

// firstErr returns the first error among res.
func firstErr(res []rueidis.RedisResult) error {
	for _, r := range res {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// slotEnds returns, for each slot of a cluster target, the source offset its offset key
// holds, -1 when it has none.
func (f *follower) slotEnds() *[slotCount]int64 {
	if f.slotEnd == nil {
		f.slotEnd = new([slotCount]int64)
		for s := range f.slotEnd {
			f.slotEnd[s] = -1
		}
	}
	return f.slotEnd
}

// firstSlot is the slot whose offset key tells where a follower's stream starts: the first
// its master served on a cluster source.
func (f *follower) firstSlot() uint16 {
	for s := range slotCount {
		if f.owned == nil || f.owned[s] {
			return uint16(s)
		}
	}
	return 0
}

// skipped reports whether the command of the stream that ends here, sent to slotKey's
// slot, is one the slot's offset key says the target holds (a continued stream).
func (a *applier) skipped(slotKey string) bool {
	return a.f.slotEnd != nil && a.f.base+a.pos <= a.f.slotEnd[keySlot(slotKey)]
}

// commitSlots commits the batch on a cluster target: see above.
func (a *applier) commitSlots(ctx context.Context) error {
	f := a.f
	end := f.base + a.pos
	ends := f.slotEnds()
	// The batch's commands by slot. MULTI and EXEC of the source are left out: each
	// slot's commands are one transaction.
	var slots []uint16
	groups := map[uint16][]int{}
	for i, c := range a.cmds {
		if c.slotKey == "" {
			continue
		}
		s := keySlot(c.slotKey)
		if groups[s] == nil {
			slots = append(slots, s)
		}
		groups[s] = append(groups[s], i)
	}
	value := slotPoint{from: f.point(a.committed, a.batchSrcDB), end: end}.String()
	var lost error
	reconnect := reconnectRetry()
	for attempt := 0; ; attempt++ {
		if err := a.commitWait(ctx, &reconnect, attempt, lost, fmt.Sprintf(
			"the connection failed while it applied the source's writes from offset %d to %d, and no new one could tell whether they landed in %d slots; "+
				"the offset keys %q{tag} of the slots say which the target holds", f.base+f.applied.Load(), end, len(slots), a.key)); err != nil {
			return err
		}
		if attempt > 0 {
			left, err := a.slotsLanded(ctx, slots, end)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, ErrFollowLost) {
					return err
				}
				lost = err
				continue
			}
			slots = left
		}
		b := a.c.B()
		var cmds []rueidis.Completed
		for _, s := range slots {
			key := slotKeyName(a.key, s)
			cmds = append(cmds, b.Multi().Build().SetSlot(key), b.Set().Key(key).Value(value).Build())
			for _, i := range groups[s] {
				cmds = append(cmds, a.batch[i])
			}
			cmds = append(cmds, b.Exec().Build().SetSlot(key))
		}
		res := a.c.DoMulti(ctx, cmds...)
		var left []uint16
		for _, s := range slots {
			r := res[:len(groups[s])+3]
			res = res[len(r):]
			if err := firstLost(r); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				lost, left = err, append(left, s)
				continue
			}
			if err := a.slotReplies(ctx, r, groups[s], s); err != nil {
				return err
			}
			ends[s] = end
		}
		if slots = left; len(slots) == 0 {
			break
		}
		f.j.Logger.Warn("snapshot: follow: the connection to a master of the target failed while it applied a batch; reading the offset keys of its slots to learn whether it landed",
			"error", lost, "from", f.base+f.applied.Load(), "to", end, "slots", len(slots))
	}
	a.committed, a.batchSrcDB = end, a.srcDB
	return nil
}

// slotsLanded reads the offset keys of slots, whose transactions of the batch that ends
// at end had no reply, and returns those whose transaction did not land, to send again.
func (a *applier) slotsLanded(ctx context.Context, slots []uint16, end int64) ([]uint16, error) {
	f := a.f
	ends := f.slotEnds()
	var gets []rueidis.Completed
	for _, s := range slots {
		gets = append(gets, a.c.B().Get().Key(slotKeyName(a.key, s)).Build())
	}
	var left []uint16
	for i, r := range a.c.DoMulti(ctx, gets...) {
		s, key := slots[i], slotKeyName(a.key, slots[i])
		v, err := r.ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			if _, isReply := rueidis.IsRedisErr(err); isReply {
				return nil, f.j.Target.Err("read the offset key (WithOffsetKey)", key, err)
			}
			return nil, err
		}
		p, parsed := parseSlotPoint(v)
		switch {
		case parsed && p.end == end:
			ends[s] = end
			f.j.Logger.Info("snapshot: follow: a slot's share of the batch under way had landed", "slot", s, "offset", end)
		case parsed && p.end == ends[s], v == "" && ends[s] < 0:
			left = append(left, s)
		case v == "":
			return nil, f.j.Target.Err("read the offset key (WithOffsetKey)", key, fmt.Errorf(
				"it is gone: the target lost its data (restarted without persistence?) or someone deleted it, "+
					"so which of the source's writes slot %d holds is unknown; migrate again from the start: %w", s, ErrFollowLost))
		default:
			return nil, f.j.Target.Err("read the offset key (WithOffsetKey)", key, fmt.Errorf(
				"it holds %q, neither the offset before the batch under way (%d) nor after it (%d): another program changed it, "+
					"so which of the source's writes slot %d holds is unknown; migrate again from the start: %w", v, ends[s], end, s, ErrFollowLost))
		}
	}
	return left, nil
}

// slotReplies checks the replies of slot's transaction, whose commands of the stream are
// those of the batch at idx: MULTI, the SET of the offset key, the commands, EXEC.
func (a *applier) slotReplies(ctx context.Context, res []rueidis.RedisResult, idx []int, slot uint16) error {
	at := func(p int) int { // the batch index of the command at p among the transaction's, -1 the offset key's
		if p == 0 {
			return -1
		}
		return idx[p-1]
	}
	for p := 1; p < len(res)-1; p++ {
		if err := res[p].Error(); err != nil {
			return a.refusedInSlot(ctx, at(p-1), slot, err, false)
		}
	}
	msgs, err := res[len(res)-1].ToArray()
	if err != nil {
		return a.f.j.Target.Err("apply the stream", "", fmt.Errorf("EXEC of the source's writes to slot %d from offset %d to %d: %w",
			slot, a.f.base+a.f.applied.Load(), a.f.base+a.pos, err))
	}
	for k, m := range msgs {
		if err := m.Error(); err != nil {
			return a.refusedInSlot(ctx, at(k), slot, err, true)
		}
	}
	return nil
}

// refusedInSlot stops following at command i of the batch (-1: the offset key's SET),
// which the target refused within slot's transaction; ran says the transaction ran.
// The other slots' transactions may have landed, each with its offset key: a resumed run
// stays exact, unless the transaction ran without the write refused, when every offset
// key is deleted (a checkpoint then restarts from a new snapshot).
func (a *applier) refusedInSlot(ctx context.Context, i int, slot uint16, err error, ran bool) error {
	f := a.f
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if i < 0 {
		key := slotKeyName(a.key, slot)
		return f.j.Target.Err("write the offset key (WithOffsetKey)", key, fmt.Errorf(
			"%w; name keys the migration's user may write with WithOffsetKey (a hash tag per slot is added to the name)", err))
	}
	c, what := a.cmds[i], refusedBy(err)
	if !ran {
		return f.j.Target.Err("apply "+c.name, c.key, fmt.Errorf(
			"the %s the source's write %s (ending at its replication offset %d): %w; following stopped, and the target holds the source's writes up to offset %d; "+
				"each slot's offset key tells whether it holds its writes up to %d (slot %d does not)", what, c.name, f.base+c.end, err, a.committed, f.base+a.pos, slot))
	}
	f.dropOffsetKey(ctx)
	return f.j.Target.Err("apply "+c.name, c.key, fmt.Errorf(
		"the %s the source's write %s (ending at its replication offset %d): %w; the other writes up to offset %d are applied, and following stopped: "+
			"the target lacks that write, so migrate again from the start (the offset keys are deleted: a checkpoint restarts from a new snapshot)",
		what, c.name, f.base+c.end, err, f.base+a.pos))
}

package migrate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Resuming a Snapshot (WithCheckpoint).
//
// A Snapshot interrupted while it restored its snapshot cannot continue that snapshot: the
// source's fork is gone. The resumed run takes a new one, and must leave what a run never
// interrupted leaves, so the keys the interrupted run wrote must not survive where the new
// snapshot no longer has them (the source deleted them since). The checkpoint records, at
// the first start, how many keys the target held (TargetHeld): when it held none, every
// key of the databases and keys the migration selects is the migration's own, and the
// resumed run deletes them before it restores the new snapshot. When the target held keys,
// the migration's cannot be told from the target's, and the resume is refused.
//
// A Snapshot that follows the stream (WithFollow) and was interrupted after its restore
// continues the stream where the target stands: the offset key (WithOffsetKey) holds the
// source's replication id and the offset of the last byte applied, written in the same
// MULTI/EXEC as the batch of writes it covers, so the target holds exactly the writes up to
// it. The resumed run asks PSYNC <replid> <offset+1>, and fails with ErrFollowLost, saying
// how many bytes are missing, when the source's backlog no longer holds them. On a cluster
// target each slot has its own offset key (commitSlots): the stream continues from the
// latest point every slot holds, and each slot skips the writes its key covers.

// restartResumed prepares the target for a new snapshot after an interrupted restore: it
// deletes the keys the interrupted run wrote, or refuses when it cannot tell them from the
// target's own.
func (s Snapshot) restartResumed(ctx context.Context, j *Job) error {
	cp := j.checkpoint
	if cp.cutoverCalled() {
		return fmt.Errorf("%w: the interrupted run called the cutover function (WithFollow) and then stopped where its stream cannot be continued "+
			"(the target's offset key is gone, after a write the target refused); the application may have written to the target since, "+
			"so a new snapshot cannot replace what the target holds. Compare both sides with Verify, and remove the checkpoint to migrate again",
			ErrCheckpoint)
	}
	held, known := cp.targetHeld()
	var had []string
	for _, db := range slices.Sorted(maps.Keys(held)) {
		if held[db] > 0 {
			had = append(had, fmt.Sprintf("database %d: %d keys", db, held[db]))
		}
	}
	if !known || len(had) > 0 {
		what := "the target did not tell how many keys it held (INFO keyspace)"
		if known {
			what = "the target held keys (" + strings.Join(had, ", ") + ")"
		}
		return fmt.Errorf("%w: the interrupted Snapshot was restoring its snapshot, and a resumed one restores a new snapshot (the source's fork is gone); "+
			"when this migration started %s, so the keys the interrupted run wrote cannot be told from the target's own: the new snapshot could neither "+
			"replace those the source changed since nor delete those it deleted. Remove the checkpoint and migrate again with WithConflict(Replace) "+
			"(keys the source deleted since the interrupted run then stay on the target), or from an empty target", ErrCheckpoint, what)
	}
	if err := cp.following(ctx, nil, nil); err != nil {
		return err
	}
	n, err := j.deleteSelected(ctx)
	if err != nil {
		return err
	}
	j.Logger.Info("snapshot: resuming an interrupted restore: deleted the keys it wrote, restoring a new snapshot", "deleted", n)
	return nil
}

// deleteSelected deletes the target's keys that the migration writes: those of the
// target databases the selected source databases go into (with WithDBPrefix, those that
// carry a selected database's prefix) whose source name matches WithMatch, and the offset
// key. It is only called when the target held no key at the start. It returns how many it
// deleted.
func (j *Job) deleteSelected(ctx context.Context) (int64, error) {
	dbs := map[int]bool{}
	for _, db := range j.Databases {
		dbs[j.TargetDB(db)] = true
	}
	if !j.DatabasesChosen && !j.Target.Cluster() && !j.MergeDatabases {
		// Every source database is copied: one that gained keys after the first start too.
		for db := range j.Target.Info.Keyspace {
			dbs[db] = true
		}
	}
	match := j.Match
	if j.DBPrefix != "" {
		match = ""
	}
	var deleted int64
	for _, tdb := range slices.Sorted(maps.Keys(dbs)) {
		nodes, err := scanNodes(ctx, j.Target, tdb)
		if err != nil {
			return deleted, err
		}
		for _, c := range nodes {
			n, err := j.deleteSelectedOn(ctx, c, tdb, match)
			deleted += n
			if err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}

// scanNodes returns a client of database db of e for each node whose keys a walk reads:
// the server, or every master of a cluster.
func scanNodes(ctx context.Context, e *Endpoint, db int) ([]rueidis.Client, error) {
	if !e.Cluster() {
		c, err := e.Client(db)
		return []rueidis.Client{c}, err
	}
	t, err := e.topology(ctx)
	if err != nil {
		return nil, err
	}
	ids, _ := t.masters()
	var out []rueidis.Client
	for _, id := range ids {
		c, err := e.node(t.nodes[id].addr)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// deleteSelectedOn deletes the selected keys of database tdb of one node, a SCAN page at a
// time.
func (j *Job) deleteSelectedOn(ctx context.Context, c rueidis.Client, tdb int, match string) (int64, error) {
	unlink := "UNLINK"
	if !j.Target.Info.AtLeast(4, 0, 0) {
		unlink = "DEL"
	}
	var deleted int64
	var cursor uint64
	for {
		args := []string{strconv.FormatUint(cursor, 10)}
		if match != "" {
			args = append(args, "MATCH", match)
		}
		args = append(args, "COUNT", strconv.Itoa(j.ScanCount))
		page, err := c.Do(ctx, c.B().Arbitrary("SCAN").Args(args...).Build()).AsScanEntry()
		if err != nil {
			return deleted, j.Target.Err(fmt.Sprintf("scan db %d", tdb), "", ctxErr(ctx, err))
		}
		var cmds rueidis.Commands
		for _, k := range page.Elements {
			if j.selected(tdb, k) {
				// One key a command: a cluster node takes several only of one slot.
				cmds = append(cmds, c.B().Arbitrary(unlink).Keys(k).Build())
			}
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return deleted, j.Target.Err(fmt.Sprintf("%s in db %d", strings.ToLower(unlink), tdb), "", ctxErr(ctx, err))
			}
			deleted++
		}
		if cursor = page.Cursor; cursor == 0 {
			return deleted, nil
		}
	}
}

// selected reports whether key of target database tdb is one the migration writes: the
// offset key, or a key of a selected source database whose name matches WithMatch.
func (j *Job) selected(tdb int, key string) bool {
	if tdb == 0 && j.isOffsetKey(key) {
		return true
	}
	if j.DBPrefix == "" && !j.MergeDatabases {
		return j.Match == "" || globMatch(j.Match, key)
	}
	dbs, names := j.SourceKeys(tdb, key)
	for n := range dbs {
		if j.Match == "" || globMatch(j.Match, names[n]) {
			return true
		}
	}
	return false
}

// offsetKey returns the name of the offset key of the stream of the source's node (""
// for a standalone source): WithOffsetKey's, with the master's address from a cluster
// source. On a cluster target it is the name each slot's key is made of (slotKeyName).
func (j *Job) offsetKey(node string) string {
	if node == "" {
		return j.OffsetKey
	}
	return j.OffsetKey + ":" + node
}

// isOffsetKey reports whether key, of the target's database 0, is an offset key of a
// following Snapshot: it is not the source's to copy, Verify's to compare, nor the
// Report's to count.
func (j *Job) isOffsetKey(key string) bool {
	if j.Target.Cluster() {
		base, ok := slotKeyBase(key)
		return ok && (base == j.OffsetKey || strings.HasPrefix(base, j.OffsetKey+":"))
	}
	return key == j.OffsetKey
}

// readSlotOffsets reads the offset keys of a cluster target made of name, of the slots
// owned (nil: all), pipelined per node. It returns the latest start of a batch a key holds
// (every slot holds the stream up to it), the end each slot's key holds (-1 none), and
// whether any key is there.
func readSlotOffsets(ctx context.Context, c rueidis.Client, e *Endpoint, name string, owned *[slotCount]bool) (followPoint, *[slotCount]int64, bool, error) {
	var slots []uint16
	var gets rueidis.Commands
	for s := range slotCount {
		if owned == nil || owned[s] {
			slots = append(slots, uint16(s))
			gets = append(gets, c.B().Get().Key(slotKeyName(name, uint16(s))).Build())
		}
	}
	ends := new([slotCount]int64)
	for s := range ends {
		ends[s] = -1
	}
	var from followPoint
	found := false
	for i, r := range c.DoMulti(ctx, gets...) {
		key := slotKeyName(name, slots[i])
		v, err := r.ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return from, nil, false, e.Err("read the offset key (WithOffsetKey)", key, ctxErr(ctx, err))
		}
		p, ok := parseSlotPoint(v)
		if !ok {
			return from, nil, false, e.Err("read the offset key (WithOffsetKey)", key, fmt.Errorf(
				"it holds %q, not a replication id, offsets and database: another program uses that name; name another key with WithOffsetKey", v))
		}
		ends[slots[i]] = p.end
		if !found || p.from.Offset > from.Offset {
			from, found = p.from, true
		}
	}
	return from, ends, found, nil
}

// readOffset reads the offset key; ok is false when it is absent.
func readOffset(ctx context.Context, c rueidis.CoreClient, e *Endpoint, key string) (at followPoint, ok bool, err error) {
	v, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return at, false, nil
	}
	if err != nil {
		return at, false, e.Err("read the offset key (WithOffsetKey)", key, ctxErr(ctx, err))
	}
	at, ok = parseFollowPoint(v)
	if !ok {
		return at, false, e.Err("read the offset key (WithOffsetKey)", key, fmt.Errorf(
			"it holds %q, not a replication id, offset and database: another program uses that name; name another key with WithOffsetKey", v))
	}
	return at, true, nil
}

// continueFollow opens the stream of each server followed (the source, or each master of
// a cluster source) where the target's offset key says the interrupted run stopped. It
// returns nil, nil when an offset key is gone (the interrupted run stopped at a write the
// target refused, or someone deleted it): the migration then starts over from a new
// snapshot, as after an interrupted restore. The followers it returns with an error are
// the caller's to close.
func (s Snapshot) continueFollow(ctx context.Context, j *Job, st *followStats, gate *cutoverGate, srcs []*Endpoint, owned []*[slotCount]bool) ([]*follower, error) {
	if j.Source.Cluster() {
		if diff := j.checkpoint.mastersChanged(srcs, owned); diff != "" {
			return nil, j.Source.Err("follow", "", fmt.Errorf(
				"the masters of the source cluster or their slots changed since the interrupted run followed them (%s: a failover or a resharding), "+
					"so their streams cannot be continued; compare both sides with Verify, and remove the checkpoint to migrate again: %w", diff, ErrFollowLost))
		}
	}
	c, err := j.Target.Client(0)
	if err != nil {
		return nil, err
	}
	nodes := make([]string, len(srcs))
	ats := make([]followPoint, len(srcs))
	ends := make([]*[slotCount]int64, len(srcs))
	for i, e := range srcs {
		if owned[i] != nil {
			nodes[i] = e.Addr
		}
		key := j.offsetKey(nodes[i])
		var at followPoint
		var ok bool
		var err error
		if j.Target.Cluster() {
			at, ends[i], ok, err = readSlotOffsets(ctx, c, j.Target, key, owned[i])
		} else {
			at, ok, err = readOffset(ctx, c, j.Target, key)
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			j.Logger.Warn("snapshot: follow: the checkpoint says the interrupted run followed the stream, and the target's offset key is gone; starting over from a new snapshot", "key", key)
			return nil, nil
		}
		ats[i] = at
	}
	var fs []*follower
	for i, e := range srcs {
		rs, err := openReplicationWith(ctx, e, j.Logger, replOptions{follow: true, replID: ats[i].ReplID, offset: ats[i].Offset + 1})
		if err != nil {
			return fs, ctxErr(ctx, err)
		}
		sp, err := newSpool(j.SpoolDir, 0, nil)
		if err != nil {
			rs.Close()
			return fs, err
		}
		f := &follower{
			s: s, j: j, sp: sp, st: st, rs: rs, replID: rs.replID, base: ats[i].Offset, src: e, node: nodes[i], owned: owned[i], gate: gate,
			continued: true, startDB: ats[i].DB, slotEnd: ends[i], rdbDone: make(chan struct{}), finished: make(chan struct{}),
		}
		close(f.rdbDone)
		fs = append(fs, f)
		j.Logger.Info("snapshot: follow: resuming the source's stream where the target stands", "source", e.Addr, "offset", ats[i].Offset, "path", sp.path)
	}
	return fs, nil
}

// dropOffsetKey deletes the follower's offset key, briefly even when ctx ended, and logs
// a failure: the key is then left on the target.
func (f *follower) dropOffsetKey(ctx context.Context) {
	key := f.j.offsetKey(f.node)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	c, err := f.j.Target.Client(0)
	if err == nil {
		dels := rueidis.Commands{c.B().Del().Key(key).Build()}
		if f.j.Target.Cluster() {
			dels = slotKeyDels(c, key, f.owned)
		}
		err = firstErr(c.DoMulti(dctx, dels...))
	}
	if err != nil {
		f.j.Logger.Warn("snapshot: follow: cannot delete the offset key; delete it yourself", "key", key, "error", err)
	}
}

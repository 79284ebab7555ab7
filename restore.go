package migrate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// dumped is one key read from the source: its DUMP payload, or for a string read with
// MGET its value, and its absolute expiry.
type dumped struct {
	key      string
	payload  string
	expireAt int64 // Unix milliseconds, 0 for none
	// sealed says this program computed the payload's checksum itself (from an RDB
	// stream whose own checksum is verified), so it need not be checked again.
	sealed bool
	// str says the key is a string whose value is value; it is written with SET. A string
	// read with MGET has no payload.
	str   bool
	value string
	ttl   int64 // RESTORE's TTL argument, set by the restorer
	// resent says the key is sent again after a command for it got no reply, which may
	// have written it: finding the source's value on the target then means written.
	resent bool
}

// size is the number of bytes the key's value takes: its payload's, or its string's.
func (d *dumped) size() int {
	if d.payload != "" {
		return len(d.payload)
	}
	return len(d.value)
}

// batchPool recycles the slices of batches, which are done with once restored.
var batchPool sync.Pool

// newBatch returns an empty batch with room for n keys.
func newBatch(n int) []dumped {
	if p, ok := batchPool.Get().(*[]dumped); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]dumped, 0, n)
}

// releaseBatch gives b back for newBatch, keeping none of its keys or values alive.
func releaseBatch(b []dumped) {
	b = b[:cap(b)]
	clear(b)
	batchPool.Put(&b)
}

// restorer writes dumped keys to the target with pipelined RESTORE, honouring the
// conflict policy. DumpRestore and Snapshot share it.
type restorer struct {
	j          *Job
	absTTL     bool  // RESTORE ... ABSTTL (Redis 5.0), so queueing does not stretch TTLs
	setStrings bool  // SET ... PXAT (Redis 6.2) writes strings
	maxBulk    int64 // the target's proto-max-bulk-len
	// setMany says strings with no expiry go in by MSETNX or MSET: where the target has
	// SET ... PXAT; cleared when the target refuses them. On a cluster target one command
	// takes only keys of one slot.
	setMany atomic.Bool
	// down rewrites payloads the target cannot read (downgrade.go).
	down *downgrader
}

// setManyBytes bounds the values of one MSETNX, and setManyValue the value of a string that
// goes into one, so that a command stays small next to the target's query buffer limit.
const (
	setManyBytes = 1 << 20
	setManyValue = 64 << 10
)

const defaultMaxBulk = 512 << 20

func newRestorer(ctx context.Context, j *Job) (*restorer, error) {
	r := &restorer{j: j, absTTL: j.Target.Info.AtLeast(5, 0, 0), setStrings: j.Target.Info.AtLeast(6, 2, 0), maxBulk: defaultMaxBulk}
	r.down = newDowngrader(j)
	r.setMany.Store(r.setStrings)
	c, err := j.Target.Default()
	if err != nil {
		return nil, err
	}
	if v, ok := configGet(ctx, c, "proto-max-bulk-len"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			r.maxBulk = n
		}
	}
	return r, nil
}

// restore writes batch into target database db, counts the outcome, and returns the first
// error that stops the migration. It reorders and changes batch, which is then done with:
// the caller may give it to releaseBatch.
func (r *restorer) restore(ctx context.Context, db int, batch []dumped) error {
	c, err := r.j.Target.clientCtx(ctx, r.j.TargetDB(db))
	if err != nil {
		return err
	}
	var counts Counts
	defer func() { r.j.Count(db, counts) }()

	now := time.Now().UnixMilli()
	// The batch is reordered in place: keys already expired are dropped, strings that
	// go in together by setAll come first (batch[:many]), then those written one command
	// each.
	kept := batch[:0]
	for i := range batch {
		d := &batch[i]
		if int64(d.size()) > r.maxBulk {
			counts.Failed++
			return r.j.Target.Err("restore", d.key, fmt.Errorf(
				"%w: the serialized value is %d bytes and the target's proto-max-bulk-len is %d; raise it on the target (CONFIG SET proto-max-bulk-len), or copy it with DumpRestore, which copies such keys in pieces",
				ErrTooLarge, d.size(), r.maxBulk))
		}
		if d.expireAt > 0 && d.expireAt <= now {
			counts.Expired++
			continue
		}
		if keep, err := r.fit(ctx, d, db, now, &counts); !keep {
			if err != nil {
				return err
			}
			continue
		}
		kept = append(kept, *d)
	}
	batch = kept
	many := 0
	for i := range batch {
		d := &batch[i]
		r.prepare(d, db, now)
		if d.str && d.expireAt == 0 && len(d.value) <= setManyValue && r.setMany.Load() {
			batch[many], batch[i] = batch[i], batch[many]
			many++
		}
	}
	var lost []dumped // keys sent whose reply never came: written or not, settle finds out
	defer func() {
		if len(lost) > 0 {
			r.settle(ctx, c, db, lost, &counts)
		}
	}()
	pending := batch[many:]
	// A group that a key already on the target refuses is sent again key by key, which
	// tells which keys those are.
	if again := r.setAll(ctx, c, batch[:many], &counts, &lost); len(again) > 0 {
		pending = append(again, pending...)
	}
	// Keys not sent (again) are not counted, but for those whose first reply was lost: they
	// may be written.
	stop := func(keys []dumped, err error) error {
		for _, d := range keys {
			if d.resent {
				lost = append(lost, d)
			}
		}
		return err
	}
	var wait clusterRetry
	reconnect := reconnectRetry()
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return stop(pending, err)
		}
		// On a cluster, keys whose node is failing over are sent again; anywhere, keys
		// whose connection failed are sent again once the target answers.
		retry, why, err := r.send(ctx, c, db, pending, &counts, &lost)
		switch {
		case err != nil || len(retry) == 0:
		case r.j.Target.Cluster():
			r.j.Logger.Info("restore: the target cluster is failing over or moving slots; sending again", "keys", len(retry))
			if err = wait.wait(ctx); err != nil {
				err = r.gaveUp(ctx, db, retry, why, err, &counts)
			}
		default:
			r.j.Logger.Info("restore: the connection to the target failed; sending again", "keys", len(retry), "error", why)
			if err = reconnect.wait(ctx); err != nil {
				err = r.gaveUp(ctx, db, retry, why, err, &counts)
			} else if progressed := len(retry) < len(pending); progressed {
				reconnect.reset()
			}
		}
		if err != nil {
			return stop(retry, err)
		}
		pending = retry
	}
	return nil
}

// send writes keys and counts what it can tell of each: written, already there, refused.
// The keys of a cluster target that a failover or a moving slot refused, and those whose
// connection failed (reconnectable), are returned to send again rather than counted, with
// why, the error of the first; those whose reply was lost are marked resent. Keys whose
// reply never came otherwise (the context ended, a stall) are added to lost, for settle. It
// returns the first error that stops the migration.
func (r *restorer) send(ctx context.Context, c rueidis.Client, db int, keys []dumped, counts *Counts, lost *[]dumped) (again []dumped, why, first error) {
	cmds := make(rueidis.Commands, len(keys))
	for i := range keys {
		// RESTORE is not retried by the client; a new command for the same key is.
		cmds[i] = r.command(c, &keys[i])
	}
	var busy []dumped
	wctx, done := inFlight(ctx, settleWait)
	defer done()
	for i, res := range c.DoMulti(wctx, cmds...) {
		d := &keys[i]
		err := res.Error()
		kind := classifyReply(err)
		switch {
		case kind == replyOK:
			counts.Keys++
			counts.Bytes += int64(d.size())
		case kind == replyBusyKey || (d.str && kind == replyNil): // SET NX did not set
			busy = append(busy, *d)
		case r.j.Target.Cluster() && retryable(ctx, err) || reconnectable(ctx, err):
			if kind == replyLost {
				d.resent = true // the first one may have been written
			}
			if again == nil {
				why = err
			}
			again = append(again, *d)
		case kind == replyLost:
			*lost = append(*lost, *d)
			if first == nil {
				first = r.restoreErr(ctx, db, d.key, err)
			}
		default:
			counts.Failed++
			if first == nil {
				first = r.restoreErr(ctx, db, d.key, err)
			}
		}
	}
	if len(busy) > 0 {
		if err := r.conflicts(ctx, c, db, busy, counts); first == nil {
			first = err
		}
	}
	return again, why, first
}

// gaveUp ends the sending of keys, which a cluster target refused while it changed, or
// whose connection failed (why, the error of the first), for longer than the retry policy
// waits (err): they are counted as Failed, but those whose earlier reply was lost, which
// settle counts. The error names the first key, and on a cluster its slot and the node that
// serves it.
func (r *restorer) gaveUp(ctx context.Context, db int, keys []dumped, why, err error, counts *Counts) error {
	w, ok := err.(*clusterWaitError)
	if !ok {
		return err
	}
	for _, d := range keys {
		if !d.resent {
			counts.Failed++
		}
	}
	if !r.j.Target.Cluster() {
		return r.j.Target.explainReconnect(w, r.j.Target.Err(fmt.Sprintf("restore into db %d", r.j.TargetDB(db)), keys[0].key, why))
	}
	what := r.j.Target.describeSlot(ctx, keySlot(keys[0].key))
	return r.j.Target.Err(fmt.Sprintf("restore into db %d", r.j.TargetDB(db)), keys[0].key, w.explain(Target, what, why))
}

// conflicts counts keys that the target already holds, following the conflict policy: one
// that holds the source's value and expiry is Skipped under any policy (or counted as
// written, when it is our own earlier write whose reply was lost); another is Skipped under
// Skip and, under Fail, Failed and the error. Comparing costs one round trip for all of
// them, and is left out under Skip when no reply was lost.
func (r *restorer) conflicts(ctx context.Context, c rueidis.Client, db int, busy []dumped, counts *Counts) error {
	if r.j.Conflict == Skip && !slices.ContainsFunc(busy, func(d dumped) bool { return d.resent }) {
		counts.Skipped += int64(len(busy))
		return nil
	}
	diffs, err := r.sameOnTarget(ctx, c, db, busy)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		counts.Failed++ // the migration stops on it; the others are not known
		return r.j.Target.Err(fmt.Sprintf("compare with the key in db %d", r.j.TargetDB(db)), busy[0].key, err)
	}
	var first error
	for i := range busy {
		d := &busy[i]
		switch {
		case diffs[i] == "" && d.resent:
			counts.Keys++
			counts.Bytes += int64(d.size())
		case diffs[i] == "" || r.j.Conflict == Skip:
			counts.Skipped++
		default:
			counts.Failed++
			if first == nil {
				first = r.j.Target.Err(fmt.Sprintf("restore into db %d", r.j.TargetDB(db)), d.key,
					fmt.Errorf("%w: %s", ErrConflict, diffs[i]))
			}
		}
	}
	return first
}

// settleWait bounds how long settle may take after the migration's context ended, and
// how long a pipeline of writes under way then may still take (see inFlight).
const settleWait = time.Second

// settle counts the keys whose reply never came: those the target holds with the source's
// value and expiry were written, the others not. The migration is stopping, so it asks
// under a context of its own, briefly. When the context had not ended (the connection
// failed), the first key not found written is the one the migration stops on, counted as
// Failed.
func (r *restorer) settle(ctx context.Context, c rueidis.Client, db int, lost []dumped, counts *Counts) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
	defer cancel()
	diffs, err := r.sameOnTarget(sctx, c, db, lost)
	failed := ctx.Err() != nil // nothing is counted Failed when cancelled
	for i := range lost {
		switch {
		case err == nil && diffs[i] == "":
			counts.Keys++
			counts.Bytes += int64(lost[i].size())
		case !failed:
			counts.Failed++
			failed = true
		}
	}
}

// prepare names d's key on the target, sets its TTL argument, and says how it is written:
// strings with SET (cheaper for the target than RESTORE) where the target has SET ...
// PXAT (Redis 6.2), everything else with RESTORE.
func (r *restorer) prepare(d *dumped, db int, now int64) {
	d.key = r.j.TargetKey(db, d.key)
	d.ttl = 0
	if d.expireAt > 0 {
		d.ttl = d.expireAt
		if !r.absTTL {
			d.ttl = d.expireAt - now
		}
	}
	if r.setStrings && !d.str {
		if v, ok := stringOfPayload(d.payload, !d.sealed); ok {
			d.str, d.value = true, v
		}
	}
}

// command writes one key, as prepare chose.
func (r *restorer) command(c rueidis.Client, k *dumped) rueidis.Completed {
	if k.str {
		set := c.B().Set().Key(k.key).Value(k.value)
		switch {
		case r.j.Conflict != Replace && k.expireAt > 0:
			return set.Nx().PxatMillisecondsTimestamp(k.expireAt).Build()
		case r.j.Conflict != Replace:
			return set.Nx().Build()
		case k.expireAt > 0:
			return set.PxatMillisecondsTimestamp(k.expireAt).Build()
		}
		return set.Build()
	}
	v := c.B().Restore().Key(k.key).Ttl(k.ttl).SerializedValue(k.payload)
	switch {
	case r.j.Conflict == Replace && r.absTTL && k.ttl > 0:
		return v.Replace().Absttl().Build()
	case r.j.Conflict == Replace:
		return v.Replace().Build()
	case r.absTTL && k.ttl > 0:
		return v.Absttl().Build()
	}
	return v.Build()
}

// setAll writes strings that have no expiry a group at a time: MSETNX, which sets the
// group only when none of its keys exists, or MSET under Replace. One command for many
// keys costs the target less than a SET each. On a cluster target a group holds
// keys of one slot. It counts the keys written and returns, to be sent key by key, those
// of the groups that were refused (a key exists, a slot moved, an error) and keys left
// alone in their group. The keys of a group whose reply never came, once ctx has ended, go to
// lost.
func (r *restorer) setAll(ctx context.Context, c rueidis.Client, keys []dumped, counts *Counts, lost *[]dumped) (again []dumped) {
	if len(keys) == 0 {
		return nil
	}
	cluster := r.j.Target.Cluster()
	if cluster {
		// A batch from a cluster source holds the keys of one slot; from elsewhere, sorting
		// brings together the keys that share one.
		slices.SortFunc(keys, func(a, b dumped) int { return int(keySlot(a.key)) - int(keySlot(b.key)) })
	}
	var cmds rueidis.Commands
	var groups [][]dumped
	for start := 0; start < len(keys); {
		end, size := start, 0
		for end < len(keys) && (end == start || size+len(keys[end].value) <= setManyBytes) {
			if cluster && end > start && keySlot(keys[end].key) != keySlot(keys[start].key) {
				break
			}
			size += len(keys[end].value)
			end++
		}
		group := keys[start:end]
		start = end
		if len(group) == 1 {
			again = append(again, group[0]) // one SET costs no more
			continue
		}
		if r.j.Conflict == Replace {
			b := c.B().Mset().KeyValue()
			for _, k := range group {
				b = b.KeyValue(k.key, k.value)
			}
			cmds = append(cmds, b.Build())
		} else {
			b := c.B().Msetnx().KeyValue()
			for _, k := range group {
				b = b.KeyValue(k.key, k.value)
			}
			cmds = append(cmds, b.Build())
		}
		groups = append(groups, group)
	}
	if len(cmds) == 0 {
		return again
	}
	wctx, done := inFlight(ctx, settleWait)
	defer done()
	for i, res := range c.DoMulti(wctx, cmds...) {
		switch classifyReply(res.Error()) {
		case replyRefused:
			r.j.Logger.Info("restore: the target refuses MSET or MSETNX; strings are written one SET each", "error", res.Error())
			r.setMany.Store(false)
		case replyLost:
			if ctx.Err() != nil {
				*lost = append(*lost, groups[i]...)
				continue
			}
			for k := range groups[i] {
				groups[i][k].resent = true // the group may have been written
			}
		}
		set := res.Error() == nil
		if r.j.Conflict != Replace {
			n, err := res.AsInt64()
			set = err == nil && n == 1
		}
		if !set {
			again = append(again, groups[i]...)
			continue
		}
		for _, k := range groups[i] {
			counts.Keys++
			counts.Bytes += int64(k.size())
		}
	}
	return again
}

// sameOnTarget reports, for each of keys, how the key the target holds differs from it:
// "" when it holds the value and the expiry the key carries (expiries within
// Job.TTLTolerance of each other count as the same). It reads every key and its expiry in one round trip: a string's value with
// GET, another key's payload with DUMP. Payloads equal but for their RDB version and
// checksum are the same value; others are decoded (canonicalPayload) and compared by type
// and value, since a hashtable's payload depends on the order of its members. The source
// is not read again: its value is what keys carry (the source may have changed since a
// snapshot was taken).
func (r *restorer) sameOnTarget(ctx context.Context, c rueidis.Client, db int, keys []dumped) ([]string, error) {
	absolute := r.j.Target.Info.AtLeast(7, 0, 0)
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for i := range keys {
		k := &keys[i]
		if k.str {
			cmds = append(cmds, c.B().Get().Key(k.key).Build())
		} else {
			cmds = append(cmds, c.B().Dump().Key(k.key).Build())
		}
		if absolute {
			cmds = append(cmds, c.B().Pexpiretime().Key(k.key).Build())
		} else {
			cmds = append(cmds, c.B().Pttl().Key(k.key).Build())
		}
	}
	sent := time.Now().UnixMilli()
	res := c.DoMulti(ctx, cmds...)
	diffs := make([]string, len(keys))
	for i := range keys {
		k := &keys[i]
		ttl, err := res[2*i+1].AsInt64()
		if err != nil {
			return nil, err
		}
		var expireAt int64
		switch {
		case ttl == -2:
			diffs[i] = "the target's key is gone"
			continue
		case ttl < 0:
		case absolute:
			expireAt = ttl
		default:
			expireAt = sent + ttl
		}
		if !r.sameExpiry(expireAt, k.expireAt) {
			diffs[i] = fmt.Sprintf("the target's key expires %s, the source's %s (WithTTLTolerance: %v)",
				expiryText(expireAt), expiryText(k.expireAt), r.j.TTLTolerance)
			continue
		}
		v, err := res[2*i].ToString()
		switch classifyReply(err) {
		case replyOK:
		case replyNil:
			diffs[i] = "the target's key is gone"
			continue
		case replyError: // WRONGTYPE
			diffs[i] = "the target's key is of another type"
			continue
		default:
			return nil, err
		}
		same := v == k.value
		if !k.str {
			if same, err = r.samePayload(ctx, db, k, v); err != nil {
				return nil, err
			}
		}
		if !same {
			diffs[i] = "the target's key holds another value"
		}
	}
	return diffs, nil
}

// expiryText names an expiry (Unix milliseconds, 0 for none) for messages.
func expiryText(ms int64) string {
	if ms == 0 {
		return "never"
	}
	return "at " + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// sameExpiry reports whether two expiries (Unix milliseconds, 0 for none) are the same,
// within Job.TTLTolerance.
func (r *restorer) sameExpiry(a, b int64) bool {
	if a == 0 || b == 0 {
		return a == b
	}
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= r.j.TTLTolerance.Milliseconds()
}

// samePayload reports whether payload, the target's DUMP of k, holds k's value.
func (r *restorer) samePayload(ctx context.Context, db int, k *dumped, payload string) (bool, error) {
	if sameValue(payload, k.payload) {
		return true, nil
	}
	typ, want, ok := canonicalPayload(k.payload)
	if !ok {
		return false, nil // a stream, a module value: only the same payload is the same
	}
	if ttyp, got, ok := canonicalPayload(payload); ok {
		return ttyp == typ && got == want, nil
	}
	// An encoding this package does not decode (a newer target): read the value itself.
	tc, err := r.j.Target.Client(r.j.TargetDB(db))
	if err != nil {
		return false, err
	}
	if t, err := tc.Do(ctx, tc.B().Type().Key(k.key).Build()).ToString(); err != nil || t != typ {
		return false, err
	}
	got, err := canonical(ctx, r.j.Target, r.j.TargetDB(db), k.key, typ)
	return err == nil && got == want, err
}

// sameValue compares two DUMP payloads without their footers (RDB version and checksum),
// so a newer target's copy of a value still matches the source's.
func sameValue(a, b string) bool {
	const footer = 10
	if len(a) < footer || len(b) < footer {
		return a == b
	}
	return a[:len(a)-footer] == b[:len(b)-footer]
}

func (r *restorer) restoreErr(ctx context.Context, db int, key string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	op := fmt.Sprintf("restore into db %d", r.j.TargetDB(db))
	switch classifyReply(err) {
	case replyIncompatible:
		err = fmt.Errorf("%w: the target runs %s (RDB %d) and the source %s (RDB %d); the target refused a payload this library did not expect it to refuse; report it, with both versions: %v",
			ErrIncompatible, describeVersion(r.j.Target.Info), r.j.Target.Info.RDBVersion(),
			describeVersion(r.j.Source.Info), r.j.Source.Info.RDBVersion(), err)
	case replyOOM:
		err = fmt.Errorf("the target is out of memory (maxmemory %d bytes): %w", r.j.Target.Info.MaxMemory, err)
	}
	return r.j.Target.Err(op, key, err)
}

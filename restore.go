package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	c, err := r.j.Target.Client(r.j.TargetDB(db))
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
				"%w: the serialized value is %d bytes and the target's proto-max-bulk-len is %d; raise it on the target (CONFIG SET proto-max-bulk-len)",
				ErrTooLarge, d.size(), r.maxBulk))
		}
		if d.expireAt > 0 && d.expireAt <= now {
			counts.Expired++
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
	sent := batch[many:]
	// A group that a key already on the target refuses is sent again key by key, which
	// tells which keys those are.
	if again := r.setAll(ctx, c, batch[:many], &counts); len(again) > 0 {
		sent = append(again, sent...)
	}
	cmds := make(rueidis.Commands, len(sent))
	for i := range sent {
		cmds[i] = r.command(c, &sent[i])
	}
	var first error
	started := time.Now()
	for len(cmds) > 0 && first == nil {
		// On a cluster, keys whose node is failing over are sent again.
		var retry rueidis.Commands
		var retried []dumped
		first, retry, retried = r.send(ctx, c, db, cmds, sent, &counts, time.Since(started) < clusterFailoverWait)
		if len(retry) > 0 && first == nil {
			r.j.Logger.Info("restore: the target cluster is failing over or moving slots; sending again", "keys", len(retry))
			if err := sleepCtx(ctx, clusterRetryDelay); err != nil {
				return err
			}
		}
		cmds, sent = retry, retried
	}
	return first
}

// send runs cmds, the RESTOREs of sent, and counts what they did. When retry is allowed,
// the keys of a cluster target that a failover or a moving slot refused are returned to
// send again rather than counted as failed.
func (r *restorer) send(ctx context.Context, c rueidis.Client, db int, cmds rueidis.Commands, sent []dumped, counts *Counts, retry bool) (first error, again rueidis.Commands, againSent []dumped) {
	for i, res := range c.DoMulti(ctx, cmds...) {
		d := &sent[i]
		err := res.Error()
		busy := isBusyKey(err) || (d.str && rueidis.IsRedisNil(err)) // SET NX did not set
		switch {
		case err != nil && retry && r.j.Target.Cluster() && retryable(ctx, err):
			// RESTORE is not retried by the client; a new command for the same key is.
			again = append(again, r.command(c, d))
			againSent = append(againSent, *d)
		case err == nil:
			counts.Keys++
			counts.Bytes += int64(d.size())
		case busy && r.j.Conflict == Skip:
			counts.Skipped++
		case busy:
			// SCAN may return a key twice; the second copy then meets our own first one.
			if r.sameOnTarget(ctx, c, d) {
				continue
			}
			counts.Failed++
			if first == nil {
				first = r.j.Target.Err(fmt.Sprintf("restore into db %d", r.j.TargetDB(db)), d.key, ErrConflict)
			}
		default:
			counts.Failed++
			if first == nil {
				first = r.restoreErr(ctx, db, d.key, err)
			}
		}
	}
	return first, again, againSent
}

// retryable reports whether err comes from a cluster that is changing (a node failing, a
// slot moving) rather than from the command, so that sending it again may succeed.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		var e *Error
		if errors.As(err, &e) {
			re, ok = rueidis.IsRedisErr(e.Err)
		}
	}
	if !ok {
		return true // the connection: a node that died
	}
	msg := re.Error()
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "LOADING", "MASTERDOWN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// prepare names d's key on the target, sets its TTL argument, and says how it is written:
// strings with SET (a third of the target's cost of RESTORE) where the target has SET ...
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
// keys costs the target a third less than a SET each. On a cluster target a group holds
// keys of one slot. It counts the keys written and returns, to be sent key by key, those
// of the groups that were refused (a key exists, a slot moved, an error) and keys left
// alone in their group.
func (r *restorer) setAll(ctx context.Context, c rueidis.Client, keys []dumped, counts *Counts) (again []dumped) {
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
	for i, res := range c.DoMulti(ctx, cmds...) {
		if refused(res.Error()) {
			r.j.Logger.Info("restore: the target refuses MSET or MSETNX; strings are written one SET each", "error", res.Error())
			r.setMany.Store(false)
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

// sameOnTarget reports whether the target already holds exactly what was sent.
func (r *restorer) sameOnTarget(ctx context.Context, c rueidis.Client, k *dumped) bool {
	if k.str {
		v, err := c.Do(ctx, c.B().Get().Key(k.key).Build()).ToString()
		return err == nil && v == k.value
	}
	same, err := c.Do(ctx, c.B().Dump().Key(k.key).Build()).ToString()
	return err == nil && same == k.payload
}

func (r *restorer) restoreErr(ctx context.Context, db int, key string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	op := fmt.Sprintf("restore into db %d", r.j.TargetDB(db))
	msg := err.Error()
	switch {
	case strings.Contains(msg, "payload version or checksum are wrong"):
		err = fmt.Errorf("%w: the target runs %s (RDB %d) and the source %s (RDB %d); a target cannot read payloads of a newer RDB version, so upgrade the target or use a strategy that rewrites the data: %v",
			ErrIncompatible, describeVersion(r.j.Target.Info), r.j.Target.Info.RDBVersion(),
			describeVersion(r.j.Source.Info), r.j.Source.Info.RDBVersion(), err)
	case strings.HasPrefix(msg, "OOM"):
		err = fmt.Errorf("the target is out of memory (maxmemory %d bytes): %w", r.j.Target.Info.MaxMemory, err)
	}
	return r.j.Target.Err(op, key, err)
}

func isBusyKey(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "BUSYKEY")
}

// describeVersion names the server for a message as it names itself: "Redis 7.4.1",
// "Valkey 8.0.1" (not the redis_version 7.2.4 Valkey reports for compatibility).
func describeVersion(s *ServerInfo) string {
	return s.Name()
}

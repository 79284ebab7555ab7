package migrate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// dumped is one key read from the source: its DUMP payload and absolute expiry.
type dumped struct {
	key      string
	payload  string
	expireAt int64 // Unix milliseconds, 0 for none
	// sealed says this program computed the payload's checksum itself (from an RDB
	// stream whose own checksum is verified), so it need not be checked again.
	sealed bool
}

// restorer writes dumped keys to the target with pipelined RESTORE, honouring the
// conflict policy. DumpRestore and Snapshot share it.
type restorer struct {
	j          *Job
	absTTL     bool  // RESTORE ... ABSTTL (Redis 5.0), so queueing does not stretch TTLs
	setStrings bool  // SET ... PXAT (Redis 6.2) writes strings
	maxBulk    int64 // the target's proto-max-bulk-len
}

const defaultMaxBulk = 512 << 20

func newRestorer(ctx context.Context, j *Job) (*restorer, error) {
	r := &restorer{j: j, absTTL: j.Target.Info.AtLeast(5, 0, 0), setStrings: j.Target.Info.AtLeast(6, 2, 0), maxBulk: defaultMaxBulk}
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
// error that stops the migration.
func (r *restorer) restore(ctx context.Context, db int, batch []dumped) error {
	c, err := r.j.Target.Client(r.j.TargetDB(db))
	if err != nil {
		return err
	}
	var counts Counts
	defer func() { r.j.Count(db, counts) }()

	now := time.Now().UnixMilli()
	cmds := make(rueidis.Commands, 0, len(batch))
	sent := make([]sentKey, 0, len(batch))
	for _, d := range batch {
		if int64(len(d.payload)) > r.maxBulk {
			counts.Failed++
			return r.j.Target.Err("restore", d.key, fmt.Errorf(
				"%w: the serialized value is %d bytes and the target's proto-max-bulk-len is %d; raise it on the target (CONFIG SET proto-max-bulk-len)",
				ErrTooLarge, len(d.payload), r.maxBulk))
		}
		var ttl int64
		if d.expireAt > 0 {
			if d.expireAt <= now {
				counts.Expired++
				continue
			}
			ttl = d.expireAt
			if !r.absTTL {
				ttl = d.expireAt - now
			}
		}
		d.key = r.j.TargetKey(db, d.key)
		cmd, k := r.command(c, d, ttl)
		cmds = append(cmds, cmd)
		sent = append(sent, k)
	}
	var first error
	started := time.Now()
	for len(cmds) > 0 && first == nil {
		// On a cluster, keys whose node is failing over are sent again.
		var retry rueidis.Commands
		var retried []sentKey
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
func (r *restorer) send(ctx context.Context, c rueidis.Client, db int, cmds rueidis.Commands, sent []sentKey, counts *Counts, retry bool) (first error, again rueidis.Commands, againSent []sentKey) {
	for i, res := range c.DoMulti(ctx, cmds...) {
		d := sent[i]
		err := res.Error()
		busy := isBusyKey(err) || (d.viaSet && rueidis.IsRedisNil(err)) // SET NX did not set
		switch {
		case err != nil && retry && r.j.Target.Cluster() && retryable(ctx, err):
			// RESTORE is not retried by the client; a new command for the same key is.
			cmd, k := r.command(c, d.dumped, d.ttl)
			again = append(again, cmd)
			againSent = append(againSent, k)
		case err == nil:
			counts.Keys++
			counts.Bytes += int64(len(d.payload))
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

// sentKey is a key sent to the target, and how.
type sentKey struct {
	dumped
	ttl    int64  // RESTORE's TTL argument
	viaSet bool   // written with SET, not RESTORE
	value  string // the string SET wrote
}

// command writes one key: strings with SET (a third of the target's cost of RESTORE) where
// the target has SET ... PXAT (Redis 6.2), everything else with RESTORE.
func (r *restorer) command(c rueidis.Client, d dumped, ttl int64) (rueidis.Completed, sentKey) {
	if r.setStrings {
		if v, ok := stringOfPayload(d.payload, !d.sealed); ok {
			set := c.B().Set().Key(d.key).Value(v)
			var cmd rueidis.Completed
			switch {
			case r.j.Conflict != Replace && d.expireAt > 0:
				cmd = set.Nx().PxatMillisecondsTimestamp(d.expireAt).Build()
			case r.j.Conflict != Replace:
				cmd = set.Nx().Build()
			case d.expireAt > 0:
				cmd = set.PxatMillisecondsTimestamp(d.expireAt).Build()
			default:
				cmd = set.Build()
			}
			return cmd, sentKey{dumped: d, ttl: ttl, viaSet: true, value: v}
		}
	}
	v := c.B().Restore().Key(d.key).Ttl(ttl).SerializedValue(d.payload)
	k := sentKey{dumped: d, ttl: ttl}
	switch {
	case r.j.Conflict == Replace && r.absTTL && ttl > 0:
		return v.Replace().Absttl().Build(), k
	case r.j.Conflict == Replace:
		return v.Replace().Build(), k
	case r.absTTL && ttl > 0:
		return v.Absttl().Build(), k
	}
	return v.Build(), k
}

// sameOnTarget reports whether the target already holds exactly what was sent.
func (r *restorer) sameOnTarget(ctx context.Context, c rueidis.Client, k sentKey) bool {
	if k.viaSet {
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

func describeVersion(s *ServerInfo) string {
	if s == nil || s.Version == "" {
		return "an unknown Redis version"
	}
	return "Redis " + s.Version
}

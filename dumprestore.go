package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// DumpRestore copies each key by reading it with DUMP (and its expiry with PEXPIRETIME, or
// PTTL before Redis 7.0) on the source and writing it with RESTORE on the target, into the
// same database number. It works almost everywhere, managed services included.
//
// It needs SCAN, DUMP and PEXPIRETIME or PTTL on the source, which it only reads, and
// RESTORE on the target (with ABSTTL from Redis 5.0, so TTLs stay exact). Strings go in
// with SET ... PXAT where the target has it (Redis 6.2): the same key, for a fifth less of
// the target's time, after their payload's checksum is verified here. The target must
// read the source's RDB version: the same Redis version or newer. Keys are walked with
// SCAN, pipelined in batches of WithBatchSize keys, WithConcurrency batches in flight.
//
// Either side may be a Redis Cluster. The keys of a cluster source are walked on every
// master at once (see Job.ScanKeys and WithReadFromReplicas), which follows resharding and
// failovers; DUMP and RESTORE go to the node that serves each key's slot, MOVED and ASK
// followed by the cluster client. Reads and writes that meet a node failing over or a slot
// moving are sent again for up to a minute. A cluster target has only database 0: see
// WithDBPrefix for several source databases.
//
// The zero value is ready to use.
type DumpRestore struct{}

// Name returns "dump-restore".
func (DumpRestore) Name() string { return "dump-restore" }

// Check verifies that the source allows DUMP, the target allows RESTORE, and the target
// reads the source's RDB version. It changes nothing.
func (DumpRestore) Check(ctx context.Context, j *Job) error {
	if err := checkTargetDatabases(j); err != nil {
		return err
	}
	if err := checkCommand(ctx, j.Source, "DUMP", probeKey()); err != nil {
		return err
	}
	if err := checkRestore(ctx, j.Target); err != nil {
		return err
	}
	return checkRDBVersions(j)
}

// Run copies every selected database, one after the other.
func (d DumpRestore) Run(ctx context.Context, j *Job) error {
	r, err := newRestorer(ctx, j)
	if err != nil {
		return err
	}
	for _, db := range j.Databases {
		if err := d.copyDB(ctx, j, r, db); err != nil {
			return err
		}
	}
	return nil
}

func (d DumpRestore) copyDB(ctx context.Context, j *Job, r *restorer, db int) error {
	src, err := j.Source.Client(db)
	if err != nil {
		return err
	}
	if _, err := j.Target.Client(j.TargetDB(db)); err != nil {
		return err
	}
	walk := func(ctx context.Context, emit func([]string) error) error { return j.ScanKeys(ctx, db, emit) }
	return fanOut(ctx, j.Concurrency, walk, func(ctx context.Context, keys []string) error {
		out, err := dumpBatch(ctx, j, src, db, keys)
		if err != nil {
			return err
		}
		return r.restore(ctx, db, out)
	})
}

// dumpBatch reads the payload and absolute expiry of each key in one pipeline. Keys that
// are gone by then are counted as Expired. On a cluster source, a batch that meets a node
// failing over or a slot moving is read again, for up to a minute.
func dumpBatch(ctx context.Context, j *Job, src rueidis.Client, db int, keys []string) ([]dumped, error) {
	start := time.Now()
	for {
		out, err := dumpOnce(ctx, j, src, db, keys)
		if err == nil || !j.Source.Cluster() || !retryable(ctx, err) || time.Since(start) > clusterFailoverWait {
			return out, err
		}
		j.Logger.Info("dump: the source cluster is failing over or moving slots; reading again", "error", err)
		if err := sleepCtx(ctx, clusterRetryDelay); err != nil {
			return nil, err
		}
	}
}

func dumpOnce(ctx context.Context, j *Job, src rueidis.Client, db int, keys []string) ([]dumped, error) {
	absolute := j.Source.Info.AtLeast(7, 0, 0)
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for _, k := range keys {
		if absolute {
			cmds = append(cmds, src.B().Pexpiretime().Key(k).Build())
		} else {
			cmds = append(cmds, src.B().Pttl().Key(k).Build())
		}
		cmds = append(cmds, src.B().Dump().Key(k).Build())
	}
	sent := time.Now().UnixMilli()
	res := src.DoMulti(ctx, cmds...)
	out := make([]dumped, 0, len(keys))
	var expired int64
	for i, k := range keys {
		ttl, err := res[2*i].AsInt64()
		if err != nil {
			return nil, j.Source.Err(fmt.Sprintf("read expiry in db %d", db), k, ctxErr(ctx, err))
		}
		payload, err := res[2*i+1].ToString()
		if rueidis.IsRedisNil(err) || ttl == -2 {
			expired++
			continue
		}
		if err != nil {
			return nil, j.Source.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		d := dumped{key: k, payload: payload}
		switch {
		case ttl < 0:
		case absolute:
			d.expireAt = ttl
		default:
			// PTTL was read a little after sent: the TTL may shrink by that, never grow.
			d.expireAt = sent + ttl
		}
		out = append(out, d)
	}
	if expired > 0 {
		j.Count(db, Counts{Expired: expired})
	}
	return out, nil
}

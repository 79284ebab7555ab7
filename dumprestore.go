package migrate

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// DumpRestore copies each key by reading it with DUMP (and its expiry with PEXPIRETIME, or
// PTTL before Redis 7.0) on the source and writing it with RESTORE on the target, into the
// same database number. It works almost everywhere, managed services included.
//
// It needs SCAN, DUMP and PEXPIRETIME or PTTL on the source, which it only reads, and
// RESTORE on the target (with ABSTTL from Redis 5.0, so TTLs stay exact). A target older
// than the source gets each value rewritten in a form it reads (see [WithIncompatible] for
// what it cannot hold at all). Keys are walked with SCAN, pipelined in batches of
// [WithBatchSize] keys, [WithConcurrency] batches in flight.
//
// Strings take a cheaper road where the target has SET ... PXAT (Redis 6.2): each batch's
// strings are read with one MGET (the other keys then with DUMP), which costs the source
// less than a DUMP each, and written with SET ... NX PXAT, or, for those with no expiry,
// many at once with MSETNX (MSET under Replace), which costs the target less than a
// RESTORE each (the README gives the measured costs); on a cluster target one MSETNX takes
// keys of one slot, as the walk of a cluster source gives them. A group that MSETNX
// refuses because one of its keys exists is sent again key by key, so the conflict policy
// sees each key. Where a side refuses these commands (renamed, or not in the ACL user's
// rights), strings go by DUMP and SET instead.
//
// Either side may be a Redis Cluster. The keys of a cluster source are walked on every
// master at once (see Job.ScanKeys and WithReadFromReplicas), which follows resharding and
// failovers; DUMP and RESTORE go to the node that serves each key's slot, MOVED and ASK
// followed by the cluster client. Reads and writes that meet a node failing over or a slot
// moving are sent again for up to a minute; past that the error names the slot and its
// node. A cluster target has only database 0: see WithDBPrefix for several source
// databases.
//
// A target that restarts during the copy, or a connection of ours that is cut (CLIENT
// KILL), costs no restart: writes whose replies were lost are sent again once the target
// answers, for up to 30 s, and a key that the lost write had stored is found holding the
// source's value and counted once; reads are sent again by the client within the same
// bound. A side that does not answer within the ConnWriteTimeout of its ClientOption ends
// the copy with an error that says so (with WithCheckpoint, run it again to continue).
//
// A key larger than the target's proto-max-bulk-len or than WithKeyBudget is copied in
// pieces into a temporary key, renamed onto the key once whole (see the README's "Keys
// of any size"); each batch's sizes are asked first with MEMORY USAGE.
//
// With WithFollow it follows a source that refuses PSYNC through its keyspace
// notifications: it subscribes to them before its walk, copies again each key they name
// (or deletes it on the target when gone), repairs every loss of notifications with a pass
// over the selected keys, and at the cutover copies every key notified until then. It then
// needs the source's notify-keyspace-events to cover every write (see
// WithSourceNotifications), PSUBSCRIBE to its keyspace channels, INFO commandstats, and
// DEL on the target. From a cluster source it subscribes on every master that serves
// slots, and follows failovers and new masters with a repair pass. Resumed from a
// checkpoint (WithCheckpoint), it subscribes, finishes the interrupted walk, and repairs
// with a pass what changed while no run listened, before it follows again.
//
// The zero value is ready to use.
type DumpRestore struct{}

// Name returns "dump-restore".
func (DumpRestore) Name() string { return "dump-restore" }

// Check verifies that the source allows what reads it (SCAN, DUMP, PEXPIRETIME or PTTL,
// and TYPE for WithTypes on servers older than 6.0), that the target allows RESTORE, and
// that the target reads the source's RDB version. Every refused command is named at once.
// MGET on the source and SET, MSETNX and MSET on the target are optional: without them
// strings go by DUMP and RESTORE (Plan shows whether they are allowed). It changes nothing.
func (DumpRestore) Check(ctx context.Context, j *Job) error {
	if err := checkFollowNotify(ctx, j); err != nil {
		return err
	}
	if err := checkTargetDatabases(j); err != nil {
		return err
	}
	return joinRefusals(
		checkCommands(ctx, j.Source, sourceReads(j)...),
		checkRestore(ctx, j.Target),
		checkRDBVersions(j))
}

// Run copies every selected database, one after the other; with WithFollow, it then
// follows the source's writes (see follow_notify.go).
func (d DumpRestore) Run(ctx context.Context, j *Job) error {
	if j.Follow != nil {
		return d.follow(ctx, j)
	}
	return d.copyAll(ctx, j)
}

// copyAll copies every selected database, one after the other.
func (d DumpRestore) copyAll(ctx context.Context, j *Job) error {
	r, err := newRestorer(ctx, j)
	if err != nil {
		return err
	}
	for _, db := range j.Databases {
		if j.checkpoint.skipDB(db) {
			continue // copied whole before an interruption (WithCheckpoint)
		}
		if err := d.copyDB(ctx, j, r, db); err != nil {
			return resumeHint(ctx, j, err)
		}
		if err := j.checkpoint.dbDone(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

func (d DumpRestore) copyDB(ctx context.Context, j *Job, r *restorer, db int) error {
	src, err := j.Source.clientCtx(ctx, db)
	if err != nil {
		return err
	}
	if _, err := j.Target.clientCtx(ctx, j.TargetDB(db)); err != nil {
		return err
	}
	rd := &dumper{j: j, src: src, db: db}
	rd.mget.Store(r.setStrings && (len(j.Types) == 0 || slices.Contains(j.Types, "string")))
	walk := func(ctx context.Context, emit func([]string) error) error { return j.ScanKeys(ctx, db, emit) }
	return fanOut(ctx, j.Concurrency, walk, func(ctx context.Context, keys []string) error {
		out, err := rd.read(ctx, keys)
		if err != nil {
			return err
		}
		err = r.restore(ctx, db, out)
		releaseBatch(out)
		if err == nil {
			j.checkpoint.batchWritten(keys)
		}
		return err
	})
}

// dumper reads the keys of one source database.
type dumper struct {
	j   *Job
	src rueidis.Client
	db  int
	// mget says strings are read with MGET, which costs the source less than DUMP: set
	// when the target writes strings with SET, cleared when the source refuses MGET.
	mget atomic.Bool
	// noSizes says the source refuses MEMORY USAGE: the size of a key is known only once
	// its value is read.
	noSizes atomic.Bool
	limit   bigLimit // the size past which a key is copied in pieces (bigkeys.go)
}

// read reads the value and absolute expiry of each key. Keys that are gone by then are
// counted as Expired. On a cluster source, a batch that meets a node failing over or a
// slot moving is read again, as clusterRetry says. Keys larger than the target takes in
// one command or than WithKeyBudget are copied in pieces (bigkeys.go) rather than read:
// their sizes are asked first, in one pipeline, and a value found too large once read is
// dropped and copied in pieces too.
func (rd *dumper) read(ctx context.Context, keys []string) ([]dumped, error) {
	j := rd.j
	keys, err := rd.copyBigKeys(ctx, keys)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	var wait clusterRetry
	for {
		out, err := rd.once(ctx, keys)
		if err == nil {
			return rd.copyBigValues(ctx, out)
		}
		if !j.Source.Cluster() || !retryable(ctx, err) {
			return out, err
		}
		j.Logger.Info("dump: the source cluster is failing over or moving slots; reading again", "error", err)
		if werr := wait.wait(ctx); werr != nil {
			if w, ok := werr.(*clusterWaitError); ok {
				return nil, w.explain(Source, j.Source.describeSlot(ctx, keySlot(keys[0])), err)
			}
			return nil, werr
		}
	}
}

// once reads keys in one pipeline: the expiry of each and either the values of the
// strings among them by one MGET, the other keys then read by DUMP in a second pipeline,
// or a DUMP of each key.
func (rd *dumper) once(ctx context.Context, keys []string) ([]dumped, error) {
	j, src, db := rd.j, rd.src, rd.db
	absolute := j.Source.Info.AtLeast(7, 0, 0)
	mget := rd.mget.Load() && sameSlot(j, keys)
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for _, k := range keys {
		if absolute {
			cmds = append(cmds, src.B().Pexpiretime().Key(k).Build())
		} else {
			cmds = append(cmds, src.B().Pttl().Key(k).Build())
		}
	}
	if mget {
		cmds = append(cmds, src.B().Mget().Key(keys...).Build())
	} else {
		for _, k := range keys {
			cmds = append(cmds, src.B().Dump().Key(k).Build())
		}
	}
	sent := time.Now().UnixMilli()
	res := src.DoMulti(ctx, cmds...)
	var values []rueidis.RedisMessage
	if mget {
		var err error
		values, err = res[len(keys)].ToArray()
		if classifyReply(err) == replyRefused {
			j.Logger.Info("dump: the source refuses MGET; strings are read with DUMP", "error", err)
			rd.mget.Store(false)
			return rd.once(ctx, keys)
		}
		if err == nil && len(values) != len(keys) {
			err = fmt.Errorf("MGET gave %d values for %d keys", len(values), len(keys))
		}
		if err != nil {
			return nil, j.Source.Err(fmt.Sprintf("mget in db %d", db), keys[0], ctxErr(ctx, err))
		}
	}
	out := newBatch(len(keys))
	var others []int // indexes in out of the keys MGET did not give, to DUMP
	var expired int64
	for i, k := range keys {
		ttl, err := res[i].AsInt64()
		if err != nil {
			return nil, j.Source.Err(fmt.Sprintf("read expiry in db %d", db), k, ctxErr(ctx, err))
		}
		if ttl == -2 {
			expired++
			continue
		}
		d := dumped{key: k}
		switch {
		case ttl < 0:
		case absolute:
			d.expireAt = ttl
		default:
			// PTTL was read a little after sent: the TTL may shrink by that, never grow.
			d.expireAt = sent + ttl
		}
		if mget {
			// MGET gives nil for a key that is not a string (or is gone).
			if v, err := values[i].ToString(); err == nil {
				d.str, d.value = true, v
			} else {
				others = append(others, len(out))
			}
			out = append(out, d)
			continue
		}
		payload, err := res[len(keys)+i].ToString()
		if rueidis.IsRedisNil(err) {
			expired++
			continue
		}
		if err != nil {
			return nil, j.Source.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		d.payload = payload
		out = append(out, d)
	}
	if len(others) > 0 {
		var gone int64
		var err error
		if out, gone, err = rd.dumpOthers(ctx, out, others); err != nil {
			return nil, err
		}
		expired += gone
	}
	if expired > 0 {
		j.Count(db, Counts{Expired: expired})
	}
	return out, nil
}

// dumpOthers reads the payloads of the keys of out at the indexes others, drops those that
// are gone, and says how many those were.
func (rd *dumper) dumpOthers(ctx context.Context, out []dumped, others []int) ([]dumped, int64, error) {
	cmds := make(rueidis.Commands, len(others))
	for n, i := range others {
		cmds[n] = rd.src.B().Dump().Key(out[i].key).Build()
	}
	for n, res := range rd.src.DoMulti(ctx, cmds...) {
		d := &out[others[n]]
		payload, err := res.ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, 0, rd.j.Source.Err(fmt.Sprintf("dump in db %d", rd.db), d.key, ctxErr(ctx, err))
		}
		d.payload = payload // "" when gone: a payload is never empty
	}
	kept := out[:0]
	var gone int64
	for _, d := range out {
		if !d.str && d.payload == "" {
			gone++
			continue
		}
		kept = append(kept, d)
	}
	return kept, gone, nil
}

// sameSlot reports whether one command may name all keys: on a cluster source, only when
// they share a slot (its walk gives a slot's keys together).
func sameSlot(j *Job, keys []string) bool {
	if !j.Source.Cluster() || len(keys) == 0 {
		return true
	}
	slot := keySlot(keys[0])
	for _, k := range keys[1:] {
		if keySlot(k) != slot {
			return false
		}
	}
	return true
}

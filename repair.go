package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// watchFailovers reads the slot map of a cluster target before a run and returns a
// function that, once the run succeeded, reads it again and repairs what a failover of a
// target master lost. A master acknowledges a write before its replica has it, so the
// writes of the last moments before it fails can be gone from the replica promoted in its
// place, although every one of them succeeded: for the slots whose master failed over
// during the run, the selected source keys that the target lacks are copied again. Other
// targets, and runs that failed, are left as they are.
func watchFailovers(ctx context.Context, j *Job) func(error) error {
	if !j.Target.Cluster() {
		return func(err error) error { return err }
	}
	before, err := j.Target.topology(ctx)
	if err != nil {
		j.Logger.Warn("migrate: cannot read the target's slot map; a failover during the run would not be repaired", "error", err)
		return func(err error) error { return err }
	}
	return func(runErr error) error {
		if runErr != nil {
			return runErr
		}
		after, err := j.Target.topology(ctx)
		if err != nil {
			return j.Target.Err("read the slot map after the copy", "", fmt.Errorf(
				"%w; a master that failed over during the copy may have lost keys: check with Verify", ctxErr(ctx, err)))
		}
		slots := failedOver(before, after)
		if len(slots) == 0 {
			return nil
		}
		j.Logger.Warn("migrate: target masters failed over during the copy; copying again what their replicas lacked",
			"slots", len(slots))
		n, err := repairLost(ctx, j, slots)
		if err != nil {
			return err
		}
		j.Logger.Info("migrate: keys the target lost in a failover copied again", "keys", n)
		return nil
	}
}

// failedOver returns the slots whose master in before no longer serves them in after
// because it failed or became a replica: a failover, not a slot moved by a resharding.
func failedOver(before, after *topology) map[uint16]bool {
	slots := map[uint16]bool{}
	for s, id := range before.owner {
		if id == "" || after.owner[s] == id {
			continue
		}
		if n := after.nodes[id]; n == nil || !n.master || n.failed {
			slots[uint16(s)] = true
		}
	}
	return slots
}

// repairLost copies again, from the source as it is now, the selected keys whose target
// slot is in slots and that the target does not hold. A key the target holds is left
// alone, whatever it holds. The keys were counted when first written, so they are not
// counted again; it returns how many it copied.
func repairLost(ctx context.Context, j *Job, slots map[uint16]bool) (int64, error) {
	dst, err := j.Target.Client(0)
	if err != nil {
		return 0, err
	}
	var copied int64
	for _, db := range j.Databases {
		src, err := j.Source.Client(db)
		if err != nil {
			return copied, err
		}
		err = j.scan(ctx, j.Source, db, false, func(keys []string) error {
			var names, targets []string
			for _, k := range keys {
				if tk := j.TargetKey(db, k); slots[keySlot(tk)] {
					names, targets = append(names, k), append(targets, tk)
				}
			}
			if len(names) == 0 {
				return nil
			}
			held, err := exist(ctx, j.Target, dst, j.TargetDB(db), targets, nil)
			if err != nil {
				return err
			}
			for i, k := range names {
				if held[i] {
					continue
				}
				ok, err := copyOne(ctx, j, src, dst, db, k, targets[i])
				if err != nil {
					return err
				}
				if ok {
					copied++
				}
			}
			return nil
		})
		if err != nil {
			return copied, err
		}
	}
	return copied, nil
}

// copyOne copies one key with DUMP and RESTORE, its absolute expiry kept; a key gone from
// the source, or written on the target meanwhile, is left alone.
func copyOne(ctx context.Context, j *Job, src, dst rueidis.Client, db int, key, target string) (bool, error) {
	res := src.DoMulti(ctx, src.B().Pttl().Key(key).Build(), src.B().Dump().Key(key).Build())
	ttl, err := res[0].AsInt64()
	if err != nil {
		return false, j.Source.Err(fmt.Sprintf("read expiry in db %d", db), key, ctxErr(ctx, err))
	}
	payload, err := res[1].ToString()
	if rueidis.IsRedisNil(err) || ttl == -2 {
		return false, nil
	}
	if err != nil {
		return false, j.Source.Err(fmt.Sprintf("dump in db %d", db), key, ctxErr(ctx, err))
	}
	cmd := dst.B().Restore().Key(target).Ttl(0).SerializedValue(payload).Build()
	if ttl > 0 {
		cmd = dst.B().Restore().Key(target).Ttl(time.Now().UnixMilli() + ttl).SerializedValue(payload).Absttl().Build()
	}
	err = dst.Do(ctx, cmd).Error()
	switch classifyReply(err) {
	case replyOK:
		return true, nil
	case replyBusyKey:
		return false, nil
	}
	return false, j.Target.Err(fmt.Sprintf("restore into db %d", j.TargetDB(db)), target, fmt.Errorf(
		"copying again a key the target lost in a failover: %w", ctxErr(ctx, err)))
}

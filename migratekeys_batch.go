package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/rueidis"
)

func (p *migration) copyDB(ctx context.Context, db int) error {
	j := p.j
	src, err := j.Source.Client(db)
	if err != nil {
		return err
	}
	dst, err := j.Target.Client(j.TargetDB(db))
	if err != nil {
		return err
	}
	workers := max(1, min(j.Concurrency, maxMigrates))
	walk := func(ctx context.Context, emit func([]string) error) error { return j.ScanKeys(ctx, db, emit) }
	return fanOut(ctx, workers, walk, func(gctx context.Context, keys []string) error {
		if gctx.Err() != nil {
			return nil // another batch failed; its error is the group's
		}
		// A batch runs under ctx, not gctx: when another batch fails, the MIGRATE under
		// way completes on the source all the same, and its reply is needed to count
		// what it did.
		return p.batch(ctx, src, dst, db, keys)
	})
}

// batch migrates keys of database db, counts the outcome, and returns the error that stops
// the migration.
func (p *migration) batch(ctx context.Context, src, dst rueidis.Client, db int, keys []string) error {
	var counts Counts
	defer func() { p.j.Count(db, counts) }()
	// SCAN may return a key twice, and twice in one MIGRATE would conflict with itself.
	keys = unique(keys)
	if p.j.Conflict != Replace {
		var err error
		if keys, err = p.unheld(ctx, src, dst, db, keys, &counts); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if !p.batched {
		return p.eachKey(ctx, src, dst, db, keys, &counts)
	}
	// A group without a source client is keys still to be split into groups.
	queue := []migrateGroup{{keys: keys}}
	asks := map[uint16]string{}
	for attempt := 0; len(queue) > 0; {
		var err error
		if queue[0].src == nil {
			var gs []migrateGroup
			if gs, err = p.groups(src, queue[0].keys, asks); err == nil {
				queue = append(gs, queue[1:]...)
				continue
			}
		} else {
			p.pipeline(ctx, db, queue)
			g := queue[0]
			if err = p.send(ctx, g, src, dst, db, &counts); err == nil {
				queue = queue[1:]
				continue
			}
			queue[0] = migrateGroup{keys: g.keys}
		}
		if !errors.Is(err, errRedirected) {
			return err
		}
		// A slot moved, or a node failed over: read the slot maps again and resend.
		if attempt++; attempt > clusterRetries {
			return p.migrateErr(ctx, db, fmt.Errorf("the clusters kept moving for %d attempts: %w", clusterRetries, err))
		}
		p.redirected(err, asks)
		p.j.Logger.Info("migrate-keys: a slot moved or a node failed; reading the slot maps again", "attempt", attempt, "error", err)
		if err := sleepCtx(ctx, clusterRetryDelay); err != nil {
			return err
		}
		if err := p.readTopology(ctx); err != nil {
			return err
		}
	}
	return nil
}

// commands are the MULTI block that migrates group g. EXISTS in the same MULTI sees the
// keys MIGRATE sees: nothing runs in between, and both judge expiry at the same instant.
func (p *migration) commands(g migrateGroup, db int) rueidis.Commands {
	c := g.src
	return rueidis.Commands{
		c.B().Multi().Build(),
		c.B().Exists().Key(g.keys...).Build(),
		c.B().Arbitrary("MIGRATE").Args(p.args(g.host, g.port, db, g.keys...)...).Build(),
		c.B().Exec().Build(),
	}
}

// pipeline sends at once the MULTI blocks of the first groups that share a source node
// and were not sent yet, and keeps their replies in them: a cluster source makes small
// groups, one per slot, and a round trip each would dominate.
func (p *migration) pipeline(ctx context.Context, db int, groups []migrateGroup) {
	if len(groups) < 2 || groups[0].res != nil {
		return
	}
	node := groups[0].src
	n := 0
	var cmds rueidis.Commands
	for n < len(groups) && groups[n].src == node && groups[n].res == nil {
		cmds = append(cmds, p.commands(groups[n], db)...)
		n++
	}
	if n < 2 {
		return
	}
	res := node.DoMulti(ctx, cmds...)
	for i := range n {
		groups[i].res = res[4*i : 4*i+4]
	}
}

// send migrates keys from the source node srcNode to host:port in one MULTI, and counts
// the outcome. An error that a moving cluster explains wraps errRedirected, and nothing of
// the keys was counted then.
func (p *migration) send(ctx context.Context, g migrateGroup, src, dst rueidis.Client, db int, counts *Counts) error {
	clustered := p.j.Source.Cluster() || p.j.Target.Cluster()
	keys := g.keys
	res := g.res
	if res == nil {
		res = g.src.DoMulti(ctx, p.commands(g, db)...)
	}
	if clustered && ctx.Err() == nil {
		for _, r := range res {
			err := r.Error()
			if err == nil {
				if arr, aerr := r.ToArray(); aerr == nil && len(arr) == 2 {
					err = arr[1].Error()
				}
			}
			if err == nil {
				continue
			}
			if _, isRedis := rueidis.IsRedisErr(err); isRedirect(err) || (!isRedis && p.j.Source.Cluster()) {
				return fmt.Errorf("%w: %v", errRedirected, p.redact(err))
			}
		}
	}
	fail := func(n int64, err error) error {
		if ctx.Err() == nil {
			counts.Failed += n
		}
		return p.migrateErr(ctx, db, err)
	}
	for _, r := range res[:3] {
		if err := r.Error(); err != nil {
			return fail(int64(len(keys)), err)
		}
	}
	arr, err := res[3].ToArray()
	if err == nil && len(arr) != 2 {
		err = fmt.Errorf("EXEC replied %d results, want 2", len(arr))
	}
	if err != nil {
		return fail(int64(len(keys)), err)
	}
	present, err := arr[0].AsInt64()
	if err != nil {
		return fail(int64(len(keys)), err)
	}
	counts.Expired += int64(len(keys)) - present
	err = arr[1].Error()
	if err == nil { // OK, or NOKEY when every key was gone
		counts.Keys += present
		return nil
	}
	if !isRelayedBusyKey(err) {
		// The target may hold some of these keys: MIGRATE reports only its first error.
		return fail(present, err)
	}
	// A writer created some keys on the target since unheld looked: the target refused
	// them and stored the others; find which.
	busy, err := p.busyKeys(ctx, src, dst, db, keys)
	if err != nil {
		return err
	}
	counts.Keys += max(0, present-int64(len(busy)))
	return p.conflict(db, busy, counts)
}

// eachKey migrates keys with one MIGRATE each, for sources older than Redis 3.0.6; each
// reply says what happened to its key.
func (p *migration) eachKey(ctx context.Context, src, dst rueidis.Client, db int, keys []string, counts *Counts) error {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = src.B().Arbitrary("MIGRATE").Args(p.args(p.host, p.port, db, k)...).Build()
	}
	var busy []string
	var first error
	for i, r := range src.DoMulti(ctx, cmds...) {
		s, err := r.ToString()
		switch {
		case err == nil && s == "NOKEY":
			counts.Expired++
		case err == nil:
			counts.Keys++
		case isRelayedBusyKey(err):
			busy = append(busy, keys[i])
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			counts.Failed++
			if first == nil {
				first = p.migrateErr(ctx, db, err)
			}
		}
	}
	if first != nil {
		return first
	}
	if len(busy) > 0 && p.j.Conflict == Fail {
		// Created by a writer since unheld looked, unless the same value.
		var err error
		if busy, err = p.busyKeys(ctx, src, dst, db, busy); err != nil {
			return err
		}
	}
	return p.conflict(db, busy, counts)
}

// unique returns keys without repeats, in order.
func unique(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

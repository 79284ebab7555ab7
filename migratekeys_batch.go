package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/rueidis"
)

func (p *migration) copyDB(ctx context.Context, db int) error {
	j := p.j
	src, err := j.Source.clientCtx(ctx, db)
	if err != nil {
		return err
	}
	dst, err := j.Target.clientCtx(ctx, j.TargetDB(db))
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
		if err := p.batch(ctx, src, dst, db, keys); err != nil {
			return err
		}
		j.checkpoint.batchWritten(keys)
		return nil
	})
}

// batch migrates keys of database db, counts the outcome, and returns the error that stops
// the migration.
//
// A MIGRATE that fails may have stored any part of its keys: it reports only its first
// error (a redirection, BUSYKEY, OOM, a lost connection). Its keys are then settled one by
// one (settle) before any is sent again or counted, so that a key is neither lost nor
// counted twice.
func (p *migration) batch(ctx context.Context, src, dst rueidis.Client, db int, keys []string) error {
	var counts Counts
	defer func() { p.j.Count(db, counts) }()
	// SCAN may return a key twice, and twice in one MIGRATE would conflict with itself.
	keys = unique(keys)
	if p.j.Conflict != Replace {
		send, err := p.bounded(ctx, func(ctx context.Context) ([]string, error) {
			return p.unheld(ctx, src, dst, db, keys, &counts)
		})
		if err != nil {
			if ctx.Err() == nil && !isConflict(err) {
				counts.Failed += int64(len(keys))
			}
			return err
		}
		keys = send
	}
	if len(keys) == 0 {
		return nil
	}
	if !p.batched {
		return p.eachKey(ctx, src, dst, db, keys, &counts)
	}
	// A group without a source client is keys still to be split into groups; a group to
	// settle is keys whose MIGRATE failed.
	queue := []migrateGroup{{keys: keys}}
	asks := map[uint16]string{}
	var (
		wait      clusterRetry
		reconnect = reconnectRetry()
		resends   int // of keys left after BUSYKEY
		last      *retryError
	)
	// waitReconnect waits for the side whose connection failed (err) to answer again;
	// past reconnectWait it counts what is left as Failed and returns the error.
	waitReconnect := func(err error) error {
		p.j.Logger.Info("migrate-keys: a connection failed or the source could not reach the target; trying again", "error", err)
		failed := func() {
			for _, g := range queue {
				counts.Failed += int64(len(g.keys))
			}
		}
		if kind, _ := classifyRelayed(err); kind == replyUnreachable {
			if serr := p.j.Target.stallCheck(ctx); serr != nil {
				failed()
				return fmt.Errorf("%w (MIGRATE: %v)", serr, err)
			}
		}
		werr := reconnect.wait(ctx)
		if werr == nil {
			return nil
		}
		w, ok := werr.(*clusterWaitError)
		if !ok {
			return werr
		}
		failed()
		e := p.j.Source
		if kind, fromTarget := classifyRelayed(err); kind == replyUnreachable || fromTarget {
			e = p.j.Target
		} else if x := (*Error)(nil); errors.As(err, &x) && x.Side == Target {
			e = p.j.Target
		}
		return e.explainReconnect(w, err)
	}
	for len(queue) > 0 {
		g := queue[0]
		var err error
		switch {
		case g.settle:
			var rest []string
			if rest, err = p.bounded(ctx, func(ctx context.Context) ([]string, error) {
				return p.settle(ctx, src, dst, db, g.keys, false, &counts)
			}); err == nil {
				queue[0] = migrateGroup{keys: rest}
				if len(rest) == 0 {
					queue = queue[1:]
				}
				continue
			}
			if isConflict(err) {
				counts.Failed += int64(len(rest))
				return err
			}
			if reconnectable(ctx, err) && !p.j.Target.Cluster() && !p.j.Source.Cluster() {
				// A side does not answer yet: settle once it does.
				if err := waitReconnect(err); err != nil {
					return err
				}
				continue
			}
			if !p.j.Target.Cluster() && !p.j.Source.Cluster() || ctx.Err() != nil {
				if ctx.Err() == nil {
					counts.Failed += int64(len(g.keys))
				}
				return ctxErr(ctx, err)
			}
			// A cluster node that does not answer may be failing over: wait for it.
			err = &retryError{err: fmt.Errorf("%w: %w", errRedirected, err)}
		case g.src == nil:
			var gs []migrateGroup
			if gs, err = p.groups(src, g.keys, asks); err == nil {
				queue = append(gs, queue[1:]...)
				continue
			}
		default:
			p.pipeline(ctx, db, queue)
			if err = p.send(ctx, g, db, &counts); err == nil {
				queue = queue[1:]
				continue
			}
			var f *migrateFailure
			if errors.As(err, &f) && f.reconnect {
				// The connection failed, or the source could not reach a target that it
				// reached before: once both answer, settle which keys the target holds and
				// send the others again.
				if err := waitReconnect(f.err); err != nil {
					return err
				}
				queue[0] = migrateGroup{keys: g.keys, settle: true}
				continue
			}
			if errors.As(err, &f) {
				// The target may hold part of the group: find which, count them, and
				// fail with MIGRATE's error for the others, unless it was BUSYKEY,
				// which settle explains key by key.
				rest, serr := p.bounded(ctx, func(ctx context.Context) ([]string, error) {
					return p.settle(ctx, src, dst, db, g.keys, f.busy, &counts)
				})
				switch {
				case serr != nil && ctx.Err() != nil:
					return ctx.Err()
				case isConflict(serr):
					counts.Failed += int64(len(rest))
					return serr
				case serr != nil:
					counts.Failed += int64(len(g.keys))
					return fmt.Errorf("%w (and which of its keys the target holds is unknown: %v)", f.err, serr)
				case len(rest) == 0:
					queue = queue[1:]
					continue
				case !f.busy || resends >= len(keys):
					// Each resend settles at least the key refused: more resends than keys
					// mean a writer keeps creating them on the target.
					if ctx.Err() != nil {
						return ctx.Err()
					}
					counts.Failed += int64(len(rest))
					return f.err
				}
				resends++
				queue[0] = migrateGroup{keys: rest}
				continue
			}
			if errors.Is(err, errRedirected) {
				// The keys stored before the redirection are on the target: settle
				// them before sending the others again.
				queue[0] = migrateGroup{keys: g.keys, settle: true}
			}
		}
		if !errors.Is(err, errRedirected) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		// A slot moved, or a node failed over: read the slot maps again and resend.
		if r := (*retryError)(nil); errors.As(err, &r) && r.node != "" {
			last = r // the last MIGRATE's, to name its node
		}
		if g.res != nil && len(queue) > 1 && queue[1].res != nil {
			// The replies of the groups sent in the same pipeline are of the same try: read
			// them before waiting, rather than wait once for each.
			p.redirected(err, asks)
			continue
		}
		if werr := wait.wait(ctx); werr != nil {
			w, ok := werr.(*clusterWaitError)
			if !ok {
				return werr
			}
			for _, g := range queue {
				counts.Failed += int64(len(g.keys))
			}
			return p.gaveUp(ctx, db, w, last, err)
		}
		p.redirected(err, asks)
		p.j.Logger.Info("migrate-keys: a slot moved or a node failed; reading the slot maps again", "attempt", wait.tries, "error", err)
		if err := p.readTopology(ctx); err != nil {
			return err
		}
	}
	return nil
}

// bounded runs a reading of keys on both sides (unheld, settle) within clusterSettleWait
// when a side is a cluster: a cluster client retries a node that does not answer until its
// slots are served again, which never happens when a master fails without a replica to take
// over. The error then names the node that serves the key that got no answer.
func (p *migration) bounded(ctx context.Context, read func(context.Context) ([]string, error)) ([]string, error) {
	if !p.j.Source.Cluster() && !p.j.Target.Cluster() {
		return read(ctx)
	}
	rctx, cancel := context.WithTimeout(ctx, clusterSettleWait)
	defer cancel()
	keys, err := read(rctx)
	if err == nil || ctx.Err() != nil || rctx.Err() == nil {
		return keys, err
	}
	w := &clusterWaitError{waited: clusterSettleWait}
	var e *Error
	if !errors.As(err, &e) || e.Key == "" {
		return keys, w.explain(Target, "a reading of the batch's keys", err)
	}
	p.mu.Lock()
	var owner string
	if t := p.dstTopo; t != nil && e.Side == p.j.Target.Side {
		owner = t.ownerAddr(keySlot(e.Key))
	} else if t := p.srcTopo; t != nil && e.Side == p.j.Source.Side {
		owner = t.ownerAddr(keySlot(e.Key))
	}
	p.mu.Unlock()
	end := *e
	end.Err = w.explain(e.Side, fmt.Sprintf("slot %d (node %s)", keySlot(e.Key), owner), e.Err)
	if owner != "" {
		end.Addr = owner
	}
	return keys, &end
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

// send migrates group g in one MULTI and, when MIGRATE succeeds, counts the outcome. When
// it fails, the target may hold any part of the group and nothing is counted: an error that
// a moving cluster explains (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a cluster node that does not
// answer) is a *retryError that wraps errRedirected; any other a *migrateFailure.
func (p *migration) send(ctx context.Context, g migrateGroup, db int, counts *Counts) error {
	keys := g.keys
	res := g.res
	if res == nil {
		res = g.src.DoMulti(ctx, p.commands(g, db)...)
	}
	failed := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.retriable(err) {
			r := &retryError{node: g.addr(), err: fmt.Errorf("%w: %v", errRedirected, p.redact(err))}
			r.kind, r.fromTarget = classifyRelayed(err)
			if text, _, ok := errorReply(err); ok {
				r.reply = p.redact(errors.New(text)).Error()
			}
			return r
		}
		kind, _ := classifyRelayed(err)
		return &migrateFailure{err: p.migrateErrAt(ctx, db, g.addr(), err), busy: isRelayedBusyKey(err),
			reconnect: reconnectable(ctx, err) && (kind != replyUnreachable || p.reached.Load())}
	}
	for _, r := range res[:3] {
		if err := r.Error(); err != nil {
			return failed(err)
		}
	}
	arr, err := res[3].ToArray()
	if err == nil && len(arr) != 2 {
		err = fmt.Errorf("EXEC replied %d results, want 2", len(arr))
	}
	if err != nil {
		return failed(err)
	}
	present, err := arr[0].AsInt64()
	if err != nil {
		return failed(err)
	}
	if err := arr[1].Error(); err != nil {
		return failed(err)
	}
	// OK, or NOKEY when every key was gone.
	counts.Expired += int64(len(keys)) - present
	counts.Keys += present
	p.reached.Store(true)
	return nil
}

// retriable reports whether an error of a MIGRATE block is one a moving cluster explains:
// a redirection or a cluster that is changing (on the source, or relayed from the target),
// a source node that does not answer, or a target node the source cannot reach (IOERR),
// which may be a master that failed and whose replica takes over.
func (p *migration) retriable(err error) bool {
	if !p.j.Source.Cluster() && !p.j.Target.Cluster() {
		return false
	}
	switch kind, fromTarget := classifyRelayed(err); kind {
	case replyMoving:
		return true
	case replyLost:
		return p.j.Source.Cluster()
	case replyUnreachable:
		return !fromTarget && p.j.Target.Cluster()
	}
	return false
}

// migrateFailure is a MIGRATE that failed for a reason other than a moving cluster: the
// target may hold part of its keys.
type migrateFailure struct {
	err  error // explained by migrateErrAt
	busy bool  // BUSYKEY: the target holds one of the keys
	// reconnect says a side may answer again (reconnectable): the connection to the source
	// failed, the target restarts, or the source could not reach a target it reached before.
	reconnect bool
}

func (f *migrateFailure) Error() string { return f.err.Error() }
func (f *migrateFailure) Unwrap() error { return f.err }

// retryError is an error a moving cluster explains, from a MIGRATE towards node.
type retryError struct {
	node       string    // host:port of the target node, "" when unknown
	kind       replyKind // of the reply, or of the target's that MIGRATE relayed (fromTarget)
	fromTarget bool
	reply      string // the reply as errorReply gives it, without the password: where MOVED and ASK point
	err        error  // wraps errRedirected
}

func (r *retryError) Error() string { return r.err.Error() }
func (r *retryError) Unwrap() error { return r.err }

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
		// Created by a writer since unheld looked, unless the same value: those are
		// already there, skipped.
		n := len(busy)
		var err error
		if busy, err = p.busyKeys(ctx, src, dst, db, busy); err != nil {
			return err
		}
		counts.Skipped += int64(n - len(busy))
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

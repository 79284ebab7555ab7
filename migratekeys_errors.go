package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// redact returns err without the target's password, which a server may quote: an unknown
// command's error repeats its first arguments, so a source without MIGRATE, or a target
// without AUTH, would echo it.
func (p *migration) redact(err error) error {
	if p.password == "" || !strings.Contains(err.Error(), p.password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p.password, "<password>"))
}

// isRelayedBusyKey reports whether err is MIGRATE relaying its target's BUSYKEY.
func isRelayedBusyKey(err error) bool {
	kind, fromTarget := classifyRelayed(err)
	return fromTarget && kind == replyBusyKey
}

// migrateErr explains an error of MIGRATE: the source's (it could not reach the target) or
// the target's, which MIGRATE relays. MIGRATE's arguments, which hold the password, are
// never part of it, and the password is cut from what the servers say.
func (p *migration) migrateErr(ctx context.Context, db int, err error) error {
	return p.migrateErrAt(ctx, db, "", err)
}

// migrateErrAt is migrateErr for a MIGRATE towards node (host:port), a node of a cluster
// target; "" is the target's address.
func (p *migration) migrateErrAt(ctx context.Context, db int, node string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	j := p.j
	kind, fromTarget := classifyRelayed(err)
	err = p.redact(err)
	if !fromTarget {
		op := fmt.Sprintf("migrate db %d to %s", db, p.addr)
		where, fix := "the target at "+p.addr, "set MigrateKeys.TargetAddr to the target's address as the source sees it "+
			"(the source connects to it, not this program), or raise MigrateKeys.Timeout if the target is slow"
		if j.Target.Cluster() && node != "" {
			op = fmt.Sprintf("migrate db %d to target node %s", db, node)
			where, fix = "the target node at "+node, "check that node in the target's CLUSTER NODES (a master that failed "+
				"needs a replica to take over), or raise MigrateKeys.Timeout if it is slow"
		}
		if kind == replyUnreachable {
			err = fmt.Errorf("the source could not reach %s, or it did not answer within MIGRATE's timeout of %v: %w; %s",
				where, p.timeout, err, fix)
		}
		return j.Source.Err(op, "", err)
	}
	op := fmt.Sprintf("migrate into db %d", db)
	if j.Target.Cluster() && node != "" {
		op += " on node " + node
	} else if p.addr != j.Target.Addr {
		op += " (the source reaches it at " + p.addr + ")"
	}
	switch kind {
	case replyNoAuth, replyWrongPass:
		err = fmt.Errorf("the target refused the login MIGRATE sent from the source; check the target's Password "+
			"(and Username for an ACL user), which MIGRATE passes on: %w", err)
	case replyRefused:
		err = fmt.Errorf("the target refuses a command MIGRATE sends it (AUTH, SELECT, RESTORE): renamed, or not permitted "+
			"to its user; allow them on the target: %w", err)
	case replyIncompatible:
		err = fmt.Errorf("%w: the target runs %s and the source %s; upgrade the target: %v",
			ErrIncompatible, describeVersion(j.Target.Info), describeVersion(j.Source.Info), err)
	case replyOOM:
		err = fmt.Errorf("the target is out of memory (maxmemory %d bytes): %w", j.Target.Info.MaxMemory, err)
	}
	return j.Target.Err(op, "", err)
}

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }

// gaveUp explains why the keys of a batch could not be sent while the clusters kept moving
// for longer than clusterRetry waits (w): err is the last attempt's error, last the last
// error of a MIGRATE.
func (p *migration) gaveUp(ctx context.Context, db int, w *clusterWaitError, last *retryError, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var r *retryError
	if !errors.As(err, &r) {
		r = &retryError{}
	}
	err = p.redact(err)
	op := fmt.Sprintf("migrate into db %d", db)
	if last != nil && last.node != "" {
		op += " on node " + last.node
	}
	if last != nil && last.node != "" && last.kind == replyUnreachable && !last.fromTarget {
		return p.j.Target.Err(op, "", w.explain(Target, "node "+last.node,
			fmt.Errorf("the source could not reach that node, and no replica took over its slots (use DumpRestore if it stays down): %w", err)))
	}
	if slot, to, _, ok := redirection(r.reply); ok && !p.j.Source.Cluster() {
		return p.j.Target.Err(op, "", fmt.Errorf("slot %d of the target is being moved (to %s) and did not settle (%v): "+
			"a standalone source's MIGRATE sends RESTORE, which the node importing a slot refuses, so its keys can be written only "+
			"once the move ends; finish the move (redis-cli --cluster fix) and run again, or use DumpRestore or Snapshot, which follow ASK: %w",
			slot, to, w, err))
	}
	return p.migrateErrAt(ctx, db, "", w.explain(Target, "the batch's slots", err))
}

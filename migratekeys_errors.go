package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// relayedPrefix starts the error MIGRATE replies when the target refused a command.
const relayedPrefix = "Target instance replied with error: "

// relayed returns the target's own error when err is one MIGRATE relays.
func relayed(err error) (string, bool) {
	_, msg, ok := strings.Cut(err.Error(), relayedPrefix)
	return msg, ok
}

// redact returns err without the target's password, which a server may quote: an unknown
// command's error repeats its first arguments, so a source without MIGRATE, or a target
// without AUTH, would echo it.
func (p *migration) redact(err error) error {
	if p.password == "" || !strings.Contains(err.Error(), p.password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p.password, "<password>"))
}

func isRelayedBusyKey(err error) bool {
	msg, ok := relayed(err)
	return ok && strings.HasPrefix(msg, "BUSYKEY")
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
	err = p.redact(err)
	msg, fromTarget := relayed(err)
	if !fromTarget {
		if j.Target.Cluster() && node != "" {
			op := fmt.Sprintf("migrate db %d to target node %s", db, node)
			if strings.HasPrefix(err.Error(), "IOERR") {
				err = fmt.Errorf("the source could not reach the target node at %s, or it did not answer within MIGRATE's timeout of %v: %w; "+
					"check that node in the target's CLUSTER NODES (a master that failed needs a replica to take over), "+
					"or raise MigrateKeys.Timeout if it is slow", node, p.timeout, err)
			}
			return j.Source.Err(op, "", err)
		}
		op := fmt.Sprintf("migrate db %d to %s", db, p.addr)
		if strings.HasPrefix(err.Error(), "IOERR") {
			err = fmt.Errorf("the source could not reach the target at %s, or it did not answer within MIGRATE's timeout of %v: %w; "+
				"set MigrateKeys.TargetAddr to the target's address as the source sees it (the source connects to it, not this program), "+
				"or raise MigrateKeys.Timeout if the target is slow", p.addr, p.timeout, err)
		}
		return j.Source.Err(op, "", err)
	}
	op := fmt.Sprintf("migrate into db %d", db)
	if j.Target.Cluster() && node != "" {
		op += " on node " + node
	} else if p.addr != j.Target.Addr {
		op += " (the source reaches it at " + p.addr + ")"
	}
	switch {
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "without any password configured"):
		err = fmt.Errorf("the target refused the login MIGRATE sent from the source; check the target's Password "+
			"(and Username for an ACL user), which MIGRATE passes on: %w", err)
	case strings.HasPrefix(msg, "NOPERM"):
		err = fmt.Errorf("the target's user may not run what MIGRATE sends (RESTORE, SELECT); grant them on the target: %w", err)
	case strings.Contains(msg, "payload version or checksum are wrong"), strings.Contains(msg, "Bad data format"):
		err = fmt.Errorf("%w: the target runs %s and the source %s; upgrade the target: %v",
			ErrIncompatible, describeVersion(j.Target.Info), describeVersion(j.Source.Info), err)
	case strings.HasPrefix(msg, "OOM"):
		err = fmt.Errorf("the target is out of memory (maxmemory %d bytes): %w", j.Target.Info.MaxMemory, err)
	}
	return j.Target.Err(op, "", err)
}

func isConflict(err error) bool { return errors.Is(err, ErrConflict) }

// gaveUp explains why the keys of a batch could not be sent after clusterRetries attempts
// or clusterWait: err is the last attempt's error, last the last error of a MIGRATE.
func (p *migration) gaveUp(ctx context.Context, db int, attempts int, last *retryError, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	err = p.redact(err)
	msg := err.Error()
	if m, ok := relayed(err); ok {
		msg = m
	}
	op := fmt.Sprintf("migrate into db %d", db)
	if last != nil && last.node != "" {
		op += " on node " + last.node
	}
	switch {
	case last != nil && last.node != "" && strings.Contains(last.err.Error(), "IOERR"):
		return p.j.Target.Err(op, "", fmt.Errorf("the source could not reach the target node at %s for %d attempts over %v, "+
			"and no replica took over its slots: %w; check that node in the target's CLUSTER NODES, or use DumpRestore",
			last.node, attempts, clusterWait, err))
	case !p.j.Source.Cluster() && (strings.Contains(msg, "ASK ") || strings.Contains(msg, "MOVED ")):
		slot, to, _ := redirection(msg, "ASK ")
		if _, _, ok := redirection(msg, "ASK "); !ok {
			slot, to, _ = redirection(msg, "MOVED ")
		}
		return p.j.Target.Err(op, "", fmt.Errorf("slot %d of the target is being moved (to %s) and did not settle in %v: "+
			"a standalone source's MIGRATE sends RESTORE, which the node importing a slot refuses, so its keys can be written only "+
			"once the move ends; finish the move (redis-cli --cluster fix) and run again, or use DumpRestore or Snapshot, which follow ASK: %w",
			slot, to, clusterWait, err))
	}
	return p.migrateErrAt(ctx, db, "", fmt.Errorf("the clusters kept moving for %d attempts over %v: %w", attempts, clusterWait, err))
}

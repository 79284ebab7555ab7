package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// applyConn is where the applier sends the stream: one dedicated connection of a
// standalone target, or the cluster client of a cluster target.
type applyConn interface {
	B() rueidis.Builder
	DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult
}

// A following Snapshot into a cluster target sends each command of the stream to the
// master that serves its key's slot: the command is built as received and given the slot
// of its first key (the source's command table says where the keys are), and the cluster
// client sends it there, in its slot's transaction (commitSlots), and follows MOVED and ASK.
//
// Order. What matters is the order of the writes to each key, and a key lives in one
// slot. The applier sends a batch and waits for every reply before it sends the next; within
// a batch the cluster client sends the commands of one node, in the stream's order, on one
// pipelined connection, and resends those redirected (MOVED, ASK) in their order. So the
// commands of one slot reach its node in the stream's order, while different slots' nodes
// apply theirs side by side, as the cluster's own clients would.
//
// What a cluster cannot run as one command on one node:
//   - SELECT: a cluster has database 0 only. The databases of the stream map as those of the
//     snapshot do (checkTargetDatabases, snapshotDBs): one database, or WithDBPrefix.
//   - MULTI/EXEC: the batch goes as one transaction per slot, with the slot's offset key
//     (commitSlots), so a source transaction whose keys share a slot stays one on that
//     slot's node; one whose keys span slots (a standalone source's transactions and scripts
//     may) cannot be atomic there, and is applied as one transaction per slot, in order,
//     logged once per migration.
//   - DEL and UNLINK of keys in several slots are applied key by key, MSET pair by pair;
//     other commands whose keys span slots (RENAME, SUNIONSTORE, ...) stop the migration
//     with an error naming the command: their replay cannot be exact.
//   - FLUSHDB and FLUSHALL are applied on every master, once the commands before them are,
//     and empty the cluster as they emptied the source (they stop the migration when the
//     target held keys before it, as on a standalone target, and within a transaction).
//     FUNCTION and SCRIPT commands are logged and not applied, as the snapshot's function
//     libraries are not restored on a cluster target. Any other command without keys stops
//     the migration: there is no node of its own to send it to.

// clusterQueue queues one command of the stream for a cluster target; args are the
// command as the filters and WithDBPrefix left it.
func (a *applier) clusterQueue(ctx context.Context, name string, args []string) error {
	switch name {
	case "SELECT":
		return nil // database 0 only, which snapshotDBs mapped the stream's database to
	case "MULTI":
		a.txStart = len(a.batch)
		a.queue(name, args, "")
		return nil
	case "EXEC":
		a.clusterExec(args)
		return nil
	}
	keys, err := a.keys.keys(ctx, args)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		switch {
		case name == "FUNCTION" || name == "SCRIPT":
			// As the snapshot's function libraries, which a cluster target does not get.
			a.f.j.Logger.Warn("snapshot: follow: a function or script command of the source not applied on the cluster target; apply it on every primary",
				"command", strings.Join(args[:min(len(args), 2)], " "))
			return nil
		case name != "FLUSHDB" && name != "FLUSHALL":
			return a.unreplayable(ctx, name, "", "it names no key, so the cluster target has no node of its own for it")
		case a.inMulti:
			return a.unreplayable(ctx, name, "", "it names no key, so it must run on every master of the cluster target, and it is part of a transaction")
		}
		return a.broadcast(ctx, name, args)
	}
	slot := keySlot(keys[0])
	for _, k := range keys[1:] {
		if keySlot(k) != slot {
			return a.clusterSplit(ctx, name, args, keys[0], k)
		}
	}
	a.queueSlot(name, args, keys[0])
	return nil
}

// queueSlot queues a command for a cluster target, sent to the slot of slotKey, unless the
// slot's offset key says the target holds it (a continued stream).
func (a *applier) queueSlot(name string, args []string, slotKey string) {
	if !a.skipped(slotKey) {
		a.queue(name, args, slotKey)
	}
}

// queue appends a command to the batch, routed to the slot of slotKey ("" for MULTI and
// EXEC, which commitSlots leaves out on a cluster target).
func (a *applier) queue(name string, args []string, slotKey string) {
	cmd := a.c.B().Arbitrary(args...).Build()
	if slotKey != "" {
		cmd = cmd.SetSlot(slotKey)
	}
	cmd = cmd.Pin() // sent again when its transaction's fate is unknown (commit)
	key := ""
	if len(args) > 1 {
		key = args[1]
	}
	a.batch = append(a.batch, cmd)
	a.cmds = append(a.cmds, streamCommand{name: name, key: key, end: a.pos, slotKey: slotKey})
}

// clusterExec ends a transaction of the source. Its commands go with the rest of the batch
// in one transaction per slot (commitSlots): atomic when they share a slot; when they span
// slots, each slot's share is, in the stream's order, which is logged once per migration.
func (a *applier) clusterExec(args []string) {
	if !a.splitLogged && a.spansSlots(a.txStart) {
		a.splitLogged = true
		a.f.j.Logger.Warn("snapshot: follow: a transaction of the source (MULTI/EXEC, or a script's effects) changes keys of several slots, "+
			"which a cluster target cannot apply atomically: it and any later such transaction are applied as one transaction per slot, in order",
			"offset", a.f.base+a.pos)
	}
	a.txStart = -1
	a.queue("EXEC", args, "")
}

// spansSlots reports whether the commands queued after index start are in several slots.
func (a *applier) spansSlots(start int) bool {
	if start < 0 || start >= len(a.cmds) {
		return false
	}
	slotKey := ""
	for _, c := range a.cmds[start+1:] {
		switch {
		case c.slotKey == "":
		case slotKey == "":
			slotKey = c.slotKey
		case keySlot(c.slotKey) != keySlot(slotKey):
			return true
		}
	}
	return false
}

// clusterSplit queues a command whose keys are in several slots of the cluster target:
// key by key where that replays it exactly, else an error naming it.
func (a *applier) clusterSplit(ctx context.Context, name string, args []string, k1, k2 string) error {
	switch {
	case (name == "DEL" || name == "UNLINK") && len(args) > 2:
		for _, k := range args[1:] {
			a.queueSlot(name, []string{args[0], k}, k)
		}
		return nil
	case name == "MSET" && len(args)%2 == 1:
		for i := 1; i+1 < len(args); i += 2 {
			a.queueSlot(name, []string{args[0], args[i], args[i+1]}, args[i])
		}
		return nil
	}
	return a.unreplayable(ctx, name, k1, fmt.Sprintf(
		"its keys %q and %q are in different slots of the cluster target (%d and %d), where one command runs on one node", k1, k2, keySlot(k1), keySlot(k2)))
}

// broadcast applies FLUSHDB or FLUSHALL on every master of the cluster target, after the
// commands before it.
func (a *applier) broadcast(ctx context.Context, name string, args []string) error {
	f := a.f
	end := a.pos
	a.pos = a.cmdStart
	if err := a.flush(ctx); err != nil {
		return err
	}
	a.pos = end
	t, err := f.j.Target.topology(ctx)
	if err != nil {
		return err
	}
	ids, _ := t.masters()
	for i, id := range ids {
		addr := t.nodes[id].addr
		c, err := f.j.Target.node(addr)
		if err == nil {
			err = c.Do(ctx, c.B().Arbitrary(args...).Build()).Error()
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return f.j.Target.Err("apply "+name, "", fmt.Errorf(
				"master %s refused the source's write %s (ending at its replication offset %d), which goes to every master, "+
					"after %d of the %d masters applied it: %w; following stopped, and the target holds the source's writes up to offset %d",
				addr, strings.Join(args, " "), f.base+end, i, len(ids), err, f.base+f.applied.Load()))
		}
	}
	f.j.Logger.Info("snapshot: follow: applied on every master of the cluster target", "command", name, "masters", len(ids))
	f.st.commands.Add(1)
	// It deleted the offset keys too: one says again where the stream stands, past it.
	a.committed, a.batchSrcDB = f.base+end, a.srcDB
	ends := f.slotEnds()
	for s := range ends {
		ends[s] = -1
	}
	s := f.firstSlot()
	key := slotKeyName(a.key, s)
	if err := a.c.DoMulti(ctx, a.c.B().Set().Key(key).Value(slotPoint{from: a.point(f.base + end), end: f.base + end}.String()).Build())[0].Error(); err != nil {
		return f.j.Target.Err("write the offset key (WithOffsetKey)", key, ctxErr(ctx, err))
	}
	ends[s] = f.base + end
	return nil
}

// ownSlots stops, on a cluster source, at a command of one master's stream whose keys are
// in a slot that master did not serve at the start: the slot moved, and the stream of its
// new master may hold writes to it that the migration does not follow. A command without
// keys (FLUSHALL, FUNCTION LOAD) changes one master only, which a replay elsewhere cannot
// say: it stops too.
func (a *applier) ownSlots(ctx context.Context, name string, args []string) error {
	keys, err := a.keys.keys(ctx, args)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return a.unreplayable(ctx, name, "", fmt.Sprintf(
			"it names no key, and from a cluster source it changes the one master %s that sent it; apply it on the target yourself and migrate again", a.f.node))
	}
	for _, k := range keys {
		if sl := keySlot(k); !a.f.owned[sl] {
			return a.unreplayable(ctx, name, k, fmt.Sprintf(
				"its key's slot %d was not served by master %s, whose stream sent it, when the migration started: the slot moved (a resharding), "+
					"which a following Snapshot cannot follow; migrate again once it is done", sl, a.f.node))
		}
	}
	return nil
}

package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// probeKey returns a key name no one uses, for commands that probe a permission. Its hash
// tag puts it in slot 0, on the node of a cluster that probes go to.
func probeKey() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "migrate:probe:{" + slotZeroTag + "}:" + hex.EncodeToString(b)
}

// slotZeroTag is the first number whose hash slot is 0.
var slotZeroTag = func() string {
	for i := 0; ; i++ {
		if t := strconv.Itoa(i); keySlot(t) == 0 {
			return t
		}
	}
}()

// access is what a server says, without running it, of one command for the user a client
// is logged in as.
type access int

const (
	accessOK       access = iota // the user may run it here
	accessRenamed                // the server knows no command by that name: renamed or disabled
	accessDenied                 // the ACL user may not run it
	accessReadOnly               // a write, which a read-only replica refuses
	accessUnknown                // the server would not say (MULTI and ACL DRYRUN refused)
)

// String is how Plan's Facts.Commands shows an access.
func (a access) String() string {
	return [...]string{"ok", "renamed or disabled", "refused by ACL", "refused: read-only replica", "unknown"}[a]
}

// verdict is the probe's answer for one command.
type verdict struct {
	access
	args  []string // the command probed
	user  string   // the ACL user, when accessDenied
	reply string   // the server's words, when it refused
}

// refused reports whether the verdict stops the command: renamed, denied or read-only.
func (v verdict) refused() bool {
	return v.access == accessRenamed || v.access == accessDenied || v.access == accessReadOnly
}

// err explains a refusal as an error wrapping ErrUnsupported that names the side, the
// command and what to change; nil when the command is not refused.
func (v verdict) err(e *Endpoint) error {
	name := commandName(v.args)
	var why string
	switch v.access {
	case accessRenamed:
		why = fmt.Sprintf("%s is renamed or disabled (rename-command) on the %s; undo the rename-command in its configuration (a restart), or use a strategy that does without it",
			commandName(v.args[:min(len(v.args), 2)]), e.Side)
	case accessDenied:
		why = fmt.Sprintf("the %s's ACL user %q may not run %s; grant it %s (ACL SETUSER %s %s)",
			e.Side, v.user, name, grantOf(v.args), v.user, grantOf(v.args))
	case accessReadOnly:
		why = fmt.Sprintf("the %s is a read-only replica, which refuses %s; use its master", e.Side, name)
	default:
		return nil
	}
	return e.Err("check "+strings.ToLower(name), "", fmt.Errorf("%s: %w: %s", why, ErrUnsupported, v.reply))
}

// containers are the commands whose first argument is a subcommand, which ACL rules name
// as command|subcommand.
var containers = []string{"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "MEMORY", "OBJECT", "SCRIPT", "XINFO"}

// commandName names a command for messages: "DUMP", "FUNCTION RESTORE", and, for CONFIG,
// the parameter too ("CONFIG SET masterauth").
func commandName(args []string) string {
	name := strings.ToUpper(args[0])
	if len(args) > 1 && slices.Contains(containers, name) {
		name += " " + strings.ToUpper(args[1])
		if name == "CONFIG GET" || name == "CONFIG SET" {
			if len(args) > 2 {
				name += " " + args[2]
			}
		}
	}
	return name
}

// grantOf is the ACL rule that allows a command: "+dump", "+config|set".
func grantOf(args []string) string {
	g := "+" + strings.ToLower(args[0])
	if len(args) > 1 && slices.Contains(containers, strings.ToUpper(args[0])) {
		g += "|" + strings.ToLower(args[1])
	}
	return g
}

// accessOf reads an error reply to a command as an access: ok for replies that come
// after the server's ACL check (a key the user may not touch, a full or read-only server);
// accessUnknown for those that come before it (a wrong argument count, a command not
// allowed in MULTI); fatal is set for errors that are not about the command (the link, the
// authentication).
func accessOf(err error) (a access, fatal error) {
	if err == nil || rueidis.IsRedisNil(err) {
		return accessOK, nil
	}
	if classifyReply(err) == replyLost {
		return accessUnknown, err
	}
	msg := err.Error()
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		msg = re.Error()
	}
	// A refused EXEC ends the block with the reason.
	msg = strings.TrimPrefix(msg, "EXECABORT Transaction discarded because of: ")
	switch {
	case strings.Contains(msg, "unknown command"):
		return accessRenamed, nil
	case strings.HasPrefix(msg, "NOPERM") && (strings.Contains(msg, " key") || strings.Contains(msg, "channel")):
		return accessOK, nil // the command is allowed, the probe's key or channel is not
	case strings.HasPrefix(msg, "NOPERM"):
		return accessDenied, nil
	case strings.HasPrefix(msg, "READONLY"):
		return accessReadOnly, nil
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"):
		return accessUnknown, explainConnect(err)
	case strings.HasPrefix(msg, "OOM"), strings.HasPrefix(msg, "MISCONF"):
		return accessOK, nil // checked after the ACL
	}
	return accessUnknown, nil
}

// probeCommands says, for each command (its arguments), whether e's user may run it here,
// without running any: the commands are queued in a MULTI block that is discarded, which
// makes the server check each as it would before running it (its name, then, from Redis
// 6.0, the user's ACL). A command the server does not queue for another reason (PSYNC and
// SYNC are not allowed in MULTI, which Redis 7 checks before the ACL), or every command
// when the user may not run MULTI, is looked up instead: COMMAND INFO knows no renamed
// command, and ACL DRYRUN (Redis 7.0, if the user may run it) answers for the user. What
// none of these tells is accessUnknown. MULTI and DISCARD are answered by the probe's own;
// EXEC by running the empty block. On a cluster, the node that serves slot 0 answers, which
// holds probeKey's keys.
func probeCommands(ctx context.Context, e *Endpoint, cmds ...[]string) ([]verdict, error) {
	fail := func(err error) ([]verdict, error) {
		return nil, e.Err("check commands", "", ctxErr(ctx, err))
	}
	c, err := e.Default()
	if err != nil {
		return nil, err
	}
	if e.Cluster() {
		t, err := e.topology(ctx)
		if err != nil {
			return nil, err
		}
		if c, err = e.node(t.ownerAddr(0)); err != nil {
			return nil, err
		}
	}
	out := make([]verdict, len(cmds))
	for i, args := range cmds {
		out[i] = verdict{access: accessUnknown, args: args}
	}
	var replies []error // of MULTI, each command sent, DISCARD
	var sent []int      // the index in cmds of each command sent
	var exec error      // EXEC's reply in an empty block, when asked
	askExec := false
	derr := c.Dedicated(func(d rueidis.DedicatedClient) error {
		// MULTI alone first: were it refused, the commands sent after it would run.
		multi := d.Do(ctx, d.B().Multi().Build()).Error()
		replies = append(replies, multi)
		if multi != nil {
			return nil
		}
		askExec = slices.ContainsFunc(cmds, func(args []string) bool { return strings.EqualFold(args[0], "EXEC") })
		if askExec {
			// EXEC of the empty block runs nothing. Refused, it ends the block
			// (EXECABORT) or leaves it open (older servers): DISCARD, whatever its
			// answer, then a MULTI that is refused unless the block is gone.
			if exec = d.Do(ctx, d.B().Exec().Build()).Error(); exec != nil {
				_ = d.Do(ctx, d.B().Discard().Build()).Error()
			}
			if err := d.Do(ctx, d.B().Multi().Build()).Error(); err != nil {
				d.Close() // perhaps still inside a block: nothing more is sent on it
				return err
			}
		}
		batch := make(rueidis.Commands, 0, len(cmds)+1)
		for i, args := range cmds {
			switch strings.ToUpper(args[0]) {
			case "MULTI", "DISCARD", "EXEC":
				continue
			}
			batch = append(batch, d.B().Arbitrary(args[0]).Args(args[1:]...).Build())
			sent = append(sent, i)
		}
		batch = append(batch, d.B().Discard().Build())
		for _, r := range d.DoMulti(ctx, batch...) {
			replies = append(replies, r.Error())
		}
		if discard := replies[len(replies)-1]; discard != nil {
			// Never hand back a connection that may still be inside MULTI; closing it
			// makes the server drop the block.
			d.Close()
			return discard
		}
		return nil
	})
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	if len(replies) == 0 {
		return fail(fmt.Errorf("no connection for the probe: %w", derr))
	}
	multi := replies[0]
	if _, ok := rueidis.IsRedisErr(multi); multi != nil && !ok {
		return fail(multi)
	}
	if _, ok := rueidis.IsRedisErr(derr); derr != nil && !ok {
		return fail(derr)
	}
	for i, args := range cmds {
		var reply error
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			reply = multi
		case "DISCARD":
			if multi != nil {
				continue
			}
			reply = replies[len(replies)-1]
		case "EXEC":
			if multi != nil || !askExec {
				continue
			}
			reply = exec
		default:
			n := slices.Index(sent, i)
			if n < 0 {
				continue
			}
			reply = replies[1+n]
		}
		a, fatal := accessOf(reply)
		if fatal != nil {
			return fail(fatal)
		}
		out[i].access = a
		if reply != nil {
			out[i].reply = reply.Error()
		}
	}
	// Ask COMMAND INFO and ACL DRYRUN about what the block did not tell.
	user := ""
	whoami := func() string {
		if user == "" {
			user = aclUser(ctx, c, e)
		}
		return user
	}
	for i := range out {
		v := &out[i]
		if v.access == accessDenied {
			v.user = whoami()
		}
		if v.access != accessUnknown {
			continue
		}
		if isHarmless(e, v.args) {
			// Without MULTI, a command that changes nothing with these arguments tells by
			// running; an error reply that is not a refusal comes after the ACL check.
			err := c.Do(ctx, c.B().Arbitrary(v.args[0]).Args(v.args[1:]...).Build()).Error()
			a, fatal := accessOf(err)
			if fatal != nil {
				return fail(fatal)
			}
			if _, ok := rueidis.IsRedisErr(err); ok && a == accessUnknown {
				a = accessOK
			}
			if v.access = a; err != nil {
				v.reply = err.Error()
			}
			if a == accessDenied {
				v.user = whoami()
			}
			if a != accessUnknown {
				continue
			}
		}
		name := strings.ToLower(v.args[0])
		infos, err := c.Do(ctx, c.B().CommandInfo().CommandName(name).Build()).ToArray()
		known := err == nil && len(infos) == 1 && !infos[0].IsNil()
		if err == nil && len(infos) == 1 && infos[0].IsNil() {
			v.access, v.reply = accessRenamed, "COMMAND INFO does not know it"
			continue
		}
		if known && !e.Info.AtLeast(6, 0, 0) {
			v.access = accessOK // no ACL before Redis 6.0
			continue
		}
		if !e.Info.AtLeast(7, 0, 0) {
			continue
		}
		reply, err := c.Do(ctx, c.B().AclDryrun().Username(whoami()).Command(v.args[0]).Arg(v.args[1:]...).Build()).ToString()
		switch {
		case err != nil:
		case reply == "OK":
			v.access = accessOK
		case strings.Contains(reply, " key") || strings.Contains(reply, "channel"):
			v.access = accessOK // the command is allowed, the probe's key or channel is not
		default:
			v.access, v.user, v.reply = accessDenied, user, "ACL DRYRUN: "+reply
		}
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	return out, nil
}

// harmless are the commands that change nothing with the arguments the probes give them (a
// probe key no one uses, a payload RESTORE refuses), which probeCommands runs when MULTI
// is refused; see isHarmless for SET and SELECT.
var harmless = map[string]bool{"CONFIG GET": true, "DUMP": true, "EXISTS": true, "FUNCTION LIST": true, "GET": true, "INFO": true, "MGET": true,
	"PEXPIRETIME": true, "PING": true, "PTTL": true, "RESTORE": true, "RESTORE-ASKING": true, "SCAN": true, "TYPE": true}

// isHarmless reports whether running args on e changes nothing: a command of harmless, a
// SET ... XX (of a probe key, which does not exist), or a SELECT of the database e's
// connections are in.
func isHarmless(e *Endpoint, args []string) bool {
	name := commandName(args[:min(len(args), 2)])
	switch name {
	case "SET":
		return slices.ContainsFunc(args[2:], func(a string) bool { return strings.EqualFold(a, "XX") })
	case "SELECT":
		return len(args) == 2 && args[1] == strconv.Itoa(e.Option.SelectDB) && !e.Cluster()
	}
	return harmless[name]
}

// checkCommands probes the commands (each its arguments) and returns, joined, an error
// wrapping ErrUnsupported for each that e refuses to this user (see verdict.err); a command
// the server will not tell about passes, and its real use will tell. It runs none of them.
func checkCommands(ctx context.Context, e *Endpoint, cmds ...[]string) error {
	vs, err := probeCommands(ctx, e, cmds...)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vs {
		errs = append(errs, v.err(e))
	}
	return joinRefusals(errs...)
}

// joinRefusals joins the refusals a Check gathered, so that a user sees every command to
// grant at once; an error that is not a refusal (a failed probe, a cancelled context) is
// returned alone, since it says nothing about what the servers allow.
func joinRefusals(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrUnsupported) {
			return err
		}
	}
	return errors.Join(errs...)
}

// checkCommand is checkCommands for one command, given by its arguments: the one place
// that decides whether this user may run this command here.
func checkCommand(ctx context.Context, e *Endpoint, args ...string) error {
	return checkCommands(ctx, e, args)
}

// checkEither refuses, with both reasons, when e refuses every one of the alternatives
// (PSYNC or SYNC; REPLICAOF or SLAVEOF); what is the use they serve, for the message.
func checkEither(ctx context.Context, e *Endpoint, what string, alternatives ...[]string) error {
	vs, err := probeCommands(ctx, e, alternatives...)
	if err != nil {
		return err
	}
	var names, grants, reasons []string
	for _, v := range vs {
		if !v.refused() {
			return nil
		}
		names = append(names, commandName(v.args))
		grants = append(grants, grantOf(v.args))
		reasons = append(reasons, v.err(e).Error())
	}
	return e.Err("check "+strings.ToLower(names[0]), "", fmt.Errorf(
		"the %s refuses %s, and %s needs one of them (grant %s, or undo its rename-command): %w (%s)",
		e.Side, strings.Join(names, " and "), what, strings.Join(grants, " or "), ErrUnsupported, strings.Join(reasons, "; ")))
}

// refusal turns a server's refusal of a command that ran into a reason wrapping
// ErrUnsupported; errors that are not about the command (a wrong argument, an empty key)
// mean the command is allowed, and give nil. It reads replies as probeCommands does.
func refusal(ctx context.Context, e *Endpoint, cmd string, err error) error {
	if ctx.Err() != nil {
		return e.Err("check "+strings.ToLower(cmd), "", ctx.Err())
	}
	a, fatal := accessOf(err)
	if fatal != nil {
		return e.Err("check "+strings.ToLower(cmd), "", fatal)
	}
	v := verdict{access: a, args: []string{cmd}, reply: err.Error()}
	if a == accessDenied {
		if c, cerr := e.Default(); cerr == nil {
			v.user = aclUser(ctx, c, e)
		}
	}
	return v.err(e)
}

// checkRestore verifies that the target accepts what the restorer writes with: RESTORE (a
// payload with a bad checksum is refused for that reason, which changes nothing), and SET
// where strings go by SET (Redis 6.2). Nothing runs (see probeCommands).
func checkRestore(ctx context.Context, e *Endpoint) error {
	key := probeKey()
	cmds := [][]string{{"RESTORE", key, "0", "not-a-payload"}}
	if e.Info.AtLeast(6, 2, 0) {
		cmds = append(cmds, []string{"SET", key, "v", "XX"})
	}
	return checkCommands(ctx, e, cmds...)
}

// sourceReads are the commands DumpRestore reads the source with (each its arguments).
func sourceReads(j *Job) [][]string {
	key := probeKey()
	cmds := [][]string{{"SCAN", "0"}, {"DUMP", key}, {expiryCommand(j.Source), key}}
	if len(j.Types) > 0 && !j.Source.Info.AtLeast(6, 0, 0) {
		cmds = append(cmds, []string{"TYPE", key}) // no SCAN TYPE: one TYPE per key
	}
	return cmds
}

// expiryCommand is the command that reads a key's expiry on e: PEXPIRETIME (Redis 7.0),
// or PTTL.
func expiryCommand(e *Endpoint) string {
	if e.Info.AtLeast(7, 0, 0) {
		return "PEXPIRETIME"
	}
	return "PTTL"
}

// checkRDBVersions refuses a copy by the restorer (DumpRestore) whose payloads the target
// cannot read and this package cannot rewrite for it: a source of an RDB version newer than
// it knows. Payloads of a version it knows are rewritten for an older target (see
// downgrader); MigrateKeys, which cannot, checks with checkPayloadsAsIs.
func checkRDBVersions(j *Job) error {
	src, dst := j.Source.Info.RDBVersion(), j.Target.Info.RDBVersion()
	if j.Target.Info.ReadsRDB(src) || rdbVersionKnown(src) {
		return nil
	}
	return j.Target.Err("check versions", "", fmt.Errorf(
		"the target runs %s (RDB %d) and cannot read payloads of the source's %s (RDB %d), a version newer than this package can rewrite; upgrade the target: %w (%w)",
		describeVersion(j.Target.Info), dst, describeVersion(j.Source.Info), src, ErrIncompatible, ErrUnsupported))
}

// checkSides holds the checks every copy needs, whatever the strategy: the source and the
// target are not the same server (or cluster), every database the copy writes exists on the
// target, and the selected data fits under the maxmemory of a target that evicts keys
// (unless evicting, from WithEvictingTarget, allows it). Migrate and Plan run it before any
// strategy's Check, so a user's own strategy gets it too. A refusal wraps ErrUnsupported
// and gives the facts of both sides and what to do; a probe that fails is a plain error.
func checkSides(ctx context.Context, j *Job, evicting bool) error {
	if err := checkSameServer(ctx, j); err != nil {
		return err
	}
	if err := checkDatabaseRange(ctx, j); err != nil {
		return err
	}
	if evicting {
		return nil
	}
	return checkEvictionFit(ctx, j)
}

// checkSameServer refuses a target that is the source: the same run_id (read with INFO;
// the addresses where INFO is refused), or, for clusters, a node of one in the other.
// Copying a server onto itself copies nothing, or waits on itself.
func checkSameServer(ctx context.Context, j *Job) error {
	src, dst := j.Source, j.Target
	const op = "check servers"
	const what = "a server cannot be copied onto itself; check the target's address"
	switch {
	case src.Cluster() != dst.Cluster():
		return nil
	case src.Cluster():
		st, err := src.topology(ctx)
		if err != nil {
			return err
		}
		dt, err := dst.topology(ctx)
		if err != nil {
			return err
		}
		for _, id := range slices.Sorted(maps.Keys(st.nodes)) {
			if n := dt.nodes[id]; n != nil {
				return dst.Err(op, "", unsupported("the source and the target are the same cluster: node %s (%s) is in both; %s",
					id, n.addr, what))
			}
		}
		return nil
	}
	a, b := src.Info.Fields["run_id"], dst.Info.Fields["run_id"]
	if a != "" && b != "" {
		if a != b {
			return nil
		}
		return dst.Err(op, "", unsupported("the source %s and the target %s are the same server (run_id %s); %s",
			src.Addr, dst.Addr, a, what))
	}
	for _, addr := range src.Option.InitAddress {
		if slices.Contains(dst.Option.InitAddress, addr) {
			return dst.Err(op, "", unsupported("the source and the target are the same server (both at %s); %s", addr, what))
		}
	}
	return nil
}

// checkTargetDatabases refuses to copy several databases into a cluster, which has only
// database 0, unless WithDBPrefix says how. Strategies that copy key by key call it.
func checkTargetDatabases(j *Job) error {
	if !j.Target.Cluster() || len(j.Databases) < 2 || j.MergeDatabases {
		return nil
	}
	return j.Target.Err("map databases", "", fmt.Errorf(
		"the target is a cluster, which has only database 0, and the source's databases %s are to be copied; "+
			"copy one with migrate.WithDatabases(n), or merge them into database 0 with migrate.WithDBPrefix(\"db%%d:\") "+
			"(or WithDBPrefix(\"\") to keep the names): %w", dbList(j.Databases), ErrUnsupported))
}

// checkDatabaseRange refuses a copy into a database a standalone target does not have: a
// source database at or above the target's databases setting, where TargetDB keeps its
// number. It runs before the first write, so that nothing is half copied. (A cluster
// target, which has database 0 only, is checkTargetDatabases's.)
func checkDatabaseRange(ctx context.Context, j *Job) error {
	if j.Target.Cluster() {
		return nil
	}
	top := 0
	for _, db := range j.Databases {
		top = max(top, j.TargetDB(db))
	}
	if top == 0 {
		return nil // every server has database 0
	}
	n, how, err := databaseCount(ctx, j.Target)
	if err != nil {
		return err
	}
	if top < n {
		return nil
	}
	var missing, present []int
	for _, db := range j.Databases {
		if j.TargetDB(db) >= n {
			missing = append(missing, db)
		} else {
			present = append(present, db)
		}
	}
	srcSetting := ""
	if sn, _, err := databaseCount(ctx, j.Source); err == nil {
		srcSetting = fmt.Sprintf(" (the source has %d databases)", sn)
	}
	hint := "migrate.WithDatabases(...)"
	if len(present) > 0 {
		hint = fmt.Sprintf("migrate.WithDatabases(%s)", dbList(present))
	}
	return j.Target.Err("check databases", "", unsupported(
		"the source's %s to be copied%s, and the target has only %d databases (0 to %d, %s), so it has no db %d; "+
			"copy only the databases the target has with %s, merge them into database 0 with migrate.WithDBPrefix(\"db%%d:\"), "+
			"or raise the target's databases setting (which needs a restart)",
		dbNames(missing), srcSetting, n, n-1, how, missing[0], hint))
}

// dbNames names databases for messages, with their verb: "db 3 is", "dbs 3, 20 are".
func dbNames(dbs []int) string {
	if len(dbs) == 1 {
		return fmt.Sprintf("db %d is", dbs[0])
	}
	return fmt.Sprintf("dbs %s are", dbList(dbs))
}

// databaseCount returns e's databases setting, read with CONFIG GET, or, where CONFIG is
// refused (as on managed services), found by selecting databases on new connections
// (SELECT changes nothing). how says which, for messages. A cluster has one database.
func databaseCount(ctx context.Context, e *Endpoint) (n int, how string, err error) {
	if e.Cluster() {
		return 1, "a cluster", nil
	}
	c, err := e.Default()
	if err != nil {
		return 0, "", err
	}
	if v, ok := configGet(ctx, c, "databases"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n, "per CONFIG GET databases", nil
		}
	}
	if ctx.Err() != nil {
		return 0, "", e.Err("config get databases", "", ctx.Err())
	}
	// The highest database that SELECT accepts: double until refused, then halve the gap.
	lo, hi := 0, 16 // lo exists; hi is the next to try
	for {
		ok, err := selectable(ctx, e, hi)
		if err != nil {
			return 0, "", err
		}
		if !ok {
			break
		}
		lo = hi
		if hi >= 1<<20 {
			return hi + 1, "found by SELECT as CONFIG is refused", nil
		}
		hi *= 2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := selectable(ctx, e, mid)
		if err != nil {
			return 0, "", err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + 1, "found by SELECT as CONFIG is refused", nil
}

// selectable reports whether e has database db, by connecting to it on a connection of its
// own, closed at once.
func selectable(ctx context.Context, e *Endpoint, db int) (bool, error) {
	if ctx.Err() != nil {
		return false, e.Err(fmt.Sprintf("select %d", db), "", ctx.Err())
	}
	opt := e.Option
	opt.SelectDB = db
	c, err := rueidis.NewClient(opt)
	if err == nil {
		c.Close()
		return true, nil
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return false, nil // DB index is out of range
	}
	return false, e.Err(fmt.Sprintf("select %d", db), "", explainConnect(err))
}

// memoryMargin is the share of the estimated data added to it before it is compared with
// a target's free memory (an eighth), for encodings and allocator rounding that differ on
// the target, and the buffers of the connections that write to it.
const memoryMargin = 8

// checkEvictionFit refuses a target that evicts keys (maxmemory set, with a policy other
// than noeviction) when the data selected on the source does not fit in the memory the
// target has left under maxmemory, with a margin. The data is the source's used memory
// without what an empty server, its replication buffers and its clients use (INFO memory),
// times the share of the source's keys in the databases selected; WithMatch and WithTypes
// are not counted in, since their share is not known before the copy. On a cluster target,
// each master is compared with its share of the slots.
func checkEvictionFit(ctx context.Context, j *Job) error {
	if len(j.Target.Info.Fields) == 0 || !j.Target.Cluster() && !evicts(j.Target.Info) {
		return nil // it does not evict, or INFO, refused, does not tell
	}
	dst, err := masterInfos(ctx, j.Target, "memory")
	if err != nil {
		return err
	}
	var evicting []masterInfo
	for _, m := range dst {
		if evicts(m.info) {
			evicting = append(evicting, m)
		}
	}
	if len(evicting) == 0 {
		return nil
	}
	policy := evicting[0].info.Policy
	const allow = "give the target more memory (maxmemory) or the noeviction policy, or, if the data does fit, allow the migration with migrate.WithEvictingTarget() " +
		"(a migration during which the target evicts keys still fails, with ErrEvicted)"
	if len(j.Source.Info.Fields) == 0 {
		return j.Source.Err("check memory", "", unsupported(
			"the target evicts keys when full (maxmemory-policy %s), and the source refuses INFO, which tells whether its data fits; %s",
			policy, allow))
	}
	src, err := masterInfos(ctx, j.Source, "memory")
	if err != nil {
		return err
	}
	var data int64
	for _, m := range src {
		data += dataMemory(m.info)
	}
	var all, selected int64
	for db, n := range j.Source.Info.Keyspace {
		all += n
		if slices.Contains(j.Databases, db) {
			selected += n
		}
	}
	if all == 0 || selected == 0 {
		return nil
	}
	need := int64(float64(data) * float64(selected) / float64(all))
	what := fmt.Sprintf("the source's data takes about %s (used_memory less the server's own overhead, INFO memory)", bytesText(data))
	if selected < all {
		what += fmt.Sprintf(", and the %d keys of the selected databases (of %d) about %s", selected, all, bytesText(need))
	}
	if j.Match != "" || len(j.Types) > 0 {
		what += " (counting every key of the selected databases: how many " + filterName(j) + " keeps is not known before the copy)"
	}
	for _, m := range evicting {
		share := need
		on := "the target"
		if m.slots > 0 {
			share = need * int64(m.slots) / slotCount
			on = fmt.Sprintf("the target's master %s, which serves %d slots and should get about %s,", m.addr, m.slots, bytesText(share))
		}
		free := m.info.MaxMemory - m.info.UsedMemory
		if share+share/memoryMargin <= free {
			continue
		}
		return j.Target.Err("check memory", "", unsupported(
			"%s; %s has %s free under its maxmemory of %s (used_memory %s) and evicts keys when full (maxmemory-policy %s), "+
				"which would lose copied keys: the data plus a margin of an eighth does not fit; %s",
			what, on, bytesText(max(free, 0)), bytesText(m.info.MaxMemory), bytesText(m.info.UsedMemory), m.info.Policy, allow))
	}
	return nil
}

// evicts reports whether a server evicts keys when full.
func evicts(s *ServerInfo) bool {
	return s.MaxMemory > 0 && s.Policy != "" && s.Policy != "noeviction"
}

// dataMemory estimates the memory a server's keys take: used_memory less what the server
// used at startup and its replication backlog, client and AOF buffers (fields that older
// servers lack count as 0, which overestimates).
func dataMemory(s *ServerInfo) int64 {
	n := s.UsedMemory
	for _, f := range []string{"used_memory_startup", "mem_replication_backlog", "mem_clients_slaves", "mem_clients_normal", "mem_aof_buffer"} {
		v, _ := strconv.ParseInt(s.Fields[f], 10, 64)
		n -= v
	}
	return max(n, 0)
}

// masterInfo is the INFO of one master of an endpoint, with the number of slots it serves
// on a cluster (0 for a standalone server).
type masterInfo struct {
	id, addr string
	slots    int
	info     *ServerInfo
}

// masterInfos reads one INFO section of every master of e: the server itself, or each
// infoCommand is INFO section, marked read-only so that rueidis sends it again when its
// connection fails (retry.go); rueidis's own INFO is not.
func infoCommand(c rueidis.Client, section string) rueidis.Completed {
	return c.B().Arbitrary("INFO").Args(section).ReadOnly()
}

// master of a cluster that serves slots, but for those flagged as failing.
func masterInfos(ctx context.Context, e *Endpoint, section string) ([]masterInfo, error) {
	if !e.Cluster() {
		c, err := e.Default()
		if err != nil {
			return nil, err
		}
		text, err := c.Do(ctx, infoCommand(c, section)).ToString()
		if err != nil {
			return nil, e.Err("info "+section, "", ctxErr(ctx, err))
		}
		return []masterInfo{{addr: e.Addr, info: parseInfo(text)}}, nil
	}
	t, err := e.topology(ctx)
	if err != nil {
		return nil, err
	}
	ids, slots := t.masters()
	out := make([]masterInfo, 0, len(ids))
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			continue // failing over: its replica, once promoted, answers for its slots
		}
		c, err := e.node(n.addr)
		if err != nil {
			return nil, err
		}
		text, err := c.Do(ctx, infoCommand(c, section)).ToString()
		if err != nil {
			return nil, e.Err("info "+section+" on "+n.addr, "", ctxErr(ctx, err))
		}
		out = append(out, masterInfo{id: id, addr: n.addr, slots: len(slots[id]), info: parseInfo(text)})
	}
	return out, nil
}

// notifyClasses are the classes of keyspace notifications that together name every key a
// write changes, as notify-keyspace-events spells them: those "A" stands for on e's
// version ("t", streams, from Redis 5.0; "d", module types, from 6.2). The "n" class (new
// keys, Redis 7.0) is not needed: every command that creates a key notifies its own event
// too; nor is it shown by CONFIG GET beside "A".
func notifyClasses(e *Endpoint) string {
	classes := "g$lshzxe"
	if e.Info.AtLeast(5, 0, 0) {
		classes += "t"
	}
	if e.Info.AtLeast(6, 2, 0) {
		classes += "d"
	}
	return classes
}

// missingNotifyFlags returns the flags that notify-keyspace-events value lacks for a
// follow through keyspace notifications on e ("" when none): K or E (a channel to read),
// and each class of notifyClasses, or A.
func missingNotifyFlags(e *Endpoint, value string) string {
	var missing strings.Builder
	if !strings.ContainsAny(value, "KE") {
		missing.WriteString("K")
	}
	if !strings.Contains(value, "A") {
		for _, c := range notifyClasses(e) {
			if !strings.ContainsRune(value, c) {
				missing.WriteRune(c)
			}
		}
	}
	return missing.String()
}

// notifyFlags is the notify-keyspace-events of one server of the source.
type notifyFlags struct {
	addr  string
	c     rueidis.Client
	value string
	ok    bool // false when CONFIG GET is refused
}

// sourceNotifyFlags reads notify-keyspace-events on every server of the source: the source
// itself, or every node of a cluster source that is not failing, replicas included (one
// may be promoted while following).
func sourceNotifyFlags(ctx context.Context, e *Endpoint) ([]notifyFlags, error) {
	if !e.Cluster() {
		c, err := e.Default()
		if err != nil {
			return nil, err
		}
		v, ok := configGet(ctx, c, "notify-keyspace-events")
		return []notifyFlags{{addr: e.Addr, c: c, value: v, ok: ok}}, ctx.Err()
	}
	t, err := e.topology(ctx)
	if err != nil {
		return nil, err
	}
	var out []notifyFlags
	for _, id := range slices.Sorted(maps.Keys(t.nodes)) {
		n := t.nodes[id]
		if n.failed {
			continue
		}
		c, err := e.node(n.addr)
		if err != nil {
			return nil, err
		}
		v, ok := configGet(ctx, c, "notify-keyspace-events")
		out = append(out, notifyFlags{addr: n.addr, c: c, value: v, ok: ok})
	}
	return out, ctx.Err()
}

// checkNotifications refuses a follow through keyspace notifications (a DumpRestore with
// WithFollow) when the source's notify-keyspace-events do not cover every write, naming
// the flags missing (on each node of a cluster source), unless WithSourceNotifications
// lets the migration set them (then CONFIG SET must be allowed). It changes nothing.
func checkNotifications(ctx context.Context, j *Job) error {
	e := j.Source
	nodes, err := sourceNotifyFlags(ctx, e)
	if err != nil {
		return err
	}
	var lacking []string
	refused := false
	for _, n := range nodes {
		switch missing := missingNotifyFlags(e, n.value); {
		case !n.ok:
			refused = true
		case missing != "":
			shown := n.value
			if shown == "" {
				shown = "empty: notifications off"
			}
			what := fmt.Sprintf("notify-keyspace-events (%s) lacks the flags %q", shown, missing)
			if e.Cluster() {
				what = "on " + n.addr + ", " + what
			}
			lacking = append(lacking, what)
		}
	}
	if !refused && len(lacking) == 0 {
		return nil
	}
	if j.SetNotifications {
		return checkCommands(ctx, e, []string{"CONFIG", "GET", "notify-keyspace-events"},
			[]string{"CONFIG", "SET", "notify-keyspace-events", "KA"})
	}
	if refused && len(lacking) == 0 && j.ProbeNotifications {
		servers, err := notifyServers(ctx, e)
		if err != nil {
			return err
		}
		_, err = probeNotifications(ctx, j, servers)
		return err
	}
	if refused {
		return e.Err("check notify-keyspace-events", "", unsupported(
			"a following DumpRestore reads the source's keyspace notifications, and the source refuses CONFIG GET notify-keyspace-events, so whether they cover every write cannot be told; "+
				"give WithNotificationProbe() to let the migration find out with probe keys it writes and deletes, or grant CONFIG GET to the user"))
	}
	return e.Err("check notify-keyspace-events", "", unsupported(
		"a following DumpRestore reads the source's keyspace notifications, and %s: "+
			"set it to \"KA\" or more (CONFIG SET notify-keyspace-events KA, or a managed service's console), or let the migration set it for its duration with WithSourceNotifications()",
		strings.Join(lacking, "; ")))
}

// bigKeyCommands are the commands a key copied in pieces (bigkeys.go) needs on side e
// (each its arguments, with a probe key): writing its temporary key and renaming it on the
// target; and, for DumpRestore, reading it by windows on the source (Snapshot reads the
// RDB instead). Those e's version lacks are left out: it never needs them.
func bigKeyCommands(e *Endpoint) [][]string {
	key := probeKey()
	var cmds [][]string
	if e.Side == Source {
		cmds = [][]string{{"MEMORY", "USAGE", key}, {"TYPE", key}, {"STRLEN", key}, {"GETRANGE", key, "0", "1"},
			{"LRANGE", key, "0", "1"}, {"HSCAN", key, "0"}, {"SSCAN", key, "0"}, {"ZSCAN", key, "0"},
			{"XRANGE", key, "-", "+"}, {"XINFO", "STREAM", key}, {"XINFO", "GROUPS", key}, {"XPENDING", key, "g"}}
		if e.Info.AtLeast(5, 0, 0) {
			cmds = append(cmds, []string{"XINFO", "CONSUMERS", key, "g"})
		}
		return cmds
	}
	cmds = [][]string{{"EXISTS", key}, {"APPEND", key, "v"}, {"RPUSH", key, "v"}, {"SADD", key, "v"},
		{"ZADD", key, "1", "v"}, {"HSET", key, "f", "v"}, {"XADD", key, "1-1", "f", "v"}, {"XSETID", key, "1-1"},
		{"XGROUP", "CREATE", key, "g", "0"}, {"XGROUP", "SETID", key, "g", "0"}, {"XCLAIM", key, "g", "c", "0", "1-1"},
		{"XPENDING", key, "g"}, {"PEXPIREAT", key, "1"}, {"RENAMENX", key, key + "x"}, {"RENAME", key, key + "x"},
		{"UNLINK", key}, {"MULTI"}, {"EXEC"}}
	if e.Info.AtLeast(6, 2, 0) {
		cmds = append(cmds, []string{"XGROUP", "CREATECONSUMER", key, "g", "c"})
	}
	if e.Info.AtLeast(7, 4, 0) && !e.Info.IsValkey() {
		cmds = append(cmds, []string{"HPEXPIREAT", key, "1", "FIELDS", "1", "f"})
	}
	return cmds
}

// bigKeysRefused returns the ACL rules e's user lacks for keys copied in pieces ("+append",
// "+xgroup|create"), or nil. A migration is not refused for them, since only a key too
// big needs them: such a key stops it with an error that names the command (Plan warns).
func bigKeysRefused(ctx context.Context, e *Endpoint) []string {
	vs, err := probeCommands(ctx, e, bigKeyCommands(e)...)
	if err != nil {
		return nil
	}
	var grants []string
	for _, v := range vs {
		if v.refused() && !slices.Contains(grants, grantOf(v.args)) {
			grants = append(grants, grantOf(v.args))
		}
	}
	return grants
}

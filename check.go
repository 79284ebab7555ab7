package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// probeKey returns a key name no one uses, for commands that probe a permission.
func probeKey() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "migrate:probe:" + hex.EncodeToString(b)
}

// checkCommand runs a harmless command (one that reads a missing key) and explains, as an
// error wrapping ErrUnsupported, why the server refuses it.
func checkCommand(ctx context.Context, e *Endpoint, args ...string) error {
	c, err := e.Default()
	if err != nil {
		return err
	}
	err = c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
	if err == nil || rueidis.IsRedisNil(err) {
		return nil
	}
	return refusal(ctx, e, args[0], err)
}

// refusal turns a server's refusal of a command into a reason; errors that are not about
// the command (a wrong argument, an empty key) mean the command is allowed, and give nil.
func refusal(ctx context.Context, e *Endpoint, cmd string, err error) error {
	if ctx.Err() != nil {
		return e.Err("check "+cmd, "", ctx.Err())
	}
	msg := err.Error()
	var why string
	switch {
	case strings.Contains(msg, "unknown command"):
		why = fmt.Sprintf("%s is renamed or disabled (rename-command) on the %s", cmd, e.Side)
	case strings.HasPrefix(msg, "NOPERM"):
		why = fmt.Sprintf("the %s's ACL user may not run %s", e.Side, cmd)
	case strings.HasPrefix(msg, "READONLY"):
		why = fmt.Sprintf("the %s is a read-only replica", e.Side)
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"):
		return e.Err("check "+cmd, "", explainConnect(err))
	default:
		if _, ok := rueidis.IsRedisErr(err); ok {
			return nil
		}
		return e.Err("check "+cmd, "", err)
	}
	return e.Err("check "+cmd, "", fmt.Errorf("%s: %w: %v", why, ErrUnsupported, err))
}

// checkRestore verifies that the target accepts RESTORE: a payload with a bad checksum
// must be refused for that reason, which changes nothing.
func checkRestore(ctx context.Context, e *Endpoint) error {
	return checkCommand(ctx, e, "RESTORE", probeKey(), "0", "not-a-payload")
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
		for _, id := range sortedKeys(st.nodes) {
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

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkTargetDatabases refuses to copy several databases into a cluster, which has only
// database 0, unless WithDBPrefix says how. Strategies that copy key by key call it.
func checkTargetDatabases(j *Job) error {
	if !j.Target.Cluster() || len(j.Databases) < 2 || j.merge {
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
// master of a cluster that serves slots, but for those flagged as failing.
func masterInfos(ctx context.Context, e *Endpoint, section string) ([]masterInfo, error) {
	if !e.Cluster() {
		c, err := e.Default()
		if err != nil {
			return nil, err
		}
		text, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
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
		text, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
		if err != nil {
			return nil, e.Err("info "+section+" on "+n.addr, "", ctxErr(ctx, err))
		}
		out = append(out, masterInfo{id: id, addr: n.addr, slots: len(slots[id]), info: parseInfo(text)})
	}
	return out, nil
}

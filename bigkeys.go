package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Keys of any size. A key whose value is larger than the target takes in one command (its
// proto-max-bulk-len) or than the memory budget of one key (WithKeyBudget) is copied by
// DumpRestore in pieces, never read whole: windows of GETRANGE, HSCAN, SSCAN, ZSCAN, LRANGE
// or XRANGE on the source, written with APPEND, HSET, SADD, ZADD, RPUSH or XADD into a
// temporary key on the target (bigKeyPrefix, with the key's hash tag, so it lives in the
// key's slot on a cluster). Once whole, the temporary key gets the source's expiry and is
// renamed onto the real name in one MULTI/EXEC (PEXPIREAT, then RENAMENX, or RENAME under
// Replace), so no reader ever sees half a key. A failure or a cancellation deletes the
// temporary key.
//
// A string longer than the target's proto-max-bulk-len cannot be held by the target at
// all (APPEND and SETRANGE refuse to grow a string past it): it fails with ErrTooLarge
// before anything is written. Strings past the budget alone are copied in pieces.
//
// The source is live: a key written while it is copied in pieces may come out as a mix of
// its values before and after (a whole-key DUMP is one moment). A stream's consumer groups
// follow its entries (see bigWriter.group); what of them cannot be made exact refuses the
// key with ErrIncompatible.

// bigKeyPrefix starts the name of every temporary key of a piecewise copy.
const bigKeyPrefix = "migrate:partial:"

// defaultKeyBudget is WithKeyBudget's default.
const defaultKeyBudget = 32 << 20

// Window sizes of a piecewise copy: elements per window, and bytes per window of a string
// (bounded below by the target's proto-max-bulk-len).
const (
	bigWindowElements = 512
	bigWindowBytes    = 1 << 20
)

// bigLimit is what the dumper needs to know which keys are big: the smaller of the key
// budget and the target's proto-max-bulk-len, read once.
type bigLimit struct {
	once  sync.Once
	limit int64
	bulk  int64
}

func (b *bigLimit) get(ctx context.Context, j *Job) (limit, bulk int64) {
	b.once.Do(func() {
		b.bulk = defaultMaxBulk
		if c, err := j.Target.Default(); err == nil {
			if v, ok := configGet(ctx, c, "proto-max-bulk-len"); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
					b.bulk = n
				}
			}
		}
		b.limit = min(b.bulk, j.KeyBudget)
		if b.limit <= 0 {
			b.limit = min(b.bulk, defaultKeyBudget)
		}
	})
	return b.limit, b.bulk
}

// bigTempKey returns the name of the temporary key for key: in key's hash slot, so RENAME
// works on a cluster target.
func bigTempKey(key string) (string, error) {
	tag := key
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			tag = key[s+1 : s+1+e]
		}
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	tmp := bigKeyPrefix + "{" + tag + "}:" + hex.EncodeToString(r[:])
	if keySlot(tmp) != keySlot(key) {
		return "", fmt.Errorf("no temporary name in the key's hash slot (a '}' with no hash tag in its name)")
	}
	return tmp, nil
}

// copyBigKeys asks the source the size of each of keys (MEMORY USAGE, one pipeline), copies
// in pieces those past the limit, and returns the others. Where the source refuses MEMORY
// USAGE, it returns keys as they are: copyBigValues then measures the values read.
func (rd *dumper) copyBigKeys(ctx context.Context, keys []string) ([]string, error) {
	if rd.noSizes.Load() {
		return keys, nil
	}
	limit, _ := rd.limit.get(ctx, rd.j)
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = rd.src.B().MemoryUsage().Key(k).Build()
	}
	var small []string
	for i, res := range rd.src.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if classifyReply(err) == replyRefused {
			rd.j.Logger.Info("dump: the source refuses MEMORY USAGE; the size of a key is known once read", "error", err)
			rd.noSizes.Store(true)
			return keys, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// A key that is gone, or a size not told, is read as usual and measured then.
		if err != nil || n <= limit {
			if small != nil {
				small = append(small, keys[i])
			}
			continue
		}
		if small == nil {
			small = append(make([]string, 0, len(keys)), keys[:i]...)
		}
		if err := rd.copyBig(ctx, keys[i]); err != nil {
			return nil, err
		}
	}
	if small == nil {
		return keys, nil
	}
	return small, nil
}

// copyBigValues copies in pieces the keys of out whose values, once read, are past the
// limit (their size was not known before), and returns the others.
func (rd *dumper) copyBigValues(ctx context.Context, out []dumped) ([]dumped, error) {
	limit, _ := rd.limit.get(ctx, rd.j)
	kept := out[:0]
	for _, d := range out {
		if int64(d.size()) <= limit {
			kept = append(kept, d)
			continue
		}
		if err := rd.copyBig(ctx, d.key); err != nil {
			releaseBatch(out)
			return nil, err
		}
	}
	return kept, nil
}

// copyBig copies one big key of the source database rd.db in pieces, and counts the
// outcome. It returns the error that stops the migration.
func (rd *dumper) copyBig(ctx context.Context, key string) error {
	j, db := rd.j, rd.db
	p, err := startPiecewise(ctx, j, db, key)
	if p == nil {
		return err
	}
	defer p.close(ctx)
	expiry := rd.src.B().Pttl().Key(key).Build()
	absolute := j.Source.Info.AtLeast(7, 0, 0)
	if absolute {
		expiry = rd.src.B().Pexpiretime().Key(key).Build()
	}
	sent := time.Now().UnixMilli()
	res := rd.src.DoMulti(ctx, rd.src.B().Type().Key(key).Build(), expiry, rd.src.B().Strlen().Key(key).Build())
	typ, err := res[0].ToString()
	if err != nil {
		return j.Source.Err(fmt.Sprintf("type in db %d", db), key, ctxErr(ctx, err))
	}
	ttl, err := res[1].AsInt64()
	if err != nil {
		return j.Source.Err(fmt.Sprintf("read expiry in db %d", db), key, ctxErr(ctx, err))
	}
	var expireAt int64
	switch {
	case ttl < 0:
	case absolute:
		expireAt = ttl
	default:
		expireAt = sent + ttl
	}
	if typ == "none" || ttl == -2 {
		j.Count(db, Counts{Expired: 1})
		return nil
	}
	_, bulk := rd.limit.get(ctx, j)
	if n, err := res[2].AsInt64(); typ == "string" && err == nil && n > bulk {
		j.Count(db, Counts{Failed: 1})
		return p.tooLong(n, bulk)
	}
	j.Logger.Info("copying a big key in pieces", "db", db, "key", key, "type", typ, "temporary", p.tmp)
	limit, _ := rd.limit.get(ctx, j)
	w := &bigWriter{rd: rd, p: p, key: key, window: bigWindow(limit, bulk)}
	switch typ {
	case "string":
		err = w.string(ctx)
	case "hash", "set", "zset":
		err = w.scan(ctx, typ)
	case "list":
		err = w.list(ctx)
	case "stream":
		err = w.stream(ctx)
	default:
		err = j.Source.Err(p.op, key, fmt.Errorf("%w: a %s value larger than the target takes in one command is not copied in pieces; raise proto-max-bulk-len on the target or WithKeyBudget", ErrTooLarge, typ))
	}
	if err != nil {
		j.Count(db, Counts{Failed: 1})
		return err
	}
	return p.finish(ctx, expireAt)
}

// bigWindow returns the bytes per window of a string copied in pieces, for a key budget
// limit and a target's proto-max-bulk-len bulk.
func bigWindow(limit, bulk int64) int64 {
	return max(1024, min(bigWindowBytes, bulk/4, limit))
}

// piecewise writes one key into a temporary key of the target, piece by piece, and then
// renames it onto the key's name with its expiry, so that no reader sees half a key: the
// one owner of piecewise writes, for DumpRestore's big keys read from the source and
// Snapshot's huge values read from the RDB.
type piecewise struct {
	j       *Job
	db      int // the source database
	tc      rueidis.Client
	name    string // the key's name on the target
	tmp     string // the temporary key
	op      string // for errors: "copy in pieces into db N"
	bytes   int64  // bytes written so far
	written bool   // something was written into the temporary key
	done    bool   // renamed into place: nothing to clean up
}

// startPiecewise prepares the piecewise copy of key of the source database db. Under a
// policy other than Replace, a key the target holds already is counted (Skipped, or Failed
// with an error wrapping ErrConflict) and p is nil: nothing is copied. Close the returned
// piecewise once done.
func startPiecewise(ctx context.Context, j *Job, db int, key string) (p *piecewise, err error) {
	tdb := j.TargetDB(db)
	tc, err := j.Target.Client(tdb)
	if err != nil {
		return nil, err
	}
	p = &piecewise{j: j, db: db, tc: tc, name: j.TargetKey(db, key), op: fmt.Sprintf("copy in pieces into db %d", tdb)}
	if j.Conflict != Replace {
		// A key that is there already is not copied for nothing.
		n, err := tc.Do(ctx, tc.B().Exists().Key(p.name).Build()).AsInt64()
		if err != nil {
			return nil, j.Target.Err(p.op, p.name, ctxErr(ctx, err))
		}
		if n > 0 {
			return nil, p.conflict()
		}
	}
	if p.tmp, err = bigTempKey(p.name); err != nil {
		return nil, j.Target.Err(p.op, p.name, err)
	}
	return p, nil
}

// tooLong is the error for a string of n bytes on a target whose proto-max-bulk-len, bulk,
// bounds a string's length: APPEND and SETRANGE refuse to grow one past it too.
func (p *piecewise) tooLong(n, bulk int64) error {
	return p.j.Target.Err(p.op, p.name, fmt.Errorf(
		"%w: the string is %d bytes and the target's proto-max-bulk-len is %d, which bounds a string's length (not only one command's); raise it on the target (CONFIG SET proto-max-bulk-len)",
		ErrTooLarge, n, bulk))
}

// close deletes the temporary key unless it was renamed into place, even after the
// migration's context ended.
func (p *piecewise) close(ctx context.Context) {
	if p.done {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
	p.tc.Do(dctx, p.tc.B().Unlink().Key(p.tmp).Build())
	cancel()
}

// write sends one command that writes into the temporary key; name names it in errors.
func (p *piecewise) write(ctx context.Context, cmd rueidis.Completed, name string) error {
	return p.writeAll(ctx, rueidis.Commands{cmd}, name)
}

// writeAll sends commands that write into the temporary key, in one pipeline.
func (p *piecewise) writeAll(ctx context.Context, cmds rueidis.Commands, name string) error {
	if len(cmds) == 0 {
		return nil
	}
	p.written = true
	for _, r := range p.tc.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return p.j.Target.Err(fmt.Sprintf("%s into db %d (temporary key %q)", name, p.j.TargetDB(p.db), p.tmp), p.name, ctxErr(ctx, piecesRefused(Target, name, err)))
		}
	}
	return nil
}

// piecesRefused explains err, a reply to cmd ("append", "xgroup create") that a copy in
// pieces sent to side, when it is a refusal of the command: what to grant, wrapping
// ErrUnsupported (Plan warns of it beforehand).
func piecesRefused(side Side, cmd string, err error) error {
	if classifyReply(err) != replyRefused {
		return err
	}
	return fmt.Errorf("%w: a key copied in pieces needs %s on the %s, which refuses it (%v); grant %s to the user, or raise WithKeyBudget and the target's proto-max-bulk-len so that such keys go whole",
		ErrUnsupported, strings.ToUpper(cmd), side, err, grantOf(strings.Fields(cmd)))
}

// finish renames the temporary key onto the key's name with expireAt (Unix ms; 0 for
// none) in one MULTI/EXEC (PEXPIREAT, then RENAMENX, or RENAME under Replace), and counts
// the key: Keys, or Expired when it expired meanwhile or nothing was written (the key is
// gone), or a conflict when the target got the key meanwhile.
func (p *piecewise) finish(ctx context.Context, expireAt int64) error {
	j, db, tc := p.j, p.db, p.tc
	if expireAt > 0 && expireAt <= time.Now().UnixMilli() || !p.written {
		j.Count(db, Counts{Expired: 1})
		return nil
	}
	cmds := rueidis.Commands{tc.B().Multi().Build()}
	if expireAt > 0 {
		cmds = append(cmds, tc.B().Pexpireat().Key(p.tmp).MillisecondsTimestamp(expireAt).Build())
	}
	if j.Conflict == Replace {
		cmds = append(cmds, tc.B().Rename().Key(p.tmp).Newkey(p.name).Build())
	} else {
		cmds = append(cmds, tc.B().Renamenx().Key(p.tmp).Newkey(p.name).Build())
	}
	cmds = append(cmds, tc.B().Exec().Build())
	res := tc.DoMulti(ctx, cmds...)
	replies, err := res[len(res)-1].ToArray()
	if err == nil && len(replies) != len(cmds)-2 {
		err = fmt.Errorf("EXEC gave %d replies for %d commands", len(replies), len(cmds)-2)
	}
	if err == nil {
		err = replies[len(replies)-1].Error()
	}
	if err != nil {
		j.Count(db, Counts{Failed: 1})
		return j.Target.Err(p.op, p.name, ctxErr(ctx, fmt.Errorf("rename %q onto the key: %w", p.tmp, err)))
	}
	if n, _ := replies[len(replies)-1].AsInt64(); j.Conflict != Replace && n == 0 {
		return p.conflict() // written meanwhile; close removes tmp
	}
	p.done = true
	j.Count(db, Counts{Keys: 1, Bytes: p.bytes})
	return nil
}

// conflict counts a big key the target holds already: Skipped under Skip, else Failed
// and an error wrapping ErrConflict. A big key is not compared with the target's.
func (p *piecewise) conflict() error {
	if p.j.Conflict == Skip {
		p.j.Count(p.db, Counts{Skipped: 1})
		return nil
	}
	p.j.Count(p.db, Counts{Failed: 1})
	return p.j.Target.Err(p.op, p.name, fmt.Errorf("%w (a key copied in pieces is not compared with the target's)", ErrConflict))
}

// bigWriter copies the windows of one key of the source into its temporary key.
type bigWriter struct {
	rd     *dumper
	p      *piecewise
	key    string
	window int64 // bytes per window of a string
}

func (w *bigWriter) readErr(ctx context.Context, cmd string, err error) error {
	return w.rd.j.Source.Err(fmt.Sprintf("%s in db %d", cmd, w.rd.db), w.key, ctxErr(ctx, piecesRefused(Source, cmd, err)))
}

// string copies a string by GETRANGE windows, appended.
func (w *bigWriter) string(ctx context.Context) error {
	src := w.rd.src
	for off := int64(0); ; off += w.window {
		v, err := src.Do(ctx, src.B().Getrange().Key(w.key).Start(off).End(off+w.window-1).Build()).ToString()
		if err != nil {
			return w.readErr(ctx, "getrange", err)
		}
		if v != "" {
			if err := w.p.write(ctx, w.p.tc.B().Append().Key(w.p.tmp).Value(v).Build(), "append"); err != nil {
				return err
			}
			w.p.bytes += int64(len(v))
		}
		if int64(len(v)) < w.window {
			return nil
		}
	}
}

// scan copies a hash, set or sorted set by HSCAN, SSCAN or ZSCAN windows. A member SCAN
// gives twice is written twice, to the same effect.
func (w *bigWriter) scan(ctx context.Context, typ string) error {
	src := w.rd.src
	cursor := uint64(0)
	for {
		var cmd rueidis.Completed
		switch typ {
		case "hash":
			cmd = src.B().Hscan().Key(w.key).Cursor(cursor).Count(bigWindowElements).Build()
		case "set":
			cmd = src.B().Sscan().Key(w.key).Cursor(cursor).Count(bigWindowElements).Build()
		default:
			cmd = src.B().Zscan().Key(w.key).Cursor(cursor).Count(bigWindowElements).Build()
		}
		e, err := src.Do(ctx, cmd).AsScanEntry()
		if err != nil {
			return w.readErr(ctx, strings.ToLower(typ[:1])+"scan", err)
		}
		if len(e.Elements) > 0 {
			for _, s := range e.Elements {
				w.p.bytes += int64(len(s))
			}
			var cmd rueidis.Completed
			var name string
			switch typ {
			case "hash":
				b := w.p.tc.B().Hset().Key(w.p.tmp).FieldValue()
				for i := 0; i+1 < len(e.Elements); i += 2 {
					b = b.FieldValue(e.Elements[i], e.Elements[i+1])
				}
				cmd, name = b.Build(), "hset"
			case "set":
				cmd, name = w.p.tc.B().Sadd().Key(w.p.tmp).Member(e.Elements...).Build(), "sadd"
			default:
				// The scores go as ZSCAN wrote them, which ZADD reads back exactly.
				args := make([]string, 0, len(e.Elements))
				for i := 0; i+1 < len(e.Elements); i += 2 {
					args = append(args, e.Elements[i+1], e.Elements[i])
				}
				cmd, name = w.p.tc.B().Arbitrary("ZADD").Keys(w.p.tmp).Args(args...).Build(), "zadd"
			}
			if err := w.p.write(ctx, cmd, name); err != nil {
				return err
			}
		}
		if e.Cursor == 0 {
			return nil
		}
		cursor = e.Cursor
	}
}

// list copies a list by LRANGE windows, pushed at the tail.
func (w *bigWriter) list(ctx context.Context) error {
	src := w.rd.src
	for start := int64(0); ; start += bigWindowElements {
		vs, err := src.Do(ctx, src.B().Lrange().Key(w.key).Start(start).Stop(start+bigWindowElements-1).Build()).AsStrSlice()
		if err != nil {
			return w.readErr(ctx, "lrange", err)
		}
		if len(vs) > 0 {
			for _, s := range vs {
				w.p.bytes += int64(len(s))
			}
			if err := w.p.write(ctx, w.p.tc.B().Rpush().Key(w.p.tmp).Element(vs...).Build(), "rpush"); err != nil {
				return err
			}
		}
		if len(vs) < bigWindowElements {
			return nil
		}
	}
}

// stream copies a stream by XRANGE windows, added at their IDs,
// then sets its last ID (and, from Redis 7.0 on both sides, its entries-added counter and
// largest deleted ID) with XSETID, and then its consumer groups.
func (w *bigWriter) stream(ctx context.Context) error {
	j, src := w.rd.j, w.rd.src
	groups, err := src.Do(ctx, src.B().XinfoGroups().Key(w.key).Build()).ToArray()
	if err != nil {
		return w.readErr(ctx, "xinfo groups", err)
	}
	info, err := src.Do(ctx, src.B().XinfoStream().Key(w.key).Build()).AsMap()
	if err != nil {
		return w.readErr(ctx, "xinfo stream", err)
	}
	start := "-"
	for {
		entries, err := src.Do(ctx, src.B().Xrange().Key(w.key).Start(start).End("+").Count(bigWindowElements).Build()).ToArray()
		if err != nil {
			return w.readErr(ctx, "xrange", err)
		}
		var last string
		if len(entries) > 0 {
			cmds := make(rueidis.Commands, 0, len(entries))
			for _, e := range entries {
				// Fields in their order: an entry is [id, [field, value, ...]].
				parts, err := e.ToArray()
				if err != nil || len(parts) != 2 {
					return w.readErr(ctx, "xrange", fmt.Errorf("unexpected entry %v (%v)", e, err))
				}
				id, err := parts[0].ToString()
				if err != nil {
					return w.readErr(ctx, "xrange", err)
				}
				fv, err := parts[1].AsStrSlice()
				if err != nil {
					return w.readErr(ctx, "xrange", err)
				}
				for _, s := range fv {
					w.p.bytes += int64(len(s))
				}
				last = id
				cmds = append(cmds, w.p.tc.B().Arbitrary("XADD").Keys(w.p.tmp).Args(id).Args(fv...).Build())
			}
			if err := w.p.writeAll(ctx, cmds, "xadd"); err != nil {
				return err
			}
		}
		if len(entries) < bigWindowElements {
			break
		}
		start = "(" + last
	}
	if !w.p.written {
		return nil // an empty stream: not big; the key is gone or changed meanwhile
	}
	field := func(name string) *rueidis.RedisMessage { m := info[name]; return &m }
	last, _ := field("last-generated-id").ToString()
	args := []string{last}
	if j.Source.Info.AtLeast(7, 0, 0) && j.Target.Info.AtLeast(7, 0, 0) {
		added, _ := field("entries-added").AsInt64()
		maxDel, _ := field("max-deleted-entry-id").ToString()
		args = append(args, "ENTRIESADDED", strconv.FormatInt(added, 10), "MAXDELETEDID", maxDel)
	}
	if err := w.p.write(ctx, w.p.tc.B().Arbitrary("XSETID").Keys(w.p.tmp).Args(args...).Build(), "xsetid"); err != nil {
		return err
	}
	for i := range groups {
		g, err := groups[i].AsMap()
		if err != nil {
			return w.readErr(ctx, "xinfo groups", err)
		}
		if err := w.group(ctx, g); err != nil {
			return err
		}
	}
	return nil
}

// group copies one consumer group of a stream (g, as XINFO GROUPS tells it): XGROUP
// CREATE at its last delivered ID (with its entries-read counter from Redis 7.0), its
// consumers (XGROUP CREATECONSUMER, Redis 6.2), and its pending entries by XCLAIM ...
// IDLE ... RETRYCOUNT ... FORCE JUSTID, with their owners, idle times and delivery counts.
// The consumers' seen and active times are those of the copy. What cannot be made exact
// (a consumer with no pending entry on a target before 6.2, a pending entry whose message
// was deleted) refuses the key with ErrIncompatible.
func (w *bigWriter) group(ctx context.Context, g map[string]rueidis.RedisMessage) error {
	j, src, tc := w.rd.j, w.rd.src, w.p.tc
	str := func(m map[string]rueidis.RedisMessage, name string) string {
		v := m[name]
		s, _ := v.ToString()
		return s
	}
	num := func(m map[string]rueidis.RedisMessage, name string) (int64, bool) {
		v := m[name]
		n, err := v.AsInt64()
		return n, err == nil
	}
	name, last := str(g, "name"), str(g, "last-delivered-id")
	refuse := func(why string) error {
		return j.Target.Err(fmt.Sprintf("copy in pieces into db %d", j.TargetDB(w.rd.db)), w.key,
			fmt.Errorf("%w: consumer group %q: %s", ErrIncompatible, name, why))
	}
	setID := []string{last}
	if read, ok := num(g, "entries-read"); ok && j.Target.Info.AtLeast(7, 0, 0) {
		setID = append(setID, "ENTRIESREAD", strconv.FormatInt(read, 10))
	}
	if err := w.p.write(ctx, tc.B().Arbitrary("XGROUP", "CREATE").Keys(w.p.tmp).Args(name).Args(setID...).Build(), "xgroup create"); err != nil {
		return err
	}
	cons, err := src.Do(ctx, src.B().XinfoConsumers().Key(w.key).Group(name).Build()).ToArray()
	if err != nil {
		return w.readErr(ctx, "xinfo consumers", err)
	}
	for i := range cons {
		c, err := cons[i].AsMap()
		if err != nil {
			return w.readErr(ctx, "xinfo consumers", err)
		}
		if !j.Target.Info.AtLeast(6, 2, 0) {
			if n, _ := num(c, "pending"); n == 0 {
				return refuse(fmt.Sprintf("consumer %q has no pending entry, and the target (before Redis 6.2) creates consumers only with one", str(c, "name")))
			}
			continue
		}
		if err := w.p.write(ctx, tc.B().XgroupCreateconsumer().Key(w.p.tmp).Group(name).Consumer(str(c, "name")).Build(), "xgroup createconsumer"); err != nil {
			return err
		}
	}
	want, _ := num(g, "pending")
	start := "-"
	for {
		pel, err := src.Do(ctx, src.B().Xpending().Key(w.key).Group(name).Start(start).End("+").Count(bigWindowElements).Build()).ToArray()
		if err != nil {
			return w.readErr(ctx, "xpending", err)
		}
		cmds := make(rueidis.Commands, 0, len(pel))
		var id string
		for i := range pel {
			e, err := pel[i].ToArray()
			if err != nil || len(e) < 4 {
				return w.readErr(ctx, "xpending", fmt.Errorf("unexpected entry %v (%v)", pel[i], err))
			}
			id, _ = e[0].ToString()
			owner, _ := e[1].ToString()
			idle, _ := e[2].AsInt64()
			count, _ := e[3].AsInt64()
			cmds = append(cmds, tc.B().Xclaim().Key(w.p.tmp).Group(name).Consumer(owner).MinIdleTime("0").Id(id).
				Idle(idle).Retrycount(count).Force().Justid().Build())
		}
		if err := w.p.writeAll(ctx, cmds, "xclaim"); err != nil {
			return err
		}
		if len(pel) < bigWindowElements {
			break
		}
		// The next window starts after id (XPENDING's exclusive ranges are from 6.2 only).
		ms, seq, _ := strings.Cut(id, "-")
		n, _ := strconv.ParseUint(seq, 10, 64)
		start = ms + "-" + strconv.FormatUint(n+1, 10)
	}
	// XCLAIM leaves the group's last ID as it is; set it again, for the counters.
	if err := w.p.write(ctx, tc.B().Arbitrary("XGROUP", "SETID").Keys(w.p.tmp).Args(name).Args(setID...).Build(), "xgroup setid"); err != nil {
		return err
	}
	got, err := tc.Do(ctx, tc.B().Xpending().Key(w.p.tmp).Group(name).Build()).ToArray()
	if err != nil || len(got) == 0 {
		return j.Target.Err("xpending", w.p.tmp, ctxErr(ctx, fmt.Errorf("read the pending count: %v", err)))
	}
	if n, _ := got[0].AsInt64(); n != want {
		return refuse(fmt.Sprintf("%d pending entries on the source, %d could be claimed on the target (a pending entry whose message was deleted cannot be recreated)", want, n))
	}
	return nil
}

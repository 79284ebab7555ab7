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
	tdb := j.TargetDB(db)
	tc, err := j.Target.Client(tdb)
	if err != nil {
		return err
	}
	name := j.TargetKey(db, key)
	op := fmt.Sprintf("copy in pieces into db %d", tdb)
	if j.Conflict != Replace {
		// A key that is there already is not copied for nothing.
		n, err := tc.Do(ctx, tc.B().Exists().Key(name).Build()).AsInt64()
		if err != nil {
			return j.Target.Err(op, name, ctxErr(ctx, err))
		}
		if n > 0 {
			return rd.bigConflict(db, name)
		}
	}
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
		// APPEND and SETRANGE refuse to make a string longer than proto-max-bulk-len too.
		j.Count(db, Counts{Failed: 1})
		return j.Target.Err(op, name, fmt.Errorf(
			"%w: the string is %d bytes and the target's proto-max-bulk-len is %d, which bounds a string's length (not only one command's); raise it on the target (CONFIG SET proto-max-bulk-len)",
			ErrTooLarge, n, bulk))
	}
	tmp, err := bigTempKey(name)
	if err != nil {
		return j.Target.Err(op, name, err)
	}
	j.Logger.Info("copying a big key in pieces", "db", db, "key", key, "type", typ, "temporary", tmp)
	done := false
	defer func() {
		if !done {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
			tc.Do(dctx, tc.B().Unlink().Key(tmp).Build())
			cancel()
		}
	}()
	limit, _ := rd.limit.get(ctx, j)
	w := &bigWriter{rd: rd, tc: tc, key: key, tmp: tmp, window: max(1024, min(bigWindowBytes, bulk/4, limit))}
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
		err = j.Source.Err(op, key, fmt.Errorf("%w: a %s value larger than the target takes in one command is not copied in pieces; raise proto-max-bulk-len on the target or WithKeyBudget", ErrTooLarge, typ))
	}
	if err != nil {
		j.Count(db, Counts{Failed: 1})
		return err
	}
	if expireAt > 0 && expireAt <= time.Now().UnixMilli() {
		j.Count(db, Counts{Expired: 1})
		return nil
	}
	if !w.written {
		// Nothing was read: the key is gone since.
		j.Count(db, Counts{Expired: 1})
		return nil
	}
	cmds := rueidis.Commands{tc.B().Multi().Build()}
	if expireAt > 0 {
		cmds = append(cmds, tc.B().Pexpireat().Key(tmp).MillisecondsTimestamp(expireAt).Build())
	}
	if j.Conflict == Replace {
		cmds = append(cmds, tc.B().Rename().Key(tmp).Newkey(name).Build())
	} else {
		cmds = append(cmds, tc.B().Renamenx().Key(tmp).Newkey(name).Build())
	}
	cmds = append(cmds, tc.B().Exec().Build())
	res = tc.DoMulti(ctx, cmds...)
	replies, err := res[len(res)-1].ToArray()
	if err == nil && len(replies) != len(cmds)-2 {
		err = fmt.Errorf("EXEC gave %d replies for %d commands", len(replies), len(cmds)-2)
	}
	if err == nil {
		err = replies[len(replies)-1].Error()
	}
	if err != nil {
		j.Count(db, Counts{Failed: 1})
		return j.Target.Err(op, name, ctxErr(ctx, fmt.Errorf("rename %q onto the key: %w", tmp, err)))
	}
	if n, _ := replies[len(replies)-1].AsInt64(); j.Conflict != Replace && n == 0 {
		return rd.bigConflict(db, name) // written meanwhile; the deferred UNLINK removes tmp
	}
	done = true
	j.Count(db, Counts{Keys: 1, Bytes: w.bytes})
	return nil
}

// bigConflict counts a big key the target holds already: Skipped under Skip, else Failed
// and an error wrapping ErrConflict. A big key is not compared with the target's.
func (rd *dumper) bigConflict(db int, name string) error {
	if rd.j.Conflict == Skip {
		rd.j.Count(db, Counts{Skipped: 1})
		return nil
	}
	rd.j.Count(db, Counts{Failed: 1})
	return rd.j.Target.Err(fmt.Sprintf("copy in pieces into db %d", rd.j.TargetDB(db)), name,
		fmt.Errorf("%w (a key copied in pieces is not compared with the target's)", ErrConflict))
}

// bigWriter copies the windows of one key into its temporary key.
type bigWriter struct {
	rd       *dumper
	tc       rueidis.Client
	key, tmp string
	window   int64 // bytes per window of a string
	bytes    int64 // bytes read so far
	written  bool  // something was written into the temporary key
}

func (w *bigWriter) readErr(ctx context.Context, cmd string, err error) error {
	return w.rd.j.Source.Err(fmt.Sprintf("%s in db %d", cmd, w.rd.db), w.key, ctxErr(ctx, err))
}

func (w *bigWriter) write(ctx context.Context, cmd rueidis.Completed, name string) error {
	w.written = true
	if err := w.tc.Do(ctx, cmd).Error(); err != nil {
		return w.rd.j.Target.Err(fmt.Sprintf("%s into db %d", name, w.rd.j.TargetDB(w.rd.db)), w.tmp, ctxErr(ctx, err))
	}
	return nil
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
			if err := w.write(ctx, w.tc.B().Append().Key(w.tmp).Value(v).Build(), "append"); err != nil {
				return err
			}
			w.bytes += int64(len(v))
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
				w.bytes += int64(len(s))
			}
			var cmd rueidis.Completed
			var name string
			switch typ {
			case "hash":
				b := w.tc.B().Hset().Key(w.tmp).FieldValue()
				for i := 0; i+1 < len(e.Elements); i += 2 {
					b = b.FieldValue(e.Elements[i], e.Elements[i+1])
				}
				cmd, name = b.Build(), "hset"
			case "set":
				cmd, name = w.tc.B().Sadd().Key(w.tmp).Member(e.Elements...).Build(), "sadd"
			default:
				// The scores go as ZSCAN wrote them, which ZADD reads back exactly.
				args := make([]string, 0, len(e.Elements))
				for i := 0; i+1 < len(e.Elements); i += 2 {
					args = append(args, e.Elements[i+1], e.Elements[i])
				}
				cmd, name = w.tc.B().Arbitrary("ZADD").Keys(w.tmp).Args(args...).Build(), "zadd"
			}
			if err := w.write(ctx, cmd, name); err != nil {
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
				w.bytes += int64(len(s))
			}
			if err := w.write(ctx, w.tc.B().Rpush().Key(w.tmp).Element(vs...).Build(), "rpush"); err != nil {
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
					w.bytes += int64(len(s))
				}
				last = id
				cmds = append(cmds, w.tc.B().Arbitrary("XADD").Keys(w.tmp).Args(id).Args(fv...).Build())
			}
			w.written = true
			for _, r := range w.tc.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					return j.Target.Err(fmt.Sprintf("xadd into db %d", j.TargetDB(w.rd.db)), w.tmp, ctxErr(ctx, err))
				}
			}
		}
		if len(entries) < bigWindowElements {
			break
		}
		start = "(" + last
	}
	if !w.written {
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
	if err := w.write(ctx, w.tc.B().Arbitrary("XSETID").Keys(w.tmp).Args(args...).Build(), "xsetid"); err != nil {
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
	j, src, tc := w.rd.j, w.rd.src, w.tc
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
	if err := w.write(ctx, tc.B().Arbitrary("XGROUP", "CREATE").Keys(w.tmp).Args(name).Args(setID...).Build(), "xgroup create"); err != nil {
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
		if err := w.write(ctx, tc.B().XgroupCreateconsumer().Key(w.tmp).Group(name).Consumer(str(c, "name")).Build(), "xgroup createconsumer"); err != nil {
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
			cmds = append(cmds, tc.B().Xclaim().Key(w.tmp).Group(name).Consumer(owner).MinIdleTime("0").Id(id).
				Idle(idle).Retrycount(count).Force().Justid().Build())
		}
		for _, r := range tc.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return j.Target.Err(fmt.Sprintf("xclaim into db %d", j.TargetDB(w.rd.db)), w.tmp, ctxErr(ctx, err))
			}
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
	if err := w.write(ctx, tc.B().Arbitrary("XGROUP", "SETID").Keys(w.tmp).Args(name).Args(setID...).Build(), "xgroup setid"); err != nil {
		return err
	}
	got, err := tc.Do(ctx, tc.B().Xpending().Key(w.tmp).Group(name).Build()).ToArray()
	if err != nil || len(got) == 0 {
		return j.Target.Err("xpending", w.tmp, ctxErr(ctx, fmt.Errorf("read the pending count: %v", err)))
	}
	if n, _ := got[0].AsInt64(); n != want {
		return refuse(fmt.Sprintf("%d pending entries on the source, %d could be claimed on the target (a pending entry whose message was deleted cannot be recreated)", want, n))
	}
	return nil
}

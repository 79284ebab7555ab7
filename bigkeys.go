package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
// A write whose reply was lost (our connection killed, the target restarting) is settled
// before the copy goes on, as retry.go's reconnectRetry waits, and never applied twice:
// the temporary key is ours alone, so its length tells exactly whether an APPEND or RPUSH
// landed (each reply gives the length after it, which is checked against what was sent,
// so a key that lost writes is seen at its next RPUSH or APPEND); an XADD at its ID or an XGROUP CREATE
// that landed is refused when sent again (the ID is not above the top; BUSYGROUP), which
// then counts as done; the other writes (HSET, SADD, ZADD, XSETID, XCLAIM ... FORCE, ...)
// set what they set again, to the same effect. The final MULTI/EXEC landed if the
// temporary key is gone and the key is there. A temporary key that no longer holds what
// the target acknowledged (it restarted without its data) is started again from the
// beginning by DumpRestore, which reads the source again, and fails Snapshot, which cannot
// read the RDB again (errPiecesLost). Exactness after a restart needs a target that keeps
// every acknowledged write (appendonly yes, appendfsync always): a hash, set, sorted set or
// stream that lost some of them but not all is not told apart.
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

// bigCopies bounds how many times DumpRestore starts the copy in pieces of one key from the
// beginning because the target lost the writes of its temporary key (errPiecesLost).
const bigCopies = 3

// copyBig copies one big key of the source database rd.db in pieces, and counts the
// outcome. It returns the error that stops the migration. A copy whose temporary key the
// target lost (errPiecesLost: it restarted without its data) starts again from the
// beginning, into a new temporary key, the old one deleted.
func (rd *dumper) copyBig(ctx context.Context, key string) error {
	for try := 1; ; try++ {
		err := rd.copyBigOnce(ctx, key, try < bigCopies)
		if !errors.Is(err, errPiecesLost) || try == bigCopies {
			return err
		}
		rd.j.Logger.Warn("copy in pieces: the target lost writes of the temporary key; copying the key again from the beginning",
			"db", rd.db, "key", key, "error", err)
	}
}

// copyBigOnce is one try of copyBig; again says whether another may follow an
// errPiecesLost, which is then not counted.
func (rd *dumper) copyBigOnce(ctx context.Context, key string, again bool) error {
	j, db := rd.j, rd.db
	p, err := startPiecewise(ctx, j, db, key)
	if p == nil {
		return err
	}
	p.again = again
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
		p.failed(err)
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
	acked   bool   // the target acknowledged a write into the temporary key
	length  int64  // the temporary key's length (LLEN, STRLEN) after the last RPUSH or APPEND acknowledged
	done    bool   // renamed into place: nothing to clean up
	again   bool   // the copy starts again from the beginning on errPiecesLost (DumpRestore)

	reconnect clusterRetry // the wait for a target whose connection failed (reconnectRetry)
}

// errPiecesLost is a temporary key of a copy in pieces that no longer holds what the
// target acknowledged: the target lost writes (it restarted without persistence, or with
// appendfsync other than always) or another client changed the key.
var errPiecesLost = errors.New("the temporary key no longer holds what the target acknowledged: the target lost writes (restarted without appendonly yes and appendfsync always?) " +
	"or another client changed it; the temporary key is deleted, the key not copied: make the target keep its writes, then run the migration again")

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
	p = &piecewise{j: j, db: db, tc: tc, name: j.TargetKey(db, key), op: fmt.Sprintf("copy in pieces into db %d", tdb), reconnect: reconnectRetry()}
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

// failed counts the key Failed for err, unless the copy starts again (again, errPiecesLost).
func (p *piecewise) failed(err error) {
	if !p.again || !errors.Is(err, errPiecesLost) {
		p.j.Count(p.db, Counts{Failed: 1})
	}
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

// writeAll sends commands that write into the temporary key, in one pipeline. Those whose
// replies are lost to a failed connection are settled once the target answers again (see
// the top of the file): each lands once. name names them in errors.
func (p *piecewise) writeAll(ctx context.Context, cmds rueidis.Commands, name string) error {
	if len(cmds) == 0 {
		return nil
	}
	p.written = true
	for i := range cmds {
		cmds[i].Pin() // read again (landed, unsettled) and maybe sent again after the reply
	}
	resent := false
	for {
		res := p.tc.DoMulti(ctx, cmds...)
		var lost error
		i := 0
		for ; i < len(res); i++ {
			err := res[i].Error()
			if err == nil {
				if err := p.landed(cmds[i], &res[i]); err != nil {
					return p.writeErr(ctx, name, err)
				}
				continue
			}
			if resent && landedBefore(cmds[i], err) {
				continue
			}
			if reconnectable(ctx, err) {
				lost = err
				break
			}
			return p.writeErr(ctx, name, err)
		}
		if lost == nil {
			p.reconnect.reset()
			return nil
		}
		if i > 0 {
			p.reconnect.reset()
		}
		p.j.Logger.Info("copy in pieces: the connection to the target failed; settling the writes whose replies were lost",
			"key", p.name, "temporary", p.tmp, "error", lost)
		var left rueidis.Commands
		for {
			if err := p.reconnect.wait(ctx); err != nil {
				if w, ok := err.(*clusterWaitError); ok {
					return p.j.Target.explainReconnect(w, p.writeErr(ctx, name, lost))
				}
				return p.writeErr(ctx, name, err)
			}
			var err error
			if left, err = p.unsettled(ctx, cmds[i:]); err == nil {
				break
			}
			if errors.Is(err, errPiecesLost) || !reconnectable(ctx, err) {
				return p.writeErr(ctx, name, err)
			}
			lost = err
		}
		cmds, resent = left, true
		if len(cmds) == 0 {
			p.reconnect.reset()
			return nil
		}
	}
}

// writeErr wraps err, the failure of a write name into the temporary key.
func (p *piecewise) writeErr(ctx context.Context, name string, err error) error {
	return p.j.Target.Err(fmt.Sprintf("%s into db %d (temporary key %q)", name, p.j.TargetDB(p.db), p.tmp), p.name, ctxErr(ctx, piecesRefused(Target, name, err)))
}

// landed notes cmd acknowledged with reply r: the length of the temporary key after an
// RPUSH or APPEND, which must be the length before and what cmd added, or the key lost
// writes (errPiecesLost).
func (p *piecewise) landed(cmd rueidis.Completed, r *rueidis.RedisResult) error {
	p.acked = true
	args := cmd.Commands()
	if args[0] != "RPUSH" && args[0] != "APPEND" {
		return nil
	}
	n, err := r.AsInt64()
	if err != nil {
		return err
	}
	if want := p.length + grows(args); n != want {
		return fmt.Errorf("%w (length %d after %s, %d expected)", errPiecesLost, n, args[0], want)
	}
	p.length = n
	return nil
}

// grows returns by how much the RPUSH or APPEND args makes its key longer.
func grows(args []string) int64 {
	if args[0] == "APPEND" {
		return int64(len(args[2]))
	}
	return int64(len(args) - 2)
}

// landedBefore reports whether err, the reply to cmd sent again after its first reply was
// lost, says that the first one landed: an XADD whose ID is no longer above the stream's
// top (ours: the IDs go up), an XGROUP CREATE of a group that is there.
func landedBefore(cmd rueidis.Completed, err error) bool {
	text, _, _ := errorReply(err)
	switch args := cmd.Commands(); {
	case args[0] == "XADD":
		return strings.Contains(text, "equal or smaller")
	case args[0] == "XGROUP" && len(args) > 1 && strings.EqualFold(args[1], "CREATE"):
		return strings.HasPrefix(text, "BUSYGROUP")
	}
	return false
}

// unsettled asks the target which of cmds, whose replies were lost (the first of them may
// have landed, and those after it that the connection carried before it failed), landed,
// and returns those to send again. RPUSH and APPEND are told by the temporary key's
// length; the others are sent again (see landedBefore), once the temporary key is known
// to hold what was acknowledged.
func (p *piecewise) unsettled(ctx context.Context, cmds rueidis.Commands) (rueidis.Commands, error) {
	tc := p.tc
	switch cmds[0].Commands()[0] {
	case "RPUSH", "APPEND":
		length := tc.B().Llen().Key(p.tmp).Build()
		if cmds[0].Commands()[0] == "APPEND" {
			length = tc.B().Strlen().Key(p.tmp).Build()
		}
		got, err := tc.Do(ctx, length).AsInt64()
		if err != nil {
			return nil, err
		}
		at := p.length
		for i := 0; ; i++ {
			if got == at {
				p.length, p.acked = at, p.acked || i > 0
				return cmds[i:], nil // cmds[:i] landed
			}
			if i == len(cmds) {
				return nil, fmt.Errorf("%w (length %d, %d acknowledged)", errPiecesLost, got, p.length)
			}
			at += grows(cmds[i].Commands())
		}
	}
	if !p.acked {
		return cmds, nil
	}
	n, err := tc.Do(ctx, tc.B().Exists().Key(p.tmp).Build()).AsInt64()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w (it is gone)", errPiecesLost)
	}
	return cmds, nil
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
	for i := range cmds {
		cmds[i].Pin() // sent again after a lost reply
	}
	var renamed bool
	for {
		res := tc.DoMulti(ctx, cmds...)
		replies, err := res[len(res)-1].ToArray()
		if err == nil && len(replies) != len(cmds)-2 {
			err = fmt.Errorf("EXEC gave %d replies for %d commands", len(replies), len(cmds)-2)
		}
		if err == nil {
			err = replies[len(replies)-1].Error()
		}
		if err == nil {
			n, _ := replies[len(replies)-1].AsInt64()
			renamed = j.Conflict == Replace || n == 1
			break
		}
		var settled bool
		if reconnectable(ctx, err) {
			settled, renamed, err = p.settleRename(ctx, err, expireAt)
		}
		if err != nil {
			p.failed(err)
			return j.Target.Err(p.op, p.name, ctxErr(ctx, fmt.Errorf("rename %q onto the key: %w", p.tmp, err)))
		}
		if settled {
			break
		}
	}
	if p.done {
		return nil // expired meanwhile, counted
	}
	if !renamed {
		return p.conflict() // written meanwhile; close removes tmp
	}
	p.done = true
	j.Count(db, Counts{Keys: 1, Bytes: p.bytes})
	return nil
}

// settleRename learns, once the target answers again (as reconnectRetry waits), whether
// finish's MULTI/EXEC, whose reply was lost (lost), landed: the temporary key is gone and
// the key is there when it did (settled and renamed); the temporary key still there means
// it did not (not settled: send it again). Both gone is a key that expired meanwhile
// (settled, not renamed, and not a conflict: p.done) or a target that lost writes.
func (p *piecewise) settleRename(ctx context.Context, lost error, expireAt int64) (settled, renamed bool, err error) {
	tc := p.tc
	for {
		if err := p.reconnect.wait(ctx); err != nil {
			if w, ok := err.(*clusterWaitError); ok {
				return false, false, p.j.Target.explainReconnect(w, lost)
			}
			return false, false, err
		}
		res := tc.DoMulti(ctx, tc.B().Exists().Key(p.tmp).Build(), tc.B().Exists().Key(p.name).Build())
		tmp, err := res[0].AsInt64()
		var name int64
		if err == nil {
			name, err = res[1].AsInt64()
		}
		switch {
		case err != nil && reconnectable(ctx, err):
			lost = err
			continue
		case err != nil:
			return false, false, err
		case tmp == 1:
			return false, false, nil
		case name == 1:
			p.j.Logger.Info("copy in pieces: the rename whose reply was lost had landed", "key", p.name, "temporary", p.tmp)
			return true, true, nil
		case expireAt > 0 && expireAt <= time.Now().UnixMilli():
			p.done = true
			p.j.Count(p.db, Counts{Expired: 1})
			return true, false, nil
		}
		return false, false, fmt.Errorf("%w (the temporary key and the key are both gone after a lost reply)", errPiecesLost)
	}
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

package migrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Huge values of a snapshot. A value larger than the key budget (WithKeyBudget) or than the
// target takes in one command (its proto-max-bulk-len) is not read whole: the RDB reader
// hands it over in pieces as they stream in (rdbpieces.go), and the goroutine that reads
// the snapshot writes them into a temporary key of the target with RPUSH, SADD, ZADD, HSET
// (and HPEXPIREAT for field TTLs), APPEND or XADD, then renames it onto the key's name with
// its expiry (bigkeys.go's piecewise), so no reader sees half a key and a failure or a
// cancellation leaves no temporary key behind. A stream's metadata goes by XSETID, its
// groups by XGROUP CREATE, CREATECONSUMER and SETID, its pending entries by XCLAIM ...
// TIME ... RETRYCOUNT ... FORCE JUSTID to their owners: the group's pending entries come
// before the consumers that own them in the RDB, so they wait in a temporary file (in
// WithSpoolDir's directory), not in memory. The consumers' seen and active times are
// those of the copy, as with DumpRestore's big keys.
//
// What a key in pieces cannot carry (key metadata, Redis 8.6; field TTLs on a target before
// Redis 7.4; a stream's idempotent producers, 8.6, or NACKed entries, 8.8) goes as
// WithIncompatible says. A module value too large fails with ErrTooLarge.

// snapshotPieces copies the huge values of one snapshot in pieces.
type snapshotPieces struct {
	ctx  context.Context
	j    *Job
	rd   *RDBReader
	keep func(e *RDBEntry) (bool, error) // whether the key is copied: its database and the filters
	bulk int64                           // the target's proto-max-bulk-len

	e       RDBEntry // the key being copied
	p       *piecewise
	trimmed []string // what was left out of it under TrimIncompatible
	s       *streamPieces
}

// readPieces makes rd hand the values too large to be restored whole over to the returned
// snapshotPieces, which copies those keep selects. Close it once the snapshot is read.
func readPieces(ctx context.Context, j *Job, rd *RDBReader, keep func(e *RDBEntry) (bool, error)) *snapshotPieces {
	var l bigLimit
	limit, bulk := l.get(ctx, j)
	sp := &snapshotPieces{ctx: ctx, j: j, rd: rd, keep: keep, bulk: bulk}
	rd.pieces = &rdbPieces{
		over:   int(max(limit-64, 1024)), // room for the payload's type byte and footer
		window: int(bigWindow(limit, bulk)),
		begin:  sp.begin, piece: sp.piece, end: sp.end,
	}
	return sp
}

// wrote reports whether err, which the RDB reader returned, comes from writing a value in
// pieces rather than from reading the snapshot.
func (sp *snapshotPieces) wrote(err error) bool {
	var re *rdbError
	return !errors.As(err, &re) && !errors.Is(err, ErrCorruptRDB)
}

// close deletes the temporary key of a copy that did not finish, counting its key Failed.
func (sp *snapshotPieces) close() {
	if sp.s != nil {
		sp.s.close()
		sp.s = nil
	}
	if sp.p != nil {
		sp.j.Count(sp.e.DB, Counts{Failed: 1})
		sp.p.close(sp.ctx)
		sp.p = nil
	}
}

func (sp *snapshotPieces) begin(e *RDBEntry, size int64) (bool, error) {
	j := sp.j
	if keep, err := sp.keep(e); err != nil || !keep {
		return false, err
	}
	j.Count(e.DB, Counts{Scanned: 1})
	if e.ExpireAtMs > 0 && e.ExpireAtMs <= time.Now().UnixMilli() {
		j.Count(e.DB, Counts{Expired: 1})
		return false, nil
	}
	sp.e, sp.trimmed = *e, nil
	sp.e.Payload = nil
	op := fmt.Sprintf("restore into db %d", j.TargetDB(e.DB))
	switch {
	case e.TypeName() == "module":
		j.Count(e.DB, Counts{Failed: 1})
		return false, j.Target.Err(op, e.Key, fmt.Errorf("%w: a module value larger than the target takes in one command (proto-max-bulk-len %d) or than WithKeyBudget cannot be copied in pieces; raise them",
			ErrTooLarge, sp.bulk))
	case size > sp.bulk:
		j.Count(e.DB, Counts{Failed: 1})
		return false, (&piecewise{j: j, name: j.TargetKey(e.DB, e.Key), op: op}).tooLong(size, sp.bulk)
	}
	p, err := startPiecewise(sp.ctx, j, e.DB, e.Key)
	if p == nil {
		return false, err
	}
	sp.p = p
	if e.hasMeta {
		if err := sp.incompatible("it carries key metadata (Redis 8.6), which a key copied in pieces cannot carry"); err != nil || sp.p == nil {
			return false, err
		}
	}
	if e.TypeName() == "stream" {
		sp.s = &streamPieces{sp: sp, t: e.Type}
	}
	j.Logger.Info("snapshot: copying a huge value in pieces", "db", e.DB, "key", e.Key, "type", e.TypeName(), "temporary", p.tmp)
	return true, nil
}

// incompatible handles a part of the key being copied that the target cannot hold, as
// WithIncompatible says: left out (noted once the key is whole), the key left out (p nil,
// the rest of the value dropped), or an error wrapping ErrIncompatible.
func (sp *snapshotPieces) incompatible(why string) error {
	j, e := sp.j, &sp.e
	switch j.Incompatible {
	case TrimIncompatible:
		sp.trimmed = append(sp.trimmed, why)
		return nil
	case SkipIncompatible:
		j.Count(e.DB, Counts{Skipped: 1})
		j.noteIncompatible(e.DB, e.Key, why, false)
		sp.p.close(sp.ctx)
		sp.p, sp.rd.big = nil, bigDropped
		return nil
	}
	j.Count(e.DB, Counts{Failed: 1})
	sp.p.close(sp.ctx)
	sp.p = nil
	return j.Target.Err(fmt.Sprintf("restore into db %d", j.TargetDB(e.DB)), e.Key, fmt.Errorf(
		"%w: %s; copy such keys without that part with migrate.WithIncompatible(migrate.TrimIncompatible), or leave them out with migrate.WithIncompatible(migrate.SkipIncompatible)",
		ErrIncompatible, why))
}

func (sp *snapshotPieces) end() error {
	if sp.s != nil {
		sp.s.close()
		sp.s = nil
	}
	p := sp.p
	sp.p = nil
	defer p.close(sp.ctx)
	if err := p.finish(sp.ctx, sp.e.ExpireAtMs); err != nil {
		return err
	}
	for _, why := range sp.trimmed {
		if p.done {
			sp.j.noteIncompatible(sp.e.DB, sp.e.Key, why+"; copied without it", true)
		}
	}
	return nil
}

// corrupt is the error for a piece that does not decode.
func (sp *snapshotPieces) corrupt(kind byte) error {
	sp.j.Count(sp.e.DB, Counts{Failed: 1})
	return fmt.Errorf("value of key %s (RDB type %d): a piece (%d) does not decode: %w", quoteKey(sp.e.Key), sp.e.Type, kind, ErrCorruptRDB)
}

func (sp *snapshotPieces) piece(kind byte, data []byte) error {
	p := sp.p
	tc, tmp, v := p.tc, p.tmp, string(data)
	switch kind {
	case RDBTypeString:
		p.bytes += int64(len(data))
		return p.write(sp.ctx, tc.B().Append().Key(tmp).Value(v).Build(), "append")
	case RDBTypeList, RDBTypeListZiplist, RDBTypeListQuicklist, RDBTypeListQuicklist2:
		elems, ok := listElements(kind, v)
		if !ok {
			return sp.corrupt(kind)
		}
		return sp.add("rpush", elems, func(b []string) rueidis.Completed { return tc.B().Rpush().Key(tmp).Element(b...).Build() })
	case RDBTypeSet, RDBTypeSetIntset, RDBTypeSetListpack:
		members, ok := setMembers(kind, v)
		if !ok {
			return sp.corrupt(kind)
		}
		return sp.add("sadd", members, func(b []string) rueidis.Completed { return tc.B().Sadd().Key(tmp).Member(b...).Build() })
	case RDBTypeZSet, RDBTypeZSet2, RDBTypeZSetZiplist, RDBTypeZSetListpack:
		entries, ok := zsetEntries(kind, v)
		if !ok {
			return sp.corrupt(kind)
		}
		args := make([]string, 0, 2*len(entries))
		for _, e := range entries {
			args = append(args, strconv.FormatFloat(e.score, 'g', -1, 64), e.member)
		}
		return sp.add("zadd", args, func(b []string) rueidis.Completed { return tc.B().Arbitrary("ZADD").Keys(tmp).Args(b...).Build() })
	case RDBTypeHash, RDBTypeHashZipmap, RDBTypeHashZiplist, RDBTypeHashListpack, RDBTypeHashMetadataPreGA,
		RDBTypeHashListpackExPreGA, RDBTypeHashMetadata, RDBTypeHashListpackEx:
		return sp.hash(kind, v)
	}
	if sp.s == nil {
		return sp.corrupt(kind)
	}
	return sp.s.piece(kind, v)
}

// add writes elements (pairs, for a sorted set) with the command cmd builds, and counts them.
func (sp *snapshotPieces) add(name string, elements []string, cmd func([]string) rueidis.Completed) error {
	if len(elements) == 0 {
		return nil
	}
	for _, s := range elements {
		sp.p.bytes += int64(len(s))
	}
	return sp.p.write(sp.ctx, cmd(elements), name)
}

// hash writes the fields of a piece of a hash, leaving out those already expired, and
// their TTLs by HPEXPIREAT on a Redis 7.4 target.
func (sp *snapshotPieces) hash(t byte, v string) error {
	p, tc := sp.p, sp.p.tc
	fields, ok := hashFields(t, v, sp.rd.valkey)
	if !ok {
		return sp.corrupt(t)
	}
	now := time.Now().UnixMilli()
	args := make([]string, 0, 2*len(fields))
	var ttls rueidis.Commands
	for _, f := range fields {
		if f.expireAt > 0 && f.expireAt <= now {
			continue
		}
		args = append(args, f.field, f.value)
		p.bytes += int64(len(f.field) + len(f.value))
		if f.expireAt > 0 {
			ttls = append(ttls, tc.B().Arbitrary("HPEXPIREAT").Keys(p.tmp).Args(strconv.FormatInt(f.expireAt, 10), "FIELDS", "1", f.field).Build())
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := p.write(sp.ctx, tc.B().Arbitrary("HSET").Keys(p.tmp).Args(args...).Build(), "hset"); err != nil {
		return err
	}
	if len(ttls) == 0 {
		return nil
	}
	if t := sp.j.Target.Info; t.IsValkey() || !t.AtLeast(7, 4, 0) {
		return sp.incompatible(fmt.Sprintf("some of its fields have a TTL (hash field expiration, Redis 7.4), and %s has no HPEXPIREAT", t.Name()))
	}
	return p.writeAll(sp.ctx, ttls, "hpexpireat")
}

// streamPieces copies the pieces of one stream.
type streamPieces struct {
	sp     *snapshotPieces
	t      byte     // the stream's RDB type
	group  string   // the group being copied
	setID  []string // its XGROUP SETID arguments
	owner  string   // the consumer whose pending entries come next
	owned  int      // how many pending entries it got
	nacked uint64   // the group's NACKed entries, which no consumer claims
	lone   []string // consumers without pending entries, on a target that needs one
	pel    *pelFile // the group's pending entries, until their owners are known
}

func (s *streamPieces) close() {
	if s.pel != nil {
		s.pel.close()
		s.pel = nil
	}
}

// streamID formats the stream ID of 16 big-endian bytes.
func streamID(b string) string {
	return strconv.FormatUint(binary.BigEndian.Uint64([]byte(b[:8])), 10) + "-" + strconv.FormatUint(binary.BigEndian.Uint64([]byte(b[8:16])), 10)
}

func (s *streamPieces) piece(kind byte, v string) error {
	sp, p := s.sp, s.sp.p
	ctx, j, tc, tmp := sp.ctx, sp.j, p.tc, p.tmp
	c := rdbCursor{in: v, ok: true}
	id := func() string { // an ID as two lengths
		ms, seq := c.length(false), c.length(false)
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
	}
	str := func() string {
		if !c.ok {
			return ""
		}
		s, rest, ok := nextString(c.in)
		c.in, c.ok = rest, ok
		return s
	}
	raw := func(n int) string {
		if c.ok = c.ok && len(c.in) >= n; !c.ok {
			return ""
		}
		b := c.in[:n]
		c.in = c.in[n:]
		return b
	}
	var cmds rueidis.Commands
	name := "xadd"
	switch kind {
	case pieceStreamNodes:
		nodes := c.length(false)
		for i := uint64(0); i < nodes && c.ok; i++ {
			master, lp := str(), str()
			entries, ok := streamNodeEntries(master, lp)
			if c.ok = c.ok && ok; !c.ok {
				break
			}
			for _, e := range entries {
				for _, f := range e.fields {
					p.bytes += int64(len(f))
				}
				cmds = append(cmds, tc.B().Arbitrary("XADD").Keys(tmp).Args(strconv.FormatUint(e.ms, 10)+"-"+strconv.FormatUint(e.seq, 10)).Args(e.fields...).Build())
			}
		}
	case pieceStreamMeta:
		c.length(false) // the length: that of the entries
		args := []string{id()}
		if s.t >= RDBTypeStreamListpacks2 {
			id() // the first ID: that of the entries
			maxDel := id()
			added := c.length(false)
			if j.Target.Info.AtLeast(7, 0, 0) {
				args = append(args, "ENTRIESADDED", strconv.FormatUint(added, 10), "MAXDELETEDID", maxDel)
			}
		}
		if !p.written { // every entry deleted: an empty stream, for XSETID
			cmds = append(cmds, tc.B().Arbitrary("XADD").Keys(tmp).Args("MAXLEN", "0", "0-1", "f", "v").Build())
		}
		cmds, name = append(cmds, tc.B().Arbitrary("XSETID").Keys(tmp).Args(args...).Build()), "xsetid"
	case pieceGroup:
		s.group = str()
		s.setID = []string{id()}
		if s.t >= RDBTypeStreamListpacks2 {
			read := c.length(false)
			if j.Target.Info.AtLeast(7, 0, 0) {
				// -1 (stored as its 64 bits) when not known, which ENTRIESREAD takes too.
				s.setID = append(s.setID, "ENTRIESREAD", strconv.FormatInt(int64(read), 10))
			}
		}
		cmds, name = rueidis.Commands{tc.B().Arbitrary("XGROUP", "CREATE").Keys(tmp).Args(s.group).Args(s.setID...).Build()}, "xgroup create"
	case piecePEL:
		if s.pel == nil {
			f, err := newPELFile(j.SpoolDir)
			if err != nil {
				return fmt.Errorf("snapshot: a temporary file for the pending entries of stream %s: %w", quoteKey(sp.e.Key), err)
			}
			s.pel = f
		}
		n := c.length(false)
		for i := uint64(0); i < n && c.ok; i++ {
			rec := raw(16 + 8)
			count := c.length(false)
			if c.ok {
				if err := s.pel.add(rec, count); err != nil {
					return err
				}
			}
		}
	case pieceConsumer:
		s.owner, s.owned = str(), 0
		raw(8) // seen time: that of the copy
		if s.t >= RDBTypeStreamListpacks3 {
			raw(8) // active time, likewise
		}
		if j.Target.Info.AtLeast(6, 2, 0) {
			cmds, name = rueidis.Commands{tc.B().XgroupCreateconsumer().Key(tmp).Group(s.group).Consumer(s.owner).Build()}, "xgroup createconsumer"
		}
	case pieceConsumerPEL:
		n := c.length(false)
		name = "xclaim"
		for i := uint64(0); i < n && c.ok; i++ {
			idb := raw(16)
			if !c.ok {
				break
			}
			at, count, ok, err := s.pel.find(idb)
			if err != nil {
				return err
			}
			if c.ok = ok; !ok {
				break
			}
			s.owned++
			cmds = append(cmds, tc.B().Xclaim().Key(tmp).Group(s.group).Consumer(s.owner).MinIdleTime("0").Id(streamID(idb)).
				Time(at).Retrycount(int64(count)).Force().Justid().Build())
		}
		if n == 0 && !j.Target.Info.AtLeast(6, 2, 0) {
			s.lone = append(s.lone, s.owner)
		}
	case pieceNacked:
		if n := c.length(false); n > 0 && c.ok {
			s.nacked = n
			if err := sp.incompatible(fmt.Sprintf("its consumer group %q has %d negatively acknowledged pending entries (XNACK, Redis 8.8), which a stream copied in pieces cannot hold; they are no longer pending", s.group, n)); err != nil || sp.p == nil {
				return err
			}
		}
		c.in = ""
	case pieceGroupEnd:
		if len(s.lone) > 0 {
			why := fmt.Sprintf("consumer %q of group %q has no pending entry, and %s creates consumers only with one", s.lone[0], s.group, j.Target.Info.Name())
			if err := sp.incompatible(why); err != nil || sp.p == nil {
				return err
			}
			s.lone = s.lone[:0]
		}
		var want int64
		if s.pel != nil {
			want = s.pel.n - int64(s.nacked)
			s.pel.reset()
		}
		s.nacked = 0
		got, err := tc.Do(ctx, tc.B().Xpending().Key(tmp).Group(s.group).Build()).ToArray()
		if err != nil || len(got) == 0 {
			return j.Target.Err("xpending", tmp, ctxErr(ctx, fmt.Errorf("read the pending count: %v", err)))
		}
		if n, _ := got[0].AsInt64(); n != want {
			why := fmt.Sprintf("consumer group %q: %d pending entries in the snapshot, %d could be claimed on the target (a pending entry whose message was deleted cannot be recreated)", s.group, want, n)
			if err := sp.incompatible(why); err != nil || sp.p == nil {
				return err
			}
		}
		// XCLAIM leaves the group's last ID as it is; set it again, for the counters.
		cmds, name = rueidis.Commands{tc.B().Arbitrary("XGROUP", "SETID").Keys(tmp).Args(s.group).Args(s.setID...).Build()}, "xgroup setid"
	case pieceStreamIDMP:
		c.lengths(2, false) // IDMP duration and maximum entries: the target's own
		if n := c.length(false); n > 0 && c.ok {
			if err := sp.incompatible(fmt.Sprintf("it holds the idempotent IDs of %d producers (XADD IDMP, Redis 8.6), which a stream copied in pieces cannot hold; duplicates are no longer refused", n)); err != nil {
				return err
			}
		}
		c.in = ""
	default:
		c.ok = false
	}
	if !c.ok || c.in != "" {
		return sp.corrupt(kind)
	}
	if sp.p == nil {
		return nil // left out
	}
	return p.writeAll(ctx, cmds, name)
}

// pelFile holds the pending entries of a consumer group, as the RDB lists them (by ID),
// until the consumers that own them come: fixed records of the ID (16 bytes, big-endian,
// so that they sort as bytes), the delivery time and the delivery count (8 bytes each).
type pelFile struct {
	f     *os.File
	w     *bufio.Writer
	n     int64  // records written
	pos   int64  // the record after the last found
	block []byte // records read, from record first on
	first int64
}

const pelRecord, pelBlock = 32, 4096

func newPELFile(dir string) (*pelFile, error) {
	f, err := os.CreateTemp(dir, "migrate-pel-*")
	if err != nil {
		return nil, err
	}
	return &pelFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (p *pelFile) close() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// reset empties the file for the next group.
func (p *pelFile) reset() {
	p.w.Reset(p.f)
	_ = p.f.Truncate(0)
	_, _ = p.f.Seek(0, io.SeekStart)
	p.n, p.pos, p.block = 0, 0, nil
}

// add appends a record: rec is the ID and the delivery time as the RDB holds them.
func (p *pelFile) add(rec string, count uint64) error {
	var b [pelRecord]byte
	copy(b[:], rec)
	binary.LittleEndian.PutUint64(b[24:], count)
	p.n++
	_, err := p.w.Write(b[:])
	return err
}

// record returns record i: from the block read last when it holds it, else, with seq
// (a read in order), from a new block read from i on, else read alone.
func (p *pelFile) record(i int64, seq bool) ([]byte, error) {
	if p.block != nil && i >= p.first && i < p.first+int64(len(p.block))/pelRecord {
		off := (i - p.first) * pelRecord
		return p.block[off : off+pelRecord], nil
	}
	if err := p.w.Flush(); err != nil {
		return nil, err
	}
	n := int64(1)
	if seq {
		n = min(pelBlock, p.n-i)
	}
	buf := make([]byte, n*pelRecord)
	if _, err := p.f.ReadAt(buf, i*pelRecord); err != nil {
		return nil, err
	}
	if seq {
		p.block, p.first = buf, i
	}
	return buf[:pelRecord], nil
}

// find returns the delivery time and count of the entry with ID id (16 bytes). A
// consumer's entries come by ID, so it looks from right after the last one found,
// in order first, then by leaps, then by halves.
func (p *pelFile) find(id string) (at int64, count uint64, ok bool, err error) {
	if p == nil {
		return 0, 0, false, nil
	}
	cmp := func(i int64, seq bool) (int, error) {
		r, err := p.record(i, seq)
		if err != nil {
			return 0, err
		}
		return bytes.Compare(r[:16], []byte(id)), nil
	}
	lo, hi := int64(0), p.n // the first record not below id is in [lo, hi]
	if p.pos < p.n {
		c, err := cmp(p.pos, true)
		switch {
		case err != nil:
			return 0, 0, false, err
		case c == 0:
			hi = p.pos
		case c > 0:
			hi = p.pos
		default:
			lo = p.pos + 1
			for step := int64(1); lo < p.n; step *= 2 {
				c, err := cmp(min(lo+step, p.n-1), false)
				if err != nil {
					return 0, 0, false, err
				}
				if c >= 0 {
					hi = min(lo+step, p.n-1)
					break
				}
				lo = min(lo+step, p.n-1) + 1
			}
		}
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		c, err := cmp(mid, false)
		if err != nil {
			return 0, 0, false, err
		}
		if c < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo >= p.n {
		return 0, 0, false, nil
	}
	r, err := p.record(lo, true)
	if err != nil || !bytes.Equal(r[:16], []byte(id)) {
		return 0, 0, false, err
	}
	p.pos = lo + 1
	return int64(binary.LittleEndian.Uint64(r[16:])), binary.LittleEndian.Uint64(r[24:]), true, nil
}

package migrate

import (
	"cmp"
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Compact encodings for older targets. A value rewritten for an older target (downgrade.go)
// in a plain encoding (RDB_TYPE_HASH, _ZSET_2, _LIST, _SET) makes the target build a
// hashtable, skiplist or list element by element and then, for a small value, convert it
// into its compact encoding: most of the cost of a downgrade. Where the target's RDB version
// has a compact encoding for the value's size, the rewrite writes that encoding instead, and
// the target takes the blob as it is:
//
//   - Redis 2.6 to 6.2 (RDB 6 to 9): a hash as a ziplist (RDB_TYPE_HASH_ZIPLIST, 13) of
//     field, value, ...; a sorted set as a ziplist (RDB_TYPE_ZSET_ZIPLIST, 12) of member,
//     score, ... ordered by score then member; from Redis 3.2 (RDB 7) a list as a quicklist
//     (RDB_TYPE_LIST_QUICKLIST, 14) of ziplist nodes;
//   - every version since 2.6: a set of integers as an intset (RDB_TYPE_SET_INTSET, 11).
//
// Each is written only when the target would hold the value so itself: within its
// hash-max-ziplist-entries/-value, zset-max-ziplist-entries/-value and
// set-max-intset-entries (read from the target's CONFIG once, else its version's
// defaults), so that OBJECT ENCODING reads the same as after a copy in the plain encoding;
// list nodes are cut as the target's quicklist cuts them (list-max-ziplist-size). A
// listpack hash or sorted set (Redis 7.0 and up) goes into its ziplist entry by entry,
// without being decoded into fields first. The formats are those of Redis src/ziplist.c,
// src/intset.c and src/quicklist.c (6.2).

// compactLimits are the target's thresholds for its compact encodings; a zero limit
// means that encoding is not written.
type compactLimits struct {
	hashEntries, hashValue int // hash-max-ziplist-entries, hash-max-ziplist-value
	zsetEntries, zsetValue int // zset-max-ziplist-entries, zset-max-ziplist-value
	listFill               int // list-max-ziplist-size: entries a node if > 0, else -1..-5 for 4..64 KB
	setIntset              int // set-max-intset-entries
}

// defaultCompactLimits are the defaults of Redis 2.6 to 7.4 (redis.conf): they did not
// change across those versions.
var defaultCompactLimits = compactLimits{hashEntries: 128, hashValue: 64, zsetEntries: 128, zsetValue: 64, listFill: -2, setIntset: 512}

// readLimits reads, once, the target's thresholds for the compact encodings from its
// CONFIG; those CONFIG GET does not give (a managed service that renames or refuses it)
// keep their defaults.
func (d *downgrader) readLimits(ctx context.Context) {
	d.limitsOnce.Do(func() {
		c, err := d.j.Target.Default()
		if err != nil {
			return
		}
		word := "ziplist"
		if d.version >= 10 {
			word = "listpack" // Redis 7.0 renamed them; the ziplist names remain as aliases
		}
		l := &d.limits
		for _, p := range []struct {
			name string
			to   *int
		}{
			{"hash-max-" + word + "-entries", &l.hashEntries}, {"hash-max-" + word + "-value", &l.hashValue},
			{"zset-max-" + word + "-entries", &l.zsetEntries}, {"zset-max-" + word + "-value", &l.zsetValue},
			{"list-max-" + word + "-size", &l.listFill}, {"set-max-intset-entries", &l.setIntset},
		} {
			v, ok := configGet(ctx, c, p.name)
			if !ok {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if n, err := strconv.Atoi(v); err == nil {
				*p.to = n
			}
		}
	})
}

// compactHash returns the payload (without its footer) of a hash as a ziplist, or nil
// when the target would not hold it so.
func (d *downgrader) compactHash(fields []hashField) []byte {
	l := d.limits
	if d.version < 6 || d.version >= 10 || len(fields) > l.hashEntries {
		return nil
	}
	size := 0
	for _, f := range fields {
		if len(f.field) > l.hashValue || len(f.value) > l.hashValue {
			return nil
		}
		size += len(f.field) + len(f.value)
	}
	z := startZiplist(newPayload(RDBTypeHashZiplist, size+4*len(fields)+ziplistHeader))
	for _, f := range fields {
		z.add(f.field)
		z.add(f.value)
	}
	return z.done()
}

// listpackHashAsZiplist returns the payload of a listpack hash (v, the value of type
// RDBTypeHashListpack) as a ziplist, entry by entry, or nil when the target would not hold
// it so or v is not a whole listpack of pairs: compactHash then decides, after the
// fields are decoded.
func (d *downgrader) listpackHashAsZiplist(v string) []byte {
	l := d.limits
	lp, rest, ok := nextString(v)
	if !ok || rest != "" || len(lp) < 7 || d.version < 6 || d.version >= 10 {
		return nil
	}
	n := int(binary.LittleEndian.Uint16([]byte(lp[4:6])))
	if n == 0 || n%2 != 0 || n/2 > l.hashEntries {
		return nil // 65535 (not counted) is odd
	}
	z := startZiplist(newPayload(RDBTypeHashZiplist, len(lp)+n+ziplistHeader))
	for p := lp[6:]; ; {
		elem, next, ok := listpackNext(p)
		switch {
		case !ok || len(elem) > l.hashValue:
			return nil
		case next == "":
			if len(p) != 1 || z.n != n {
				return nil
			}
			return z.done()
		}
		z.add(elem)
		p = next
	}
}

// listpackZSetAsZiplist returns the payload of a listpack sorted set (v, the value of
// type RDBTypeZSetListpack: member, score, ... in order) as a ziplist, entry by entry,
// or nil when the target would not hold it so or v is not such a listpack: compactZSet
// then decides, after the members are decoded.
func (d *downgrader) listpackZSetAsZiplist(v string) []byte {
	l := d.limits
	lp, rest, ok := nextString(v)
	if !ok || rest != "" || len(lp) < 7 || d.version < 6 || d.version >= 10 {
		return nil
	}
	n := int(binary.LittleEndian.Uint16([]byte(lp[4:6])))
	if n == 0 || n%2 != 0 || n/2 > l.zsetEntries {
		return nil
	}
	z := startZiplist(newPayload(RDBTypeZSetZiplist, len(lp)+n+ziplistHeader))
	var num [32]byte
	var last zsetEntry
	for p := lp[6:]; ; {
		member, next, ok := listpackNext(p)
		if ok && next == "" {
			if len(p) != 1 || z.n != n {
				return nil
			}
			return z.done()
		}
		var score string
		if ok {
			score, next, ok = listpackNext(next)
		}
		if !ok || next == "" || len(member) > l.zsetValue {
			return nil
		}
		f, err := strconv.ParseFloat(score, 64)
		e := zsetEntry{member, f}
		if err != nil || math.IsNaN(f) || z.n > 0 && compareZSetEntries(last, e) >= 0 {
			return nil
		}
		z.add(member)
		if plainDecimal(score) {
			z.add(score) // as the source wrote it: it reads back as f, and costs no formatting
		} else {
			ziplistAdd(&z, appendScore(num[:0], f))
		}
		p, last = next, e
	}
}

// plainDecimal reports whether s holds only what C's strtod and Go's ParseFloat read the
// same way: decimal digits, a point, an exponent and signs (not hexadecimal floats,
// underscores, "inf" or "nan").
func plainDecimal(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-' {
			return false
		}
	}
	return s != ""
}

// compactZSet returns the payload of a sorted set as a ziplist, ordered as the target
// orders it, or nil when the target would not hold it so.
func (d *downgrader) compactZSet(entries []zsetEntry) []byte {
	l := d.limits
	if d.version < 6 || d.version >= 10 || len(entries) > l.zsetEntries {
		return nil
	}
	size := 0
	for _, e := range entries {
		if len(e.member) > l.zsetValue || math.IsNaN(e.score) {
			return nil
		}
		size += len(e.member)
	}
	if !slices.IsSortedFunc(entries, compareZSetEntries) {
		entries = slices.Clone(entries) // the caller's order stays as given
		slices.SortFunc(entries, compareZSetEntries)
	}
	z := startZiplist(newPayload(RDBTypeZSetZiplist, size+24*len(entries)+ziplistHeader))
	var num [32]byte
	for _, e := range entries {
		z.add(e.member)
		ziplistAdd(&z, appendScore(num[:0], e.score))
	}
	return z.done()
}

// compareZSetEntries orders sorted-set members as Redis does: by score, then by member,
// byte by byte (src/t_zset.c, zslInsert).
func compareZSetEntries(a, b zsetEntry) int {
	if c := cmp.Compare(a.score, b.score); c != 0 {
		return c
	}
	return strings.Compare(a.member, b.member)
}

// appendScore appends a score as Redis writes it into a ziplist (src/util.c, d2string):
// an integer within ±2^52 in decimal, else the shortest text that reads back exactly.
func appendScore(b []byte, f float64) []byte {
	switch {
	case f == 0 && math.Signbit(f):
		return append(b, "-0"...)
	case f > -(1<<52-1) && f < 1<<52 && f == math.Trunc(f):
		return strconv.AppendInt(b, int64(f), 10)
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// compactList returns the payload of a list as a quicklist of ziplist nodes, cut as the
// target's list-max-ziplist-size cuts them, or nil when the target has no quicklist.
func (d *downgrader) compactList(elems []string) []byte {
	fill := d.limits.listFill
	if d.version < 7 || d.version >= 10 || fill == 0 || len(elems) == 0 {
		return nil
	}
	size := 0
	for _, e := range elems {
		size += len(e) + 4
	}
	// The count of nodes, unknown until they are cut, in the 32-bit form too.
	out := append(newPayload(RDBTypeListQuicklist, size+16), 0x80, 0, 0, 0, 0)
	nodes := 0
	z := startZiplist(out)
	for _, e := range elems {
		if z.n > 0 && !quicklistAllows(z.size(), z.n, len(e), fill) {
			z, nodes = startZiplist(z.done()), nodes+1
		}
		z.add(e)
	}
	out = z.done()
	binary.BigEndian.PutUint32(out[2:], uint32(nodes+1))
	return out
}

// quicklistAllows reports whether the target's quicklist adds an element of size bytes to
// a node of sz bytes and count entries, for list-max-ziplist-size fill (Redis 6.2
// src/quicklist.c, _quicklistNodeAllowInsert).
func quicklistAllows(sz, count, size, fill int) bool {
	overhead := 1
	if size >= 254 {
		overhead = 5
	}
	switch {
	case size < 64:
		overhead++
	case size < 16384:
		overhead += 2
	default:
		overhead += 5
	}
	newSz := sz + size + overhead
	if fill < 0 {
		if off := -fill - 1; off < 5 && newSz <= 4096<<off {
			return true
		}
	}
	return newSz <= 8192 && count < fill // SIZE_SAFETY_LIMIT
}

// compactSet returns the payload of a set as an intset, or nil when the target would not
// hold it so (a member that is not an integer as Redis writes it, or too many members).
func (d *downgrader) compactSet(members []string) []byte {
	if d.version < 6 || len(members) > d.limits.setIntset || len(members) == 0 {
		return nil
	}
	ints := make([]int64, len(members))
	width := 2
	for i, m := range members {
		v, ok := redisInt(m)
		if !ok {
			return nil
		}
		ints[i] = v
		switch {
		case v < math.MinInt32 || v > math.MaxInt32:
			width = 8
		case width < 4 && (v < math.MinInt16 || v > math.MaxInt16):
			width = 4
		}
	}
	slices.Sort(ints)
	is := make([]byte, 8, 8+width*len(ints))
	binary.LittleEndian.PutUint32(is, uint32(width))
	binary.LittleEndian.PutUint32(is[4:], uint32(len(ints)))
	for _, v := range ints {
		switch width {
		case 2:
			is = binary.LittleEndian.AppendUint16(is, uint16(v))
		case 4:
			is = binary.LittleEndian.AppendUint32(is, uint32(v))
		default:
			is = binary.LittleEndian.AppendUint64(is, uint64(v))
		}
	}
	return appendRDBString(newPayload(RDBTypeSetIntset, len(is)+5), string(is))
}

// redisInt reads s as Redis reads an integer it may store as one (src/util.c, string2ll):
// only the text that formatting the integer gives back (no sign "+", no leading zero, no
// "-0", no space), at most 20 bytes. It does not allocate: most strings it sees are not
// integers.
func redisInt[T string | []byte](s T) (int64, bool) {
	n := len(s)
	switch {
	case n == 0 || n > 20:
		return 0, false
	case n == 1 && s[0] == '0':
		return 0, true
	}
	i, neg := 0, s[0] == '-'
	if neg {
		i = 1
	}
	if i == n || s[i] < '1' || s[i] > '9' {
		return 0, false
	}
	var v uint64
	for ; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' || v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case neg && v <= 1<<63:
		return int64(-v), true
	case !neg && v <= math.MaxInt64:
		return int64(v), true
	}
	return 0, false
}

// ziplist builds a ziplist (Redis before 7.0, src/ziplist.c) as an RDB string, in place
// at the end of a payload: the string's length in the 32-bit form (0x80 and 4 bytes
// big-endian, which every version reads whatever the length), then the ziplist: a header
// of its size in bytes, the offset of its last entry (4 bytes each) and its count of
// entries (2 bytes, 65535 for that many or more), all little-endian; each entry the size of
// the previous one (1 byte, or 0xfe and 4 bytes), an encoding and the data; and 0xff.
type ziplist struct {
	b          []byte
	start      int // where the ziplist starts in b
	n          int // entries
	prev, tail int // the last entry's size and offset
}

const ziplistHeader = 10

// startZiplist starts a ziplist string at the end of b.
func startZiplist(b []byte) ziplist {
	b = append(b, 0x80, 0, 0, 0, 0)
	start := len(b)
	return ziplist{b: append(b, make([]byte, ziplistHeader)...), start: start, tail: ziplistHeader}
}

// size is the ziplist's size in bytes once done.
func (z *ziplist) size() int { return len(z.b) - z.start + 1 }

func (z *ziplist) add(s string) { ziplistAdd(z, s) }

// ziplistAdd appends an entry to z. A string of fewer than 32 bytes that Redis reads as
// an integer is stored as one, in the narrowest encoding (zipTryEncoding): 0 to 12 in the
// encoding byte itself (0xf1 to 0xfd), else 8 (0xfe), 16 (0xc0), 24 (0xf0), 32 (0xd0) or
// 64 bits (0xe0), little-endian. Others are strings of 6-bit (00), 14-bit big-endian (01)
// or 32-bit big-endian (0x80) length.
func ziplistAdd[T string | []byte](z *ziplist, s T) {
	at := len(z.b)
	if z.prev < 254 {
		z.b = append(z.b, byte(z.prev))
	} else {
		z.b = binary.LittleEndian.AppendUint32(append(z.b, 0xfe), uint32(z.prev))
	}
	v, isInt := int64(0), false
	if len(s) < 32 {
		v, isInt = redisInt(s)
	}
	switch {
	case !isInt:
		switch n := len(s); {
		case n <= 0x3f:
			z.b = append(z.b, byte(n))
		case n <= 0x3fff:
			z.b = append(z.b, 0x40|byte(n>>8), byte(n))
		default:
			z.b = binary.BigEndian.AppendUint32(append(z.b, 0x80), uint32(n))
		}
		z.b = append(z.b, s...)
	case v >= 0 && v <= 12:
		z.b = append(z.b, 0xf1+byte(v))
	case v >= math.MinInt8 && v <= math.MaxInt8:
		z.b = append(z.b, 0xfe, byte(v))
	case v >= math.MinInt16 && v <= math.MaxInt16:
		z.b = binary.LittleEndian.AppendUint16(append(z.b, 0xc0), uint16(v))
	case v >= -1<<23 && v < 1<<23:
		z.b = append(z.b, 0xf0, byte(v), byte(v>>8), byte(v>>16))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		z.b = binary.LittleEndian.AppendUint32(append(z.b, 0xd0), uint32(v))
	default:
		z.b = binary.LittleEndian.AppendUint64(append(z.b, 0xe0), uint64(v))
	}
	z.tail, z.prev = at-z.start, len(z.b)-at
	z.n++
}

// done completes the ziplist and its string's length, and returns the bytes.
func (z *ziplist) done() []byte {
	z.b = append(z.b, 0xff)
	zl := z.b[z.start:]
	binary.BigEndian.PutUint32(z.b[z.start-4:], uint32(len(zl)))
	binary.LittleEndian.PutUint32(zl, uint32(len(zl)))
	binary.LittleEndian.PutUint32(zl[4:], uint32(z.tail))
	binary.LittleEndian.PutUint16(zl[8:], uint16(min(z.n, math.MaxUint16)))
	return z.b
}

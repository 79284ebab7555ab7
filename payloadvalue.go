package migrate

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
)

// canonicalPayload decodes a DUMP payload (type byte, value, RDB version in 2 bytes, CRC-64 in
// 8) into its type, as TYPE names it, and the text canonical gives for a live key of that type
// and value: equal for two payloads exactly when their values are, whatever their encodings
// (a hashtable's member order, a listpack or a skiplist, an RDB version). That is how the
// restorer decides that a key already on the target is the source's without reading the
// source again, which may have changed since (a snapshot).
//
// ok is false for a payload whose checksum does not match, whose RDB version is newer than
// this package reads, that is malformed, or that holds a stream or a module value: those
// are equal only when their payloads are. It never panics, and allocates in proportion to
// the payload, whatever lengths it declares.
func canonicalPayload(payload string) (typ, canon string, ok bool) {
	if len(payload) < 1+10 {
		return "", "", false
	}
	body := payload[:len(payload)-8]
	if crc64Jones(0, body) != binary.LittleEndian.Uint64([]byte(payload[len(payload)-8:])) {
		return "", "", false
	}
	if binary.LittleEndian.Uint16([]byte(body[len(body)-2:])) > rdbMaxVersion {
		return "", "", false
	}
	v := body[1 : len(body)-2]
	var parts []string
	switch t := body[0]; t {
	case RDBTypeString:
		s, rest, ok := nextString(v)
		if !ok || rest != "" {
			return "", "", false
		}
		return "string", lengthPrefixed([]string{s}), true
	case RDBTypeList, RDBTypeListZiplist, RDBTypeListQuicklist, RDBTypeListQuicklist2:
		if parts, ok = listElements(t, v); !ok {
			return "", "", false
		}
		return "list", lengthPrefixed(parts), true
	case RDBTypeSet, RDBTypeSetIntset, RDBTypeSetListpack:
		if parts, ok = setMembers(t, v); !ok {
			return "", "", false
		}
		slices.Sort(parts)
		return "set", lengthPrefixed(parts), true
	case RDBTypeZSet, RDBTypeZSet2, RDBTypeZSetZiplist, RDBTypeZSetListpack:
		if parts, ok = zsetParts(t, v); !ok {
			return "", "", false
		}
		return "zset", lengthPrefixed(parts), true
	case RDBTypeHash, RDBTypeHashZipmap, RDBTypeHashZiplist, RDBTypeHashListpack,
		RDBTypeHashMetadataPreGA, RDBTypeHashListpackExPreGA, RDBTypeHashMetadata, RDBTypeHashListpackEx:
		if parts, ok = hashPairs(t, v); !ok {
			return "", "", false
		}
		slices.Sort(parts)
		return "hash", lengthPrefixed(parts), true
	}
	return "", "", false // streams, modules, unknown types
}

// nextString decodes the RDB string at the start of b and returns it and what follows.
func nextString(b string) (s, rest string, ok bool) {
	s, n, ok := rdbString(b)
	if !ok {
		return "", "", false
	}
	return s, b[len(b)-n:], true
}

// rdbStrings decodes n RDB strings at the start of b. The count is not used to allocate:
// a count larger than what b holds fails when b runs out.
func rdbStrings(b string, n uint64) ([]string, string, bool) {
	var out []string
	for range n {
		s, rest, ok := nextString(b)
		if !ok {
			return nil, "", false
		}
		out, b = append(out, s), rest
	}
	return out, b, true
}

func listElements(t byte, v string) ([]string, bool) {
	switch t {
	case RDBTypeList:
		n, rest, ok := rdbLength(v)
		if !ok || n > uint64(len(rest)) {
			return nil, false
		}
		parts, rest, ok := rdbStrings(rest, n)
		return parts, ok && rest == ""
	case RDBTypeListZiplist:
		zl, rest, ok := nextString(v)
		if !ok || rest != "" {
			return nil, false
		}
		return ziplistEntries(zl)
	}
	n, rest, ok := rdbLength(v)
	if !ok || n > uint64(len(rest)) {
		return nil, false
	}
	var parts []string
	for range n {
		container := uint64(2)
		if t == RDBTypeListQuicklist2 {
			if container, rest, ok = rdbLength(rest); !ok || (container != 1 && container != 2) {
				return nil, false
			}
		}
		var node string
		if node, rest, ok = nextString(rest); !ok {
			return nil, false
		}
		var elems []string
		switch {
		case container == 1: // a plain node: one large element
			elems = []string{node}
		case t == RDBTypeListQuicklist:
			elems, ok = ziplistEntries(node)
		default:
			elems, ok = listpackEntries(node)
		}
		if !ok {
			return nil, false
		}
		parts = append(parts, elems...)
	}
	return parts, rest == ""
}

func setMembers(t byte, v string) ([]string, bool) {
	if t == RDBTypeSet {
		n, rest, ok := rdbLength(v)
		if !ok || n > uint64(len(rest)) {
			return nil, false
		}
		parts, rest, ok := rdbStrings(rest, n)
		return parts, ok && rest == ""
	}
	b, rest, ok := nextString(v)
	if !ok || rest != "" {
		return nil, false
	}
	if t == RDBTypeSetListpack {
		return listpackEntries(b)
	}
	return intsetMembers(b)
}

// zsetParts returns member, score, member, score... in the order ZRANGE gives them: by
// score, then by member.
func zsetParts(t byte, v string) ([]string, bool) {
	entries, ok := zsetEntries(t, v)
	if !ok {
		return nil, false
	}
	for _, e := range entries {
		if math.IsNaN(e.score) {
			return nil, false
		}
	}
	slices.SortFunc(entries, func(a, b zsetEntry) int {
		if a.score != b.score {
			if a.score < b.score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.member, b.member)
	})
	parts := make([]string, 0, 2*len(entries))
	for _, e := range entries {
		parts = append(parts, e.member, strconv.FormatFloat(e.score, 'g', -1, 64))
	}
	return parts, true
}

// zsetEntry is one member of a sorted set and its score.
type zsetEntry struct {
	member string
	score  float64
}

// zsetEntries decodes the members of a sorted set of type t, in the payload's order.
func zsetEntries(t byte, v string) ([]zsetEntry, bool) {
	var entries []zsetEntry
	switch t {
	case RDBTypeZSet, RDBTypeZSet2:
		n, rest, ok := rdbLength(v)
		if !ok || n > uint64(len(rest)) {
			return nil, false
		}
		for range n {
			var e zsetEntry
			if e.member, rest, ok = nextString(rest); !ok {
				return nil, false
			}
			if t == RDBTypeZSet2 {
				if len(rest) < 8 {
					return nil, false
				}
				e.score = math.Float64frombits(binary.LittleEndian.Uint64([]byte(rest[:8])))
				rest = rest[8:]
			} else if e.score, rest, ok = textDouble(rest); !ok {
				return nil, false
			}
			entries = append(entries, e)
		}
		if rest != "" {
			return nil, false
		}
	default:
		b, rest, ok := nextString(v)
		if !ok || rest != "" {
			return nil, false
		}
		var elems []string
		if t == RDBTypeZSetZiplist {
			elems, ok = ziplistEntries(b)
		} else {
			elems, ok = listpackEntries(b)
		}
		if !ok || len(elems)%2 != 0 {
			return nil, false
		}
		entries = make([]zsetEntry, 0, len(elems)/2)
		for i := 0; i < len(elems); i += 2 {
			score, err := strconv.ParseFloat(elems[i+1], 64)
			if err != nil {
				return nil, false
			}
			entries = append(entries, zsetEntry{elems[i], score})
		}
	}
	return entries, true
}

// textDouble decodes a score stored as text (RDB_TYPE_ZSET): a length byte, 253, 254 and
// 255 standing for NaN, +inf and -inf.
func textDouble(b string) (float64, string, bool) {
	if len(b) == 0 {
		return 0, "", false
	}
	switch n := int(b[0]); n {
	case 253:
		return math.NaN(), b[1:], true
	case 254:
		return math.Inf(1), b[1:], true
	case 255:
		return math.Inf(-1), b[1:], true
	default:
		if 1+n > len(b) {
			return 0, "", false
		}
		f, err := strconv.ParseFloat(b[1:1+n], 64)
		return f, b[1+n:], err == nil
	}
}

// hashPairs returns one length-prefixed field-value pair a field, as canonical does.
// Field TTLs (Redis 7.4) are not part of the value canonical compares.
func hashPairs(t byte, v string) ([]string, bool) {
	fields, ok := hashFields(t, v, false)
	if !ok {
		return nil, false
	}
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		parts = append(parts, lengthPrefixed([]string{f.field, f.value}))
	}
	return parts, true
}

// hashField is one field of a hash, its value, and its expiry in Unix milliseconds (0 for
// none; field TTLs appeared in Redis 7.4).
type hashField struct {
	field, value string
	expireAt     int64
}

// hashFields decodes the fields of a hash of type t, in the payload's order. valkey says
// the payload is Valkey's (RDB 80 and up), where type 22 is Valkey's hash with field TTLs
// rather than Redis's pre-GA one.
func hashFields(t byte, v string, valkey bool) ([]hashField, bool) {
	var fields []hashField
	switch {
	case valkey && t == RDBTypeValkeyHash2:
		// A count, then each field, value and expiry as 8 bytes (-1 for none).
		n, rest, ok := rdbLength(v)
		if !ok || n > uint64(len(rest)) {
			return nil, false
		}
		for range n {
			var f hashField
			if f.field, rest, ok = nextString(rest); !ok {
				return nil, false
			}
			if f.value, rest, ok = nextString(rest); !ok || len(rest) < 8 {
				return nil, false
			}
			if at := int64(binary.LittleEndian.Uint64([]byte(rest[:8]))); at > 0 {
				f.expireAt = at
			}
			fields, rest = append(fields, f), rest[8:]
		}
		if rest != "" {
			return nil, false
		}
	case t == RDBTypeHash, t == RDBTypeHashMetadataPreGA, t == RDBTypeHashMetadata:
		var minExpire int64
		if t == RDBTypeHashMetadata {
			if len(v) < 8 {
				return nil, false
			}
			minExpire = int64(binary.LittleEndian.Uint64([]byte(v[:8]))) // the smallest field expiry
			v = v[8:]
		}
		n, rest, ok := rdbLength(v)
		if !ok || n > uint64(len(rest)) {
			return nil, false
		}
		for range n {
			var f hashField
			if t != RDBTypeHash {
				// The field's TTL: 0 for none; for type 24 relative to the smallest,
				// plus 1 (Redis 7.4 src/rdb.c, rdbLoadObject); absolute for the pre-GA 22.
				var ttl uint64
				if ttl, rest, ok = rdbLength(rest); !ok {
					return nil, false
				}
				switch {
				case ttl == 0:
				case t == RDBTypeHashMetadata:
					f.expireAt = int64(ttl) + minExpire - 1
				default:
					f.expireAt = int64(ttl)
				}
			}
			if f.field, rest, ok = nextString(rest); !ok {
				return nil, false
			}
			if f.value, rest, ok = nextString(rest); !ok {
				return nil, false
			}
			fields = append(fields, f)
		}
		if rest != "" {
			return nil, false
		}
	default:
		if t == RDBTypeHashListpackEx {
			if len(v) < 8 {
				return nil, false
			}
			v = v[8:]
		}
		b, rest, ok := nextString(v)
		if !ok || rest != "" {
			return nil, false
		}
		var elems []string
		switch t {
		case RDBTypeHashZipmap:
			elems, ok = zipmapEntries(b)
		case RDBTypeHashZiplist:
			elems, ok = ziplistEntries(b)
		default:
			elems, ok = listpackEntries(b)
		}
		if !ok {
			return nil, false
		}
		if t == RDBTypeHashListpackEx || t == RDBTypeHashListpackExPreGA {
			// field, value, TTL triples; the TTL in Unix milliseconds, 0 for none
			if len(elems)%3 != 0 {
				return nil, false
			}
			for i := 0; i < len(elems); i += 3 {
				at, err := strconv.ParseInt(elems[i+2], 10, 64)
				if err != nil {
					return nil, false
				}
				fields = append(fields, hashField{elems[i], elems[i+1], max(at, 0)})
			}
			break
		}
		if len(elems)%2 != 0 {
			return nil, false
		}
		fields = make([]hashField, 0, len(elems)/2)
		for i := 0; i < len(elems); i += 2 {
			fields = append(fields, hashField{field: elems[i], value: elems[i+1]})
		}
	}
	return fields, true
}

// ziplistEntries decodes a ziplist (Redis before 7.0): a 10-byte header, entries each with
// the previous entry's length, an encoding and the data, and 0xff.
func ziplistEntries(b string) ([]string, bool) {
	if len(b) < 11 {
		return nil, false
	}
	p := b[10:]
	out := make([]string, 0, min(int(binary.LittleEndian.Uint16([]byte(b[8:10]))), len(p)/2))
	for {
		if len(p) == 0 {
			return nil, false
		}
		if p[0] == 0xff {
			return out, len(p) == 1
		}
		// The previous entry's length: 1 byte, or 0xfe and 4 bytes.
		if p[0] == 0xfe {
			if len(p) < 5 {
				return nil, false
			}
			p = p[5:]
		} else {
			p = p[1:]
		}
		if len(p) == 0 {
			return nil, false
		}
		enc := p[0]
		var n int
		switch enc >> 6 {
		case 0:
			n, p = int(enc&0x3f), p[1:]
		case 1:
			if len(p) < 2 {
				return nil, false
			}
			n, p = int(enc&0x3f)<<8|int(p[1]), p[2:]
		case 2:
			if enc != 0x80 || len(p) < 5 {
				return nil, false
			}
			n, p = int(binary.BigEndian.Uint32([]byte(p[1:5]))), p[5:]
		default:
			var i int64
			var size int
			switch {
			case enc == 0xc0:
				size = 2
			case enc == 0xd0:
				size = 4
			case enc == 0xe0:
				size = 8
			case enc == 0xf0:
				size = 3
			case enc == 0xfe:
				size = 1
			case enc >= 0xf1 && enc <= 0xfd:
				out, p = append(out, strconv.Itoa(int(enc&0x0f)-1)), p[1:]
				continue
			default:
				return nil, false
			}
			if len(p) < 1+size {
				return nil, false
			}
			d := []byte(p[1 : 1+size])
			switch size {
			case 1:
				i = int64(int8(d[0]))
			case 2:
				i = int64(int16(binary.LittleEndian.Uint16(d)))
			case 3:
				i = int64(int32(uint32(d[0])<<8|uint32(d[1])<<16|uint32(d[2])<<24)) >> 8
			case 4:
				i = int64(int32(binary.LittleEndian.Uint32(d)))
			case 8:
				i = int64(binary.LittleEndian.Uint64(d))
			}
			out, p = append(out, strconv.FormatInt(i, 10)), p[1+size:]
			continue
		}
		if n < 0 || n > len(p) {
			return nil, false
		}
		out, p = append(out, p[:n]), p[n:]
	}
}

// listpackEntries decodes a listpack: a 6-byte header, entries each an encoding, the data
// and the entry's length backwards, and 0xff.
func listpackEntries(b string) ([]string, bool) {
	if len(b) < 7 {
		return nil, false
	}
	p := b[6:]
	// The header's count (65535 when it is that many or more) sizes out, bounded by what
	// p can hold: an entry takes 2 bytes at least.
	out := make([]string, 0, min(int(binary.LittleEndian.Uint16([]byte(b[4:6]))), len(p)/2))
	for {
		elem, rest, ok := listpackNext(p)
		switch {
		case !ok:
			return nil, false
		case rest == "":
			return out, len(p) == 1
		}
		out, p = append(out, elem), rest
	}
}

// listpackNext decodes the listpack entry at the start of p (past the header) and returns
// it and what follows; at the end (0xff) rest is "".
func listpackNext(p string) (elem, rest string, ok bool) {
	if len(p) == 0 {
		return "", "", false
	}
	enc := p[0]
	if enc == 0xff {
		return "", "", true
	}
	var size int // of the encoding and the data
	switch {
	case enc&0x80 == 0: // 7-bit unsigned integer
		elem, size = strconv.Itoa(int(enc)), 1
	case enc&0xc0 == 0x80: // string, 6-bit length
		n := int(enc & 0x3f)
		if 1+n > len(p) {
			return "", "", false
		}
		elem, size = p[1:1+n], 1+n
	case enc&0xe0 == 0xc0: // 13-bit signed integer
		if len(p) < 2 {
			return "", "", false
		}
		i := int(enc&0x1f)<<8 | int(p[1])
		if i >= 1<<12 {
			i -= 1 << 13
		}
		elem, size = strconv.Itoa(i), 2
	case enc&0xf0 == 0xe0: // string, 12-bit length
		if len(p) < 2 {
			return "", "", false
		}
		n := int(enc&0x0f)<<8 | int(p[1])
		if 2+n > len(p) {
			return "", "", false
		}
		elem, size = p[2:2+n], 2+n
	case enc == 0xf0: // string, 32-bit length
		if len(p) < 5 {
			return "", "", false
		}
		n := uint64(binary.LittleEndian.Uint32([]byte(p[1:5])))
		if 5+n > uint64(len(p)) {
			return "", "", false
		}
		elem, size = p[5:5+n], 5+int(n)
	case enc >= 0xf1 && enc <= 0xf4:
		width := [...]int{2, 3, 4, 8}[enc-0xf1]
		if len(p) < 1+width {
			return "", "", false
		}
		var u uint64
		for k := width - 1; k >= 0; k-- {
			u = u<<8 | uint64(p[1+k])
		}
		shift := 64 - 8*width
		elem, size = strconv.FormatInt(int64(u<<shift)>>shift, 10), 1+width
	default:
		return "", "", false
	}
	back := backlenSize(size)
	if size+back >= len(p) { // an entry is followed by another or by 0xff
		return "", "", false
	}
	return elem, p[size+back:], true
}

// backlenSize is how many bytes a listpack entry's backward length takes.
func backlenSize(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	case n < 1<<28:
		return 4
	}
	return 5
}

// intsetMembers decodes an intset: the width of its integers (2, 4 or 8 bytes), their
// count, and the integers, little-endian.
func intsetMembers(b string) ([]string, bool) {
	if len(b) < 8 {
		return nil, false
	}
	width := binary.LittleEndian.Uint32([]byte(b[:4]))
	n := uint64(binary.LittleEndian.Uint32([]byte(b[4:8])))
	if width != 2 && width != 4 && width != 8 || uint64(len(b)-8) != n*uint64(width) {
		return nil, false
	}
	out := make([]string, 0, n)
	for i := 8; i < len(b); i += int(width) {
		d := []byte(b[i : i+int(width)])
		var v int64
		switch width {
		case 2:
			v = int64(int16(binary.LittleEndian.Uint16(d)))
		case 4:
			v = int64(int32(binary.LittleEndian.Uint32(d)))
		default:
			v = int64(binary.LittleEndian.Uint64(d))
		}
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out, true
}

// zipmapEntries decodes a zipmap (hashes of Redis before 2.6): a count byte, then each
// field and value with its length (one byte, or 254 and 4 bytes), the value's length
// followed by a count of free bytes after it, and 0xff.
func zipmapEntries(b string) ([]string, bool) {
	if len(b) < 2 {
		return nil, false
	}
	p := b[1:]
	length := func() (int, bool) {
		if len(p) == 0 {
			return 0, false
		}
		switch c := p[0]; {
		case c < 254:
			p = p[1:]
			return int(c), true
		case c == 254 && len(p) >= 5:
			n := binary.LittleEndian.Uint32([]byte(p[1:5]))
			p = p[5:]
			return int(n), true
		}
		return 0, false
	}
	var out []string
	for {
		if len(p) == 0 {
			return nil, false
		}
		if p[0] == 0xff {
			return out, len(p) == 1
		}
		n, ok := length()
		if !ok || n > len(p) {
			return nil, false
		}
		field := p[:n]
		p = p[n:]
		if n, ok = length(); !ok || len(p) < 1 {
			return nil, false
		}
		free := int(p[0])
		p = p[1:]
		if n+free > len(p) {
			return nil, false
		}
		out, p = append(out, field, p[:n]), p[n+free:]
	}
}

// streamEntry is one entry of a stream: its ID, and its fields and values in order.
type streamEntry struct {
	ms, seq uint64
	fields  []string // field, value, field, value...
}

// Flags of a stream listpack entry (Redis src/t_stream.c).
const (
	streamItemDeleted    = 1 << 0
	streamItemSameFields = 1 << 1
)

// streamNodeEntries decodes the entries of one stream node (Redis src/t_stream.c, since
// Redis 5.0): master, the node's master ID as 16 bytes big-endian, and lp, its listpack.
// The listpack starts with the master entry (count, deleted count, the number of master
// fields, the fields, 0); then each entry has its flags, its ID as deltas from the master
// ID, with SAMEFIELDS the values of the master fields, else a field count and the fields
// with their values, and last its number of listpack elements. Deleted entries are left
// out.
func streamNodeEntries(master, lp string) ([]streamEntry, bool) {
	if len(master) != 16 {
		return nil, false
	}
	ms0, seq0 := binary.BigEndian.Uint64([]byte(master[:8])), binary.BigEndian.Uint64([]byte(master[8:]))
	all, ok := listpackEntries(lp)
	if !ok {
		return nil, false
	}
	p := 0
	next := func() (int64, bool) {
		if p >= len(all) {
			return 0, false
		}
		n, err := strconv.ParseInt(all[p], 10, 64)
		p++
		return n, err == nil
	}
	count, ok1 := next()
	deleted, ok2 := next()
	nfields, ok3 := next()
	if !ok1 || !ok2 || !ok3 || nfields < 0 || nfields > int64(len(all)) || count < 0 || deleted < 0 {
		return nil, false
	}
	if p+int(nfields) >= len(all) {
		return nil, false
	}
	masterFields := all[p : p+int(nfields)]
	p += int(nfields)
	if all[p] != "0" { // the master entry's terminator
		return nil, false
	}
	p++
	var out []streamEntry
	for total := count + deleted; total > 0; total-- {
		flags, ok1 := next()
		dms, ok2 := next()
		dseq, ok3 := next()
		if !ok1 || !ok2 || !ok3 {
			return nil, false
		}
		var fields []string
		if flags&streamItemSameFields != 0 {
			if p+len(masterFields) > len(all) {
				return nil, false
			}
			fields = make([]string, 0, 2*len(masterFields))
			for i, f := range masterFields {
				fields = append(fields, f, all[p+i])
			}
			p += len(masterFields)
		} else {
			n, ok := next()
			if !ok || n < 0 || p+2*int(n) > len(all) {
				return nil, false
			}
			fields = all[p : p+2*int(n)]
			p += 2 * int(n)
		}
		if _, ok := next(); !ok { // the entry's element count
			return nil, false
		}
		if flags&streamItemDeleted == 0 {
			out = append(out, streamEntry{ms: ms0 + uint64(dms), seq: seq0 + uint64(dseq), fields: fields})
		}
	}
	return out, p == len(all)
}

package migrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// The formats no server binary of the test machine writes (Redis 8.6 and 8.8, Valkey 9),
// built by hand from the servers' sources and read exactly.

// rdbFileOf wraps body in the header of magic ("REDIS" or "VALKEY") and version v, the
// EOF opcode and a checksum.
func rdbFileOf(magic string, v int, body []byte) []byte {
	out := fmt.Appendf(nil, "REDIS%04d", v)
	if magic == "VALKEY" {
		out = fmt.Appendf(nil, "VALKEY%03d", v)
	}
	out = append(append(out, body...), rdbOpEOF)
	return binary.LittleEndian.AppendUint64(out, crc64Jones(0, out))
}

// wantPayload is the DUMP payload of a value: metadata, type byte, value, version, CRC.
func wantPayload(meta []byte, typ byte, value []byte, version int) []byte {
	p := append(append(bytes.Clone(meta), typ), value...)
	p = binary.LittleEndian.AppendUint16(p, uint16(version))
	return binary.LittleEndian.AppendUint64(p, crc64Jones(0, p))
}

// keyMeta is a key metadata record of Redis 8.6: one class whose value is an unsigned
// integer and a string, in module-tagged form.
func keyMeta() []byte {
	var b rdbBuilder
	b.WriteByte(rdbOpKeyMeta)
	b.length(1)                 // classes
	b.Write([]byte{1, 2, 3, 4}) // class spec
	b.length(2)                 // RDB_MODULE_OPCODE_UINT
	b.length(300)               // its value
	b.length(5)                 // RDB_MODULE_OPCODE_STRING
	b.str("meta")               // its value
	b.length(0)                 // RDB_MODULE_OPCODE_EOF
	return bytes.Clone(b.Bytes())
}

// valkeyHash2 is the value of a Valkey 9 hash with field TTLs: f1 without one, f2 with.
func valkeyHash2() []byte {
	var v rdbBuilder
	v.length(2)
	v.str("f1")
	v.str("v1")
	v.u64(^uint64(0)) // -1: no TTL
	v.str("f2")
	v.str("v2")
	v.u64(1893456000000)
	return bytes.Clone(v.Bytes())
}

// slotImport is a Valkey 9 slot import record: a 40-byte job name and two slot ranges.
func slotImport() []byte {
	var b rdbBuilder
	b.WriteByte(rdbOpSlotImport)
	b.str(strings.Repeat("j", 40))
	b.length(2)
	b.length(0)
	b.length(99)
	b.length(5000)
	b.length(5460)
	return bytes.Clone(b.Bytes())
}

// streamID16 is a stream ID as RDB stores it raw in a PEL: ms and seq, big-endian.
func streamID16(ms, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, ms), seq)
}

// streamHead is the start of a stream value of type 19 or later up to its groups: one node
// (opaque listpack bytes; RDBReader does not look into them) and the metadata of three
// entries 1-1 to 3-1.
func streamHead() []byte {
	var v rdbBuilder
	v.length(1)
	v.str(string(streamID16(1, 1)))
	v.str("opaque listpack bytes")
	v.length(3) // length
	v.length(3) // last ID
	v.length(1)
	v.length(1) // first ID
	v.length(1)
	v.length(0) // max deleted ID
	v.length(0)
	v.length(3) // entries added
	return bytes.Clone(v.Bytes())
}

// streamTail appends to head, a stream value up to its groups, one consumer group "g" in
// the format of type typ (19 to 27) and, from type 26, the IDMP state with producers
// producers: entry 1-1 pending for consumer "c"; with nack (type 27), entry 2-1 pending
// and NACKed too, owned by no consumer (Redis 8.8's XNACK).
func streamTail(typ byte, head []byte, nack bool, producers int) []byte {
	var v rdbBuilder
	v.Write(head)
	v.length(1) // groups
	v.str("g")
	v.length(3) // last delivered ID
	v.length(1)
	v.length(3) // entries read
	pel := []uint64{1}
	if nack {
		pel = append(pel, 2)
	}
	v.length(uint64(len(pel)))
	for _, ms := range pel {
		v.Write(streamID16(ms, 1))
		v.u64(1700000000000 + ms) // delivery time
		v.length(ms)              // delivery count
	}
	v.length(1) // consumers
	v.str("c")
	v.u64(1700000000001) // seen time
	if typ >= RDBTypeStreamListpacks3 {
		v.u64(1700000000002) // active time
	}
	v.length(1)
	v.Write(streamID16(1, 1))
	if typ >= RDBTypeStreamListpacks5 {
		if nack {
			v.length(1)
			v.Write(streamID16(2, 1))
		} else {
			v.length(0)
		}
	}
	if typ >= RDBTypeStreamListpacks4 {
		v.length(100) // IDMP duration
		v.length(100) // IDMP maximum entries
		v.length(uint64(producers))
		for p := range producers {
			v.str(fmt.Sprintf("producer-%d", p))
			v.length(1)
			v.str("iid-1")
			v.length(3) // its stream ID
			v.length(1)
		}
		v.length(uint64(producers)) // IIDs added
		v.length(0)                 // duplicates
	}
	return bytes.Clone(v.Bytes())
}

// formatEntry is a key expected from a hand-built file.
type formatEntry struct {
	key     string
	typ     byte
	meta    []byte
	value   []byte
	expires int64
}

// formatFile is a hand-built file of one format and the keys it holds.
type formatFile struct {
	name    string
	magic   string
	version int
	body    []byte
	want    []formatEntry
	skipped int
}

func formatFiles() []formatFile {
	var files []formatFile
	key := func(b *rdbBuilder, typ byte, name string, value []byte) {
		b.WriteByte(typ)
		b.str(name)
		b.Write(value)
	}
	str := func(s string) []byte {
		var b rdbBuilder
		b.str(s)
		return bytes.Clone(b.Bytes())
	}

	{ // Redis 8.6: key metadata before a key, and a key after it without any.
		var b rdbBuilder
		b.WriteByte(rdbOpAux)
		b.str("redis-ver")
		b.str("8.6.0")
		b.WriteByte(rdbOpSelectDB)
		b.length(0)
		b.WriteByte(rdbOpSlotInfo)
		b.length(7)
		b.length(2)
		b.length(1)
		b.WriteByte(rdbOpExpireMs)
		b.u64(1893456000000)
		b.Write(keyMeta())
		key(&b, RDBTypeString, "with-meta", str("v1"))
		key(&b, RDBTypeString, "plain", str("v2"))
		stream := streamTail(RDBTypeStreamListpacks4, streamHead(), false, 2)
		key(&b, RDBTypeStreamListpacks4, "stream", stream)
		files = append(files, formatFile{name: "redis 8.6", magic: "REDIS", version: 13, body: b.Bytes(), want: []formatEntry{
			{key: "with-meta", typ: RDBTypeString, meta: keyMeta(), value: str("v1"), expires: 1893456000000},
			{key: "plain", typ: RDBTypeString, value: str("v2")},
			{key: "stream", typ: RDBTypeStreamListpacks4, value: stream},
		}})
	}
	{ // Redis 8.8: the types of 7.4 still read, metadata before a hash with field TTLs.
		var b rdbBuilder
		var v rdbBuilder
		v.u64(1893456000000) // minimum expiry
		v.length(1)
		v.length(1) // TTL relative to the minimum, plus one
		v.str("f")
		v.str("x")
		b.Write(keyMeta())
		key(&b, RDBTypeHashMetadata, "hfe", v.Bytes())
		nacked := streamTail(RDBTypeStreamListpacks5, streamHead(), true, 1)
		b.Write(keyMeta())
		key(&b, RDBTypeStreamListpacks5, "nacked", nacked)
		plain := streamTail(RDBTypeStreamListpacks5, streamHead(), false, 0)
		key(&b, RDBTypeStreamListpacks5, "plain", plain)
		files = append(files, formatFile{name: "redis 8.8", magic: "REDIS", version: 14, body: b.Bytes(), want: []formatEntry{
			{key: "hfe", typ: RDBTypeHashMetadata, meta: keyMeta(), value: bytes.Clone(v.Bytes())},
			{key: "nacked", typ: RDBTypeStreamListpacks5, meta: keyMeta(), value: nacked},
			{key: "plain", typ: RDBTypeStreamListpacks5, value: plain},
		}})
	}
	{ // Valkey 9.0: slot import and slot info records, type 22 as HASH_2, an empty HASH_2.
		var b rdbBuilder
		b.WriteByte(rdbOpAux)
		b.str("valkey-ver")
		b.str("9.0.0")
		b.Write(slotImport())
		b.WriteByte(rdbOpSelectDB)
		b.length(0)
		b.WriteByte(rdbOpResizeDB)
		b.length(3)
		b.length(0)
		key(&b, RDBTypeValkeyHash2, "h2", valkeyHash2())
		var empty rdbBuilder
		empty.length(0)
		key(&b, RDBTypeValkeyHash2, "empty", empty.Bytes())
		key(&b, RDBTypeSetListpack, "s", str("\x0f\x00\x00\x00\x02\x00\x81a\x02\x81b\x02\xff"))
		files = append(files, formatFile{name: "valkey 9.0", magic: "VALKEY", version: 80, body: b.Bytes(), skipped: 1, want: []formatEntry{
			{key: "h2", typ: RDBTypeValkeyHash2, value: valkeyHash2()},
			{key: "s", typ: RDBTypeSetListpack, value: str("\x0f\x00\x00\x00\x02\x00\x81a\x02\x81b\x02\xff")},
		}})
	}
	{ // Valkey 9.2: RDB 81, with a HASH_2 and the records of 9.0.
		var b rdbBuilder
		b.Write(slotImport())
		b.WriteByte(rdbOpSelectDB)
		b.length(3)
		key(&b, RDBTypeValkeyHash2, "h2", valkeyHash2())
		files = append(files, formatFile{name: "valkey 9.2", magic: "VALKEY", version: 81, body: b.Bytes(), want: []formatEntry{
			{key: "h2", typ: RDBTypeValkeyHash2, value: valkeyHash2()},
		}})
	}
	return files
}

// formatSeeds are the hand-built files of the formats beyond the test servers, with
// their unreadable neighbours, as fuzzing seeds.
func formatSeeds() [][]byte {
	var seeds [][]byte
	for _, f := range formatFiles() {
		seeds = append(seeds, rdbFileOf(f.magic, f.version, f.body))
	}
	for _, tc := range formatErrorCases() {
		seeds = append(seeds, tc.data)
	}
	return seeds
}

// TestRDBReaderFormats reads hand-built files of Redis 8.6 and 8.8 and Valkey 9.0 and
// 9.2, and checks every key's name, type, expiry and payload byte for byte.
func TestRDBReaderFormats(t *testing.T) {
	t.Parallel()
	for _, f := range formatFiles() {
		t.Run(f.name, func(t *testing.T) {
			entries, r := readAll(t, bytes.NewReader(rdbFileOf(f.magic, f.version, f.body)))
			if r.Version() != f.version {
				t.Errorf("Version() %d, want %d", r.Version(), f.version)
			}
			if r.SkippedEmpty() != f.skipped {
				t.Errorf("SkippedEmpty() %d, want %d", r.SkippedEmpty(), f.skipped)
			}
			if len(entries) != len(f.want) {
				t.Fatalf("%d entries, want %d", len(entries), len(f.want))
			}
			for i, w := range f.want {
				e := entries[i]
				if e.Key != w.key || e.Type != w.typ || e.ExpireAtMs != w.expires || e.TypeName() == "unknown" {
					t.Errorf("entry %d: key %q type %d (%s) expires %d, want %q type %d expires %d",
						i, e.Key, e.Type, e.TypeName(), e.ExpireAtMs, w.key, w.typ, w.expires)
				}
				if want := wantPayload(w.meta, w.typ, w.value, f.version); !bytes.Equal(e.Payload, want) {
					t.Errorf("entry %q: payload\n%q\nwant\n%q", w.key, e.Payload, want)
				}
			}
		})
	}
}

type formatErrorCase struct {
	name string
	data []byte
	want string
	is   error
}

func formatErrorCases() []formatErrorCase {
	key := func(typ byte, value ...byte) []byte {
		var b rdbBuilder
		b.WriteByte(typ)
		b.str("k")
		b.Write(value)
		return b.Bytes()
	}
	return []formatErrorCase{
		{"redis 15", []byte("REDIS0015\xff"), "offset 0: unsupported RDB version 15 under the REDIS magic", ErrUnsupported},
		{"redis 80", []byte("REDIS0080\xff"), "unsupported RDB version 80 under the REDIS magic", ErrUnsupported},
		{"valkey 11", []byte("VALKEY011\xff"), "unsupported RDB version 11 under the VALKEY magic", ErrUnsupported},
		{"valkey 82", []byte("VALKEY082\xff"), "unsupported RDB version 82 under the VALKEY magic", ErrUnsupported},
		{"valkey digits", []byte("VALKEY0x0\xff"), "bad RDB version", ErrCorruptRDB},
		{"stream 26 short", rdbFileOf("REDIS", 13, key(RDBTypeStreamListpacks4, streamHead()...)), "stream consumer group count", ErrCorruptRDB},
		{"stream 26 without IDMP", rdbFileOf("REDIS", 13, key(RDBTypeStreamListpacks4, streamTail(RDBTypeStreamListpacks3, streamHead(), false, 0)...)), "stream IDMP settings", ErrCorruptRDB},
		{"stream 27 without NACKs", rdbFileOf("REDIS", 14, key(RDBTypeStreamListpacks5, streamTail(RDBTypeStreamListpacks4, streamHead(), false, 1)...)), "NACKed entry ID", ErrCorruptRDB},
		{"redis 13 type 28", rdbFileOf("REDIS", 13, key(28, 0)), "offset 9: unknown value type 28 in RDB 13 (REDIS magic)", ErrUnsupported},
		{"stream 27 in 13", rdbFileOf("REDIS", 13, key(RDBTypeStreamListpacks5, 0)), "offset 9: unknown value type or opcode 27 in RDB 13", ErrCorruptRDB},
		{"stream 26 in 12", rdbFileOf("REDIS", 12, key(RDBTypeStreamListpacks4, 0)), "offset 9: unknown value type or opcode 26 in RDB 12 (REDIS magic)", ErrCorruptRDB},
		{"type 22 in 11", rdbFileOf("REDIS", 11, key(22, 0)), "offset 9: unknown value type or opcode 22 in RDB 11", ErrCorruptRDB},
		{"key meta in 12", rdbFileOf("REDIS", 12, []byte{rdbOpKeyMeta, 0}), "offset 9: unknown value type or opcode 243 in RDB 12", ErrCorruptRDB},
		{"two key metas", rdbFileOf("REDIS", 13, append(append(keyMeta(), keyMeta()...), key(0, 1, 'v')...)), "two key metadata records", ErrCorruptRDB},
		{"path hash", rdbFileOf("VALKEY", 81, key(RDBTypeValkeyPathHash, 0)), "offset 9: value type 23 (a Valkey 9.2 path hash, RDB 81 (VALKEY magic))", ErrUnsupported},
		{"valkey 81 type 24", rdbFileOf("VALKEY", 81, key(24, 0)), "offset 9: unknown value type 24 in RDB 81 (VALKEY magic)", ErrUnsupported},
		{"type 23 in valkey 80", rdbFileOf("VALKEY", 80, key(23, 0)), "offset 9: unknown value type or opcode 23 in RDB 80 (VALKEY magic)", ErrCorruptRDB},
		{"redis hash types in valkey", rdbFileOf("VALKEY", 80, key(RDBTypeHashMetadata, 0)), "unknown value type or opcode 24 in RDB 80 (VALKEY magic)", ErrCorruptRDB},
		{"hash2 short", append([]byte("VALKEY080"), key(RDBTypeValkeyHash2, 1, 1, 'f', 1, 'v', 0xff, 0xff)...), "reading hash field expiry: unexpected EOF", ErrCorruptRDB},
		{"slot import short", rdbFileOf("VALKEY", 80, []byte{rdbOpSlotImport, 1, 'j', 2, 0}), "slot import range", ErrCorruptRDB},
	}
}

// TestRDBReaderFormatErrors checks the versions and types this reader does not read:
// each error names the byte offset and what it met, and wraps ErrUnsupported when a
// server may have written it, ErrCorruptRDB when none could have.
func TestRDBReaderFormatErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range formatErrorCases() {
		err := readToEnd(tc.data)
		if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rdb: offset ") {
			t.Errorf("%s: got %v, want an error wrapping %v containing %q", tc.name, err, tc.is, tc.want)
		}
		other := ErrCorruptRDB
		if tc.is == ErrCorruptRDB {
			other = ErrUnsupported
		}
		if errors.Is(err, other) {
			t.Errorf("%s: %v wraps %v too", tc.name, err, other)
		}
	}
}

// TestRDBHeaderVersions checks the headers of every version this reader knows, and the
// payload footer each gives its keys.
func TestRDBHeaderVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		magic    string
		versions []int
	}{{"REDIS", []int{1, 9, 10, 11, 12, 13, 14}}, {"VALKEY", []int{80, 81}}} {
		for _, v := range tc.versions {
			var b rdbBuilder
			b.WriteByte(RDBTypeString)
			b.str("k")
			b.str("v")
			data := rdbFileOf(tc.magic, v, b.Bytes())
			if v < 5 { // no checksum before RDB 5
				data = data[:len(data)-8]
			}
			r := NewRDBReader(bytes.NewReader(data))
			e, err := r.Next()
			if err != nil {
				t.Fatalf("%s %d: %v", tc.magic, v, err)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("%s %d: after the key: %v", tc.magic, v, err)
			}
			if got := int(binary.LittleEndian.Uint16(e.Payload[len(e.Payload)-10:])); got != v || !rdbVersionKnown(v) {
				t.Errorf("%s %d: payload footer says %d", tc.magic, v, got)
			}
			if s, ok := stringOfPayload(string(e.Payload), true); !ok || s != "v" {
				t.Errorf("%s %d: stringOfPayload = %q, %v", tc.magic, v, s, ok)
			}
		}
	}
}

// TestServerNames checks that Valkey is named as itself, and the RDB versions each
// release writes and reads.
func TestServerNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		info      string
		name      string
		rdb       int
		reads     []int
		readsNot  []int
		stringOut string
	}{
		{"redis_version:7.0.15\r\nredis_mode:standalone\r\nrole:master\r\n", "Redis 7.0.15", 10, []int{9, 10}, []int{11, 80}, "Redis 7.0.15 (standalone, master)"},
		{"redis_version:7.4.1\r\n", "Redis 7.4.1", 12, []int{11, 12}, []int{13, 80}, ""},
		{"redis_version:8.4.0\r\n", "Redis 8.4.0", 12, []int{12}, []int{13}, ""},
		{"redis_version:8.6.1\r\n", "Redis 8.6.1", 13, []int{13}, []int{14}, ""},
		{"redis_version:8.8.0\r\n", "Redis 8.8.0", 14, []int{14}, []int{15, 80}, ""},
		{"redis_version:7.2.4\r\nvalkey_version:8.0.1\r\nredis_mode:standalone\r\nrole:master\r\n", "Valkey 8.0.1", 11, []int{9, 11}, []int{12, 80}, "Valkey 8.0.1 (standalone, master)"},
		{"redis_version:7.2.4\r\nvalkey_version:8.1.4\r\n", "Valkey 8.1.4", 11, []int{11}, []int{12}, ""},
		{"redis_version:7.2.4\r\nvalkey_version:9.0.0\r\n", "Valkey 9.0.0", 80, []int{10, 11, 80}, []int{12, 14, 81}, ""},
		{"redis_version:7.2.4\r\nvalkey_version:9.2.0\r\n", "Valkey 9.2.0", 81, []int{11, 80, 81}, []int{12, 79}, ""},
	} {
		s := parseInfo(tc.info)
		if s.Name() != tc.name || s.RDBVersion() != tc.rdb || describeVersion(s) != tc.name {
			t.Errorf("%q: Name %q RDBVersion %d, want %q %d", tc.info, s.Name(), s.RDBVersion(), tc.name, tc.rdb)
		}
		for _, v := range tc.reads {
			if !s.ReadsRDB(v) {
				t.Errorf("%s does not read RDB %d", tc.name, v)
			}
		}
		for _, v := range tc.readsNot {
			if s.ReadsRDB(v) {
				t.Errorf("%s reads RDB %d", tc.name, v)
			}
		}
		if tc.stringOut != "" && s.String() != tc.stringOut {
			t.Errorf("String() %q, want %q", s.String(), tc.stringOut)
		}
	}
	if got := (&ServerInfo{Version: "7.0.15"}).Name(); got != "Redis 7.0.15" {
		t.Errorf("Name of a bare 7.0.15: %q", got)
	}
	if got := describeVersion(nil); got != "an unknown server" {
		t.Errorf("describeVersion(nil) = %q", got)
	}
}

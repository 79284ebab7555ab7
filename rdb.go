package migrate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RDB value type bytes, as Redis writes them before a key. The numbers are
// fixed by the file format (Redis src/rdb.h).
const (
	// RDBTypeString is a string, stored plain, as an integer or LZF-compressed.
	RDBTypeString byte = 0
	// RDBTypeList is a list as a count and its elements (Redis before 3.2).
	RDBTypeList byte = 1
	// RDBTypeSet is a set as a count and its members.
	RDBTypeSet byte = 2
	// RDBTypeZSet is a sorted set whose scores are stored as text (Redis before 4.0).
	RDBTypeZSet byte = 3
	// RDBTypeHash is a hash as a count and its field-value pairs.
	RDBTypeHash byte = 4
	// RDBTypeZSet2 is a sorted set whose scores are binary doubles.
	RDBTypeZSet2 byte = 5
	// RDBTypeModule is a module value of the Redis 4.0 release candidates; it
	// cannot be read without the module, so RDBReader refuses it, as Redis does.
	RDBTypeModule byte = 6
	// RDBTypeModule2 is a module value whose parts are tagged so it can be walked.
	RDBTypeModule2 byte = 7
	// RDBTypeHashZipmap is a hash in a zipmap (Redis before 2.6).
	RDBTypeHashZipmap byte = 9
	// RDBTypeListZiplist is a list in a ziplist (Redis before 3.2).
	RDBTypeListZiplist byte = 10
	// RDBTypeSetIntset is a set of integers in an intset.
	RDBTypeSetIntset byte = 11
	// RDBTypeZSetZiplist is a sorted set in a ziplist (Redis before 7.0).
	RDBTypeZSetZiplist byte = 12
	// RDBTypeHashZiplist is a hash in a ziplist (Redis before 7.0).
	RDBTypeHashZiplist byte = 13
	// RDBTypeListQuicklist is a list as a series of ziplists (Redis 3.2 to 6.2).
	RDBTypeListQuicklist byte = 14
	// RDBTypeStreamListpacks is a stream (Redis 5.0 to 6.2).
	RDBTypeStreamListpacks byte = 15
	// RDBTypeHashListpack is a hash in a listpack (Redis 7.0, RDB 10; so are 17 to 19).
	RDBTypeHashListpack byte = 16
	// RDBTypeZSetListpack is a sorted set in a listpack.
	RDBTypeZSetListpack byte = 17
	// RDBTypeListQuicklist2 is a list as a series of listpacks and plain nodes.
	RDBTypeListQuicklist2 byte = 18
	// RDBTypeStreamListpacks2 is a stream with first and deleted IDs and group offsets (Redis 7.0).
	RDBTypeStreamListpacks2 byte = 19
	// RDBTypeSetListpack is a set in a listpack (Redis 7.2, RDB 11; Valkey 7.2 to 8.1 too).
	RDBTypeSetListpack byte = 20
	// RDBTypeStreamListpacks3 is a stream whose consumers carry an active time (Redis 7.2, RDB 11).
	RDBTypeStreamListpacks3 byte = 21
	// RDBTypeHashMetadataPreGA is a hash with field TTLs of the Redis 7.4 release
	// candidates (RDB 12, REDIS magic); under the VALKEY magic 22 is RDBTypeValkeyHash2.
	RDBTypeHashMetadataPreGA byte = 22
	// RDBTypeHashListpackExPreGA is a listpack hash with field TTLs of the Redis 7.4 release candidates.
	RDBTypeHashListpackExPreGA byte = 23
	// RDBTypeHashMetadata is a hash with field TTLs (Redis 7.4, RDB 12).
	RDBTypeHashMetadata byte = 24
	// RDBTypeHashListpackEx is a listpack hash with field TTLs (Redis 7.4, RDB 12).
	RDBTypeHashListpackEx byte = 25
	// RDBTypeStreamListpacks4 is a stream that also carries its idempotent-producer
	// (IDMP) state (Redis 8.6, RDB 13): XADD ... IDMP's settings, producers and their
	// recent idempotent IDs, after the consumer groups.
	RDBTypeStreamListpacks4 byte = 26
	// RDBTypeStreamListpacks5 is a stream whose groups also list their negatively
	// acknowledged entries (XNACK, Redis 8.8, RDB 14): pending entries no consumer owns.
	RDBTypeStreamListpacks5 byte = 27
)

// Value type bytes of Valkey's own RDB format (the VALKEY magic, RDB 80 and up). Valkey
// 9 reuses numbers Redis gave other meanings: 22 is Redis's pre-GA hash with field TTLs
// in a REDIS stream and Valkey's HASH_2 in a VALKEY one. The magic and the version
// decide (Valkey src/rdb.h, RDB_VERSION_MAP).
const (
	// RDBTypeValkeyHash2 is a Valkey hash with field TTLs: a count, then each field,
	// its value and its expiry as 8 bytes of Unix milliseconds, -1 for none (Valkey
	// 9.0, RDB 80).
	RDBTypeValkeyHash2 byte = 22
	// RDBTypeValkeyPathHash is a Valkey path hash (Valkey 9.2, RDB 81). RDBReader
	// recognises it but does not read it yet.
	RDBTypeValkeyPathHash byte = 23
)

// Opcodes that may stand where a value type byte is expected.
const (
	// rdbOpKeyMeta (Redis 8.6, RDB 13) comes before a key's type byte: module
	// metadata attached to that key. In a VALKEY stream the same number is
	// rdbOpSlotImport.
	rdbOpKeyMeta = 243
	// rdbOpSlotImport (Valkey 9.0, RDB 80) records an atomic slot migration in
	// progress: a job name and slot ranges. Nothing of the data set.
	rdbOpSlotImport    = 243
	rdbOpSlotInfo      = 244
	rdbOpFunction2     = 245
	rdbOpFunctionPreGA = 246
	rdbOpModuleAux     = 247
	rdbOpIdle          = 248
	rdbOpFreq          = 249
	rdbOpAux           = 250
	rdbOpResizeDB      = 251
	rdbOpExpireMs      = 252
	rdbOpExpire        = 253
	rdbOpSelectDB      = 254
	rdbOpEOF           = 255
)

// Special string encodings, given by a length byte whose two top bits are 11.
const (
	rdbEncPlain = -1
	rdbEncInt8  = 0
	rdbEncInt16 = 1
	rdbEncInt32 = 2
	rdbEncLZF   = 3
)

// The RDB versions this reader understands. Redis numbers them from 1 under the REDIS
// magic: 9 is Redis 5.0 to 6.2, 10 is 7.0, 11 is 7.2 (and Valkey 7.2 to 8.1), 12 is
// 7.4 to 8.4, 13 is 8.6, 14 is 8.8. Valkey 9 left that sequence: it writes the VALKEY
// magic with 80 (Valkey 9.0 and 9.1) or 81 (Valkey 9.2), and reserves 12 to 79 for
// Redis's formats (Valkey src/rdb.h).
const (
	rdbMaxVersion       = 14 // under the REDIS magic (Redis 8.8)
	rdbMinValkeyVersion = 80 // under the VALKEY magic (Valkey 9.0)
	rdbMaxValkeyVersion = 81 // under the VALKEY magic (Valkey 9.2)
)

// rdbVersionKnown reports whether this reader understands RDB version v, as a DUMP
// payload's footer gives it (without a magic): 1 to rdbMaxVersion, or Valkey's.
func rdbVersionKnown(v int) bool {
	return v >= 1 && v <= rdbMaxVersion || v >= rdbMinValkeyVersion && v <= rdbMaxValkeyVersion
}

// parseRDBHeader reads the 9-byte header of an RDB stream: "REDIS" and 4 digits, or
// "VALKEY" and 3 digits (Valkey 9). An unknown magic or bad digits wrap ErrCorruptRDB;
// a version this reader does not know wraps ErrUnsupported.
func parseRDBHeader(hdr []byte) (version int, valkey bool, err error) {
	var digits []byte
	switch {
	case bytes.HasPrefix(hdr, []byte("REDIS")):
		digits = hdr[5:]
	case bytes.HasPrefix(hdr, []byte("VALKEY")):
		digits, valkey = hdr[6:], true
	default:
		return 0, false, fmt.Errorf("not an RDB stream: it starts with %q: %w", hdr, ErrCorruptRDB)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, valkey, fmt.Errorf("bad RDB version %q: %w", digits, ErrCorruptRDB)
		}
		version = version*10 + int(c-'0')
	}
	switch {
	case version == 0:
		return 0, valkey, fmt.Errorf("unsupported RDB version 0: %w", ErrCorruptRDB)
	case !valkey && version > rdbMaxVersion, valkey && (version < rdbMinValkeyVersion || version > rdbMaxValkeyVersion):
		magic := "REDIS"
		if valkey {
			magic = "VALKEY"
		}
		return version, valkey, fmt.Errorf("unsupported RDB version %d under the %s magic (this reader knows REDIS 1 to %d, VALKEY %d to %d): %w",
			version, magic, rdbMaxVersion, rdbMinValkeyVersion, rdbMaxValkeyVersion, ErrUnsupported)
	}
	return version, valkey, nil
}

// readChunk bounds each read of a long item, so memory grows only as fast as
// bytes really arrive, whatever length the input declares.
const readChunk = 64 << 10

// maxKeptBuf is the largest record buffer kept for reuse between entries.
const maxKeptBuf = 1 << 20

// handOver is the value size from which the record buffer becomes the payload
// instead of being copied into one, so a large value is held in memory once.
const handOver = 256 << 10

// RDBKind says what an RDBEntry holds.
type RDBKind int

const (
	// RDBKey is a key and its value; restore it with RESTORE.
	RDBKey RDBKind = iota
	// RDBFunction is a function library; restore it with FUNCTION RESTORE, or load
	// its Code with FUNCTION LOAD.
	RDBFunction
)

// RDBEntry is one key, or one function library, read from an RDB stream.
type RDBEntry struct {
	// Kind says whether this is a key or a function library.
	Kind RDBKind
	// DB is the database the key belongs to; 0 for functions, which are global.
	DB int
	// Key is the key name (binary-safe); for a function, the library name from its
	// "#!engine name=..." first line, or "" when that line cannot be parsed.
	Key string
	// Type is the RDB type byte of the value (RDBType*); for functions 245, the
	// RDB opcode of a function library.
	Type byte
	// ExpireAt is when the key expires, the zero Time when it does not.
	ExpireAt time.Time
	// ExpireAtMs is ExpireAt in Unix milliseconds, 0 when the key does not expire.
	// An expiry stored at or before the Unix epoch reads as 1, so it still means
	// "long expired" rather than "never expires".
	ExpireAtMs int64
	// Idle is the LRU idle time in seconds (the IDLE opcode), for RESTORE's IDLETIME.
	Idle int64
	// HasIdle reports whether the RDB gave Idle.
	HasIdle bool
	// Freq is the LFU frequency counter (the FREQ opcode), for RESTORE's FREQ.
	Freq int
	// HasFreq reports whether the RDB gave Freq.
	HasFreq bool
	// Payload is what RESTORE (for a key) or FUNCTION RESTORE (for a function)
	// takes: the key's metadata record if it has one (opcode 243, Redis 8.6 and
	// later; then Payload[0] is not Type), the type byte, the value's bytes exactly
	// as the RDB holds them, the RDB version of the file as 2 bytes little-endian
	// (80 or 81 for Valkey 9, whose DUMP payloads carry no magic) and the CRC-64 of
	// all that as 8 bytes little-endian, as DUMP and FUNCTION DUMP build it. Old
	// encodings keep their old type byte; servers convert them when they load them,
	// as long as the file's version is one they read.
	Payload []byte
	// Code is the source code of a function library, for FUNCTION LOAD; empty for keys.
	Code string

	hasMeta bool // a key metadata record comes before the key (Redis 8.6)
}

// TypeName returns the Redis type of the entry's value as the TYPE command names
// it ("string", "list", "set", "zset", "hash", "stream", "module"), "function"
// for a function library, or "unknown".
func (e *RDBEntry) TypeName() string {
	if e.Kind == RDBFunction {
		return "function"
	}
	switch e.Type {
	case RDBTypeString:
		return "string"
	case RDBTypeList, RDBTypeListZiplist, RDBTypeListQuicklist, RDBTypeListQuicklist2:
		return "list"
	case RDBTypeSet, RDBTypeSetIntset, RDBTypeSetListpack:
		return "set"
	case RDBTypeZSet, RDBTypeZSet2, RDBTypeZSetZiplist, RDBTypeZSetListpack:
		return "zset"
	case RDBTypeHash, RDBTypeHashZipmap, RDBTypeHashZiplist, RDBTypeHashListpack,
		RDBTypeHashMetadataPreGA, RDBTypeHashListpackExPreGA, RDBTypeHashMetadata, RDBTypeHashListpackEx:
		return "hash"
	case RDBTypeStreamListpacks, RDBTypeStreamListpacks2, RDBTypeStreamListpacks3,
		RDBTypeStreamListpacks4, RDBTypeStreamListpacks5:
		return "stream"
	case RDBTypeModule, RDBTypeModule2:
		return "module"
	}
	return "unknown"
}

// Framings of the RDB inside the input.
const (
	framingNone = iota // a file: an RDB, or an AOF that starts with one
	framingMark        // diskless replication: "$EOF:<mark>\r\n", RDB, mark
	framingBulk        // disk-based replication: "$<len>\r\n", RDB of len bytes
)

// RDBReader reads an RDB stream one entry at a time, keeping in memory only the
// entry being read. It reads the RDB files of every Redis and Valkey release: versions
// 1 to 14 under the REDIS magic (Redis up to 8.8, Valkey up to 8.1) and 80 and 81 under
// the VALKEY magic (Valkey 9), telling apart the type numbers the two projects gave
// different meanings by the magic and the version. It also reads AOF files that start
// with an RDB preamble (stopping at the preamble's end), and the payload a master
// sends to a replica: when the input starts with '$' (after any newlines a master
// sends as keepalives) it is taken as replication framing, either "$<len>\r\n"
// followed by the RDB (disk-based) or "$EOF:<40-byte mark>\r\n" followed by the
// RDB and the mark (diskless).
//
// Values are not decoded: each value's extent is found from its encoding and its
// bytes are passed on in a DUMP payload. Module aux data (MODULE_AUX), resize and
// slot hints and Valkey's slot import records are skipped. Collections with no
// elements, which Redis skips when loading, are skipped too and counted by
// SkippedEmpty.
//
// A type byte the stream's version never writes ends the stream with an error that
// names the byte and its offset and wraps ErrCorruptRDB. A type it knows but does not
// read yet (Valkey 9.2's path hash, type 23), an unknown type in the newest versions, whose writers may have added some,
// and an RDB version newer than it knows, wrap ErrUnsupported instead: such keys may
// still be copied by a strategy that does not parse the RDB.
type RDBReader struct {
	src     io.Reader
	br      *bufio.Reader
	off     int64  // bytes consumed from the input
	crc     uint64 // CRC-64 of the RDB bytes consumed, up to buf[:crcPos]
	buf     []byte // raw bytes of the record being read
	crcPos  int    // how much of buf crc covers; hashing whole records is faster
	version int
	valkey  bool // the VALKEY magic: Valkey's own numbering of types and opcodes
	aux     map[string]string
	db      int
	skipped int
	err     error // sticky: the error or io.EOF Next returned

	framing int
	mark    []byte // diskless end-of-transfer mark
	limit   int64  // offset the RDB must end at, for framingBulk; else -1

	// pieces, when set, receives the values too large to be held whole (rdbpieces.go).
	pieces     *rdbPieces
	big        int       // what becomes of the value being read: bigNone, bigKept, bigDropped
	cur        *RDBEntry // the key being read, for pieces.begin
	valueStart int       // where its value starts in buf
	scratch    []byte    // the piece being handed over
}

// NewRDBReader returns a reader of the RDB stream (or AOF with an RDB preamble,
// or replication payload) in r. It reads r through its own buffer, so it may
// consume bytes past the RDB's end; Rest hands those on.
func NewRDBReader(r io.Reader) *RDBReader {
	return &RDBReader{src: r, br: bufio.NewReaderSize(r, 64<<10), aux: map[string]string{}, limit: -1}
}

// Version returns the RDB version of the stream, known once Next has read the
// header (0 before).
func (r *RDBReader) Version() int { return r.version }

// Aux returns a copy of the aux fields (AUX opcode: redis-ver, ctime, ...) read
// so far; Redis writes them before the first key.
func (r *RDBReader) Aux() map[string]string {
	m := make(map[string]string, len(r.aux))
	for k, v := range r.aux {
		m[k] = v
	}
	return m
}

// SkippedEmpty returns how many keys holding an empty collection Next has
// skipped so far; Redis does not load such keys either.
func (r *RDBReader) SkippedEmpty() int { return r.skipped }

// Offset returns how many bytes of input have been consumed, for progress reports.
func (r *RDBReader) Offset() int64 { return r.off }

// Rest returns the input that follows the RDB (an AOF's commands, or the
// replication stream after the payload), including what the reader has already
// buffered. It returns nil until Next has returned io.EOF.
func (r *RDBReader) Rest() io.Reader {
	if r.err != io.EOF {
		return nil
	}
	buffered, _ := r.br.Peek(r.br.Buffered())
	return io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), r.src)
}

// Next returns the next key or function library. It returns io.EOF after the
// RDB's EOF opcode (and checksum, verified when non-zero); any other error names
// the byte offset, wraps ErrCorruptRDB when the input is at fault or ErrUnsupported
// when it holds what this reader does not read (an unknown RDB version or value
// type), and is returned again by every later call.
func (r *RDBReader) Next() (*RDBEntry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
	}
	return e, err
}

func (r *RDBReader) next() (*RDBEntry, error) {
	if r.version == 0 {
		if err := r.start(); err != nil {
			return nil, err
		}
	}
	var e RDBEntry // collects the opcodes that come before a key
	hasExpire := false
	var meta []byte // a key metadata record (Redis 8.6), which goes into the payload
	for {
		r.resetRecord()
		off := r.off
		t, err := r.readByte("value type or opcode")
		if err != nil {
			return nil, err
		}
		switch t {
		case rdbOpExpireMs:
			i, err := r.take(8, "expire time")
			if err != nil {
				return nil, err
			}
			e.ExpireAtMs, hasExpire = int64(binary.LittleEndian.Uint64(r.buf[i:])), true
		case rdbOpExpire:
			i, err := r.take(4, "expire time")
			if err != nil {
				return nil, err
			}
			e.ExpireAtMs, hasExpire = int64(int32(binary.LittleEndian.Uint32(r.buf[i:])))*1000, true
		case rdbOpIdle:
			n, err := r.readCount("LRU idle time")
			if err != nil {
				return nil, err
			}
			e.Idle, e.HasIdle = int64(min(n, math.MaxInt64)), true
		case rdbOpFreq:
			b, err := r.readByte("LFU frequency")
			if err != nil {
				return nil, err
			}
			e.Freq, e.HasFreq = int(b), true
		case rdbOpSelectDB:
			n, err := r.readCount("database number")
			if err != nil {
				return nil, err
			}
			if n > math.MaxInt32 {
				return nil, r.corruptf(off, "database number %d out of range", n)
			}
			r.db = int(n)
		case rdbOpResizeDB:
			if err := r.skipCounts(2, "resize hint"); err != nil {
				return nil, err
			}
		case rdbOpSlotInfo: // Redis 7.4 (RDB 12) in cluster mode; Valkey 9 skips it too
			if err := r.skipCounts(3, "slot info"); err != nil {
				return nil, err
			}
		case rdbOpKeyMeta: // rdbOpSlotImport under the VALKEY magic
			switch {
			case r.valkey:
				if err := r.skipSlotImport(); err != nil {
					return nil, err
				}
			case r.version >= 13:
				if meta != nil {
					return nil, r.corruptf(off, "two key metadata records before one key")
				}
				if err := r.skipKeyMeta(); err != nil {
					return nil, err
				}
				meta = bytes.Clone(r.buf) // the record is this opcode alone: the buffer was reset before it
			default:
				return nil, r.corruptf(off, "unknown value type or opcode 243 in %s", r.format())
			}
		case rdbOpAux:
			if err := r.readAux(); err != nil {
				return nil, err
			}
		case rdbOpModuleAux:
			if err := r.skipModuleAux(); err != nil {
				return nil, err
			}
		case rdbOpFunctionPreGA:
			return nil, r.corruptf(off, "function library in the format of Redis 7.0 release candidates (opcode 246) is not supported")
		case rdbOpFunction2:
			return r.function()
		case rdbOpEOF:
			return nil, r.finish()
		default:
			if err := r.valueType(off, t); err != nil {
				return nil, err
			}
			key, err := r.readString("key")
			if err != nil {
				return nil, err
			}
			e.Key = string(key)
			e.Kind, e.DB, e.Type = RDBKey, r.db, t
			if hasExpire {
				e.ExpireAtMs = max(e.ExpireAtMs, 1)
				e.ExpireAt = time.UnixMilli(e.ExpireAtMs)
			}
			e.hasMeta = meta != nil
			valueStart := len(r.buf)
			r.cur, r.valueStart = &e, valueStart
			empty, err := r.readValue(t)
			if err != nil {
				var re *rdbError
				if errors.As(err, &re) {
					re.msg = fmt.Sprintf("value of key %s: %s", quoteKey(e.Key), re.msg)
				}
				return nil, err
			}
			r.cur = nil
			if r.big != bigNone { // handed over in pieces, or dropped
				kept := r.big == bigKept
				r.big = bigNone
				if kept {
					if err := r.pieces.end(); err != nil {
						return nil, err
					}
				}
				e, hasExpire, meta = RDBEntry{}, false, nil
				continue
			}
			if empty {
				r.skipped++
				e, hasExpire, meta = RDBEntry{}, false, nil
				continue
			}
			e.Payload = r.payload(t, valueStart, meta)
			return &e, nil
		}
	}
}

// start reads the replication framing, if any, and the RDB header.
func (r *RDBReader) start() error {
	for { // a master sends newlines to keep the link alive while it prepares the RDB
		b, err := r.br.ReadByte()
		if err != nil {
			return readErr(r.off, "RDB header", err)
		}
		if b != '\n' {
			_ = r.br.UnreadByte()
			if b == '$' {
				if err := r.readFraming(); err != nil {
					return err
				}
			}
			break
		}
		r.off++
	}
	r.buf, r.crc, r.crcPos = r.buf[:0], 0, 0 // the checksum covers the RDB alone
	off := r.off
	i, err := r.take(9, "RDB header")
	if err != nil {
		return err
	}
	v, valkey, err := parseRDBHeader(r.buf[i : i+9])
	if err != nil {
		return &rdbError{off: off, err: err}
	}
	r.version, r.valkey = v, valkey
	return nil
}

// readFraming reads the "$EOF:<mark>\r\n" or "$<len>\r\n" line of a replication payload.
func (r *RDBReader) readFraming() error {
	off := r.off
	var line []byte
	for {
		b, err := r.readByte("replication framing")
		if err != nil {
			return err
		}
		if b == '\n' {
			break
		}
		if len(line) == 64 {
			return r.corruptf(off, "replication framing line too long")
		}
		line = append(line, b)
	}
	line, ok := bytes.CutSuffix(line, []byte("\r"))
	if !ok {
		return r.corruptf(off, "replication framing %q does not end in CRLF", line)
	}
	if mark, ok := bytes.CutPrefix(line, []byte("$EOF:")); ok {
		if len(mark) != 40 {
			return r.corruptf(off, "diskless replication mark of %d bytes, want 40", len(mark))
		}
		r.framing, r.mark = framingMark, bytes.Clone(mark)
		return nil
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil || n < 0 || line[1] == '+' {
		return r.corruptf(off, "bad replication framing %q", line)
	}
	r.framing, r.limit = framingBulk, r.off+n
	return nil
}

// finish checks what follows the EOF opcode: the checksum and the framing's end.
func (r *RDBReader) finish() error {
	r.resetRecord()
	sum := r.crc
	if r.version >= 5 {
		off := r.off
		i, err := r.take(8, "checksum")
		if err != nil {
			return err
		}
		if stored := binary.LittleEndian.Uint64(r.buf[i:]); stored != 0 && stored != sum {
			return r.corruptf(off, "checksum mismatch: stored %016x, computed %016x", stored, sum)
		}
	}
	switch r.framing {
	case framingMark:
		off := r.off
		i, err := r.take(40, "end-of-transfer mark")
		if err != nil {
			return err
		}
		if !bytes.Equal(r.buf[i:i+40], r.mark) {
			return r.corruptf(off, "end-of-transfer mark does not match the announced one")
		}
	case framingBulk:
		if r.off != r.limit {
			return r.corruptf(r.off, "RDB ended %d bytes before the end of the announced transfer", r.limit-r.off)
		}
	}
	return io.EOF
}

// readAux reads an AUX field: two strings.
func (r *RDBReader) readAux() error {
	k, err := r.readString("aux field name")
	if err != nil {
		return err
	}
	name := string(k)
	v, err := r.readString("aux field " + quoteKey(name))
	if err != nil {
		return err
	}
	r.aux[name] = string(v)
	return nil
}

// skipModuleAux reads a MODULE_AUX record: module ID, "when" as a tagged
// unsigned integer, then the module's tagged data.
func (r *RDBReader) skipModuleAux() error {
	if _, err := r.readCount("module aux type ID"); err != nil {
		return err
	}
	off := r.off
	op, err := r.readCount("module aux opcode")
	if err != nil {
		return err
	}
	if op != 2 { // RDB_MODULE_OPCODE_UINT
		return r.corruptf(off, "module aux: bad 'when' opcode %d", op)
	}
	if _, err := r.readCount("module aux 'when'"); err != nil {
		return err
	}
	return r.skipModuleOps("module aux")
}

// skipKeyMeta reads a key metadata record (Redis 8.6, RDB 13; Redis src/keymeta.c,
// rdbSaveKeyMetadata): the number of metadata classes, then for each its 32-bit class
// spec and its value as module-tagged data up to the module EOF opcode.
func (r *RDBReader) skipKeyMeta() error {
	n, err := r.readCount("key metadata class count")
	for i := uint64(0); i < n && err == nil; i++ {
		if _, err = r.take(4, "key metadata class spec"); err == nil {
			err = r.skipModuleOps("key metadata")
		}
	}
	return err
}

// skipSlotImport reads a slot import record (Valkey 9.0, RDB 80; Valkey
// src/cluster_migrateslots.c, clusterRDBSaveSlotImports): the job name, the number of
// slot ranges, and each range's first and last slot. It describes a migration in
// progress on the source, nothing the target needs.
func (r *RDBReader) skipSlotImport() error {
	if _, err := r.skipString("slot import job name"); err != nil {
		return err
	}
	n, err := r.readCount("slot import range count")
	for i := uint64(0); i < n && err == nil; i++ {
		err = r.skipCounts(2, "slot import range")
	}
	return err
}

// function reads a FUNCTION2 record into an entry whose payload FUNCTION RESTORE takes.
func (r *RDBReader) function() (*RDBEntry, error) {
	code, err := r.readString("function library")
	if err != nil {
		return nil, err
	}
	e := &RDBEntry{Kind: RDBFunction, Type: rdbOpFunction2, Code: string(code)}
	e.Key = libraryName(e.Code)
	e.Payload = r.payload(rdbOpFunction2, 1, nil)
	return e, nil
}

// libraryName returns the name= argument of a library's "#!engine name=..." line.
func libraryName(code string) string {
	line, _, _ := strings.Cut(code, "\n")
	rest, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return ""
	}
	for _, f := range strings.Fields(rest) {
		if name, ok := strings.CutPrefix(f, "name="); ok {
			return name
		}
	}
	return ""
}

// payload builds the DUMP payload of type t whose value is the record buffer
// from valueStart on (valueStart >= 1: a type byte always comes before), after the
// key's metadata record if it has one: RESTORE on Redis 8.6 reads the metadata opcode
// before the type byte, as DUMP writes it.
func (r *RDBReader) payload(t byte, valueStart int, meta []byte) []byte {
	var p []byte
	if len(r.buf)-valueStart < handOver || meta != nil {
		p = make([]byte, 0, len(meta)+1+len(r.buf)-valueStart+10)
		p = append(append(append(p, meta...), t), r.buf[valueStart:]...)
	} else {
		// Hand the buffer over rather than copy a large value; hash it for the
		// file checksum first, since the type byte overwrites the byte before the value.
		r.crc = crc64Jones(r.crc, r.buf[r.crcPos:])
		p = r.buf[valueStart-1:]
		p[0] = t
		r.buf, r.crcPos = nil, 0
	}
	p = binary.LittleEndian.AppendUint16(p, uint16(r.version))
	return binary.LittleEndian.AppendUint64(p, crc64Jones(0, p))
}

// readValue reads a value of type t into the record buffer. empty reports a
// collection with no elements, which Redis skips on load.
func (r *RDBReader) readValue(t byte) (empty bool, err error) {
	switch t {
	case RDBTypeString:
		if r.pieces != nil {
			return false, r.readStringPieces()
		}
		_, err = r.skipString("string")
		return false, err
	case RDBTypeList, RDBTypeSet:
		n, err := r.readCount("element count")
		w := r.items(t, nil, true)
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.skipString("element"); err == nil {
				err = w.add()
			}
		}
		if err == nil {
			err = w.end()
		}
		return n == 0, err
	case RDBTypeZSet:
		n, err := r.readCount("zset size")
		w := r.items(t, nil, true)
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.skipString("zset member"); err == nil {
				if err = r.skipTextDouble(); err == nil {
					err = w.add()
				}
			}
		}
		if err == nil {
			err = w.end()
		}
		return n == 0, err
	case RDBTypeZSet2:
		n, err := r.readCount("zset size")
		w := r.items(t, nil, true)
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.skipString("zset member"); err == nil {
				if _, err = r.take(8, "zset score"); err == nil {
					err = w.add()
				}
			}
		}
		if err == nil {
			err = w.end()
		}
		return n == 0, err
	case RDBTypeHash:
		n, err := r.readCount("hash size")
		w := r.items(t, nil, true)
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.skipString("hash field"); err == nil {
				if _, err = r.skipString("hash value"); err == nil {
					err = w.add()
				}
			}
		}
		if err == nil {
			err = w.end()
		}
		return n == 0, err
	case RDBTypeValkeyHash2:
		if r.valkey {
			return r.readValkeyHash2()
		}
		fallthrough // Redis's pre-GA 22, in a REDIS stream
	case RDBTypeHashMetadata:
		var prefix []byte
		if t == RDBTypeHashMetadata {
			i, err := r.take(8, "hash minimum expire time")
			if err != nil {
				return false, err
			}
			if r.pieces != nil {
				prefix = bytes.Clone(r.buf[i:])
			}
		}
		n, err := r.readCount("hash size")
		w := r.items(t, prefix, true)
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.readCount("hash field TTL"); err == nil {
				if _, err = r.skipString("hash field"); err == nil {
					if _, err = r.skipString("hash value"); err == nil {
						err = w.add()
					}
				}
			}
		}
		if err == nil {
			err = w.end()
		}
		return n == 0, err
	case RDBTypeHashZipmap, RDBTypeSetIntset:
		if _, err = r.skipString("encoded value"); err == nil && r.pieces != nil {
			err = r.whole(t)
		}
		return false, err
	case RDBTypeListZiplist, RDBTypeZSetZiplist, RDBTypeHashZiplist:
		s, err := r.skipString("ziplist")
		empty = err == nil && r.emptyZiplist(s)
		if err == nil && r.pieces != nil {
			err = r.whole(t)
		}
		return empty, err
	case RDBTypeHashListpackEx:
		if _, err := r.take(8, "hash minimum expire time"); err != nil {
			return false, err
		}
		fallthrough
	case RDBTypeHashListpack, RDBTypeZSetListpack, RDBTypeSetListpack, RDBTypeHashListpackExPreGA:
		s, err := r.skipString("listpack")
		empty = err == nil && r.emptyListpack(s)
		if err == nil && r.pieces != nil {
			err = r.whole(t)
		}
		return empty, err
	case RDBTypeListQuicklist, RDBTypeListQuicklist2:
		return r.readQuicklist(t)
	case RDBTypeStreamListpacks, RDBTypeStreamListpacks2, RDBTypeStreamListpacks3,
		RDBTypeStreamListpacks4, RDBTypeStreamListpacks5:
		return false, r.readStream(t)
	case RDBTypeModule2:
		if _, err := r.readCount("module type ID"); err != nil {
			return false, err
		}
		return false, r.skipModuleOps("module value")
	case RDBTypeModule:
		return false, r.corruptf(r.off, "module value in the format of Redis 4.0 release candidates (type 6) cannot be read without its module")
	}
	return false, r.corruptf(r.off, "unknown value type %d", t)
}

// readValkeyHash2 reads Valkey's hash with field TTLs (Valkey src/rdb.c, rdbSaveObject):
// a count, then each field, value and expiry in Unix milliseconds as 8 bytes (-1: none).
func (r *RDBReader) readValkeyHash2() (empty bool, err error) {
	n, err := r.readCount("hash size")
	w := r.items(RDBTypeValkeyHash2, nil, true)
	for i := uint64(0); i < n && err == nil; i++ {
		if _, err = r.skipString("hash field"); err == nil {
			if _, err = r.skipString("hash value"); err == nil {
				if _, err = r.take(8, "hash field expiry"); err == nil {
					err = w.add()
				}
			}
		}
	}
	if err == nil {
		err = w.end()
	}
	return n == 0, err
}

// readQuicklist reads a list of nodes; it is empty when every node is an empty
// ziplist or listpack, since Redis drops those and then the key.
func (r *RDBReader) readQuicklist(t byte) (empty bool, err error) {
	n, err := r.readCount("quicklist node count")
	empty = true
	w := r.items(t, nil, true)
	for i := uint64(0); i < n && err == nil; i++ {
		container := uint64(2) // packed; quicklist 2 also has 1, a plain node of one element
		if t == RDBTypeListQuicklist2 {
			off := r.off
			if container, err = r.readCount("quicklist node container"); err != nil {
				break
			}
			if container != 1 && container != 2 {
				return false, r.corruptf(off, "bad quicklist node container %d", container)
			}
		}
		s, err2 := r.skipString("quicklist node")
		switch {
		case err2 != nil:
			err = err2
		case container == 1:
			empty = false
		case t == RDBTypeListQuicklist && !r.emptyZiplist(s):
			empty = false
		case t == RDBTypeListQuicklist2 && !r.emptyListpack(s):
			empty = false
		}
		if err == nil {
			err = w.add()
		}
	}
	if err == nil {
		err = w.end()
	}
	return empty && r.big == bigNone, err
}

// readStream reads a stream: its listpacks, metadata and consumer groups.
func (r *RDBReader) readStream(t byte) error {
	n, err := r.readCount("stream listpack count")
	w := r.items(pieceStreamNodes, nil, true)
	for i := uint64(0); i < n && err == nil; i++ {
		if _, err = r.skipString("stream node key"); err == nil {
			if _, err = r.skipString("stream listpack"); err == nil {
				err = w.add()
			}
		}
	}
	if err == nil {
		err = w.end()
	}
	if err != nil {
		return err
	}
	// Length and last ID; since type 19 also first ID, max deleted ID and entries added.
	meta, from := 3, len(r.buf)
	if t >= RDBTypeStreamListpacks2 {
		meta = 8
	}
	if err := r.skipCounts(meta, "stream metadata"); err != nil {
		return err
	}
	if err := r.part(pieceStreamMeta, from); err != nil {
		return err
	}
	groups, err := r.readCount("stream consumer group count")
	for g := uint64(0); g < groups && err == nil; g++ {
		err = r.readStreamGroup(t)
	}
	if err != nil || t < RDBTypeStreamListpacks4 {
		return err
	}
	from = len(r.buf)
	if err := r.readStreamIDMP(); err != nil {
		return err
	}
	return r.part(pieceStreamIDMP, from)
}

// readStreamIDMP reads the idempotent-producer state of a stream of type 26 or later
// (Redis 8.6, RDB 13): IDMP duration and maximum entries, the number of producers, each
// producer's ID, its number of entries and each entry's idempotent ID and stream ID (its
// milliseconds and sequence as lengths), then the IIDs-added and IIDs-duplicates counters.
// The layout is that of the stream's idmp_producers (Redis src/stream.h) as librdb
// reports it (producer, then entries; redis/librdb, RDB 13 support).
func (r *RDBReader) readStreamIDMP() error {
	if err := r.skipCounts(2, "stream IDMP settings"); err != nil {
		return err
	}
	producers, err := r.readCount("stream IDMP producer count")
	for p := uint64(0); p < producers && err == nil; p++ {
		if _, err = r.skipString("stream IDMP producer ID"); err != nil {
			break
		}
		var n uint64
		n, err = r.readCount("stream IDMP entry count")
		for i := uint64(0); i < n && err == nil; i++ {
			if _, err = r.skipString("stream IDMP idempotent ID"); err == nil {
				err = r.skipCounts(2, "stream IDMP entry ID")
			}
		}
	}
	if err != nil {
		return err
	}
	return r.skipCounts(2, "stream IDMP counters")
}

// readStreamGroup reads one consumer group: name, last ID, offset, PEL, consumers.
func (r *RDBReader) readStreamGroup(t byte) error {
	from := len(r.buf)
	if _, err := r.skipString("consumer group name"); err != nil {
		return err
	}
	meta := 2 // last delivered ID; since type 19 also the entries-read offset
	if t >= RDBTypeStreamListpacks2 {
		meta = 3
	}
	if err := r.skipCounts(meta, "consumer group metadata"); err != nil {
		return err
	}
	if err := r.part(pieceGroup, from); err != nil {
		return err
	}
	if err := r.streamIDs(piecePEL, "consumer group PEL size", "PEL entry ID and delivery time", 16+8, true); err != nil {
		return err
	}
	consumers, err := r.readCount("consumer count")
	for i := uint64(0); i < consumers && err == nil; i++ {
		from := len(r.buf)
		if _, err = r.skipString("consumer name"); err != nil {
			break
		}
		times := uint64(8) // seen time; since type 21 also active time
		if t >= RDBTypeStreamListpacks3 {
			times = 16
		}
		if _, err = r.take(times, "consumer times"); err != nil {
			break
		}
		if err = r.part(pieceConsumer, from); err == nil {
			err = r.streamIDs(pieceConsumerPEL, "consumer PEL size", "consumer PEL entry ID", 16, false)
		}
	}
	if err == nil && t >= RDBTypeStreamListpacks5 {
		// Since type 27 (Redis 8.8, XNACK): the group's PEL entries no consumer owns, as IDs.
		err = r.streamIDs(pieceNacked, "consumer group NACK count", "NACKed entry ID", 16, false)
	}
	if err != nil {
		return err
	}
	return r.part(pieceGroupEnd, len(r.buf))
}

// streamIDs reads a count and as many stream IDs (16 bytes) with size-16 more bytes each,
// and with counted a delivery count: a group's PEL, a consumer's, or its NACKed entries.
func (r *RDBReader) streamIDs(kind byte, count, entry string, size uint64, counted bool) error {
	n, err := r.readCount(count)
	w := r.items(kind, nil, false)
	for i := uint64(0); i < n && err == nil; i++ {
		if _, err = r.take(size, entry); err == nil && counted {
			_, err = r.readCount("PEL delivery count")
		}
		if err == nil {
			err = w.add()
		}
	}
	if err == nil {
		err = w.end()
	}
	return err
}

// skipModuleOps walks module data tagged with module opcodes up to its EOF opcode.
func (r *RDBReader) skipModuleOps(what string) error {
	for {
		off := r.off
		op, err := r.readCount(what + " opcode")
		if err != nil {
			return err
		}
		switch op {
		case 0: // EOF
			return nil
		case 1, 2: // signed, unsigned integer
			_, err = r.readCount(what + " integer")
		case 3:
			_, err = r.take(4, what+" float")
		case 4:
			_, err = r.take(8, what+" double")
		case 5:
			_, err = r.skipString(what + " string")
		default:
			return r.corruptf(off, "%s: unknown module opcode %d", what, op)
		}
		if err != nil {
			return err
		}
	}
}

// skipTextDouble reads a double stored as text: a length byte, with 253, 254
// and 255 standing for NaN, +inf and -inf.
func (r *RDBReader) skipTextDouble() error {
	n, err := r.readByte("zset score")
	if err != nil || n >= 253 {
		return err
	}
	_, err = r.take(uint64(n), "zset score")
	return err
}

// emptyZiplist reports whether s is a plain-stored ziplist with no entries:
// exactly the 11-byte header and end mark of an empty one.
func (r *RDBReader) emptyZiplist(s rawString) bool {
	b := r.buf[s.start : s.start+s.n]
	return s.enc == rdbEncPlain && len(b) == 11 && binary.LittleEndian.Uint16(b[8:]) == 0 && b[10] == 0xff
}

// emptyListpack reports whether s is a plain-stored listpack with no entries:
// exactly the 7-byte header and end mark of an empty one.
func (r *RDBReader) emptyListpack(s rawString) bool {
	b := r.buf[s.start : s.start+s.n]
	return s.enc == rdbEncPlain && len(b) == 7 && binary.LittleEndian.Uint16(b[4:]) == 0 && b[6] == 0xff
}

// rawString locates one string's stored bytes in the record buffer.
type rawString struct {
	start, n int    // its data, after the length prefix, is r.buf[start:start+n]
	enc      int    // rdbEncPlain or a special encoding
	ulen     uint64 // uncompressed length, for rdbEncLZF
}

// skipString reads one string in whatever encoding it is stored.
func (r *RDBReader) skipString(what string) (rawString, error) {
	off := r.off
	n, special, err := r.readLen(what)
	if err != nil {
		return rawString{}, err
	}
	if !special {
		i, err := r.take(n, what)
		return rawString{start: i, n: int(n), enc: rdbEncPlain}, err
	}
	switch n {
	case rdbEncInt8, rdbEncInt16, rdbEncInt32:
		size := 1 << n
		i, err := r.take(uint64(size), what)
		return rawString{start: i, n: size, enc: int(n)}, err
	case rdbEncLZF:
		clen, err := r.readCount(what + " compressed length")
		if err != nil {
			return rawString{}, err
		}
		ulen, err := r.readCount(what + " length")
		if err != nil {
			return rawString{}, err
		}
		i, err := r.take(clen, what)
		return rawString{start: i, n: int(clen), enc: rdbEncLZF, ulen: ulen}, err
	}
	return rawString{}, r.corruptf(off, "%s: unknown string encoding %d", what, n)
}

// readString reads one string and returns its text. The result may share
// memory with the record buffer: copy it before the next entry.
func (r *RDBReader) readString(what string) ([]byte, error) {
	off := r.off
	s, err := r.skipString(what)
	if err != nil {
		return nil, err
	}
	data := r.buf[s.start : s.start+s.n]
	switch s.enc {
	case rdbEncPlain:
		return data, nil
	case rdbEncInt8:
		return strconv.AppendInt(nil, int64(int8(data[0])), 10), nil
	case rdbEncInt16:
		return strconv.AppendInt(nil, int64(int16(binary.LittleEndian.Uint16(data))), 10), nil
	case rdbEncInt32:
		return strconv.AppendInt(nil, int64(int32(binary.LittleEndian.Uint32(data))), 10), nil
	}
	out, err := lzfDecompress(data, s.ulen)
	if err != nil {
		return nil, r.corruptf(off, "%s: %v", what, err)
	}
	return out, nil
}

// readLen reads a length prefix. When special is true, n is not a length but
// the kind of a specially encoded string (rdbEnc*).
func (r *RDBReader) readLen(what string) (n uint64, special bool, err error) {
	off := r.off
	b, err := r.readByte(what)
	if err != nil {
		return 0, false, err
	}
	switch b >> 6 {
	case 0:
		return uint64(b & 0x3f), false, nil
	case 1:
		b2, err := r.readByte(what)
		return uint64(b&0x3f)<<8 | uint64(b2), false, err
	case 3:
		return uint64(b & 0x3f), true, nil
	}
	switch b {
	case 0x80:
		i, err := r.take(4, what)
		if err != nil {
			return 0, false, err
		}
		return uint64(binary.BigEndian.Uint32(r.buf[i:])), false, nil
	case 0x81:
		i, err := r.take(8, what)
		if err != nil {
			return 0, false, err
		}
		return binary.BigEndian.Uint64(r.buf[i:]), false, nil
	}
	return 0, false, r.corruptf(off, "%s: bad length prefix 0x%02x", what, b)
}

// readCount reads a length that must be a plain number, not a string encoding.
func (r *RDBReader) readCount(what string) (uint64, error) {
	off := r.off
	n, special, err := r.readLen(what)
	if err == nil && special {
		err = r.corruptf(off, "%s: string encoding where a length belongs", what)
	}
	return n, err
}

// skipCounts reads k lengths whose values do not matter here.
func (r *RDBReader) skipCounts(k int, what string) error {
	for range k {
		if _, err := r.readCount(what); err != nil {
			return err
		}
	}
	return nil
}

// resetRecord empties the record buffer, first adding its bytes to the checksum.
func (r *RDBReader) resetRecord() {
	r.crc = crc64Jones(r.crc, r.buf[r.crcPos:])
	if cap(r.buf) > maxKeptBuf {
		r.buf = nil
	}
	r.buf, r.crcPos = r.buf[:0], 0
}

// readByte reads one byte into the record buffer.
func (r *RDBReader) readByte(what string) (byte, error) {
	if r.limit >= 0 && r.off >= r.limit {
		return 0, r.pastLimit(r.off, what)
	}
	b, err := r.br.ReadByte()
	if err != nil {
		return 0, readErr(r.off, what, err)
	}
	r.off++
	r.buf = append(r.buf, b)
	return b, nil
}

// take reads n bytes into the record buffer, in chunks so that an absurd n on
// short input fails without first allocating n bytes, and returns where they start.
func (r *RDBReader) take(n uint64, what string) (int, error) {
	start, off := len(r.buf), r.off
	if r.limit >= 0 && n > uint64(r.limit-r.off) {
		return start, r.pastLimit(off, what)
	}
	if n <= uint64(r.br.Buffered()) { // fast path for the many short items
		b, _ := r.br.Peek(int(n))
		r.buf = append(r.buf, b...)
		_, _ = r.br.Discard(int(n))
		r.off += int64(n)
		return start, nil
	}
	for n > 0 {
		c := int(min(n, readChunk))
		r.buf = slices.Grow(r.buf, c)
		end := len(r.buf)
		got, err := io.ReadFull(r.br, r.buf[end:end+c])
		r.buf = r.buf[:end+got]
		r.off += int64(got)
		if err != nil {
			return start, readErr(off, what, err)
		}
		n -= uint64(c)
	}
	return start, nil
}

func (r *RDBReader) pastLimit(off int64, what string) error {
	return &rdbError{off: off, msg: fmt.Sprintf("reading %s: runs past the end of the announced transfer", what),
		err: io.ErrUnexpectedEOF, corrupt: true}
}

func (r *RDBReader) corruptf(off int64, format string, args ...any) error {
	return &rdbError{off: off, msg: fmt.Sprintf(format, args...), corrupt: true}
}

// unsupportedf describes a part of the stream this reader does not read: a type or
// opcode a newer server writes, or one it knows but cannot pass on. It wraps
// ErrUnsupported, not ErrCorruptRDB, since the input may well be intact: a strategy that
// does not parse the RDB (DumpRestore, MigrateKeys) may still copy such a key.
func (r *RDBReader) unsupportedf(off int64, format string, args ...any) error {
	return &rdbError{off: off, msg: fmt.Sprintf(format, args...), err: ErrUnsupported}
}

// format names the writer and version of the stream, for messages: "RDB 12 (REDIS
// magic)" or "RDB 80 (VALKEY magic)".
func (r *RDBReader) format() string {
	if r.valkey {
		return fmt.Sprintf("RDB %d (VALKEY magic)", r.version)
	}
	return fmt.Sprintf("RDB %d (REDIS magic)", r.version)
}

// valueType checks that t, read where a key's type byte belongs, is a value type of
// this stream's format. The numbers above 21 mean different things to Redis and Valkey,
// and each came with a version, so the magic and the version decide. A type byte the
// stream's version never writes is corruption (ErrCorruptRDB), except past the types
// known for the newest versions (Redis RDB 13 and 14, Valkey RDB 81), whose writers may
// have added more: there, and for the types known but not read here, the error wraps
// ErrUnsupported. Either way it names the byte and its offset.
func (r *RDBReader) valueType(off int64, t byte) error {
	switch {
	case t == 8:
		return r.corruptf(off, "unknown value type or opcode 8 in %s (never assigned by any server)", r.format())
	case t <= RDBTypeStreamListpacks3:
		return nil // 0 to 21: the same in every format since RDB 11
	case r.valkey:
		switch {
		case t == RDBTypeValkeyHash2:
			return nil
		case t == RDBTypeValkeyPathHash && r.version >= 81:
			return r.unsupportedf(off, "value type 23 (a Valkey 9.2 path hash, %s) is not read by this library yet: "+
				"copy such keys with DumpRestore between Valkey 9.2 servers", r.format())
		case t > RDBTypeValkeyPathHash && r.version > rdbMinValkeyVersion:
			return r.unsupportedf(off, "unknown value type %d in %s: written by a newer server, or the stream is damaged", t, r.format())
		}
	case t <= RDBTypeHashListpackEx && r.version >= 12:
		return nil // Redis 7.4: hashes with field TTLs, and those of its release candidates
	case (t == RDBTypeStreamListpacks4 && r.version >= 13) || (t == RDBTypeStreamListpacks5 && r.version >= 14):
		return nil // Redis 8.6 and 8.8 streams
	case t > RDBTypeStreamListpacks5 && r.version >= 13:
		return r.unsupportedf(off, "unknown value type %d in %s: written by a newer server, or the stream is damaged", t, r.format())
	}
	return r.corruptf(off, "unknown value type or opcode %d in %s", t, r.format())
}

// readErr describes a failed read of what, begun at offset off; running out of
// input is corruption, any other failure is the underlying reader's.
func readErr(off int64, what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &rdbError{off: off, msg: "reading " + what, err: io.ErrUnexpectedEOF, corrupt: true}
	}
	return &rdbError{off: off, msg: "reading " + what, err: err}
}

// rdbError is an error at a byte offset of the input.
type rdbError struct {
	off     int64
	msg     string
	err     error // the cause, if any
	corrupt bool  // the input is at fault
}

func (e *rdbError) Error() string {
	s := fmt.Sprintf("rdb: offset %d: %s", e.off, e.msg)
	if e.msg == "" {
		s = fmt.Sprintf("rdb: offset %d", e.off)
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *rdbError) Unwrap() []error {
	var errs []error
	if e.corrupt {
		errs = append(errs, ErrCorruptRDB)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// quoteKey quotes a key for an error message, shortened if long.
func quoteKey(k string) string {
	if len(k) > 64 {
		return strconv.Quote(k[:64]) + "..."
	}
	return strconv.Quote(k)
}

var errBadLZF = errors.New("bad LZF data")

// lzfMaxRatio bounds LZF expansion: the largest back reference, 3 bytes long,
// yields 264 bytes.
const lzfMaxRatio = 88

// lzfDecompress expands LZF data (liblzf's format, as Redis writes it) that
// must come to exactly ulen bytes.
func lzfDecompress(in []byte, ulen uint64) ([]byte, error) {
	if ulen > uint64(len(in))*lzfMaxRatio {
		return nil, fmt.Errorf("LZF data of %d bytes cannot expand to %d", len(in), ulen)
	}
	out := make([]byte, 0, ulen)
	bad := errBadLZF
	for i := 0; i < len(in); {
		ctrl := int(in[i])
		i++
		if ctrl < 32 { // literal run of ctrl+1 bytes
			n := ctrl + 1
			if i+n > len(in) || len(out)+n > cap(out) {
				return nil, bad
			}
			out = append(out, in[i:i+n]...)
			i += n
			continue
		}
		n := ctrl >> 5 // back reference: length-2, then offset-1
		if n == 7 {
			if i >= len(in) {
				return nil, bad
			}
			n += int(in[i])
			i++
		}
		n += 2
		if i >= len(in) {
			return nil, bad
		}
		back := (ctrl&0x1f)<<8 + int(in[i]) + 1
		i++
		if back > len(out) || len(out)+n > cap(out) {
			return nil, bad
		}
		ref := len(out) - back
		if back >= n {
			out = append(out, out[ref:ref+n]...)
			continue
		}
		for k := range n { // byte by byte: the source overlaps what is written
			out = append(out, out[ref+k])
		}
	}
	if uint64(len(out)) != ulen {
		return nil, fmt.Errorf("LZF data expands to %d bytes, want %d", len(out), ulen)
	}
	return out, nil
}

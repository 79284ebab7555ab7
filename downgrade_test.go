package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestDowngradePlanAndAuto copies Redis 7.4 into Redis 6.2 with Auto: the plan says the
// payloads are rewritten, MigrateKeys is refused for it (pointing to the rungs that
// rewrite), Snapshot{ToFile} is refused, and Auto picks Snapshot, which copies every
// type exactly (WithVerify agrees).
func TestDowngradePlanAndAuto(t *testing.T) {
	t.Parallel()
	src := redistest.StartRelease(t, redistest.FindRelease(t, "redis-7.4"), redistest.Config{})
	dst := redistest.StartRelease(t, redistest.FindRelease(t, "redis-6.2"), redistest.Config{})
	src.Do(t, 0, "SET", "s", "v", "PX", "3600000")
	src.Do(t, 0, "SADD", "set", "a", "b", "c") // a listpack set (type 20, Redis 7.2)
	src.Do(t, 0, "HSET", "h", "f", "v")
	src.Do(t, 0, "ZADD", "z", "1.5", "a", "-2", "b")
	src.Do(t, 0, "RPUSH", "l", "x", "y")
	src.Do(t, 0, "XADD", "st", "1-1", "f", "v")
	src.Do(t, 0, "XGROUP", "CREATE", "st", "g", "0")
	src.Do(t, 0, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "st", ">")
	m, err := New(src.Option(), dst.Option(), WithVerify())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Chosen != "snapshot" {
		t.Errorf("plan chose %q, want snapshot:\n%s", plan.Chosen, plan)
	}
	for _, s := range plan.Steps {
		switch s.Strategy {
		case "migrate-keys":
			if s.OK || !errors.Is(s.Err, ErrIncompatible) || !errors.Is(s.Err, ErrUnsupported) || !strings.Contains(s.Err.Error(), "DumpRestore or Snapshot") {
				t.Errorf("migrate-keys step: %v, want a refusal pointing to DumpRestore or Snapshot", s.Err)
			}
		case "snapshot", "dump-restore":
			if !s.OK {
				t.Errorf("%s step refused: %v", s.Strategy, s.Err)
			}
		}
	}
	if !slices.ContainsFunc(plan.Warnings, func(w string) bool {
		return strings.Contains(w, "Redis 6.2.14 (RDB 9)") && strings.Contains(w, "rewrite each value")
	}) {
		t.Errorf("the plan does not say the payloads are rewritten:\n%s", plan)
	}
	// A snapshot written to a file for the target to load keeps the source's format.
	toFile, err := New(src.Option(), dst.Option(), WithStrategy(Snapshot{ToFile: filepath.Join(t.TempDir(), "dump.rdb")}))
	if err != nil {
		t.Fatal(err)
	}
	defer toFile.Close()
	if p, err := toFile.Plan(ctx); err != nil || p.Steps[0].OK || !errors.Is(p.Steps[0].Err, ErrIncompatible) ||
		!strings.Contains(p.Steps[0].Err.Error(), "leave ToFile out") {
		t.Errorf("Snapshot{ToFile} into an older target: %v %+v, want a refusal (ErrIncompatible) saying to leave ToFile out", err, p)
	}

	rep, err := m.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Strategy != "snapshot" || rep.Keys != 6 {
		t.Errorf("report %s, want 6 keys by snapshot", rep)
	}
	redistest.AssertSame(t, src, dst, 0)

	// Run again: every key on the target holds the source's value, rewritten or not.
	again, err := New(src.Option(), dst.Option(), WithStrategy(DumpRestore{}))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if rep, err = again.Migrate(ctx); err != nil || rep.Skipped != 6 || rep.Keys != 0 {
		t.Errorf("dump-restore again: %v, report %s; want the 6 keys skipped as already there", err, rep)
	}
}

// writeFile writes an RDB file of the given magic, version and body into a temporary
// directory and returns its path.
func writeRDBFile(t *testing.T, magic string, version int, body []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dump.rdb")
	if err := os.WriteFile(path, rdbFileOf(magic, version, body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDowngradeNewerFormats restores, from hand-built files, what no server of the test
// machine writes onto an older target: a Valkey 9 hash with field TTLs (RDB 80) and a
// Redis 8.6 key with key metadata (RDB 13). Redis 7.0 has a place for neither part:
// refused by default with the key named, or copied without it under TrimIncompatible and
// listed. Redis 7.4 holds the field TTLs, rewritten in its own format.
func TestDowngradeNewerFormats(t *testing.T) {
	t.Parallel()
	var valkey rdbBuilder
	valkey.WriteByte(rdbOpSelectDB)
	valkey.length(0)
	valkey.WriteByte(RDBTypeValkeyHash2)
	valkey.str("h2")
	valkey.Write(valkeyHash2()) // f1 without a TTL, f2 expiring at 1893456000000
	valkey.WriteByte(RDBTypeString)
	valkey.str("s")
	valkey.str("v")
	valkeyFile := writeRDBFile(t, "VALKEY", 80, valkey.Bytes())

	var meta rdbBuilder
	meta.WriteByte(rdbOpSelectDB)
	meta.length(0)
	meta.Write(keyMeta())
	meta.WriteByte(RDBTypeSet)
	meta.str("with-meta")
	meta.length(2)
	meta.str("a")
	meta.str("b")
	meta.WriteByte(RDBTypeString)
	meta.str("plain")
	meta.str("v")
	metaFile := writeRDBFile(t, "REDIS", 13, meta.Bytes())

	run := func(t *testing.T, dst *redistest.Server, file string, opts ...Option) (*Report, error) {
		t.Helper()
		dst.Do(t, 0, "FLUSHALL")
		// The source is not read with FromFile; it only has to answer.
		src := redistest.Start(t, redistest.Config{})
		return restoreFile(t, src, dst, file, opts...)
	}

	t.Run("into 7.0", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		for _, tc := range []struct {
			file, key, says, kept string
		}{
			{valkeyFile, "h2", "have a TTL", "s"},
			{metaFile, "with-meta", "key metadata", "plain"},
		} {
			_, err := run(t, dst, tc.file)
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `"`+tc.key+`"`) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: %v, want ErrIncompatible naming %q and saying %q", tc.key, err, tc.key, tc.says)
			}
			rep, err := run(t, dst, tc.file, WithIncompatible(TrimIncompatible))
			if err != nil {
				t.Fatalf("%s trimmed: %v", tc.key, err)
			}
			inc := rep.Incompatible
			if inc.Trimmed != 1 || len(inc.Keys) != 1 || inc.Keys[0].Key != tc.key || !inc.Keys[0].Trimmed || !strings.Contains(inc.Keys[0].Reason, tc.says) {
				t.Errorf("%s trimmed: Report.Incompatible %+v", tc.key, inc)
			}
			if rep.Keys != 2 {
				t.Errorf("%s trimmed: %d keys copied, want 2", tc.key, rep.Keys)
			}
			if v, _ := dst.Do(t, 0, "GET", tc.kept).ToString(); v != "v" {
				t.Errorf("%s trimmed: %q = %q, want v", tc.key, tc.kept, v)
			}
		}
		got, _ := dst.Do(t, 0, "SMEMBERS", "with-meta").AsStrSlice()
		if slices.Sort(got); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("with-meta trimmed: %v, want [a b]", got)
		}
		rep, err := run(t, dst, valkeyFile, WithIncompatible(TrimIncompatible))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := dst.Do(t, 0, "HGETALL", "h2").AsStrMap(); len(got) != 2 || got["f1"] != "v1" || got["f2"] != "v2" || rep.Incompatible.Trimmed != 1 {
			t.Errorf("h2 trimmed: %v (report %+v), want f1 and f2 without TTLs", got, rep.Incompatible)
		}
		rep, err = run(t, dst, valkeyFile, WithIncompatible(SkipIncompatible))
		if err != nil || rep.Skipped != 1 || rep.Keys != 1 || rep.Incompatible.Skipped != 1 {
			t.Errorf("h2 skipped: %v, report %s %+v", err, rep, rep.Incompatible)
		}
		if n, _ := dst.Do(t, 0, "EXISTS", "h2").AsInt64(); n != 0 {
			t.Errorf("the skipped h2 is on the target")
		}
	})

	t.Run("into 7.4", func(t *testing.T) {
		t.Parallel()
		dst := redistest.StartRelease(t, redistest.FindRelease(t, "redis-7.4"), redistest.Config{})
		rep, err := run(t, dst, valkeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Keys != 2 || len(rep.Incompatible.Keys) != 0 {
			t.Errorf("report %s %+v, want 2 keys copied whole", rep, rep.Incompatible)
		}
		got, _ := dst.Do(t, 0, "HPEXPIRETIME", "h2", "FIELDS", "2", "f1", "f2").AsIntSlice()
		if !slices.Equal(got, []int64{-1, 1893456000000}) {
			t.Errorf("h2's field expiries on Redis 7.4: %v, want [-1 1893456000000]", got)
		}
	})
}

// TestModuleValueWithoutModules restores, from a hand-built file, a module value onto a
// target that runs no module: refused with the key and the module type named (Redis 5.0
// would exit on the RESTORE), or left out and listed with SkipIncompatible.
func TestModuleValueWithoutModules(t *testing.T) {
	t.Parallel()
	var id uint64
	for _, c := range "mymodtype" {
		id = id<<6 | uint64(strings.IndexRune(moduleTypeChars, c))
	}
	var b rdbBuilder
	b.WriteByte(rdbOpSelectDB)
	b.length(0)
	b.WriteByte(RDBTypeModule2)
	b.str("mod")
	b.length(id<<10 | 1) // the module type's id and its encoding version
	b.length(2)          // RDB_MODULE_OPCODE_UINT
	b.length(5)
	b.length(0) // RDB_MODULE_OPCODE_EOF
	b.WriteByte(RDBTypeString)
	b.str("s")
	b.str("v")
	file := writeRDBFile(t, "REDIS", 9, b.Bytes())
	src := redistest.Start(t, redistest.Config{}) // not read with FromFile; it only has to answer
	dst := redistest.Start(t, redistest.Config{})
	run := func(opts ...Option) (*Report, error) {
		dst.Do(t, 0, "FLUSHALL")
		return restoreFile(t, src, dst, file, opts...)
	}
	_, err := run()
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `"mod"`) || !strings.Contains(err.Error(), `module type "mymodtype"`) {
		t.Errorf("%v, want ErrIncompatible naming the key and its module type", err)
	}
	rep, err := run(WithIncompatible(SkipIncompatible))
	if err != nil || rep.Keys != 1 || rep.Skipped != 1 || len(rep.Incompatible.Keys) != 1 || rep.Incompatible.Keys[0].Key != "mod" {
		t.Errorf("skipped: %v, report %s %+v", err, rep, rep.Incompatible)
	}
	if v, _ := dst.Do(t, 0, "GET", "s").ToString(); v != "v" {
		t.Errorf("s = %q, want v", v)
	}
}

// TestDowngradeEncodings checks the encodings no target of the test machine reads: sorted
// sets with text scores (before RDB 8), and the widest lengths.
func TestDowngradeEncodings(t *testing.T) {
	d := &downgrader{version: 7}
	entries := []zsetEntry{{"a", 1.5}, {"b", math.Inf(1)}, {"c", math.Inf(-1)}, {"d", 0.1}, {"e", -3}}
	out := d.appendZSet(entries, 0)
	if out[0] != RDBTypeZSet {
		t.Fatalf("type %d, want %d", out[0], RDBTypeZSet)
	}
	got, ok := zsetEntries(out[0], string(out[1:]))
	if !ok || !slices.Equal(got, entries) {
		t.Errorf("text scores read back as %v (ok %v), want %v", got, ok, entries)
	}
	d.version = 9
	if out := d.appendZSet(entries, 0); out[0] != RDBTypeZSet2 {
		t.Errorf("RDB 9: type %d, want %d", out[0], RDBTypeZSet2)
	}
	now := time.Now().UnixMilli()
	fields := []hashField{{"f", "v", 0}, {"g", "w", now + 60000}, {"gone", "x", now - 1}}
	for _, tc := range []struct {
		version int
		valkey  bool
		typ     byte
	}{{12, false, RDBTypeHashMetadata}, {80, true, RDBTypeValkeyHash2}} {
		d := &downgrader{version: tc.version, valkey: tc.valkey}
		p, res := d.rewriteHash(slices.Clone(fields), 0, now, false)
		got, ok := hashFields(p[0], p[1:len(p)-10], tc.valkey)
		if res.unfit != "" || p[0] != tc.typ || !ok || !slices.Equal(got, fields[:2]) {
			t.Errorf("RDB %d: hash with field TTLs read back as type %d %v (ok %v, %+v), want type %d %v", tc.version, p[0], got, ok, res, tc.typ, fields[:2])
		}
	}
	for _, n := range []uint64{0, 63, 64, 16383, 16384, math.MaxUint32, math.MaxUint32 + 1} {
		b := appendRDBLength(nil, n)
		if got, rest, ok := rdbLength(string(b)); !ok || got != n || rest != "" {
			t.Errorf("length %d read back as %d (ok %v, %d bytes left)", n, got, ok, len(rest))
		}
	}
}

// TestFunctionPayload checks the payload a function library is restored with: as it is
// on a target that reads it, with the target's RDB version on an older one from Redis 7.0
// (whose FUNCTION RESTORE takes it), refused before 7.0.
func TestFunctionPayload(t *testing.T) {
	payload := []byte{rdbOpFunction2, 3, 'a', 'b', 'c'}
	payload = binary.LittleEndian.AppendUint16(payload, 12)
	payload = binary.LittleEndian.AppendUint64(payload, crc64Jones(0, payload))
	job := func(version string) *Job {
		return &Job{Target: &Endpoint{Info: &ServerInfo{Version: version, Product: "Redis", ProductVersion: version}}}
	}
	if got, err := functionPayload(job("7.4.1"), payload); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("Redis 7.4: %x, %v; want the payload as it is", got, err)
	}
	got, err := functionPayload(job("7.0.15"), payload)
	if err != nil || len(got) != len(payload) || binary.LittleEndian.Uint16(got[len(got)-10:]) != 10 ||
		crc64Jones(0, got[:len(got)-8]) != binary.LittleEndian.Uint64(got[len(got)-8:]) || !bytes.Equal(got[:5], payload[:5]) {
		t.Errorf("Redis 7.0: %x, %v; want the code with RDB 10 and a fresh checksum", got, err)
	}
	if _, err := functionPayload(job("6.2.14"), payload); !errors.Is(err, ErrIncompatible) {
		t.Errorf("Redis 6.2: %v, want ErrIncompatible", err)
	}
}

// FuzzRewrite gives the rewriter arbitrary values of every type it rewrites, for every
// target: it must never panic, and what it returns must decode as a payload of the target's
// version.
func FuzzRewrite(f *testing.F) {
	for _, t := range []byte{RDBTypeListQuicklist2, RDBTypeSetListpack, RDBTypeZSetListpack, RDBTypeHashListpack, RDBTypeHashListpackEx,
		RDBTypeHashMetadata, RDBTypeStreamListpacks3, RDBTypeStreamListpacks2, rdbOpKeyMeta, RDBTypeValkeyHash2,
		RDBTypeStreamListpacks4, RDBTypeStreamListpacks5} {
		f.Add(t, []byte{2, 1, 0x81, 0xff}, uint16(12), uint8(9), true)
	}
	f.Add(RDBTypeHashMetadata, append(binary.LittleEndian.AppendUint64(nil, 1000), 1, 1, 1, 'f', 1, 'v'), uint16(12), uint8(10), false)
	f.Add(RDBTypeStreamListpacks5, streamTail(RDBTypeStreamListpacks5, streamHead(), true, 1), uint16(14), uint8(12), true)
	f.Add(RDBTypeStreamListpacks4, streamTail(RDBTypeStreamListpacks4, streamHead(), false, 2), uint16(13), uint8(10), false)
	f.Fuzz(func(t *testing.T, typ byte, value []byte, from uint16, to uint8, trim bool) {
		d := &downgrader{version: int(to), limits: defaultCompactLimits, j: &Job{Settings: Settings{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Target: &Endpoint{Info: &ServerInfo{Version: "5.0.0"}}}}
		body := append(append([]byte{typ}, value...), byte(from), byte(from>>8))
		out, res := d.rewrite(string(body), int(from), 500, trim)
		if res.unfit != "" || res.gone {
			return
		}
		if len(out) < 11 || int(binary.LittleEndian.Uint16([]byte(out[len(out)-10:]))) != int(to) ||
			crc64Jones(0, out[:len(out)-8]) != binary.LittleEndian.Uint64([]byte(out[len(out)-8:])) {
			t.Fatalf("rewrite of type %d gave a bad payload %x", typ, out)
		}
		// A value without field TTLs is the same value after the rewrite, whatever the
		// encoding it is written in.
		if typ == RDBTypeHashMetadata || typ == RDBTypeHashListpackEx || typ == RDBTypeHashMetadataPreGA || typ == RDBTypeHashListpackExPreGA ||
			from > rdbMaxVersion || int(to) > rdbMaxVersion {
			return
		}
		in := string(binary.LittleEndian.AppendUint64(body, crc64Jones(0, body)))
		if typIn, canonIn, ok := canonicalPayload(in); ok {
			if typOut, canonOut, ok := canonicalPayload(out); !ok || typOut != typIn || canonOut != canonIn {
				t.Fatalf("rewrite of type %d changed the value: %x into %x", typ, in, out)
			}
		}
	})
}

// TestDowngradeNewerStreams restores, from hand-built files, the streams of Redis 8.6
// (type 26: idempotent producers) and 8.8 (type 27: NACKed entries) onto Redis 7.0, their
// nodes taken from a real server's DUMP. With neither part they are rewritten as type 19;
// with one, refused by default with the key named, or copied without it under
// TrimIncompatible: the NACKed entry is no longer pending, the owned one still is.
func TestDowngradeNewerStreams(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{})
	for ms := 1; ms <= 3; ms++ {
		src.Do(t, 0, "XADD", "s", strconv.Itoa(ms)+"-1", "f", "v"+strconv.Itoa(ms))
	}
	dump, err := src.Do(t, 0, "DUMP", "s").ToString()
	if err != nil || dump[0] != RDBTypeStreamListpacks2 || dump[len(dump)-11] != 0 {
		t.Fatalf("DUMP of a stream without groups: %q, %v", dump, err)
	}
	head := []byte(dump[1 : len(dump)-11]) // up to its group count, 0

	file := func(version int, typ byte, name string, nack bool, producers int) string {
		var b rdbBuilder
		b.WriteByte(rdbOpSelectDB)
		b.length(0)
		b.WriteByte(typ)
		b.str(name)
		b.Write(streamTail(typ, head, nack, producers))
		return writeRDBFile(t, "REDIS", version, b.Bytes())
	}
	run := func(file string, opts ...Option) (*Report, error) {
		t.Helper()
		dst.Do(t, 0, "FLUSHALL")
		return restoreFile(t, src, dst, file, opts...)
	}
	// pending checks the stream's entries, and the pending entries of group g with their owners.
	pending := func(name string, want ...string) {
		t.Helper()
		if n, _ := dst.Do(t, 0, "XLEN", name).AsInt64(); n != 3 {
			t.Errorf("%s: XLEN %d, want 3", name, n)
		}
		pel, err := dst.Do(t, 0, "XPENDING", name, "g", "-", "+", "10").ToArray()
		var got []string
		for _, e := range pel {
			f, _ := e.ToArray()
			id, _ := f[0].ToString()
			owner, _ := f[1].ToString()
			got = append(got, id+":"+owner)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: pending %v (%v), want %v", name, got, err, want)
		}
	}

	for _, tc := range []struct {
		name      string
		file      string
		says      string
		whole     bool
		wantAfter []string
	}{
		{"s26-plain", file(13, RDBTypeStreamListpacks4, "s26-plain", false, 0), "", true, []string{"1-1:c"}},
		{"s27-plain", file(14, RDBTypeStreamListpacks5, "s27-plain", false, 0), "", true, []string{"1-1:c"}},
		{"s26", file(13, RDBTypeStreamListpacks4, "s26", false, 2), "idempotent IDs of 2 producers", false, []string{"1-1:c"}},
		{"s27", file(14, RDBTypeStreamListpacks5, "s27", true, 1), "1 negatively acknowledged", false, []string{"1-1:c"}},
	} {
		if tc.whole {
			rep, err := run(tc.file)
			if err != nil || rep.Keys != 1 || len(rep.Incompatible.Keys) != 0 {
				t.Errorf("%s: %v, report %s %+v", tc.name, err, rep, rep.Incompatible)
			}
			pending(tc.name, tc.wantAfter...)
			continue
		}
		_, err := run(tc.file)
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `"`+tc.name+`"`) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrIncompatible naming the key and saying %q", tc.name, err, tc.says)
		}
		rep, err := run(tc.file, WithIncompatible(TrimIncompatible))
		if err != nil || rep.Keys != 1 || rep.Incompatible.Trimmed != 1 || !strings.Contains(rep.Incompatible.Keys[0].Reason, tc.says) {
			t.Fatalf("%s trimmed: %v, report %s %+v", tc.name, err, rep, rep.Incompatible)
		}
		pending(tc.name, tc.wantAfter...)
	}
}

// restoreFile runs a Snapshot of the RDB file into dst (FLUSHALL first is the caller's); src
// is not read, it only has to answer.
func restoreFile(t *testing.T, src, dst *redistest.Server, file string, opts ...Option) (*Report, error) {
	t.Helper()
	m, err := New(src.Option(), dst.Option(), append([]Option{WithStrategy(Snapshot{FromFile: file})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return m.Migrate(ctx)
}

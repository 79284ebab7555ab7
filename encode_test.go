package migrate

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCompactEncodings writes hashes, sorted sets, lists and sets in the compact encodings
// of an RDB 9 target and reads them back with the package's readers: the type is the
// compact one within the limits, the plain one beyond, and the content is exact (integers
// of every width, binary strings, long strings, special scores).
func TestCompactEncodings(t *testing.T) {
	d := &downgrader{version: 9, limits: defaultCompactLimits}
	ints := []string{"0", "12", "13", "-1", "127", "-128", "128", "32767", "-32768", "32768", "8388607", "-8388608",
		"8388608", "2147483647", "-2147483648", "2147483648", "9223372036854775807", "-9223372036854775808"}
	odd := []string{"", "+1", "01", "-0", " 1", "1 ", "\x00\xff", strings.Repeat("x", 63), strings.Repeat("y", 64),
		"99999999999999999999", "1.5", strings.Repeat("7", 31)}
	mixed := append(slices.Clone(ints), odd...)

	var fields []hashField
	for i, s := range mixed {
		fields = append(fields, hashField{field: s[:min(len(s), 8)] + "f" + strconv.Itoa(i), value: s})
	}
	body := d.compactHash(fields)
	if body == nil || body[0] != RDBTypeHashZiplist {
		t.Fatalf("hash: %x, want a ziplist hash", body)
	}
	if got, ok := hashFields(body[0], string(body[1:]), false); !ok || !slices.Equal(got, fields) {
		t.Errorf("ziplist hash read back as %v (ok %v), want %v", got, ok, fields)
	}
	if d.compactHash(append(fields, hashField{field: "big", value: strings.Repeat("v", 65)})) != nil {
		t.Error("a hash with a 65-byte value was written as a ziplist")
	}
	many := make([]hashField, 129)
	for i := range many {
		many[i] = hashField{field: strconv.Itoa(i), value: "v"}
	}
	if d.compactHash(many[:128]) == nil || d.compactHash(many) != nil {
		t.Error("hash-max-ziplist-entries 128 not kept to")
	}

	entries := []zsetEntry{{"b", 1.5}, {"a", 1.5}, {"inf", math.Inf(1)}, {"-inf", math.Inf(-1)}, {"neg0", math.Copysign(0, -1)},
		{"big", 1e20}, {"int", 4503599627370495}, {"tiny", 5e-324}, {"third", 1.0 / 3}, {"\x00bin", -7}}
	body = d.compactZSet(entries)
	if body == nil || body[0] != RDBTypeZSetZiplist {
		t.Fatalf("zset: %x, want a ziplist zset", body)
	}
	got, ok := zsetEntries(body[0], string(body[1:]))
	want := slices.SortedFunc(slices.Values(entries), compareZSetEntries)
	if !ok || !slices.EqualFunc(got, want, func(a, b zsetEntry) bool {
		return a.member == b.member && a.score == b.score && math.Signbit(a.score) == math.Signbit(b.score)
	}) {
		t.Errorf("ziplist zset read back as %v (ok %v), want %v", got, ok, want)
	}

	long := slices.Clone(mixed)
	for i := range 2000 {
		long = append(long, strconv.Itoa(i*7919), strings.Repeat("z", i%300))
	}
	long = append(long, strings.Repeat("L", 20000), "end")
	body = d.compactList(long)
	if body == nil || body[0] != RDBTypeListQuicklist {
		t.Fatalf("list: %x, want a quicklist", body)
	}
	if elems, ok := listElements(body[0], string(body[1:])); !ok || !slices.Equal(elems, long) {
		t.Errorf("quicklist read back as %d elements (ok %v), want %d", len(elems), ok, len(long))
	}
	if nodes, _, _ := rdbLength(string(body[1:])); nodes < 2 {
		t.Errorf("a list of %d elements was written in %d nodes", len(long), nodes)
	}

	for _, members := range [][]string{{"1", "-2", "3"}, {"70000", "1"}, {"-9223372036854775808", "5"}, ints} {
		body = d.compactSet(members)
		if body == nil || body[0] != RDBTypeSetIntset {
			t.Fatalf("set %q: %x, want an intset", members, body)
		}
		got, ok := setMembers(body[0], string(body[1:]))
		if !ok || !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(members))) {
			t.Errorf("intset read back as %q (ok %v), want %q", got, ok, members)
		}
	}
	for _, s := range odd {
		if d.compactSet([]string{"1", s}) != nil {
			t.Errorf("a set with %q was written as an intset", s)
		}
	}
	over := make([]string, 513)
	for i := range over {
		over[i] = strconv.Itoa(i)
	}
	if d.compactSet(over[:512]) == nil || d.compactSet(over) != nil {
		t.Error("set-max-intset-entries 512 not kept to")
	}
	if (&downgrader{version: 10, limits: defaultCompactLimits}).compactHash(fields) != nil {
		t.Error("a ziplist hash was written for RDB 10, which has listpacks")
	}
}

// TestListpackAsZiplist checks that a listpack hash or sorted set converted entry by entry
// gives the same bytes as the one decoded and then encoded, and that what the target
// would not hold as a ziplist is left to the decoding path.
func TestListpackAsZiplist(t *testing.T) {
	d := &downgrader{version: 9, limits: defaultCompactLimits}
	hash := testListpack("f", "v", "n", "-1000", "bin", "\x00\xff", "long", strings.Repeat("x", 63))
	want := d.compactHash([]hashField{{field: "f", value: "v"}, {field: "n", value: "-1000"}, {field: "bin", value: "\x00\xff"}, {field: "long", value: strings.Repeat("x", 63)}})
	if got := d.listpackHashAsZiplist(hash); string(got) != string(want) || want == nil {
		t.Errorf("listpack hash as a ziplist: %x, want %x", got, want)
	}
	if got := d.listpackHashAsZiplist(testListpack("f", strings.Repeat("x", 65))); got != nil {
		t.Errorf("a listpack hash with a 65-byte value was converted: %x", got)
	}
	zset := testListpack("a", "-1000", "b", "0.5", "c", "0.5", "d", "3")
	wantZ := d.compactZSet([]zsetEntry{{"a", -1000}, {"b", 0.5}, {"c", 0.5}, {"d", 3}})
	if got := d.listpackZSetAsZiplist(zset); string(got) != string(wantZ) || wantZ == nil {
		t.Errorf("listpack zset as a ziplist: %x, want %x", got, wantZ)
	}
	for _, bad := range []string{testListpack("b", "1", "a", "1"), testListpack("a", "x"), testListpack("a", "1", "b")} {
		if got := d.listpackZSetAsZiplist(bad); got != nil {
			t.Errorf("listpack %x (out of order, not a score, odd) converted: %x", bad, got)
		}
	}
}

// testListpack returns, as an RDB string, a listpack of elems: 13-bit integers where they
// are ones, strings of up to 63 bytes.
func testListpack(elems ...string) string {
	b := make([]byte, 6)
	for _, e := range elems {
		if v, err := strconv.Atoi(e); err == nil && v >= -4096 && v < 4096 && strconv.Itoa(v) == e {
			b = append(b, 0xc0|byte(v>>8)&0x1f, byte(v), 2)
			continue
		}
		b = append(append(append(b, 0x80|byte(len(e))), e...), byte(1+len(e)))
	}
	b = append(b, 0xff)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	binary.LittleEndian.PutUint16(b[4:], uint16(len(elems)))
	return string(appendRDBString(nil, string(b)))
}

// FuzzZiplist writes arbitrary strings into a ziplist and reads them back.
func FuzzZiplist(f *testing.F) {
	f.Add("a\x00-1\x0012\x00" + strings.Repeat("x", 300) + "\x009223372036854775807")
	f.Fuzz(func(t *testing.T, joined string) {
		elems := strings.Split(joined, "\x00")
		z := startZiplist(nil)
		for _, e := range elems {
			z.add(e)
			v, ok := redisInt(e)
			w, err := strconv.ParseInt(e, 10, 64)
			if want := err == nil && strconv.FormatInt(w, 10) == e; ok != want || ok && v != w {
				t.Fatalf("redisInt(%q) = %d, %v; want %d, %v", e, v, ok, w, want)
			}
		}
		zl, rest, ok := nextString(string(z.done()))
		if !ok || rest != "" {
			t.Fatalf("ziplist of %q is not one RDB string", elems)
		}
		got, ok := ziplistEntries(zl)
		if !ok || !slices.Equal(got, elems) {
			t.Fatalf("ziplist of %q read back as %q (ok %v)", elems, got, ok)
		}
	})
}

// TestDowngradeCompactEncodings copies hashes, sorted sets, lists and sets from Redis 7.4
// into Redis 5.0, 6.2 (with smaller limits of its own, and sanitize-dump-payload checking
// each payload in full) and 7.0, sized just under and just over the compact encodings'
// limits, with integer and binary elements: each lands exact, in the encoding the target
// gives the same value written by commands.
func TestDowngradeCompactEncodings(t *testing.T) {
	t.Parallel()
	src := redistest.StartRelease(t, redistest.FindRelease(t, "redis-7.4"), redistest.Config{})
	type key struct {
		name string
		cmd  []string
	}
	var keys []key
	add := func(name string, cmd ...string) {
		keys = append(keys, key{name, append(cmd[:1:1], append([]string{name}, cmd[1:]...)...)})
	}
	for _, n := range []int{3, 4, 5, 128, 129} {
		for _, size := range []int{1, 64, 65} {
			suffix := strconv.Itoa(n) + ":" + strconv.Itoa(size)
			h, z, l, s := []string{"HSET"}, []string{"ZADD"}, []string{"RPUSH"}, []string{"SADD"}
			for i := range n {
				v := strings.Repeat("\xff", size-1) + strconv.Itoa(i%10)
				h = append(h, "f"+strconv.Itoa(i), v)
				z = append(z, strconv.FormatFloat(float64(i%7)/4-1, 'g', -1, 64), v[:size-1]+strconv.Itoa(i))
				l = append(l, v, strconv.Itoa(i*1000003-5000))
				s = append(s, v[:size-1]+strconv.Itoa(i))
			}
			add("h:"+suffix, h...)
			add("z:"+suffix, z...)
			add("l:"+suffix, l...)
			add("s:"+suffix, s...)
		}
		ints := []string{"SADD"}
		for i := range n {
			ints = append(ints, strconv.Itoa((i-n/2)*40000))
		}
		add("si:"+strconv.Itoa(n), ints...)
	}
	add("si:512", slices.Concat([]string{"SADD"}, intRange(512))...)
	add("si:513", slices.Concat([]string{"SADD"}, intRange(513))...)
	add("si:wide", "SADD", "-9223372036854775808", "9223372036854775807", "0")
	add("si:notint", "SADD", "1", "2", "+3")
	add("l:big", slices.Concat([]string{"RPUSH"}, intRange(3000), []string{strings.Repeat("B", 10000)}, intRange(10))...)
	for _, k := range keys {
		src.Do(t, 0, k.cmd...)
	}
	// Scores whose text differs between versions (DEBUG DIGEST-VALUE with them), in db 2,
	// compared by value.
	scores := []string{"ZADD", "z:scores", "inf", "a", "-inf", "b", "-0", "c", "1e20", "d", "0.1", "e", "4503599627370495", "f", "-1.5", "g"}
	src.Do(t, 2, scores...)
	zrange := func(s *redistest.Server) []zsetEntry {
		members, err := s.Do(t, 2, "ZRANGE", "z:scores", "0", "-1").AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		var out []zsetEntry
		for _, m := range members {
			f, err := s.Do(t, 2, "ZSCORE", "z:scores", m).AsFloat64()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, zsetEntry{m, f})
		}
		return out
	}
	wantScores := zrange(src)

	for _, tc := range []struct {
		release string
		lines   []string
	}{
		{"redis-5.0", nil},
		{"redis-6.2", []string{"sanitize-dump-payload yes", "hash-max-ziplist-entries 4", "zset-max-ziplist-value 16", "set-max-intset-entries 4", "list-max-ziplist-size 5"}},
		{"redis-server", nil},
	} {
		t.Run(tc.release, func(t *testing.T) {
			t.Parallel()
			rel := redistest.FindRelease(t, tc.release)
			dst := redistest.StartRelease(t, rel, redistest.Config{Lines: tc.lines})
			for _, k := range keys {
				dst.Do(t, 1, k.cmd...) // what the target builds itself
			}
			m, err := New(src.Option(), dst.Option(), WithStrategy(DumpRestore{}))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := m.Migrate(ctx)
			if err != nil || rep.Keys != int64(len(keys))+1 {
				t.Fatalf("migrate: %v, report %s; want %d keys", err, rep, len(keys))
			}
			redistest.AssertSame(t, src, dst, 0)
			if got := zrange(dst); !slices.Equal(got, wantScores) {
				t.Errorf("z:scores: %v, want %v", got, wantScores)
			}
			compact := 0
			for _, k := range keys {
				got, _ := dst.Do(t, 0, "OBJECT", "ENCODING", k.name).ToString()
				want, _ := dst.Do(t, 1, "OBJECT", "ENCODING", k.name).ToString()
				if got != want {
					t.Errorf("%s: encoding %s, want %s as the target builds it", k.name, got, want)
				}
				if got == "ziplist" || got == "intset" || got == "listpack" {
					compact++
				}
			}
			if compact < 10 {
				t.Errorf("only %d keys in a compact encoding", compact)
			}
		})
	}
}

func intRange(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

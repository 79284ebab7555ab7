package migrate

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// payloadCase makes one key on a server: config is CONFIG SET name/value pairs (and DEBUG
// commands) that choose its encoding, restored afterwards; a case whose configuration the
// server does not know is left out on that server.
type payloadCase struct {
	name   string
	config [][]string
	cmds   [][]string // each run with the key's name in place of "K"
}

func payloadCases() []payloadCase {
	big := strings.Repeat("x", 300)
	huge := strings.Repeat("y", 5000)
	lzf := strings.Repeat("abcd", 200)
	ints := []string{"0", "7", "12", "13", "100", "-100", "1000", "-5000", "100000", "-8388608", "8388607",
		"2147483647", "-2147483648", "4294967296", "-9223372036854775808", "9223372036854775807", "007", "1.5"}
	members := append([]string{"a", "bb", "", big, huge, lzf, "\x00bin\xff"}, ints...)
	rpush := append([]string{"RPUSH", "K"}, members...)
	sadd := append([]string{"SADD", "K"}, members...)
	intsAdd := append([]string{"SADD", "K"}, "1", "-2", "300", "-40000", "70000", "-5000000000", "9223372036854775807")
	zadd := []string{"ZADD", "K", "1", "a", "1", "b", "1.5", "c", "-2.25", "d", "1e300", "e", "inf", "f", "-inf", "g",
		"0.1", "h", "-0", "zero", "123456789012", "n", "5", "12"}
	hset := []string{"HSET", "K"}
	for i, m := range members {
		hset = append(hset, m, members[(i+3)%len(members)])
	}
	wide := []string{"HSET", "K"} // the case: five fields of 65 bytes
	for i := range 5 {
		wide = append(wide, fmt.Sprintf("field-%d-%s", i, strings.Repeat("f", 57)), strings.Repeat(strconv.Itoa(i), 65))
	}
	small := []string{"HSET", "K", "a", "1", "bb", "-7", "12", "x", "c", strings.Repeat("v", 40)}
	hashtable := [][]string{{"hash-max-ziplist-entries", "0"}}
	return []payloadCase{
		{name: "string", cmds: [][]string{{"SET", "K", "v"}}},
		{name: "string-int", cmds: [][]string{{"SET", "K", "-123456"}}},
		{name: "string-int64", cmds: [][]string{{"SET", "K", "9223372036854775807"}}},
		{name: "string-lzf", cmds: [][]string{{"SET", "K", lzf}}},
		{name: "string-binary", cmds: [][]string{{"SET", "K", "\x00\x01\xff"}}},
		{name: "list-small", cmds: [][]string{rpush[:6]}},
		{name: "list-packed", cmds: [][]string{rpush}},
		{name: "list-nodes", config: [][]string{{"list-max-ziplist-size", "2"}}, cmds: [][]string{rpush}},
		{name: "list-compressed", config: [][]string{{"list-max-ziplist-size", "2"}, {"list-compress-depth", "1"}}, cmds: [][]string{rpush}},
		{name: "list-plain", config: [][]string{{"DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"}}, cmds: [][]string{rpush}},
		{name: "set-strings", cmds: [][]string{sadd}},
		{name: "set-small", cmds: [][]string{{"SADD", "K", "a", "b", "c", "12"}}},
		{name: "set-hashtable", config: [][]string{{"set-max-listpack-entries", "0"}}, cmds: [][]string{{"SADD", "K", "a", "b", "c", "12"}}},
		{name: "set-intset16", cmds: [][]string{{"SADD", "K", "1", "-2", "300"}}},
		{name: "set-intset64", cmds: [][]string{intsAdd}},
		{name: "set-big-strings", cmds: [][]string{{"SADD", "K", strings.Repeat("m", 65), strings.Repeat("n", 65), strings.Repeat("o", 65), "p", "q"}}},
		{name: "zset-small", cmds: [][]string{zadd}},
		{name: "zset-big", cmds: [][]string{append(slices.Clone(zadd), "3", big)}},
		{name: "zset-skiplist", config: [][]string{{"zset-max-ziplist-entries", "0"}}, cmds: [][]string{zadd}},
		{name: "hash-small", cmds: [][]string{small}},
		{name: "hash-packed", cmds: [][]string{hset}},
		{name: "hash-hashtable", config: hashtable, cmds: [][]string{hset}},
		{name: "hash-wide-fields", config: hashtable, cmds: [][]string{wide}},
		{name: "hash-field-ttl", cmds: [][]string{small, {"HPEXPIRE", "K", "600000", "FIELDS", "1", "a"}}},
		{name: "hash-field-ttl-hashtable", config: hashtable, cmds: [][]string{hset, {"HPEXPIRE", "K", "600000", "FIELDS", "2", "a", "bb"}}},
	}
}

// TestCanonicalPayload creates keys of every type in every encoding on real servers (the
// installed one, and the releases of the version matrix when it is there), DUMPs them, and checks
// that canonicalPayload decodes each payload into what canonical reads from the live key.
func TestCanonicalPayload(t *testing.T) {
	t.Parallel()
	servers := map[string]*redistest.Server{"installed": redistest.Start(t, redistest.Config{})}
	if os.Getenv(redistest.ServersEnv) != "" {
		for _, name := range []string{"redis-5.0", "redis-6.2", "redis-7.2", "redis-7.4"} {
			servers[name] = redistest.StartRelease(t, redistest.FindRelease(t, name), redistest.Config{})
		}
	} else {
		t.Log("only the installed server: set MIGRATE_TEST_SERVERS to test the encodings of other releases")
	}
	seen := map[byte]bool{}
	for name, srv := range servers {
		t.Run(name, func(t *testing.T) {
			checkServerPayloads(t, srv, seen)
		})
	}
	t.Run("handmade", func(t *testing.T) {
		checkHandmadePayloads(t, servers["installed"], seen)
	})
	var types []int
	for b := range seen {
		types = append(types, int(b))
	}
	t.Logf("payload types decoded: %v", types)
	want := []byte{RDBTypeString, RDBTypeList, RDBTypeSet, RDBTypeZSet, RDBTypeHash, RDBTypeZSet2, RDBTypeHashZipmap,
		RDBTypeListZiplist, RDBTypeSetIntset, RDBTypeZSetZiplist, RDBTypeHashZiplist, RDBTypeListQuicklist,
		RDBTypeHashListpack, RDBTypeZSetListpack, RDBTypeListQuicklist2}
	if len(servers) > 1 {
		want = append(want, RDBTypeSetListpack, RDBTypeHashMetadata, RDBTypeHashListpackEx)
	}
	for _, b := range want {
		if !seen[b] {
			t.Errorf("no payload of type %d was decoded", b)
		}
	}
}

// endpointOf returns the source endpoint of a job on srv, for canonical.
func endpointOf(t *testing.T, srv *redistest.Server) *Endpoint {
	t.Helper()
	m, err := New(srv.Option(), srv.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	j, err := m.(*migrator).job(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return j.Source
}

func checkServerPayloads(t *testing.T, srv *redistest.Server, seen map[byte]bool) {
	ctx := context.Background()
	e := endpointOf(t, srv)
	c := srv.Client(t, 0)
	do := func(args ...string) error {
		return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
	}
	for _, tc := range payloadCases() {
		key := "key:" + tc.name
		var restore [][]string
		usable := true
		for _, cfg := range tc.config {
			if cfg[0] == "DEBUG" {
				if do(cfg...) != nil {
					usable = false
				}
				restore = append(restore, []string{cfg[0], cfg[1], "1073741824"})
				continue
			}
			old, err := c.Do(ctx, c.B().ConfigGet().Parameter(cfg[0]).Build()).AsStrMap()
			if err != nil || old[cfg[0]] == "" || do("CONFIG", "SET", cfg[0], cfg[1]) != nil {
				usable = false
				break
			}
			restore = append(restore, []string{"CONFIG", "SET", cfg[0], old[cfg[0]]})
		}
		for _, cmd := range tc.cmds {
			if !usable {
				break
			}
			args := slicesReplace(cmd, "K", key)
			if err := do(args...); err != nil {
				if strings.Contains(err.Error(), "unknown command") {
					usable = false // HPEXPIRE before 7.4
					break
				}
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		for _, cmd := range restore {
			_ = do(cmd...)
		}
		if !usable {
			continue
		}
		payload, err := c.Do(ctx, c.B().Dump().Key(key).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		typ, err := c.Do(ctx, c.B().Type().Key(key).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		want, err := canonical(ctx, e, 0, key, typ)
		if err != nil {
			t.Fatal(err)
		}
		gotTyp, got, ok := canonicalPayload(payload)
		seen[payload[0]] = true
		if !ok || gotTyp != typ || got != want {
			t.Errorf("%s (payload type %d): canonicalPayload = %q, %.200q, %v; canonical = %q, %.200q",
				tc.name, payload[0], gotTyp, got, ok, typ, want)
		}
	}
}

func slicesReplace(s []string, old, new string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = v
		if v == old {
			out[i] = new
		}
	}
	return out
}

// handmadePayloads are payloads of encodings no server in the test writes any more (Redis
// before 2.6, 3.2 and 4.0), built here by hand.
func handmadePayloads() map[string]string {
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) } // len < 64
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	zl := ziplistOf(
		[]byte{0x02, 'a', 'b'},                                 // 6-bit string
		[]byte{0xf1 + 5},                                       // immediate 5
		[]byte{0xfe, 0x9c},                                     // int8 -100
		[]byte{0xc0, 0x18, 0xfc},                               // int16 -1000
		[]byte{0xf0, 0x40, 0x42, 0x0f},                         // int24 1000000
		[]byte{0xd0, 0x00, 0xca, 0x9a, 0x3b},                   // int32 1000000000
		append([]byte{0xe0}, le64(-5000000000)...),             // int64
		append([]byte{0x40, 100}, strings.Repeat("z", 100)...), // 14-bit string
	)
	zsetZL := ziplistOf([]byte{0x02, 'm', '0'}, []byte{0xfe, 0xfe}, []byte{0x02, 'm', '1'}, []byte{0x03, '1', '.', '5'},
		[]byte{0x02, 'm', '2'}, []byte{0xf1 + 3})
	hashZL := ziplistOf([]byte{0x02, 'f', '1'}, []byte{0x02, 'v', '1'}, []byte{0x02, 'f', '2'}, []byte{0xfe, 0x9c})
	zipmap := cat([]byte{2}, str("f1"), []byte{2, 0}, []byte("v1"), str("f2"), []byte{6, 2}, []byte("value2xx"), []byte{0xff})
	return map[string]string{
		"list-linked":   payloadOf(RDBTypeList, cat([]byte{3}, str("a"), str("bb"), []byte{0xc0, 0x7b})),
		"set-linked":    payloadOf(RDBTypeSet, cat([]byte{3}, str("b"), str("a"), []byte{0xc1, 0x39, 0x30})),
		"hash-linked":   payloadOf(RDBTypeHash, cat([]byte{2}, str("f2"), str("v2"), str("f1"), str("v1"))),
		"zset-text":     payloadOf(RDBTypeZSet, cat([]byte{3}, str("b"), str("2.5"), str("a"), []byte{254}, str("c"), []byte{255})),
		"hash-zipmap":   payloadOf(RDBTypeHashZipmap, cat([]byte{byte(len(zipmap))}, zipmap)),
		"list-ziplist":  payloadOf(RDBTypeListZiplist, rdbBlob(zl)),
		"zset-ziplist":  payloadOf(RDBTypeZSetZiplist, rdbBlob(zsetZL)),
		"hash-ziplist":  payloadOf(RDBTypeHashZiplist, rdbBlob(hashZL)),
		"quicklist":     payloadOf(RDBTypeListQuicklist, cat([]byte{2}, rdbBlob(zl), rdbBlob(ziplistOf([]byte{0x01, 'q'})))),
		"string-int8":   payloadOf(RDBTypeString, []byte{0xc0, 0xf6}),
		"string-int32":  payloadOf(RDBTypeString, []byte{0xc2, 0x00, 0xca, 0x9a, 0x3b}),
		"set-intset-32": payloadOf(RDBTypeSetIntset, rdbBlob(cat(le32(4), le32(2), le32(-70000), le32(70000)))),
	}
}

func checkHandmadePayloads(t *testing.T, srv *redistest.Server, seen map[byte]bool) {
	ctx := context.Background()
	e := endpointOf(t, srv)
	c := srv.Client(t, 0)
	for name, payload := range handmadePayloads() {
		key := "made:" + name
		if err := c.Do(ctx, c.B().Restore().Key(key).Ttl(0).SerializedValue(payload).Build()).Error(); err != nil {
			t.Errorf("%s: the server refuses the payload: %v", name, err)
			continue
		}
		typ, err := c.Do(ctx, c.B().Type().Key(key).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		want, err := canonical(ctx, e, 0, key, typ)
		if err != nil {
			t.Fatal(err)
		}
		gotTyp, got, ok := canonicalPayload(payload)
		seen[payload[0]] = true
		if !ok || gotTyp != typ || got != want {
			t.Errorf("%s: canonicalPayload = %q, %q, %v; canonical = %q, %q", name, gotTyp, got, ok, typ, want)
		}
	}
}

// payloadOf frames value as a DUMP payload of type t, RDB version 6.
func payloadOf(t byte, value []byte) string {
	p := append([]byte{t}, value...)
	p = binary.LittleEndian.AppendUint16(p, 6)
	return string(binary.LittleEndian.AppendUint64(p, crc64Jones(0, p)))
}

// rdbBlob is b as a plain RDB string.
func rdbBlob(b []byte) []byte {
	if len(b) < 64 {
		return append([]byte{byte(len(b))}, b...)
	}
	return append([]byte{0x40 | byte(len(b)>>8), byte(len(b))}, b...)
}

// ziplistOf builds a ziplist of entries, each given as its encoding and data.
func ziplistOf(entries ...[]byte) []byte {
	body := []byte{}
	prev, tail := 0, 10
	for _, e := range entries {
		tail = 10 + len(body)
		body = append(body, byte(prev))
		body = append(body, e...)
		prev = 1 + len(e)
	}
	zl := le32(int32(10 + len(body) + 1))
	zl = append(zl, le32(int32(tail))...)
	zl = binary.LittleEndian.AppendUint16(zl, uint16(len(entries)))
	return append(append(zl, body...), 0xff)
}

func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
func le64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

// TestCanonicalPayloadRefuses checks the payloads that canonicalPayload must not decode.
func TestCanonicalPayloadRefuses(t *testing.T) {
	good := payloadOf(RDBTypeString, []byte{1, 'v'})
	badCRC := []byte(good)
	badCRC[len(badCRC)-1] ^= 1
	newer := []byte{RDBTypeString, 1, 'v', 99, 0}
	for name, p := range map[string]string{
		"empty":    "",
		"short":    good[:5],
		"checksum": string(badCRC),
		"version":  string(binary.LittleEndian.AppendUint64(newer, crc64Jones(0, newer))),
		"trailing": payloadOf(RDBTypeString, []byte{1, 'v', 'w'}),
		"stream":   payloadOf(RDBTypeStreamListpacks2, []byte{0}),
		"module":   payloadOf(RDBTypeModule2, []byte{0}),
		"huge":     payloadOf(RDBTypeList, []byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
	} {
		if typ, canon, ok := canonicalPayload(p); ok {
			t.Errorf("%s: decoded as %q %q", name, typ, canon)
		}
	}
	if typ, canon, ok := canonicalPayload(good); !ok || typ != "string" || canon != "1:v" {
		t.Errorf("good payload: %q %q %v", typ, canon, ok)
	}
}

// FuzzCanonicalPayload decodes arbitrary payloads, with a valid checksum so that the
// decoding itself is exercised: it must never panic, and must allocate in proportion to
// the input whatever lengths it declares.
func FuzzCanonicalPayload(f *testing.F) {
	srv := redistest.Start(f, redistest.Config{})
	c := srv.Client(f, 0)
	ctx := context.Background()
	do := func(args ...string) rueidis.RedisResult {
		return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	}
	for _, tc := range payloadCases() {
		for _, cmd := range tc.cmds {
			_ = do(slicesReplace(cmd, "K", "fuzz:"+tc.name)...)
		}
		if p, err := do("DUMP", "fuzz:"+tc.name).ToString(); err == nil {
			f.Add([]byte(p[:len(p)-8]))
		}
	}
	for _, p := range handmadePayloads() {
		f.Add([]byte(p[:len(p)-8]))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p := binary.LittleEndian.AppendUint64(body, crc64Jones(0, body))
		typ, canon, ok := canonicalPayload(string(p))
		if ok && typ == "" {
			t.Errorf("decoded with no type: %q", canon)
		}
		// LZF may expand 88 times; nothing else grows beyond the input, but for length
		// prefixes of the parts.
		if limit := 100*len(p) + 64; len(canon) > limit {
			t.Errorf("canonical text of %d bytes from a payload of %d", len(canon), len(p))
		}
	})
}

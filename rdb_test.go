package migrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

func TestCRC64JonesCheckValue(t *testing.T) {
	t.Parallel()
	if got := crc64Jones(0, []byte("123456789")); got != 0xe9c6d914c4b8d9ca {
		t.Fatalf("crc64Jones(123456789) = %#x, want 0xe9c6d914c4b8d9ca", got)
	}
	// The slicing-by-8 path must agree with the byte-at-a-time one at every
	// length and split point.
	data := make([]byte, 300)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for n := range data {
		want := uint64(0)
		for _, b := range data[:n] {
			want = crc64JonesByte(want, b)
		}
		if got := crc64Jones(0, data[:n]); got != want {
			t.Fatalf("length %d: slicing %#x, bytewise %#x", n, got, want)
		}
		if got := crc64Jones(crc64Jones(0, data[:n/3]), data[n/3:n]); got != want {
			t.Fatalf("length %d split: %#x, want %#x", n, got, want)
		}
	}
}

// TestRDBReaderRoundTrip writes every kind of value into a real server, reads its
// dump, checks each payload against DUMP, restores the payloads into a second
// server and compares the two servers key by key.
func TestRDBReaderRoundTrip(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{})
	dbs := populate(t, src, true)
	do(t, src.Client(t, 0), "SAVE")

	entries, r := readFile(t, filepath.Join(src.Dir, "dump.rdb"))
	if r.Version() != 10 && redistest.Version(t)/100 == 700 {
		t.Errorf("Version() = %d, want 10 for Redis 7.0", r.Version())
	}
	if r.Aux()["redis-ver"] == "" {
		t.Errorf("Aux() has no redis-ver: %v", r.Aux())
	}
	client := clients(t, src)
	types := map[byte]bool{}
	functions := 0
	for _, e := range entries {
		if e.Kind == RDBFunction {
			functions++
			want := do(t, src.Client(t, 0), "FUNCTION", "DUMP")
			if s, _ := want.ToString(); s != string(e.Payload) {
				t.Errorf("function payload differs from FUNCTION DUMP")
			}
			if e.Key != "mylib" || !strings.Contains(e.Code, "register_function") || e.TypeName() != "function" {
				t.Errorf("function entry: key %q, code %q, type %q", e.Key, e.Code, e.TypeName())
			}
			continue
		}
		types[e.Type] = true
		dump, _ := do(t, client(e.DB), "DUMP", e.Key).ToString()
		if dump != string(e.Payload) {
			t.Errorf("db %d key %q (type %d): payload differs from DUMP (%d vs %d bytes)",
				e.DB, e.Key, e.Type, len(e.Payload), len(dump))
		}
	}
	if functions != 1 {
		t.Errorf("read %d function libraries, want 1", functions)
	}
	for _, want := range []byte{RDBTypeString, RDBTypeListQuicklist2, RDBTypeSet, RDBTypeSetIntset,
		RDBTypeZSet2, RDBTypeZSetListpack, RDBTypeHash, RDBTypeHashListpack, RDBTypeStreamListpacks2} {
		if !types[want] {
			t.Errorf("no value of type %d in the dump", want)
		}
	}
	if failed := restore(t, dst, entries); len(failed) > 0 {
		t.Fatalf("RESTORE failed: %v", failed)
	}
	compareServers(t, src, dst, dbs)
	a, _ := do(t, src.Client(t, 0), "FUNCTION", "LIST", "WITHCODE").ToAny()
	b, _ := do(t, dst.Client(t, 0), "FUNCTION", "LIST", "WITHCODE").ToAny()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("FUNCTION LIST differs:\n%v\n%v", a, b)
	}
}

// populate writes values of every type (all of them when full, else a small
// mix) into srv and returns the databases it used.
func populate(t testing.TB, srv *redistest.Server, full bool) []int {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return string(b)
	}
	seq := func(prefix string, n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = prefix + strconv.Itoa(i)
		}
		return s
	}
	cmds := [][]string{
		{"SET", "int", "12345"}, {"SET", "neg", "-7"}, {"SET", "bigint", "9223372036854775807"},
		{"SET", "12345", "int-encoded key"}, {"SET", "short", "hello"}, {"SET", "empty", ""},
		{"SET", "long", random(60)}, {"SET", "compressible", strings.Repeat("abc", 1000)},
		{"SET", "key:" + strings.Repeat("k", 100), "LZF-compressed key"},
		{"SET", "\x00bin\xffkey\r\n", "binary key"}, {"SET", "ключ🔑", "unicode key"},
		{"SET", "ttl:string", "v", "PX", "500000"},
		{"RPUSH", "list:small", "a", "b", "c", "1", "2"},
		{"SADD", "set:ints", "1", "2", "3", "-100", "100000", "6000000000"},
		{"SADD", "set:small", "a", "b", "c"},
		{"ZADD", "zset:small", "1", "a", "2.5", "b", "-inf", "c", "inf", "d"},
		{"HSET", "hash:small", "f1", "v1", "f2", "12", "f3", ""},
		{"EXPIRE", "hash:small", "1000"},
		{"PFADD", "hll", "a", "b", "c"},
		{"SETBIT", "bitmap", "100000", "1"},
		{"GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"},
		{"XADD", "stream", "1-1", "f", "v1"}, {"XADD", "stream", "1-2", "f", "v2", "g", "x"},
		{"XADD", "stream", "1-3", "f", "v3"}, {"XADD", "stream", "2-1", "f", "v4"},
		{"XADD", "stream", "2-2", "h", "v5"}, {"XADD", "stream", "3-0", "f", "v6"},
		{"XDEL", "stream", "1-3", "2-1"},
		{"XGROUP", "CREATE", "stream", "g1", "0"}, {"XGROUP", "CREATE", "stream", "g2", "$"},
		{"XREADGROUP", "GROUP", "g1", "alice", "COUNT", "2", "STREAMS", "stream", ">"},
		{"XREADGROUP", "GROUP", "g1", "bob", "COUNT", "1", "STREAMS", "stream", ">"},
		{"XACK", "stream", "g1", "1-1"},
		{"XGROUP", "CREATECONSUMER", "stream", "g2", "carol"},
		{"XGROUP", "CREATE", "stream:empty", "g", "$", "MKSTREAM"},
		{"FUNCTION", "LOAD", "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return args[1] end)"},
	}
	if full {
		cmds = append(cmds,
			[]string{"SET", "1mb", random(1 << 20)},
			append([]string{"RPUSH", "list:big"}, seq("element-", 5000)...),
			append([]string{"SADD", "set:big"}, seq("member-", 1000)...),
			append([]string{"SADD", "set:bigints"}, seq("", 1000)...),
			append([]string{"PFADD", "hll:dense"}, seq("e", 5000)...),
		)
		zadd, hset := []string{"ZADD", "zset:big"}, []string{"HSET", "hash:big"}
		for i := range 5000 {
			zadd = append(zadd, strconv.Itoa(i%97)+".25", "m"+strconv.Itoa(i))
		}
		for i := range 1000 {
			hset = append(hset, "field-"+strconv.Itoa(i), random(i%50))
		}
		cmds = append(cmds, zadd, hset)
		for i := range 300 { // several stream nodes (100 entries each by default)
			cmds = append(cmds, []string{"XADD", "stream:big", "*", "n", strconv.Itoa(i)})
		}
		// Elements above the packed threshold go into plain quicklist nodes.
		cmds = append(cmds, []string{"DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000"},
			[]string{"RPUSH", "list:plain", "small", strings.Repeat("p", 5000), random(3000), "tail"},
			[]string{"DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1073741824"})
	}
	run(t, srv.Client(t, 0), cmds)
	run(t, srv.Client(t, 3), [][]string{{"SET", "db3:key", "three"}, {"RPUSH", "db3:list", "x"}})
	run(t, srv.Client(t, 15), [][]string{{"SET", "db15:key", "fifteen", "EX", "86400"}, {"HSET", "db15:hash", "a", "b"}})
	return []int{0, 3, 15}
}

func run(t testing.TB, c rueidis.Client, cmds [][]string) {
	t.Helper()
	built := make(rueidis.Commands, len(cmds))
	for i, a := range cmds {
		built[i] = c.B().Arbitrary(a[0]).Args(a[1:]...).Build()
	}
	for i, res := range c.DoMulti(context.Background(), built...) {
		if err := res.Error(); err != nil {
			t.Fatalf("%.80q: %v", cmds[i], err)
		}
	}
}

// clients returns a function giving one client of srv per database.
func clients(t testing.TB, srv *redistest.Server) func(db int) rueidis.Client {
	m := map[int]rueidis.Client{}
	return func(db int) rueidis.Client {
		if m[db] == nil {
			m[db] = srv.Client(t, db)
		}
		return m[db]
	}
}

func do(t testing.TB, c rueidis.Client, args ...string) rueidis.RedisResult {
	t.Helper()
	res := c.Do(context.Background(), c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	if err := res.Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("%.80q: %v", args, err)
	}
	return res
}

// readAll reads every entry of in, failing the test on an error.
func readAll(t testing.TB, in io.Reader) ([]*RDBEntry, *RDBReader) {
	t.Helper()
	r := NewRDBReader(in)
	var entries []*RDBEntry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return entries, r
		}
		if err != nil {
			t.Fatalf("after %d entries: %v", len(entries), err)
		}
		entries = append(entries, e)
	}
}

func readFile(t testing.TB, path string) ([]*RDBEntry, *RDBReader) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, f)
}

// restore RESTOREs every entry into dst and returns the keys it refused.
func restore(t testing.TB, dst *redistest.Server, entries []*RDBEntry) map[string]error {
	t.Helper()
	client := clients(t, dst)
	failed := map[string]error{}
	ctx := context.Background()
	for _, e := range entries {
		c := client(e.DB)
		var cmd rueidis.Completed
		if e.Kind == RDBFunction {
			cmd = c.B().Arbitrary("FUNCTION", "RESTORE").Args(string(e.Payload)).Build()
		} else {
			args := []string{e.Key, strconv.FormatInt(e.ExpireAtMs, 10), string(e.Payload), "REPLACE"}
			if e.ExpireAtMs != 0 {
				args = append(args, "ABSTTL")
			}
			cmd = c.B().Arbitrary("RESTORE").Args(args...).Build()
		}
		if err := c.Do(ctx, cmd).Error(); err != nil {
			failed[e.Key] = err
		}
	}
	return failed
}

// compareServers checks that a and b hold the same keys with equal values and
// TTLs (within a second) in each of dbs.
func compareServers(t testing.TB, a, b *redistest.Server, dbs []int) {
	t.Helper()
	for _, db := range dbs {
		ca, cb := a.Client(t, db), b.Client(t, db)
		ka, _ := do(t, ca, "KEYS", "*").AsStrSlice()
		kb, _ := do(t, cb, "KEYS", "*").AsStrSlice()
		slices.Sort(ka)
		slices.Sort(kb)
		if !slices.Equal(ka, kb) {
			t.Errorf("db %d: keys differ:\n%q\n%q", db, ka, kb)
			continue
		}
		for _, k := range ka {
			for _, cmd := range [][]string{{"TYPE", k}, {"DEBUG", "DIGEST-VALUE", k}} {
				va, _ := do(t, ca, cmd...).ToAny()
				vb, _ := do(t, cb, cmd...).ToAny()
				if fmt.Sprint(va) != fmt.Sprint(vb) {
					t.Errorf("db %d key %q: %s differs: %v vs %v", db, k, cmd[0], va, vb)
				}
			}
			ta, _ := do(t, ca, "PTTL", k).AsInt64()
			tb, _ := do(t, cb, "PTTL", k).AsInt64()
			if (ta < 0 || tb < 0) && ta != tb || ta-tb > 1000 || tb-ta > 1000 {
				t.Errorf("db %d key %q: PTTL %d vs %d", db, k, ta, tb)
			}
			if typ, _ := do(t, ca, "TYPE", k).ToString(); typ == "stream" {
				va, _ := do(t, ca, "XINFO", "STREAM", k, "FULL").ToAny()
				vb, _ := do(t, cb, "XINFO", "STREAM", k, "FULL").ToAny()
				if fmt.Sprint(va) != fmt.Sprint(vb) {
					t.Errorf("db %d stream %q: XINFO STREAM FULL differs:\n%v\n%v", db, k, va, vb)
				}
			}
		}
	}
}

// keyspaceDBs returns the databases holding keys on srv.
func keyspaceDBs(t testing.TB, srv *redistest.Server) []int {
	info, _ := do(t, srv.Client(t, 0), "INFO", "keyspace").ToString()
	var dbs []int
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "db"); ok {
			n, _, _ := strings.Cut(rest, ":")
			if db, err := strconv.Atoi(n); err == nil {
				dbs = append(dbs, db)
			}
		}
	}
	return dbs
}

func fixtureDir(t testing.TB) string {
	dir := filepath.Join("..", "shared", "testdata", "rdb")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("fixtures not found at %s", dir)
	}
	return dir
}

// TestRDBReaderFixtures reads RDB files written by several Redis versions and
// checks that restoring what the reader yields gives what the server loads.
func TestRDBReaderFixtures(t *testing.T) {
	t.Parallel()
	dir := fixtureDir(t)
	for _, name := range []string{"encodings.rdb", "hash-zipmap.rdb", "hash-ziplist.rdb", "zset-ziplist.rdb",
		"list-quicklist.rdb", "scriptbackup.rdb", "corrupt_empty_keys.rdb", "rdb-preamble.aof"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
			src := redistest.Start(t, redistest.Config{Dir: tmp, DBFilename: name})
			dst := redistest.Start(t, redistest.Config{})
			entries, r := readAll(t, bytes.NewReader(data))
			if failed := restore(t, dst, entries); len(failed) > 0 {
				t.Fatalf("RESTORE failed: %v", failed)
			}
			dbs := keyspaceDBs(t, src)
			for _, e := range entries {
				if !slices.Contains(dbs, e.DB) {
					dbs = append(dbs, e.DB)
				}
			}
			compareServers(t, src, dst, dbs)
			switch name {
			case "encodings.rdb":
				if len(entries) != 13 || r.Version() != 4 {
					t.Errorf("%d entries of version %d, want 13 of version 4", len(entries), r.Version())
				}
			case "corrupt_empty_keys.rdb":
				if len(entries) != 0 || r.SkippedEmpty() != 9 {
					t.Errorf("%d entries and %d skipped, want 0 and 9", len(entries), r.SkippedEmpty())
				}
			case "scriptbackup.rdb":
				if lua := r.Aux()["lua"]; len(entries) != 0 || lua != "return redis.call('set', 'foo', 'bar')" {
					t.Errorf("%d entries, lua aux %q", len(entries), lua)
				}
			case "rdb-preamble.aof":
				rest, _ := io.ReadAll(r.Rest())
				if len(entries) != 2 || !bytes.HasPrefix(rest, []byte("*2\r\n$6\r\nSELECT")) {
					t.Errorf("%d entries, rest %q", len(entries), rest)
				}
			}
		})
	}
}

// TestRDBReaderCorruptZiplist reads a file whose hash ziplist the server refuses:
// the reader may pass the bytes on, but then RESTORE must refuse that key.
func TestRDBReaderCorruptZiplist(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(fixtureDir(t), "corrupt_ziplist.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewRDBReader(bytes.NewReader(data))
	var entries []*RDBEntry
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrCorruptRDB) {
				t.Fatalf("error does not wrap ErrCorruptRDB: %v", err)
			}
			return
		}
		entries = append(entries, e)
	}
	dst := redistest.Start(t, redistest.Config{})
	failed := restore(t, dst, entries)
	for _, e := range entries {
		if e.Type == RDBTypeHashZiplist && failed[e.Key] == nil {
			t.Errorf("RESTORE accepted the corrupt ziplist hash %q", e.Key)
		}
	}
	if len(failed) == 0 {
		t.Errorf("every RESTORE succeeded; the corrupt ziplist went through")
	}
}

// TestRDBReaderReplication reads the payload a real master sends to a replica,
// both disk-based ("$<len>") and diskless ("$EOF:<mark>").
func TestRDBReaderReplication(t *testing.T) {
	t.Parallel()
	for _, diskless := range []bool{false, true} {
		t.Run(fmt.Sprintf("diskless=%v", diskless), func(t *testing.T) {
			t.Parallel()
			yes := map[bool]string{true: "yes", false: "no"}[diskless]
			srv := redistest.Start(t, redistest.Config{Lines: []string{
				"repl-diskless-sync " + yes, "repl-diskless-sync-delay 0"}})
			populate(t, srv, false)
			conn, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(conn)
			if _, err := conn.Write([]byte("REPLCONF capa eof\r\n")); err != nil {
				t.Fatal(err)
			}
			if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
				t.Fatalf("REPLCONF: %q %v", line, err)
			}
			if _, err := conn.Write([]byte("SYNC\r\n")); err != nil {
				t.Fatal(err)
			}
			if b, err := br.Peek(1); err != nil || b[0] != '$' && b[0] != '\n' {
				t.Fatalf("master's reply starts with %q, %v", b, err)
			}
			entries, r := readAll(t, br)
			if diskless != (r.framing == framingMark) {
				t.Errorf("framing %d, diskless %v", r.framing, diskless)
			}
			client := clients(t, srv)
			keys := 0
			for _, e := range entries {
				if e.Kind != RDBKey {
					continue
				}
				keys++
				dump, _ := do(t, client(e.DB), "DUMP", e.Key).ToString()
				if dump != string(e.Payload) {
					t.Errorf("db %d key %q: payload differs from DUMP", e.DB, e.Key)
				}
			}
			want := 0
			for _, db := range []int{0, 3, 15} {
				n, _ := do(t, srv.Client(t, db), "DBSIZE").AsInt64()
				want += int(n)
			}
			if keys != want {
				t.Errorf("read %d keys, server has %d", keys, want)
			}
		})
	}
}

// TestRDBReaderIdleFreq checks the IDLE and FREQ opcodes a server writes under
// LRU and LFU eviction policies, and that RESTORE takes them back.
func TestRDBReaderIdleFreq(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"allkeys-lru", "allkeys-lfu"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, redistest.Config{Lines: []string{"maxmemory-policy " + policy}})
			c := srv.Client(t, 0)
			run(t, c, [][]string{{"SET", "a", "1"}, {"SET", "b", "2"}, {"GET", "b"}, {"GET", "b"}, {"SAVE"}})
			entries, _ := readFile(t, filepath.Join(srv.Dir, "dump.rdb"))
			if len(entries) != 2 {
				t.Fatalf("%d entries, want 2", len(entries))
			}
			for _, e := range entries {
				if policy == "allkeys-lru" && (!e.HasIdle || e.HasFreq) || policy == "allkeys-lfu" && (!e.HasFreq || e.HasIdle) {
					t.Errorf("key %q: HasIdle %v HasFreq %v under %s", e.Key, e.HasIdle, e.HasFreq, policy)
				}
				if e.HasFreq {
					want, _ := do(t, c, "OBJECT", "FREQ", e.Key).AsInt64()
					if int64(e.Freq) != want {
						t.Errorf("key %q: Freq %d, OBJECT FREQ %d", e.Key, e.Freq, want)
					}
				}
			}
		})
	}
}

// smallDump returns a real dump holding a small mix of every value type.
func smallDump(t testing.TB) []byte {
	t.Helper()
	srv := redistest.Start(t, redistest.Config{})
	populate(t, srv, false)
	do(t, srv.Client(t, 0), "SAVE")
	data, err := os.ReadFile(filepath.Join(srv.Dir, "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readToEnd reads in to the end and returns the error that ended it (nil for io.EOF).
func readToEnd(in []byte) error {
	r := NewRDBReader(bytes.NewReader(in))
	for {
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// TestRDBReaderTruncated checks that every strict prefix of a real dump fails
// with a corruption error naming an offset.
func TestRDBReaderTruncated(t *testing.T) {
	t.Parallel()
	data := smallDump(t)
	if err := readToEnd(data); err != nil {
		t.Fatalf("full dump: %v", err)
	}
	for n := range len(data) {
		err := readToEnd(data[:n])
		if err == nil || !errors.Is(err, ErrCorruptRDB) || !strings.HasPrefix(err.Error(), "rdb: offset ") {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
		if n > 9 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d bytes: %v does not wrap io.ErrUnexpectedEOF", n, err)
		}
	}
}

// TestRDBReaderByteFlips checks that changing any one byte of a real dump
// (outside the version digits, which decide whether there is a checksum) is
// caught, by the parser or by the checksum.
func TestRDBReaderByteFlips(t *testing.T) {
	t.Parallel()
	data := smallDump(t)
	buf := make([]byte, len(data))
	for i := range data {
		if i >= 5 && i < 9 {
			continue
		}
		for _, x := range []byte{0x01, 0x80, 0xff} {
			copy(buf, data)
			buf[i] ^= x
			if err := readToEnd(buf); err == nil || !errors.Is(err, ErrCorruptRDB) {
				t.Fatalf("byte %d ^ %#x: %v", i, x, err)
			}
		}
	}
}

// rdbBuilder writes RDB bytes by hand, for encodings a Redis 7.0 server does not write.
type rdbBuilder struct{ bytes.Buffer }

func (b *rdbBuilder) length(n uint64) {
	switch {
	case n < 1<<6:
		b.WriteByte(byte(n))
	case n < 1<<14:
		b.WriteByte(0x40 | byte(n>>8))
		b.WriteByte(byte(n))
	case n <= 0xffffffff:
		b.WriteByte(0x80)
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(n)))
	default:
		b.WriteByte(0x81)
		b.Write(binary.BigEndian.AppendUint64(nil, n))
	}
}

func (b *rdbBuilder) str(s string) {
	b.length(uint64(len(s)))
	b.WriteString(s)
}

func (b *rdbBuilder) u64(v uint64) { b.Write(binary.LittleEndian.AppendUint64(nil, v)) }

// rdbFile wraps body in a header of version v, the EOF opcode and a checksum.
func rdbFile(v int, body []byte) []byte {
	out := fmt.Appendf(nil, "REDIS%04d", v)
	out = append(append(out, body...), rdbOpEOF)
	if v >= 5 {
		out = binary.LittleEndian.AppendUint64(out, crc64Jones(0, out))
	}
	return out
}

// syntheticValue is one key of a hand-built RDB and the value bytes the reader
// must pass on.
type syntheticValue struct {
	key   string
	typ   byte
	value []byte
}

// syntheticRDB builds a version 12 RDB with the encodings and opcodes a 7.0
// server never writes, and returns it with the keys it holds.
func syntheticRDB() ([]byte, []syntheticValue) {
	var body rdbBuilder
	var want []syntheticValue
	add := func(key string, typ byte, build func(v *rdbBuilder)) {
		var v rdbBuilder
		build(&v)
		body.WriteByte(typ)
		body.str(key)
		body.Write(v.Bytes())
		want = append(want, syntheticValue{key, typ, v.Bytes()})
	}
	body.WriteByte(rdbOpAux)
	body.str("redis-ver")
	body.str("7.4.0")
	body.WriteByte(rdbOpAux)
	body.str("redis-bits")
	body.Write([]byte{0xc0, 64}) // int-encoded value
	body.WriteByte(rdbOpModuleAux)
	body.length(12345 << 10)
	body.length(2) // when opcode: unsigned
	body.length(2) // when: after the keys
	body.Write([]byte{2, 7, 5, 3, 'a', 'b', 'c', 0})
	body.WriteByte(rdbOpSelectDB)
	body.length(2)
	body.WriteByte(rdbOpResizeDB)
	body.length(10)
	body.length(1)
	body.WriteByte(rdbOpSlotInfo)
	body.Write([]byte{0x40 | 0x3f, 0xff, 5, 1})
	body.WriteByte(rdbOpExpireMs) // at the epoch: long expired, not "no expiry"
	body.u64(0)
	add("set:listpack", RDBTypeSetListpack, func(v *rdbBuilder) { v.str("\x0f\x00\x00\x00\x02\x00\x81a\x02\x81b\x02\xff") })
	add("stream:v3", RDBTypeStreamListpacks3, func(v *rdbBuilder) {
		v.length(1)
		v.str(strings.Repeat("\x00", 16))
		v.str("opaque listpack bytes")
		for _, n := range []uint64{3, 1, 2, 1, 0, 0, 0, 3} { // length, last, first, max deleted IDs, entries added
			v.length(n)
		}
		v.length(1) // groups
		v.str("grp")
		v.length(1) // last ID
		v.length(1)
		v.length(2) // entries read
		v.length(1) // PEL
		v.Write(make([]byte, 16+8))
		v.length(1) // delivery count
		v.length(1) // consumers
		v.str("alice")
		v.Write(make([]byte, 16)) // seen and active time
		v.length(1)
		v.Write(make([]byte, 16))
	})
	add("hash:meta:pre", RDBTypeHashMetadataPreGA, func(v *rdbBuilder) {
		v.length(2)
		v.length(0)
		v.str("f1")
		v.str("v1")
		v.length(1 << 40) // absolute TTL in ms
		v.str("f2")
		v.str("v2")
	})
	add("hash:lpex:pre", RDBTypeHashListpackExPreGA, func(v *rdbBuilder) { v.str("opaque listpack with TTLs") })
	add("hash:meta", RDBTypeHashMetadata, func(v *rdbBuilder) {
		v.u64(1 << 41)
		v.length(1)
		v.length(5) // TTL relative to the minimum
		v.str("f")
		v.Write([]byte{0xc1, 0x39, 0x30}) // int16-encoded value
	})
	add("hash:lpex", RDBTypeHashListpackEx, func(v *rdbBuilder) {
		v.u64(1 << 41)
		v.str("opaque listpack with TTLs")
	})
	add("module", RDBTypeModule2, func(v *rdbBuilder) {
		v.length(1 << 50) // module type ID, a 64-bit length
		v.length(1)       // signed integer
		v.length(42)
		v.length(3) // float
		v.Write([]byte{0, 0, 0x80, 0x3f})
		v.length(4) // double
		v.u64(0)
		v.length(5) // string, LZF-compressed
		v.Write([]byte{0xc3, 4, 8, 0x00, 'a', 0xa0, 0x00})
		v.length(0)
	})
	body.WriteByte(rdbOpExpire)
	body.Write(binary.LittleEndian.AppendUint32(nil, 2000000000))
	body.WriteByte(rdbOpIdle)
	body.length(77)
	add("zset:text", RDBTypeZSet, func(v *rdbBuilder) {
		v.length(4)
		for _, s := range [][]byte{{3, '1', '.', '5'}, {253}, {254}, {255}} {
			v.str("m" + strconv.Itoa(int(s[0])))
			v.Write(s)
		}
	})
	body.WriteByte(rdbOpFreq)
	body.WriteByte(9)
	add("stream:v1", RDBTypeStreamListpacks, func(v *rdbBuilder) {
		v.length(1)
		v.str(strings.Repeat("\x00", 16))
		v.str("opaque listpack bytes")
		v.length(3) // length, last ID
		v.length(1)
		v.length(0)
		v.length(1) // groups
		v.str("grp")
		v.length(1)
		v.length(0)
		v.length(0) // PEL
		v.length(1) // consumers
		v.str("bob")
		v.Write(make([]byte, 8)) // seen time
		v.length(0)
	})
	body.WriteByte(RDBTypeString) // key LZF-compressed, as Redis stores long keys
	body.Write([]byte{0xc3, 4, 8, 0x00, 'k', 0xa0, 0x00})
	body.Write([]byte{0xc2, 0xff, 0xff, 0xff, 0xff}) // int32-encoded -1
	want = append(want, syntheticValue{"kkkkkkkk", RDBTypeString, []byte{0xc2, 0xff, 0xff, 0xff, 0xff}})
	body.WriteByte(rdbOpFunction2)
	body.str("#!lua name=lib2\nredis.register_function('f2', function() return 2 end)")
	return rdbFile(12, body.Bytes()), want
}

// TestRDBReaderSynthetic reads the encodings Redis 7.0 does not write (7.2 and
// 7.4 types, module values and aux data, old opcodes) from a hand-built file.
func TestRDBReaderSynthetic(t *testing.T) {
	t.Parallel()
	data, want := syntheticRDB()
	entries, r := readAll(t, bytes.NewReader(data))
	if r.Version() != 12 || r.Aux()["redis-bits"] != "64" || r.Aux()["redis-ver"] != "7.4.0" {
		t.Errorf("version %d, aux %v", r.Version(), r.Aux())
	}
	if len(entries) != len(want)+1 {
		t.Fatalf("%d entries, want %d", len(entries), len(want)+1)
	}
	for i, w := range want {
		e := entries[i]
		payload := append([]byte{w.typ}, w.value...)
		payload = binary.LittleEndian.AppendUint16(payload, 12)
		payload = binary.LittleEndian.AppendUint64(payload, crc64Jones(0, payload))
		if e.Key != w.key || e.Type != w.typ || e.DB != 2 || !bytes.Equal(e.Payload, payload) {
			t.Errorf("entry %d: key %q type %d db %d payload %q; want key %q type %d payload %q",
				i, e.Key, e.Type, e.DB, e.Payload, w.key, w.typ, payload)
		}
		switch w.key {
		case "set:listpack":
			if e.ExpireAtMs != 1 || !e.ExpireAt.Equal(time.UnixMilli(1)) {
				t.Errorf("set:listpack: expire %d %v, want 1 ms", e.ExpireAtMs, e.ExpireAt)
			}
		case "zset:text":
			if e.ExpireAtMs != 2000000000000 || !e.ExpireAt.Equal(time.Unix(2000000000, 0)) || !e.HasIdle || e.Idle != 77 || e.HasFreq {
				t.Errorf("zset:text: expire %d %v idle %v %d freq %v", e.ExpireAtMs, e.ExpireAt, e.HasIdle, e.Idle, e.HasFreq)
			}
		case "stream:v1":
			if e.ExpireAtMs != 0 || !e.ExpireAt.IsZero() || e.HasIdle || !e.HasFreq || e.Freq != 9 {
				t.Errorf("stream:v1: expire %d idle %v freq %v %d", e.ExpireAtMs, e.HasIdle, e.HasFreq, e.Freq)
			}
		}
	}
	fn := entries[len(entries)-1]
	if fn.Kind != RDBFunction || fn.Key != "lib2" || !strings.HasPrefix(fn.Code, "#!lua name=lib2\n") || fn.Payload[0] != rdbOpFunction2 {
		t.Errorf("function entry %+v", fn)
	}
	names := map[string]string{}
	for _, e := range entries {
		names[e.Key] = e.TypeName()
	}
	for k, n := range map[string]string{"set:listpack": "set", "stream:v3": "stream", "hash:meta": "hash",
		"hash:lpex:pre": "hash", "module": "module", "zset:text": "zset", "kkkkkkkk": "string", "lib2": "function"} {
		if names[k] != n {
			t.Errorf("TypeName of %q = %q, want %q", k, names[k], n)
		}
	}
}

// TestRDBReaderPayloadVersion checks on a real server that payloads carry the
// file's RDB version: accepted up to the server's own version, refused above.
func TestRDBReaderPayloadVersion(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{})
	c := srv.Client(t, 0)
	serverVersion := 10 // Redis 7.0
	if v := redistest.Version(t); v >= 70400 {
		serverVersion = 12
	} else if v >= 70200 {
		serverVersion = 11
	}
	for v := 1; v <= rdbMaxVersion; v++ {
		var b rdbBuilder
		b.WriteByte(RDBTypeString)
		b.str("k")
		b.str("value")
		entries, _ := readAll(t, bytes.NewReader(rdbFile(v, b.Bytes())))
		cmd := c.B().Arbitrary("RESTORE").Args("k"+strconv.Itoa(v), "0", string(entries[0].Payload)).Build()
		err := c.Do(context.Background(), cmd).Error()
		if (err == nil) != (v <= serverVersion) {
			t.Errorf("RDB version %d payload on a version %d server: %v", v, serverVersion, err)
		}
	}
}

// TestRDBReaderVersions reads a one-key file of every RDB version.
func TestRDBReaderVersions(t *testing.T) {
	t.Parallel()
	for v := 1; v <= rdbMaxVersion; v++ {
		var b rdbBuilder
		b.WriteByte(rdbOpSelectDB)
		b.length(0)
		b.WriteByte(RDBTypeString)
		b.str("k")
		b.str("v")
		entries, r := readAll(t, bytes.NewReader(rdbFile(v, b.Bytes())))
		if len(entries) != 1 || r.Version() != v {
			t.Fatalf("version %d: %d entries, Version() %d", v, len(entries), r.Version())
		}
		if p := entries[0].Payload; binary.LittleEndian.Uint16(p[len(p)-10:]) != uint16(v) {
			t.Errorf("version %d: payload trailer says %d", v, binary.LittleEndian.Uint16(p[len(p)-10:]))
		}
	}
}

// TestRDBReaderErrors checks that bad input gives a corruption error that says
// where and what.
func TestRDBReaderErrors(t *testing.T) {
	t.Parallel()
	good, _ := syntheticRDB()
	key := func(typ byte, value ...byte) []byte {
		var b rdbBuilder
		b.WriteByte(typ)
		b.str("k")
		b.Write(value)
		return b.Bytes()
	}
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 1
	zeroSum := bytes.Clone(good)
	clear(zeroSum[len(zeroSum)-8:])
	mark := strings.Repeat("0123456789", 4)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "offset 0: reading RDB header: unexpected EOF"},
		{"not rdb", "HELLO0010", "not an RDB stream"},
		{"version 0", "REDIS0000\xff", "unsupported RDB version 0"},
		{"bad version", "REDIS00x1\xff", "bad RDB version"},
		{"checksum", string(badSum), "checksum mismatch"},
		{"module pre-GA", string(rdbFile(10, key(RDBTypeModule, 1))), "type 6"},
		{"function pre-GA", string(rdbFile(10, []byte{rdbOpFunctionPreGA, 1, 'x'})), "opcode 246"},
		{"unknown type", string(rdbFile(10, key(30, 1, 'x'))), "offset 9: unknown value type or opcode 30"},
		{"type 8", string(rdbFile(10, key(8, 1, 'x'))), "unknown value type or opcode 8"},
		{"length prefix", string(rdbFile(10, key(RDBTypeString, 0x82))), `offset 12: value of key "k": string: bad length prefix 0x82`},
		{"string encoding", string(rdbFile(10, key(RDBTypeString, 0xc4))), "unknown string encoding 4"},
		{"count encoding", string(rdbFile(10, key(RDBTypeList, 0xc0))), "string encoding where a length belongs"},
		{"quicklist container", string(rdbFile(10, key(RDBTypeListQuicklist2, 1, 3))), "bad quicklist node container 3"},
		{"module opcode", string(rdbFile(10, key(RDBTypeModule2, 1, 9))), "unknown module opcode 9"},
		{"module aux when", string(rdbFile(10, []byte{rdbOpModuleAux, 1, 1})), "bad 'when' opcode 1"},
		{"lzf ratio", string(rdbFile(10, []byte{0, 0xc3, 1, 0x80, 0, 0, 1, 0, 'a', 0})), "cannot expand"},
		{"lzf back reference", string(rdbFile(10, []byte{0, 0xc3, 2, 4, 0x20, 0, 0})), "bad LZF data"},
		{"lzf short", string(rdbFile(10, []byte{0, 0xc3, 2, 4, 0, 'a', 0})), "expands to 1 bytes, want 4"},
		{"huge string", "REDIS0010\x00\x01k\x81\x00\x00\x01\x00\x00\x00\x00\x00abc", "offset 21: value of key \"k\": reading string: unexpected EOF"},
		{"huge count", "REDIS0010\x01\x01k\x81\xff\xff\xff\xff\xff\xff\xff\xff\x01a", "reading element: unexpected EOF"},
		{"db number", "REDIS0010\xfe\x81\x00\x00\x00\x01\x00\x00\x00\x00", "database number 4294967296 out of range"},
		{"framing line", "$12345678901234567890123456789012345678901234567890123456789012345\r\n", "framing line too long"},
		{"framing crlf", "$10\n", "does not end in CRLF"},
		{"framing number", "$abc\r\n", "bad replication framing"},
		{"framing mark size", "$EOF:abc\r\n", "mark of 3 bytes"},
		{"framing mark", "$EOF:" + mark + "\r\n" + string(good) + strings.Repeat("x", 40), "mark does not match"},
		{"framing bulk short", fmt.Sprintf("$%d\r\n%s", len(good)+1, good), "ended 1 bytes before the end"},
		{"framing bulk long", fmt.Sprintf("$%d\r\n%s", len(good)-1, good), "runs past the end of the announced transfer"},
	} {
		err := readToEnd([]byte(tc.data))
		if err == nil || !errors.Is(err, ErrCorruptRDB) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rdb: offset ") {
			t.Errorf("%s: got %v, want an ErrCorruptRDB error containing %q", tc.name, err, tc.want)
		}
	}
	for name, data := range map[string]string{
		"zero checksum":  string(zeroSum),
		"diskless":       "\n\n$EOF:" + mark + "\r\n" + string(good) + mark,
		"bulk":           fmt.Sprintf("$%d\r\n%s", len(good), good),
		"trailing bytes": string(good) + "*1\r\n$4\r\nPING\r\n",
	} {
		if err := readToEnd([]byte(data)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A failed read is sticky, and a read error of the source is passed on as is.
	r := NewRDBReader(io.MultiReader(strings.NewReader("REDIS0010"), iotestErrReader{}))
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 != err2 || !errors.Is(err1, errTestRead) || errors.Is(err1, ErrCorruptRDB) {
		t.Errorf("source error: %v then %v", err1, err2)
	}
}

var errTestRead = errors.New("test read failure")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errTestRead }

// TestRDBReaderBoundedAllocation checks that declared lengths far beyond the
// input do not turn into allocations.
func TestRDBReaderBoundedAllocation(t *testing.T) {
	inputs := [][]byte{
		// A 4 GB string on a short input.
		append([]byte("REDIS0010\x00\x01k\x80\xff\xff\xff\xff"), bytes.Repeat([]byte("x"), 100)...),
		// A 2^60-byte string.
		append([]byte("REDIS0010\x00\x01k\x81\x10\x00\x00\x00\x00\x00\x00\x00"), bytes.Repeat([]byte("x"), 100)...),
		// A key that claims to expand to 4 GB.
		[]byte("REDIS0010\x00\xc3\x01\x80\xff\xff\xff\xff\x00a"),
	}
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := readToEnd(in)
		runtime.ReadMemStats(&after)
		if err == nil || !errors.Is(err, ErrCorruptRDB) {
			t.Errorf("input %d: %v", i, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("input %d: allocated %d bytes", i, n)
		}
	}
}

// BenchmarkRDBReader reads a real dump of 100k small keys.
func BenchmarkRDBReader(b *testing.B) {
	srv := redistest.Start(b, redistest.Config{})
	c := srv.Client(b, 0)
	do(b, c, "DEBUG", "POPULATE", "100000", "key", "20")
	do(b, c, "SAVE")
	data, err := os.ReadFile(filepath.Join(srv.Dir, "dump.rdb"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := NewRDBReader(bytes.NewReader(data))
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 100000 {
			b.Fatalf("%d keys", n)
		}
	}
}

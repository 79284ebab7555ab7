package migrate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// The version matrix: every server release of the test machine (see
// redistest.Releases), filled with the types and encodings it has, read back whole from
// its replication stream, and copied onto a server of the same release.

// releaseKey is one key a release is filled with, and what the RDB reader must see.
type releaseKey struct {
	db   int
	name string
	typ  string // TYPE's name
	rdb  byte   // the RDB type byte the release writes, when the test pins it; else 0xff
}

// fillRelease writes into s the types and encodings rel has, and returns the keys.
func fillRelease(t *testing.T, s *redistest.Server, rel redistest.Release) []releaseKey {
	t.Helper()
	var keys []releaseKey
	do := func(db int, name, typ string, rdb byte, cmds ...[]string) {
		for _, c := range cmds {
			s.Do(t, db, c...)
		}
		keys = append(keys, releaseKey{db: db, name: name, typ: typ, rdb: rdb})
	}
	many := func(cmd, key string, n int, each func(i int) []string) []string {
		args := []string{cmd, key}
		for i := range n {
			args = append(args, each(i)...)
		}
		return args
	}
	const big = 600 // past every *-max-*-entries default (512 for hashes)
	newer72 := rel.AtLeast("Redis", 7, 2) || rel.Valkey()

	do(0, "str:raw", "string", RDBTypeString, []string{"SET", "str:raw", strings.Repeat("raw ", 20)})
	do(0, "str:int", "string", RDBTypeString, []string{"SET", "str:int", "12345"})
	do(0, "str:ttl", "string", RDBTypeString, []string{"SET", "str:ttl", "v", "PX", "3600000"})
	do(0, "list:small", "list", 0xff, []string{"RPUSH", "list:small", "a", "b", "1"})
	do(0, "list:big", "list", 0xff, many("RPUSH", "list:big", big, func(i int) []string { return []string{"e" + strconv.Itoa(i)} }))
	do(0, "set:int", "set", RDBTypeSetIntset, []string{"SADD", "set:int", "1", "2", "3"})
	small := RDBTypeSet
	if newer72 {
		small = RDBTypeSetListpack // small sets of strings: a listpack from 7.2
	}
	do(0, "set:small", "set", small, []string{"SADD", "set:small", "a", "b", "c"})
	do(0, "set:big", "set", RDBTypeSet, many("SADD", "set:big", big, func(i int) []string { return []string{"m" + strconv.Itoa(i)} }))
	do(0, "zset:small", "zset", 0xff, []string{"ZADD", "zset:small", "1", "a", "2.5", "b"})
	do(0, "zset:big", "zset", RDBTypeZSet2, many("ZADD", "zset:big", big, func(i int) []string { return []string{strconv.Itoa(i), "m" + strconv.Itoa(i)} }))
	do(3, "hash:small", "hash", 0xff, []string{"HSET", "hash:small", "f", "v", "g", "1"})
	do(3, "hash:big", "hash", RDBTypeHash, many("HSET", "hash:big", big, func(i int) []string { return []string{"f" + strconv.Itoa(i), "v"} }))
	do(3, "stream", "stream", 0xff,
		[]string{"XADD", "stream", "1-1", "f", "v"},
		[]string{"XADD", "stream", "2-1", "f", "w"},
		[]string{"XGROUP", "CREATE", "stream", "g", "0"},
		[]string{"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "stream", ">"})
	if rel.AtLeast("Redis", 7, 4) { // hash field TTLs
		do(3, "hash:ttl", "hash", RDBTypeHashListpackEx,
			[]string{"HSET", "hash:ttl", "f", "v", "g", "w"},
			[]string{"HPEXPIRE", "hash:ttl", "3600000", "FIELDS", "1", "f"})
		do(3, "hash:ttl:big", "hash", RDBTypeHashMetadata,
			many("HSET", "hash:ttl:big", big, func(i int) []string { return []string{"f" + strconv.Itoa(i), "v"} }),
			[]string{"HPEXPIRE", "hash:ttl:big", "3600000", "FIELDS", "2", "f1", "f2"})
	}
	return keys
}

// syncRDB reads s's whole data set as a replica does (SYNC) with RDBReader.
func syncRDB(t *testing.T, s *redistest.Server) ([]*RDBEntry, *RDBReader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("SYNC\r\n")); err != nil {
		t.Fatal(err)
	}
	r := NewRDBReader(bufio.NewReader(conn))
	var entries []*RDBEntry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return entries, r
		}
		if err != nil {
			t.Fatalf("SYNC from %s: %v", s.Addr, err)
		}
		entries = append(entries, e)
	}
}

// TestVersionMatrixSmoke fills a server of each release, reads its RDB whole over
// replication, and copies it with DumpRestore onto a server of the same release.
func TestVersionMatrixSmoke(t *testing.T) {
	t.Parallel()
	for _, rel := range redistest.Releases(t) {
		t.Run(rel.Name, func(t *testing.T) {
			src := redistest.StartRelease(t, rel, redistest.Config{})
			keys := fillRelease(t, src, rel)
			ctx := context.Background()
			c := src.Client(t, 0)
			info, err := readInfo(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if want := rel.String(); info.Name() != want {
				t.Errorf("INFO names %s %q, want %q", rel.Name, info.Name(), want)
			}

			entries, rd := syncRDB(t, src)
			if rd.Version() != info.RDBVersion() {
				t.Errorf("%s wrote RDB %d, ServerInfo.RDBVersion says %d", rel, rd.Version(), info.RDBVersion())
			}
			seen := map[string]*RDBEntry{}
			for _, e := range entries {
				if e.Kind == RDBKey {
					seen[fmt.Sprintf("%d/%s", e.DB, e.Key)] = e
				}
			}
			if len(seen) != len(keys) {
				t.Errorf("%s: the RDB holds %d keys, want %d", rel, len(seen), len(keys))
			}
			for _, k := range keys {
				e := seen[fmt.Sprintf("%d/%s", k.db, k.name)]
				switch {
				case e == nil:
					t.Errorf("%s: key %q of db %d is not in the RDB", rel, k.name, k.db)
				case e.TypeName() != k.typ:
					t.Errorf("%s: key %q is a %s (RDB type %d), want a %s", rel, k.name, e.TypeName(), e.Type, k.typ)
				case k.rdb != 0xff && e.Type != k.rdb:
					t.Errorf("%s: key %q has RDB type %d, want %d", rel, k.name, e.Type, k.rdb)
				}
			}

			dst := redistest.StartRelease(t, rel, redistest.Config{})
			m, err := New(src.Option(), dst.Option(), WithStrategy(DumpRestore{}), WithDatabases(0, 3))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			mctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			report, err := m.Migrate(mctx)
			if err != nil {
				t.Fatalf("%s into %s: %v", rel, rel, err)
			}
			if report.Keys != int64(len(keys)) {
				t.Errorf("%s: report counts %d keys, want %d", rel, report.Keys, len(keys))
			}
			redistest.AssertSame(t, src, dst, 0, 3)
			if rel.AtLeast("Redis", 7, 4) {
				ttl := dst.Do(t, 3, "HPTTL", "hash:ttl", "FIELDS", "2", "f", "g")
				if got, _ := ttl.AsIntSlice(); len(got) != 2 || got[0] <= 0 || got[1] != -1 {
					t.Errorf("%s: field TTLs on the copy: %v", rel, got)
				}
			}
		})
	}
}

// findRelease returns the release of the matrix called name, or skips the test.
// TestValkeyNamedAsItself checks that a Valkey server is named as Valkey, not as the
// Redis 7.2.4 its INFO claims for compatibility, in the plan and in the refusal of a
// Redis 7.4 key it cannot hold.
func TestValkeyNamedAsItself(t *testing.T) {
	t.Parallel()
	src := redistest.StartRelease(t, redistest.FindRelease(t, "redis-7.4"), redistest.Config{})
	dst := redistest.StartRelease(t, redistest.FindRelease(t, "valkey-8.0"), redistest.Config{})
	src.Do(t, 0, "HSET", "k", "f", "v")
	src.Do(t, 0, "HPEXPIRE", "k", "3600000", "FIELDS", "1", "f") // field TTLs, which Valkey 8 cannot hold
	m, err := New(src.Option(), dst.Option(), WithStrategy(DumpRestore{}))
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
	if s := plan.String(); !strings.Contains(s, "Redis 7.4.1 (RDB 12)") || !strings.Contains(s, "Valkey 8.0.1 (RDB 11)") {
		t.Errorf("the plan does not name both servers as themselves:\n%s", s)
	}
	_, err = m.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "Valkey 8.0.1") || strings.Contains(err.Error(), "7.2.4") {
		t.Errorf("Redis 7.4 into Valkey 8.0: %v, want a refusal naming Valkey 8.0.1", err)
	}
	if n := dst.Do(t, 0, "DBSIZE"); func() int64 { v, _ := n.AsInt64(); return v }() != 0 {
		t.Errorf("the refused migration wrote to the target")
	}
}

package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// The version matrix proper: every ordered pair of the test machine's releases (see
// redistest.Releases), each source filled with the types and encodings its release has
// (fillRelease), copied by DumpRestore, Snapshot and MigrateKeys onto a target of the
// other release. A target older than the source gets each value rewritten in a form it
// reads (downgrade.go), and MigrateKeys, which cannot rewrite what MIGRATE sends, is
// refused; a hash with field TTLs (Redis 7.4) on a target without them is refused with
// the key named, or, with WithIncompatible, left out or copied without its TTLs, and
// listed in the Report.

// matrixSide is one server of the matrix and what it is.
type matrixSide struct {
	rel  redistest.Release
	srv  *redistest.Server
	info *ServerInfo
	keys []releaseKey // what fillRelease wrote, for a source
}

// fieldTTLKeys are the keys of fillRelease whose hash fields have TTLs (Redis 7.4).
var fieldTTLKeys = []string{"hash:ttl", "hash:ttl:big"}

func TestVersionMatrix(t *testing.T) {
	t.Parallel()
	rels := redistest.Releases(t)
	ctx := context.Background()
	start := func(rel redistest.Release, fill bool) *matrixSide {
		s := &matrixSide{rel: rel, srv: redistest.StartRelease(t, rel, redistest.Config{})}
		if fill {
			s.keys = append(fillRelease(t, s.srv, rel), fillMatrixExtras(t, s.srv)...)
		}
		var err error
		if s.info, err = readInfo(ctx, s.srv.Client(t, 0)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	var sources []*matrixSide
	for _, rel := range rels {
		sources = append(sources, start(rel, true))
	}
	for _, rel := range rels {
		dst := start(rel, false)
		t.Run("into "+rel.Name, func(t *testing.T) {
			t.Parallel()
			for _, src := range sources {
				t.Run(src.rel.Name, func(t *testing.T) { matrixPair(t, src, dst) })
			}
		})
	}
}

// matrixPair copies src into dst by every strategy, flushing dst before each.
func matrixPair(t *testing.T, src, dst *matrixSide) {
	downgrade := !dst.info.ReadsRDB(src.info.RDBVersion())
	unfit := src.rel.AtLeast("Redis", 7, 4) && !dst.rel.AtLeast("Redis", 7, 4)
	pair := fmt.Sprintf("%s into %s", src.rel, dst.rel)

	if unfit {
		// By default a key the target cannot hold stops the migration, named.
		_, err := matrixRun(t, src, dst, DumpRestore{})
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), `"hash:ttl`) ||
			!strings.Contains(err.Error(), "field") || !strings.Contains(err.Error(), dst.rel.String()) {
			t.Errorf("%s: dump-restore of field TTLs: %v, want ErrIncompatible naming the key, field TTLs and %s", pair, err, dst.rel)
		}
		rep, err := matrixRun(t, src, dst, DumpRestore{}, WithIncompatible(SkipIncompatible))
		if err != nil {
			t.Fatalf("%s: dump-restore, skipping the keys the target cannot hold: %v", pair, err)
		}
		assertIncompatible(t, pair+": dump-restore", rep, false)
		assertCopied(t, src, dst, pair+": dump-restore", true)
		if rep.Keys != int64(len(src.keys)-len(fieldTTLKeys)) || rep.Skipped != int64(len(fieldTTLKeys)) {
			t.Errorf("%s: dump-restore counted %d keys and %d skipped, want %d and %d", pair, rep.Keys, rep.Skipped, len(src.keys)-len(fieldTTLKeys), len(fieldTTLKeys))
		}

		rep, err = matrixRun(t, src, dst, Snapshot{}, WithIncompatible(TrimIncompatible))
		if err != nil {
			t.Fatalf("%s: snapshot, trimming what the target cannot hold: %v", pair, err)
		}
		assertIncompatible(t, pair+": snapshot", rep, true)
		assertCopied(t, src, dst, pair+": snapshot", false)
		for _, k := range fieldTTLKeys {
			want, _ := src.srv.Do(t, 3, "HGETALL", k).AsStrMap()
			got, _ := dst.srv.Do(t, 3, "HGETALL", k).AsStrMap()
			if len(want) == 0 || fmt.Sprint(want) != fmt.Sprint(got) {
				t.Errorf("%s: snapshot trimmed %q to %d fields, want the source's %d", pair, k, len(got), len(want))
			}
		}
		if rep.Keys != int64(len(src.keys)) {
			t.Errorf("%s: snapshot counted %d keys, want %d", pair, rep.Keys, len(src.keys))
		}
	} else {
		for _, s := range []Strategy{DumpRestore{}, Snapshot{}} {
			rep, err := matrixRun(t, src, dst, s)
			if err != nil {
				t.Fatalf("%s: %s: %v", pair, s.Name(), err)
			}
			assertCopied(t, src, dst, pair+": "+s.Name(), false)
			if rep.Keys != int64(len(src.keys)) || len(rep.Incompatible.Keys) != 0 {
				t.Errorf("%s: %s counted %d keys (%d incompatible), want %d", pair, s.Name(), rep.Keys, len(rep.Incompatible.Keys), len(src.keys))
			}
		}
	}

	rep, err := matrixRun(t, src, dst, MigrateKeys{})
	switch {
	case downgrade:
		if !errors.Is(err, ErrIncompatible) || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "DumpRestore or Snapshot") {
			t.Errorf("%s: migrate-keys: %v, want a refusal (ErrIncompatible, ErrUnsupported) pointing to DumpRestore or Snapshot", pair, err)
		}
		if n, _ := dst.srv.Do(t, 0, "DBSIZE").AsInt64(); n != 0 || rep.Keys != 0 {
			t.Errorf("%s: the refused migrate-keys wrote %d keys", pair, n)
		}
	case err != nil:
		t.Errorf("%s: migrate-keys: %v", pair, err)
	default:
		assertCopied(t, src, dst, pair+": migrate-keys", false)
	}
}

// matrixRun flushes dst and migrates databases 0 and 3 of src into it with s.
func matrixRun(t *testing.T, src, dst *matrixSide, s Strategy, opts ...Option) (*Report, error) {
	t.Helper()
	dst.srv.Do(t, 0, "FLUSHALL")
	m, err := New(src.srv.Option(), dst.srv.Option(), append([]Option{WithStrategy(s), WithDatabases(0, 3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return m.Migrate(ctx)
}

// assertCopied fails the test when dst does not hold src's databases 0 and 3 exactly,
// but for the keys with field TTLs: absent when skipped, else compared by assertIncompatible's caller.
func assertCopied(t *testing.T, src, dst *matrixSide, what string, skipped bool) {
	t.Helper()
	for _, db := range []int{0, 3} {
		var diffs []string
		for _, d := range redistest.Diff(t, src.srv, dst.srv, db, "") {
			if slices.ContainsFunc(fieldTTLKeys, func(k string) bool { return strings.Contains(d, fmt.Sprintf("%q", k)) }) &&
				(!skipped || strings.Contains(d, "missing on the target")) {
				continue
			}
			if strings.HasPrefix(d, `db 0: "x:zset" value differs`) {
				// DEBUG DIGEST-VALUE formats scores with %.17g up to Redis 7.0 and in the
				// shortest form from 7.2: compare the scores themselves.
				if want, got := zsetScores(t, src.srv), zsetScores(t, dst.srv); len(want) != 10 || !slices.Equal(want, got) {
					diffs = append(diffs, fmt.Sprintf("x:zset: %v on the target, want %v", got, want))
				}
				continue
			}
			diffs = append(diffs, d)
		}
		if len(diffs) > 0 {
			t.Errorf("%s: source and target differ:\n%s", what, strings.Join(diffs, "\n"))
		}
	}
	if skipped {
		for _, k := range fieldTTLKeys {
			if n, _ := dst.srv.Do(t, 3, "EXISTS", k).AsInt64(); n != 0 {
				t.Errorf("%s: the skipped key %q is on the target", what, k)
			}
		}
	}
}

// assertIncompatible checks that the report lists the keys with field TTLs, skipped or trimmed.
func assertIncompatible(t *testing.T, what string, rep *Report, trimmed bool) {
	t.Helper()
	inc := rep.Incompatible
	var names []string
	for _, k := range inc.Keys {
		names = append(names, k.Key)
		if k.DB != 3 || k.Trimmed != trimmed || !strings.Contains(k.Reason, "TTL") {
			t.Errorf("%s: Report.Incompatible lists %+v", what, k)
		}
	}
	slices.Sort(names)
	n := inc.Skipped
	if trimmed {
		n = inc.Trimmed
	}
	if !slices.Equal(names, fieldTTLKeys) || n != int64(len(fieldTTLKeys)) || inc.Skipped+inc.Trimmed != n {
		t.Errorf("%s: Report.Incompatible %+v, want %v (trimmed %v)", what, inc, fieldTTLKeys, trimmed)
	}
}

// fillMatrixExtras writes, beside fillRelease's keys, values whose rewriting has more
// to get right: scores that are not integers or are infinite, a stream with deleted and
// acknowledged entries and two groups, elements too long for the compact encodings,
// LZF-compressed strings, and a large set of integers.
func fillMatrixExtras(t *testing.T, s *redistest.Server) []releaseKey {
	t.Helper()
	long := strings.Repeat("long element ", 10)
	cmds := [][]string{
		{"ZADD", "x:zset", "-inf", "a", "+inf", "b", "0.5", "c", "-1.25", "d", "1e300", "e"},
		{"XADD", "x:stream", "1-1", "f", "1"},
		{"XADD", "x:stream", "1-2", "f", "2", "g", "3"},
		{"XADD", "x:stream", "5-0", "f", "4"},
		{"XDEL", "x:stream", "1-2"},
		{"XGROUP", "CREATE", "x:stream", "g1", "0"},
		{"XGROUP", "CREATE", "x:stream", "g2", "$"},
		{"XREADGROUP", "GROUP", "g1", "alice", "COUNT", "2", "STREAMS", "x:stream", ">"},
		{"XACK", "x:stream", "g1", "1-1"},
		{"XREADGROUP", "GROUP", "g1", "bob", "COUNT", "1", "STREAMS", "x:stream", ">"},
		{"RPUSH", "x:list", long, long + "2", "3"},
		{"HSET", "x:hash", "f", long, "g", "1"},
		{"SET", "x:lzf", strings.Repeat("compressible ", 1000)},
		{"LPUSH", "x:lzflist", strings.Repeat("a", 300), strings.Repeat("b", 300)},
	}
	ints := []string{"SADD", "x:ints"}
	for i := range 600 {
		ints = append(ints, fmt.Sprint(i*7-1000))
	}
	cmds = append(cmds, ints)
	for _, c := range cmds {
		s.Do(t, 0, c...)
	}
	var keys []releaseKey
	for _, k := range []string{"x:zset", "x:stream", "x:list", "x:hash", "x:lzf", "x:lzflist", "x:ints"} {
		keys = append(keys, releaseKey{db: 0, name: k})
	}
	return keys
}

// zsetScores returns x:zset's members and scores, the scores as numbers.
func zsetScores(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	all, err := s.Do(t, 0, "ZRANGE", "x:zset", "0", "-1", "WITHSCORES").AsZScores()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, z := range all {
		out = append(out, z.Member, strconv.FormatFloat(z.Score, 'g', -1, 64))
	}
	return out
}

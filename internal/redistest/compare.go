package redistest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// TTLTolerance is how far a copied key's TTL may be from the source's.
const TTLTolerance = 2 * time.Second

// Diff compares database db of a and b key by key, for the keys matching match ("" for all):
// the same key set, the same type, the same value (DEBUG DIGEST-VALUE), TTLs within
// TTLTolerance, and for streams the same consumer groups, consumers and pending entries.
// It returns one line per difference.
func Diff(t testing.TB, a, b *Server, db int, match string) []string {
	t.Helper()
	d, err := Compare(context.Background(), a.Client(t, db), b.Client(t, db), db, match)
	if err != nil {
		t.Fatalf("redistest: compare %s and %s: %v", a.Addr, b.Addr, err)
	}
	return d
}

// Compare is Diff for two clients of the same database number db, for programs that are
// not tests.
func Compare(ctx context.Context, ca, cb rueidis.Client, db int, match string) ([]string, error) {
	return CompareSides(ctx, Side{Client: ca}, Side{Client: cb}, db, match)
}

// Side is a set of keys to compare: one database of a server, or a cluster.
type Side struct {
	// Client reads each key; a cluster client sends each command to the key's node.
	Client rueidis.Client
	// Nodes are the clients whose SCANs together list every key: the masters of a
	// cluster. Empty means Client alone.
	Nodes []rueidis.Client
}

// CompareSides is Compare for two sides, either of which may be a cluster; db only labels
// the differences.
func CompareSides(ctx context.Context, a, b Side, db int, match string) ([]string, error) {
	ca, cb := a.Client, b.Client
	keysA, err := a.keys(ctx, match)
	if err != nil {
		return nil, err
	}
	keysB, err := b.keys(ctx, match)
	if err != nil {
		return nil, err
	}
	var diffs []string
	inB := map[string]bool{}
	for _, k := range keysB {
		inB[k] = true
	}
	inA := map[string]bool{}
	for _, k := range keysA {
		inA[k] = true
		if !inB[k] {
			diffs = append(diffs, fmt.Sprintf("db %d: %q missing on the target", db, k))
		}
	}
	for _, k := range keysB {
		if !inA[k] {
			diffs = append(diffs, fmt.Sprintf("db %d: %q extra on the target", db, k))
		}
	}
	var common []string
	for _, k := range keysA {
		if inB[k] {
			common = append(common, k)
		}
	}
	fa, err := facts(ctx, ca, common)
	if err != nil {
		return nil, err
	}
	fb, err := facts(ctx, cb, common)
	if err != nil {
		return nil, err
	}
	for i, k := range common {
		x, y := fa[i], fb[i]
		switch {
		case x.typ != y.typ:
			diffs = append(diffs, fmt.Sprintf("db %d: %q type %s != %s", db, k, x.typ, y.typ))
		case (x.expireAt < 0) != (y.expireAt < 0) || absDuration(time.Duration(x.expireAt-y.expireAt)*time.Millisecond) > TTLTolerance:
			diffs = append(diffs, fmt.Sprintf("db %d: %q TTL differs: expires %s != %s", db, k, expiryText(x.expireAt), expiryText(y.expireAt)))
		case x.digest != y.digest:
			diffs = append(diffs, fmt.Sprintf("db %d: %q value differs (digest %s != %s)", db, k, x.digest, y.digest))
		case x.typ == "stream" && x.groups != y.groups:
			diffs = append(diffs, fmt.Sprintf("db %d: %q stream groups differ:\n  %s\n  %s", db, k, x.groups, y.groups))
		}
	}
	return diffs, nil
}

func (s Side) keys(ctx context.Context, match string) ([]string, error) {
	if len(s.Nodes) == 0 {
		return KeysOf(ctx, s.Client, match)
	}
	var all []string
	for _, n := range s.Nodes {
		keys, err := KeysOf(ctx, n, match)
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
	}
	sort.Strings(all)
	return slices.Compact(all), nil
}

// AssertSameSides fails the test when the keys matching match ("" for all) of a and b
// differ (see Diff); either side may be a cluster (Cluster.Side).
func AssertSameSides(t testing.TB, a, b Side, match string) {
	t.Helper()
	d, err := CompareSides(context.Background(), a, b, 0, match)
	if err != nil {
		t.Fatalf("redistest: compare: %v", err)
	}
	if len(d) > 0 {
		if len(d) > 20 {
			d = append(d[:20], fmt.Sprintf("... and %d more", len(d)-20))
		}
		t.Fatalf("source and target differ:\n%s", strings.Join(d, "\n"))
	}
}

// AssertSame fails the test when databases dbs of src and dst differ (see Diff).
func AssertSame(t testing.TB, src, dst *Server, dbs ...int) {
	t.Helper()
	for _, db := range dbs {
		if d := Diff(t, src, dst, db, ""); len(d) > 0 {
			if len(d) > 20 {
				d = append(d[:20], fmt.Sprintf("... and %d more", len(d)-20))
			}
			t.Fatalf("source and target differ:\n%s", strings.Join(d, "\n"))
		}
	}
}

// Keys returns every key of c's database that matches match, sorted, without duplicates.
func Keys(t testing.TB, c rueidis.Client, match string) []string {
	t.Helper()
	keys, err := KeysOf(context.Background(), c, match)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return keys
}

// KeysOf is Keys for programs that are not tests.
func KeysOf(ctx context.Context, c rueidis.Client, match string) ([]string, error) {
	seen := map[string]bool{}
	var cursor uint64
	for {
		cmd := c.B().Scan().Cursor(cursor).Count(1000).Build()
		if match != "" {
			cmd = c.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()
		}
		e, err := c.Do(ctx, cmd).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		for _, k := range e.Elements {
			seen[k] = true
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

type keyFacts struct {
	typ, digest string
	// expireAt is the key's absolute expiry in Unix milliseconds, negative for none: both
	// sides are read at other moments (seconds apart on a busy machine), so their TTLs
	// cannot be compared, their expiries can.
	expireAt int64
	groups   string
}

// expiryText shows an absolute expiry as the TTL it leaves now.
func expiryText(at int64) string {
	if at < 0 {
		return "never"
	}
	return "in " + time.Until(time.UnixMilli(at)).Round(time.Millisecond).String()
}

func facts(ctx context.Context, c rueidis.Client, keys []string) ([]keyFacts, error) {
	out := make([]keyFacts, len(keys))
	// PEXPIRETIME (Redis 7.0) reads the expiry itself; PTTL, on older servers, is placed in
	// time by when the pipeline ran, which a slow DEBUG DIGEST-VALUE of a big key blurs.
	absolute := c.Do(ctx, c.B().Arbitrary("PEXPIRETIME").Keys("redistest:probe").Build()).Error() == nil
	for start := 0; start < len(keys); start += 500 {
		end := min(start+500, len(keys))
		cmds := make(rueidis.Commands, 0, 3*(end-start))
		for _, k := range keys[start:end] {
			expiry := c.B().Pttl().Key(k).Build()
			if absolute {
				expiry = c.B().Arbitrary("PEXPIRETIME").Keys(k).Build()
			}
			cmds = append(cmds, c.B().Type().Key(k).Build(),
				c.B().Arbitrary("DEBUG", "DIGEST-VALUE").Keys(k).Build(), expiry)
		}
		sent := time.Now().UnixMilli()
		res := c.DoMulti(ctx, cmds...)
		// PTTL was read between sending and the reply: the middle errs least.
		read := (sent + time.Now().UnixMilli()) / 2
		for i := range keys[start:end] {
			f := &out[start+i]
			f.typ, _ = res[3*i].ToString()
			d, err := res[3*i+1].ToArray()
			if err != nil {
				return nil, fmt.Errorf("DEBUG DIGEST-VALUE %q: %w", keys[start+i], err)
			}
			if len(d) > 0 {
				f.digest, _ = d[0].ToString()
			}
			ms, _ := res[3*i+2].AsInt64()
			f.expireAt = ms
			if ms >= 0 && !absolute {
				f.expireAt = read + ms
			}
			if f.typ == "stream" {
				if f.groups, err = streamGroups(ctx, c, keys[start+i]); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// streamGroups describes a stream's consumer groups, consumers and pending entries.
func streamGroups(ctx context.Context, c rueidis.Client, key string) (string, error) {
	groups, err := c.Do(ctx, c.B().XinfoGroups().Key(key).Build()).ToArray()
	if err != nil {
		return "", fmt.Errorf("XINFO GROUPS %q: %w", key, err)
	}
	var b strings.Builder
	for i := range groups {
		m, _ := groups[i].AsMap()
		name := field(m, "name")
		last := field(m, "last-delivered-id")
		pending := field(m, "pending")
		fmt.Fprintf(&b, "[group %s last=%s pending=%s", name, last, pending)
		cons, _ := c.Do(ctx, c.B().XinfoConsumers().Key(key).Group(name).Build()).ToArray()
		for i := range cons {
			mm, _ := cons[i].AsMap()
			cn := field(mm, "name")
			cp := field(mm, "pending")
			fmt.Fprintf(&b, " consumer %s pending=%s", cn, cp)
		}
		pel, _ := c.Do(ctx, c.B().Xpending().Key(key).Group(name).Start("-").End("+").Count(1000).Build()).ToArray()
		for i := range pel {
			e, _ := pel[i].ToArray()
			if len(e) >= 4 {
				id, _ := e[0].ToString()
				owner, _ := e[1].ToString()
				deliveries, _ := e[3].AsInt64()
				fmt.Fprintf(&b, " pel %s:%s:%d", id, owner, deliveries)
			}
		}
		b.WriteString("]")
	}
	return b.String(), nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// field returns a reply map's value as text, whatever its RESP type.
func field(m map[string]rueidis.RedisMessage, name string) string {
	v, ok := m[name]
	if !ok {
		return ""
	}
	if s, err := v.ToString(); err == nil {
		return s
	}
	n, _ := v.AsInt64()
	return fmt.Sprint(n)
}

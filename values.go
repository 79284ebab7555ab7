package migrate

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// sameValue compares one key's value on both sides by type, for when DUMP payloads
// cannot be compared (other RDB versions, or other encodings of the same value).
func (v *verifier) sameValue(ctx context.Context, db int, key, targetKey, typ string) (bool, error) {
	a, err := canonical(ctx, v.j.Source, db, key, typ)
	if err != nil {
		return false, err
	}
	b, err := canonical(ctx, v.j.Target, v.j.TargetDB(db), targetKey, typ)
	if err != nil {
		return false, err
	}
	return a == b, nil
}

// canonical returns a text that is equal for two keys exactly when their values are: the
// elements in an order that does not depend on the encoding, each prefixed by its length.
func canonical(ctx context.Context, e *Endpoint, db int, key, typ string) (string, error) {
	c, err := e.Client(db)
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		return "", e.Err(fmt.Sprintf("read %s in db %d", typ, db), key, ctxErr(ctx, err))
	}
	var parts []string
	switch typ {
	case "string":
		s, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return fail(err)
		}
		parts = []string{s}
	case "list":
		if parts, err = c.Do(ctx, c.B().Lrange().Key(key).Start(0).Stop(-1).Build()).AsStrSlice(); err != nil {
			return fail(err)
		}
	case "set":
		if parts, err = c.Do(ctx, c.B().Smembers().Key(key).Build()).AsStrSlice(); err != nil {
			return fail(err)
		}
		sort.Strings(parts)
	case "zset":
		zs, err := c.Do(ctx, c.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).AsZScores()
		if err != nil {
			return fail(err)
		}
		for _, z := range zs {
			parts = append(parts, z.Member, strconv.FormatFloat(z.Score, 'g', -1, 64))
		}
	case "hash":
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			return fail(err)
		}
		for f, val := range m {
			parts = append(parts, lengthPrefixed([]string{f, val}))
		}
		sort.Strings(parts)
	case "stream":
		entries, err := c.Do(ctx, c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			return fail(err)
		}
		for _, en := range entries {
			parts = append(parts, en.ID)
			fields := make([]string, 0, 2*len(en.FieldValues))
			for f, val := range en.FieldValues {
				fields = append(fields, lengthPrefixed([]string{f, val}))
			}
			sort.Strings(fields)
			parts = append(parts, fields...)
		}
		groups, err := c.Do(ctx, c.B().XinfoGroups().Key(key).Build()).ToArray()
		if err != nil {
			return fail(err)
		}
		for i := range groups {
			m, err := groups[i].AsMap()
			if err != nil {
				return fail(err)
			}
			for _, f := range []string{"name", "consumers", "pending", "last-delivered-id"} {
				parts = append(parts, replyText(m[f]))
			}
		}
	default:
		// Module types and the like: only identical payloads count as equal.
		s, err := c.Do(ctx, c.B().Dump().Key(key).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return fail(err)
		}
		parts = []string{s}
	}
	return lengthPrefixed(parts), nil
}

func lengthPrefixed(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// replyText renders a reply field as text, whatever its RESP type.
func replyText(m rueidis.RedisMessage) string {
	if s, err := m.ToString(); err == nil {
		return s
	}
	if n, err := m.AsInt64(); err == nil {
		return strconv.FormatInt(n, 10)
	}
	return ""
}

// keyMatch is how a key of the source compares with its copy on the target.
type keyMatch uint8

const (
	keySame       keyMatch = iota // same type, value and expiry
	keyDiffers                    // both hold it, with another type, value or expiry
	keySourceGone                 // the source no longer holds it
	keyTargetGone                 // the target does not hold it
)

// sameKeys reports, for each key of source database db, whether the target holds it (as
// j.TargetKey, in j.TargetDB) with the source's type, value and expiry, the expiries within
// j.TTLTolerance of each other. A key missing on either side is not the same.
func sameKeys(ctx context.Context, j *Job, db int, keys []string) ([]bool, error) {
	m, err := compareKeys(ctx, j, db, keys)
	if err != nil {
		return nil, err
	}
	same := make([]bool, len(keys))
	for i := range m {
		same[i] = m[i] == keySame
	}
	return same, nil
}

// compareKeys compares each key of source database db with its copy on the target. It reads
// TYPE, DUMP and the expiry of every key on both sides, pipelined, and the elements
// (canonical) only of a key whose payloads differ: encodings of the same value may (a
// hashtable hash lists its fields in its own order). Expiries are compared by PEXPIRETIME
// when both sides run Redis 7.0, else by PTTL. It costs a round trip per side, and one per
// such key: for the rare path (a conflict, a failed MIGRATE), not per batch.
func compareKeys(ctx context.Context, j *Job, db int, keys []string) ([]keyMatch, error) {
	out := make([]keyMatch, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	src, err := j.Source.Client(db)
	if err != nil {
		return nil, err
	}
	tdb := j.TargetDB(db)
	dst, err := j.Target.Client(tdb)
	if err != nil {
		return nil, err
	}
	absolute := j.Source.Info.AtLeast(7, 0, 0) && j.Target.Info.AtLeast(7, 0, 0)
	type side struct {
		typ, dump string
		expiry    int64 // PEXPIRETIME or PTTL; negative: none
	}
	read := func(e *Endpoint, c rueidis.Client, db int, name func(string) string) ([]side, error) {
		cmds := make(rueidis.Commands, 0, 3*len(keys))
		for _, k := range keys {
			k = name(k)
			cmds = append(cmds, c.B().Type().Key(k).Build(), c.B().Dump().Key(k).Build())
			if absolute {
				cmds = append(cmds, c.B().Pexpiretime().Key(k).Build())
			} else {
				cmds = append(cmds, c.B().Pttl().Key(k).Build())
			}
		}
		res := c.DoMulti(ctx, cmds...)
		out := make([]side, len(keys))
		for i, k := range keys {
			var err error
			s := &out[i]
			if s.typ, err = res[3*i].ToString(); err == nil {
				if s.dump, err = res[3*i+1].ToString(); rueidis.IsRedisNil(err) {
					s.typ, err = "none", nil // expired in between
				}
			}
			if err == nil {
				s.expiry, err = res[3*i+2].AsInt64()
			}
			if err != nil {
				return nil, e.Err(fmt.Sprintf("compare in db %d", db), name(k), ctxErr(ctx, err))
			}
		}
		return out, nil
	}
	// Both sides at once, so that relative expiries are read at nearly the same instant.
	var theirs []side
	var terr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		theirs, terr = read(j.Target, dst, tdb, func(k string) string { return j.TargetKey(db, k) })
	}()
	mine, err := read(j.Source, src, db, func(k string) string { return k })
	<-done
	if err != nil {
		return nil, err
	}
	if terr != nil {
		return nil, terr
	}
	tol := j.TTLTolerance.Milliseconds()
	for i, k := range keys {
		a, b := mine[i], theirs[i]
		switch {
		case a.typ == "none":
			out[i] = keySourceGone
			continue
		case b.typ == "none":
			out[i] = keyTargetGone
			continue
		case a.typ != b.typ, (a.expiry < 0) != (b.expiry < 0), a.expiry >= 0 && absDiff(a.expiry, b.expiry) > tol:
			out[i] = keyDiffers
			continue
		case sameValue(a.dump, b.dump):
			out[i] = keySame
			continue
		}
		ca, err := canonical(ctx, j.Source, db, k, a.typ)
		if err != nil {
			return nil, err
		}
		cb, err := canonical(ctx, j.Target, tdb, j.TargetKey(db, k), b.typ)
		if err != nil {
			return nil, err
		}
		if out[i] = keyDiffers; ca == cb {
			out[i] = keySame
		}
	}
	return out, nil
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

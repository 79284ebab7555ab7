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

package main

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// load writes data set set, scaled, into src and returns its number of keys.
//   - strings: 1,000,000 string keys of 100 random bytes, 10% with a TTL;
//   - mixed: 100,000 strings of 200 random bytes, 100,000 hashes of 10-100 fields, 50,000
//     lists, 50,000 sets and 50,000 sorted sets of 10-100 elements, 1,000 streams of 100
//     entries, 10% with a TTL.
func load(ctx context.Context, src *redistest.Server, set string, scale float64) (int64, error) {
	c, err := src.Connect(0)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rnd := rand.New(rand.NewSource(1))
	n := func(count int) int { return max(1, int(float64(count)*scale)) }
	w := &writer{ctx: ctx, c: c, rnd: rnd}
	switch set {
	case "strings":
		w.strings("s:", n(1_000_000), 100)
	case "mixed":
		w.strings("s:", n(100_000), 200)
		w.collections("h:", n(100_000), func(b rueidis.Builder, key string, m int) rueidis.Completed {
			h := b.Hset().Key(key).FieldValue()
			for i := 0; i < m; i++ {
				h = h.FieldValue("f"+strconv.Itoa(i), w.value(10))
			}
			return h.Build()
		})
		w.collections("l:", n(50_000), func(b rueidis.Builder, key string, m int) rueidis.Completed {
			l := b.Rpush().Key(key).Element()
			for i := 0; i < m; i++ {
				l = l.Element(w.value(10))
			}
			return l.Build()
		})
		w.collections("set:", n(50_000), func(b rueidis.Builder, key string, m int) rueidis.Completed {
			s := b.Sadd().Key(key).Member()
			for i := 0; i < m; i++ {
				s = s.Member(w.value(10))
			}
			return s.Build()
		})
		w.collections("z:", n(50_000), func(b rueidis.Builder, key string, m int) rueidis.Completed {
			z := b.Zadd().Key(key).ScoreMember()
			for i := 0; i < m; i++ {
				z = z.ScoreMember(rnd.Float64(), w.value(10))
			}
			return z.Build()
		})
		for i := 0; i < n(1000); i++ {
			key := fmt.Sprintf("x:%d", i)
			for e := 0; e < 100; e++ {
				w.add(c.B().Xadd().Key(key).Id("*").FieldValue().FieldValue("f", w.value(20)).Build())
			}
		}
	default:
		return 0, fmt.Errorf("unknown data set %q (want strings or mixed)", set)
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	return c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
}

// writer pipelines commands in chunks.
type writer struct {
	ctx  context.Context
	c    rueidis.Client
	rnd  *rand.Rand
	cmds rueidis.Commands
	err  error
}

func (w *writer) add(cmd rueidis.Completed) {
	w.cmds = append(w.cmds, cmd)
	if len(w.cmds) >= 5000 {
		_ = w.flush()
	}
}

func (w *writer) flush() error {
	if w.err == nil && len(w.cmds) > 0 {
		w.err = pipeline(w.ctx, w.c, w.cmds)
	}
	w.cmds = w.cmds[:0]
	return w.err
}

func (w *writer) value(n int) string {
	b := make([]byte, n)
	w.rnd.Read(b)
	return string(b)
}

// ttl gives one key in ten an expiry of an hour or more.
func (w *writer) ttl(key string) {
	if w.rnd.Intn(10) == 0 {
		w.add(w.c.B().Pexpire().Key(key).Milliseconds(int64(3_600_000 + w.rnd.Intn(3_600_000))).Build())
	}
}

func (w *writer) strings(prefix string, count, size int) {
	for i := 0; i < count; i++ {
		key := prefix + strconv.Itoa(i)
		w.add(w.c.B().Set().Key(key).Value(w.value(size)).Build())
		w.ttl(key)
	}
}

func (w *writer) collections(prefix string, count int, build func(b rueidis.Builder, key string, m int) rueidis.Completed) {
	for i := 0; i < count; i++ {
		key := prefix + strconv.Itoa(i)
		w.add(build(w.c.B(), key, 10+w.rnd.Intn(91)))
		w.ttl(key)
	}
}

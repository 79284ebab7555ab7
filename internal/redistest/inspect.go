package redistest

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// DBSize returns the number of keys in databases dbs of s (database 0 when none is given),
// summed.
func (s *Server) DBSize(t testing.TB, dbs ...int) int64 {
	t.Helper()
	if len(dbs) == 0 {
		dbs = []int{0}
	}
	var n int64
	for _, db := range dbs {
		n += Int(t, s.Do(t, db, "DBSIZE"))
	}
	return n
}

// Get returns the string value of key in database 0 of s, "" when it has none.
func (s *Server) Get(t testing.TB, key string) string {
	t.Helper()
	v, _ := s.Do(t, 0, "GET", key).ToString()
	return v
}

// Int returns r as an integer, failing the test when it is not one.
func Int(t testing.TB, r rueidis.RedisResult) int64 {
	t.Helper()
	n, err := r.AsInt64()
	if err != nil {
		t.Fatalf("redistest: want an integer reply: %v", err)
	}
	return n
}

// Info returns one field of s's INFO everything ("role", "evicted_keys"...), "" when it
// has none.
func (s *Server) Info(t testing.TB, name string) string {
	t.Helper()
	text, err := s.Do(t, 0, "INFO", "everything").ToString()
	if err != nil {
		t.Fatalf("redistest: INFO on %s: %v", s.Addr, err)
	}
	return InfoField(text, name)
}

// InfoField returns the value of field name in the text of an INFO reply, "" when it has
// none.
func InfoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), name+":"); ok {
			return v
		}
	}
	return ""
}

// WaitInfo waits up to 10 s for s's INFO to show name:want, and fails the test otherwise.
func (s *Server) WaitInfo(t testing.TB, name, want string) {
	t.Helper()
	c := s.Client(t, 0)
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		text, err := c.Do(context.Background(), c.B().Info().Section("everything").Build()).ToString()
		if err != nil {
			t.Fatalf("redistest: INFO on %s: %v", s.Addr, err)
		}
		if got = InfoField(text, name); got == want {
			return
		}
	}
	t.Fatalf("%s: INFO shows %s:%s after 10s, want %s", s.Addr, name, got, want)
}

// Config returns the value of configuration parameter name of s (CONFIG GET).
func (s *Server) Config(t testing.TB, name string) string {
	t.Helper()
	m, err := s.Do(t, 0, "CONFIG", "GET", name).AsStrMap()
	if err != nil {
		t.Fatalf("redistest: CONFIG GET %s on %s: %v", name, s.Addr, err)
	}
	return m[name]
}

// WaitGoroutines fails the test when more goroutines than before are still running after
// a grace period of d, and shows their stacks: what a test of cancellation or Close uses to
// find a goroutine left behind.
func WaitGoroutines(t testing.TB, before int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines left running, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// Total returns the number of keys counts (as Fill returns them) holds in databases dbs,
// or in all of them when none is given.
func Total(counts map[int]int, dbs ...int) int64 {
	var n int
	if len(dbs) == 0 {
		for _, c := range counts {
			n += c
		}
		return int64(n)
	}
	for _, db := range dbs {
		n += counts[db]
	}
	return int64(n)
}

// SetKeys sets n string keys of database db of s, prefix followed by 0 to n-1, key i to
// value(i), in one pipeline. Numbered and Same make the usual values.
func SetKeys(t testing.TB, s *Server, db int, prefix string, n int, value func(i int) string) {
	t.Helper()
	c := s.Client(t, db)
	cmds := make(rueidis.Commands, n)
	for i := range cmds {
		cmds[i] = c.B().Set().Key(prefix + strconv.Itoa(i)).Value(value(i)).Build()
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatalf("redistest: set keys on %s db %d: %v", s.Addr, db, err)
		}
	}
}

// Numbered gives key i of SetKeys the value prefix followed by i.
func Numbered(prefix string) func(int) string {
	return func(i int) string { return prefix + strconv.Itoa(i) }
}

// Same gives every key of SetKeys the value v.
func Same(v string) func(int) string {
	return func(int) string { return v }
}

// DBSize returns the number of keys in the cluster: the sum over its masters.
func (c *Cluster) DBSize(t testing.TB) int64 {
	t.Helper()
	var n int64
	for _, s := range c.Masters {
		n += s.DBSize(t, 0)
	}
	return n
}

// Flush empties every master (FLUSHALL); their replicas follow.
func (c *Cluster) Flush(t testing.TB) {
	t.Helper()
	for _, s := range c.Masters {
		s.Do(t, 0, "FLUSHALL")
	}
}

package redistest

import (
	"strings"
	"testing"
)

// TestDiffFindsEachDifference plants one difference of each kind and expects Diff to
// report it, and nothing on an exact copy.
func TestDiffFindsEachDifference(t *testing.T) {
	t.Parallel()
	a, b := Start(t, Config{}), Start(t, Config{})
	for _, s := range []*Server{a, b} {
		Fill(t, s, Dataset{Small: true})
	}
	if d := Diff(t, a, b, 0, ""); len(d) != 0 {
		t.Fatalf("identical fills differ: %v", d)
	}
	b.Do(t, 0, "DEL", "db0:str:int")
	b.Do(t, 0, "SET", "extra", "1")
	b.Do(t, 0, "RPUSH", "db0:list:small", "more")
	b.Do(t, 0, "PERSIST", "db0:str:ttl")
	b.Do(t, 0, "DEL", "db0:set:small")
	b.Do(t, 0, "HSET", "db0:set:small", "f", "v")
	b.Do(t, 0, "XACK", "db0:stream", "g1", "0-0")
	b.Do(t, 0, "XGROUP", "CREATECONSUMER", "db0:stream", "g1", "carol")
	got := strings.Join(Diff(t, a, b, 0, ""), "\n")
	for _, want := range []string{`"db0:str:int" missing`, `"extra" extra`, `"db0:list:small" value differs`,
		`"db0:str:ttl" TTL`, `"db0:set:small" type set != hash`, `"db0:stream" stream groups differ`} {
		if !strings.Contains(got, want) {
			t.Errorf("Diff does not report %s; it says:\n%s", want, got)
		}
	}
}

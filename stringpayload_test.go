package migrate

import (
	"strings"
	"testing"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestStringOfPayload decodes real DUMP payloads of every string encoding and checks them
// against GET; damaged payloads and other types are refused.
func TestStringOfPayload(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{})
	values := []string{"", "a", "12", "-100", "30000", "-2000000000", "9223372036854775807", "007",
		strings.Repeat("x", 63), strings.Repeat("y", 64), strings.Repeat("ab", 9000), // LZF
		"binary\x00\xff\r\n", strings.Repeat("z", 20000)}
	for i, v := range values {
		key := "k" + string(rune('A'+i))
		srv.Do(t, 0, "SET", key, v)
		p, err := srv.Do(t, 0, "DUMP", key).ToString()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := stringOfPayload(p, true)
		if !ok || got != v {
			t.Errorf("value %.20q: decoded %.20q, %v", v, got, ok)
		}
		damaged := []byte(p)
		damaged[len(damaged)/2] ^= 1
		if _, ok := stringOfPayload(string(damaged), true); ok {
			t.Errorf("value %.20q: a damaged payload decodes", v)
		}
	}
	srv.Do(t, 0, "RPUSH", "list", "a")
	p, _ := srv.Do(t, 0, "DUMP", "list").ToString()
	if _, ok := stringOfPayload(p, true); ok {
		t.Error("a list payload decodes as a string")
	}
}

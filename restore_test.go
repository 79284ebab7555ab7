package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestRestoreIncompatiblePayload gives a real target a payload that claims a newer RDB
// version than it reads: the error wraps ErrIncompatible and names both versions.
func TestRestoreIncompatiblePayload(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{})
	srv.Do(t, 0, "SET", "k", "v")
	payload, err := srv.Do(t, 0, "DUMP", "k").ToString()
	if err != nil {
		t.Fatal(err)
	}
	forged := []byte(payload)
	forged[len(forged)-10] = 99 // the RDB version, just before the CRC
	m, err := New(srv.Option(), srv.Option())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	j, err := m.(*migrator).job(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRestorer(ctx, j)
	if err != nil {
		t.Fatal(err)
	}
	err = r.restore(ctx, 0, []dumped{{key: "new", payload: string(forged)}})
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("err = %v, want ErrIncompatible", err)
	}
	v := j.Target.Info.Version
	if !strings.Contains(err.Error(), "target runs Redis "+v) || !strings.Contains(err.Error(), `"new"`) {
		t.Errorf("error does not name the versions and key: %v", err)
	}
}

func TestRDBVersionOf(t *testing.T) {
	for v, want := range map[string]int{"2.8.24": 6, "3.2.12": 7, "4.0.14": 8, "5.0.7": 9, "6.2.14": 9, "7.0.15": 10, "7.2.4": 11, "7.4.1": 12, "8.0.2": 12} {
		if got := rdbVersionOf(versionNumber(v)); got != want {
			t.Errorf("RDB version of %s = %d, want %d", v, got, want)
		}
	}
}

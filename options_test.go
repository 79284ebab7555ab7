package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestRateLimitDeadline copies under a low rate limit with a deadline the limit cannot
// meet: the error must wrap context.DeadlineExceeded, as any other deadline does.
func TestRateLimitDeadline(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.AddKeys(t, src, 0, "k", 2000, 8)
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithRateLimit(500))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := m.Migrate(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v: want one wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned %v after the start, with a deadline of 700ms", d)
	}
	if rep == nil || rep.Keys == 0 || rep.Keys >= 2000 {
		t.Errorf("report %+v: want some of the 2000 keys copied before the deadline", rep)
	}
	if n := dst.DBSize(t, 0); rep != nil && n != rep.Keys {
		t.Errorf("target holds %d keys, report says %d copied", n, rep.Keys)
	}
}

// TestDBPrefixFormats refuses the formats under which keys of two databases may take one
// name, saying why, and accepts the others.
func TestDBPrefixFormats(t *testing.T) {
	t.Parallel()
	src, dst := redistest.OptionFor("127.0.0.1:1"), redistest.OptionFor("127.0.0.1:2")
	for _, tc := range []struct {
		format string
		want   string // in the error; "" when accepted
	}{
		{"db%d", `key "2k" of database 1 and key "k" of database 12 would both be "db12k"`},
		{"%d", `key "2k" of database 1 and key "k" of database 12 would both be "12k"`},
		{"db%d0", `key "20k" of database 1 and key "k" of database 102 would both be "db1020k"`},
		{"db%d%s", "exactly one %d"},
		{"db%5d:", "exactly one %d"},
		{"db", "exactly one %d"},
		{"db%d:", ""},
		{"%d:", ""},
		{"{db%d}", ""},
		{"db%d0:", ""},
		{"db%d/x", ""},
		{"", ""},
	} {
		_, err := migrate.New(src, dst, migrate.WithDBPrefix(tc.format))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("WithDBPrefix(%q): %v, want it accepted", tc.format, err)
		case tc.want != "" && err == nil:
			t.Errorf("WithDBPrefix(%q) accepted, want it refused", tc.format)
		case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"db%d:"`)):
			t.Errorf("WithDBPrefix(%q): %v, want it to say %q and give \"db%%d:\" as an example", tc.format, err, tc.want)
		}
	}
	// An empty format keeps the names: under Replace a shared name would lose a value silently.
	for _, opts := range [][]migrate.Option{
		{migrate.WithDBPrefix(""), migrate.WithConflict(migrate.Replace)},
		{migrate.WithConflict(migrate.Replace), migrate.WithDBPrefix("")},
	} {
		if _, err := migrate.New(src, dst, opts...); err == nil || !strings.Contains(err.Error(), "Replace") || !strings.Contains(err.Error(), "db%d:") {
			t.Errorf("WithDBPrefix(\"\") with Replace: %v, want a refusal that says why and what to do", err)
		}
	}
	for _, p := range []migrate.Conflict{migrate.Fail, migrate.Skip} {
		if _, err := migrate.New(src, dst, migrate.WithDBPrefix(""), migrate.WithConflict(p)); err != nil {
			t.Errorf("WithDBPrefix(\"\") with %v: %v", p, err)
		}
	}
	if _, err := migrate.New(src, dst, migrate.WithDBPrefix("db%d:"), migrate.WithConflict(migrate.Replace)); err != nil {
		t.Errorf("WithDBPrefix(\"db%%d:\") with Replace: %v", err)
	}
}

// TestDBPrefixKeepsDatabasesApart copies key "2k" of database 1 and key "k" of database 12
// into one database under Replace: both stay, each under its own name.
func TestDBPrefixKeepsDatabasesApart(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	src.Do(t, 1, "SET", "2k", "from-db1")
	src.Do(t, 12, "SET", "k", "from-db12")
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithDBPrefix("db%d:"), migrate.WithConflict(migrate.Replace), migrate.WithVerify())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Keys != 2 || rep.Verify == nil || !rep.Verify.Equal() || rep.Verify.Compared != 2 {
		t.Errorf("report %v, verify %v: want 2 keys copied, compared and equal", rep, rep.Verify)
	}
	for k, want := range map[string]string{"db1:2k": "from-db1", "db12:k": "from-db12"} {
		if got, err := dst.Do(t, 0, "GET", k).ToString(); err != nil || got != want {
			t.Errorf("target %q = %q (%v), want %q", k, got, err, want)
		}
	}
	if n := dst.DBSize(t, 0); n != 2 {
		t.Errorf("target db 0 holds %d keys, want 2", n)
	}
}

// TestEmptyDBPrefixSharedName: with the names kept, a name in two databases with two
// values is reported under Fail and counted skipped under Skip, never lost silently.
func TestEmptyDBPrefixSharedName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy  migrate.Conflict
		wantErr error
		skipped int64
	}{{migrate.Fail, migrate.ErrConflict, 0}, {migrate.Skip, nil, 1}} {
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		src.Do(t, 1, "SET", "k", "from-db1")
		src.Do(t, 2, "SET", "k", "from-db2")
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithDBPrefix(""), migrate.WithConflict(tc.policy))
		if !errors.Is(err, tc.wantErr) || (err == nil && rep.Skipped != tc.skipped) {
			t.Errorf("%v: %v, %v: want error %v and %d skipped", tc.policy, rep, err, tc.wantErr, tc.skipped)
		}
		if got, _ := dst.Do(t, 0, "GET", "k").ToString(); got != "from-db1" && got != "from-db2" {
			t.Errorf("%v: target k = %q, want the value of the database copied first", tc.policy, got)
		}
	}
}

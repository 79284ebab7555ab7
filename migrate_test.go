package migrate_test

// The helpers every test of the package uses to run a migration and judge its outcome.
// Helpers that start or read servers live in internal/redistest; these need the migrate
// package, which internal/redistest may not import (the package's own tests import it).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
)

// migrateTimeout bounds one migration of a test: far more than any needs, so that a hang
// fails the test rather than the whole run.
const migrateTimeout = 2 * time.Minute

// runMigration migrates src into dst with strategy s and opts, within migrateTimeout, and
// returns the report and the error.
func runMigration(t *testing.T, src, dst rueidis.ClientOption, s migrate.Strategy, opts ...migrate.Option) (*migrate.Report, error) {
	t.Helper()
	m, err := migrate.New(src, dst, append([]migrate.Option{migrate.WithStrategy(s)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	return m.Migrate(ctx)
}

// mustMigrate is runMigration that fails the test on an error.
func mustMigrate(t *testing.T, src, dst rueidis.ClientOption, s migrate.Strategy, opts ...migrate.Option) *migrate.Report {
	t.Helper()
	rep, err := runMigration(t, src, dst, s, opts...)
	if err != nil {
		t.Fatalf("Migrate with %s: %v", s.Name(), err)
	}
	return rep
}

// migrateOK runs m within migrateTimeout, fails the test on error, closes m and returns
// the report: for a Migrator the test built itself.
func migrateOK(t *testing.T, m migrate.Migrator) *migrate.Report {
	t.Helper()
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	rep, err := m.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return rep
}

// wantRefused fails the test unless err is a refusal (ErrUnsupported) whose message holds
// every one of parts.
func wantRefused(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, migrate.ErrUnsupported) {
		t.Fatalf("err = %v, want a refusal wrapping ErrUnsupported", err)
	}
	t.Log(err)
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

// assertErrorSays fails unless err is set, says each of want and none of never (in its
// message or its %+v form).
func assertErrorSays(t *testing.T, err error, want, never []string) {
	t.Helper()
	if err == nil {
		t.Fatal("Migrate succeeded, want an error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	for _, n := range never {
		if strings.Contains(fmt.Sprintf("%v %+v", err, err), n) {
			t.Errorf("error %q contains %q", err, n)
		}
	}
}

// assertCopied fails unless the report counts, per database of want and in total, want's
// number of keys scanned and copied, no other database, and nothing failed, skipped or
// expired.
func assertCopied[N int | int64](t *testing.T, rep *migrate.Report, want map[int]N) {
	t.Helper()
	var total int64
	for db, n := range want {
		total += int64(n)
		if c := rep.Databases[db]; c.Keys != int64(n) || c.Scanned != int64(n) {
			t.Errorf("report db %d: %+v, want %d keys scanned and copied", db, c, n)
		}
	}
	for db, c := range rep.Databases {
		if _, ok := want[db]; !ok {
			t.Errorf("report counts database %d, which holds nothing to copy: %+v", db, c)
		}
	}
	if rep.Keys != total || rep.Scanned != total || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
		t.Errorf("report %+v, want %d keys scanned and copied and nothing else", rep.Counts, total)
	}
}

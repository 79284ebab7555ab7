package migrate_test

import (
	"testing"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

func TestDumpRestoreConformance(t *testing.T) {
	t.Parallel()
	runConformance(t, migrate.DumpRestore{}, redistest.Config{}, redistest.Config{})
}

package migrate_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestFollowTargetRestart restarts the target (appendonly yes, appendfsync always, so it
// keeps every write it acknowledged) while a Snapshot follows a writer's stream: the batch
// under way when it went down is settled by the offset key once it is back, and the follow
// goes on with no write lost or applied twice.
func TestFollowTargetRestart(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: []string{fastSync}},
		redistest.Config{Lines: []string{"appendonly yes", "appendfsync always"}})
	followUnderFault(t, src, dst, "the target went down", func() error {
		time.Sleep(300 * time.Millisecond)
		if err := dst.Restart(700 * time.Millisecond); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		return nil
	})
}

// followUnderFault follows a writer's stream from src into dst with a Snapshot, making fault
// while following, and checks that at least one batch was under way when it struck (settled
// by the offset key), that the target ends as the source with every counter exact, and that
// the offset key is gone.
func followUnderFault(t *testing.T, src, dst *redistest.Server, what string, fault func() error) {
	t.Helper()
	loadFunction(t, src)
	redistest.AddKeys(t, src, 0, "bulk:", 500, 10)
	w := startFollowWriter(t, src, time.Millisecond)
	var log logLines
	rep, err := followUntil(t, src, dst, func(context.Context) error {
		if err := fault(); err != nil {
			return err
		}
		_, err := w.Stop()
		return err
	}, migrate.WithDatabases(0, 1, 2), migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the writer's keys of 150 ms expire on both sides
	recovered := log.count("reading the offset key")
	t.Logf("report %+v; %d batches under way when %s, %d of which had landed", rep, recovered, what, log.count("had landed"))
	if recovered == 0 {
		t.Errorf("no batch was under way when %s", what)
	}
	if os.Getenv("DEBUGLOG") != "" {
		t.Log(log.b.String()) // DEBUGLOG=1 shows the log
	}
	redistest.AssertSame(t, src, dst, 0, 1, 2)
	assertSameCounters(t, src, dst)
	if n, _ := dst.Do(t, 0, "EXISTS", "migrate:offset").AsInt64(); n != 0 {
		t.Error("the offset key is left on the target")
	}
}

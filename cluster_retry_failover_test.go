package migrate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestMigrateKeysSourceFailoverWaitsOnce stops a master of the source cluster once keys
// are copying: MigrateKeys waits for its replica to take over and copies every key. The
// failed MIGRATE blocks sent in one pipeline are one try of the retry policy, not one wait
// each, so the copy ends a few seconds after the failover (cluster-node-timeout 2 s here)
// rather than after many pauses.
func TestMigrateKeysSourceFailoverWaitsOnce(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	const keys = 3000
	src.AddKeys(t, "k:", keys, 100)
	var once sync.Once
	stop := func(p migrate.Progress) {
		if p.Keys > 0 {
			once.Do(src.Masters[0].Stop)
		}
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}),
		migrate.WithRateLimit(1500), migrate.WithBatchSize(50), migrate.WithProgress(stop))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := m.Migrate(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	src.WaitOK(t, src.Masters[1])
	if rep.Keys != keys || rep.Failed != 0 {
		t.Errorf("report %+v, want %d keys copied", rep.Counts, keys)
	}
	if took > 20*time.Second {
		t.Errorf("the copy took %v: it waited far longer than the failover", took)
	}
	redistest.AssertSameSides(t, src.Side(t), dst.Side(t), "")
}

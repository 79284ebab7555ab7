package migrate_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestTargetFailoverLosesNothing kills a master of the target cluster during the copy at a
// moment when its replica lacks its last writes (the replica's link is cut and cannot come
// back), as an asynchronous replica may: the master acknowledged those writes, and the
// replica promoted in its place does not have them. Every strategy ends with the target
// holding every key all the same.
func TestTargetFailoverLosesNothing(t *testing.T) {
	t.Parallel()
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{})
			dst := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
			const keys = 3000
			redistest.AddKeys(t, src, 0, "k:", keys, 100)
			dead := dst.Masters[1]
			var replica *redistest.Server
			for _, r := range dst.Replicas {
				if r.Info(t, "master_port") == strconv.Itoa(dead.Port) {
					replica = r
				}
			}
			if replica == nil {
				t.Fatalf("no replica of %s", dead.Addr)
			}
			var once sync.Once
			killed := make(chan struct{})
			kill := func(p migrate.Progress) {
				if p.Keys == 0 {
					return
				}
				once.Do(func() {
					go func() {
						defer close(killed)
						// The replica cannot log in again once its link is cut: the writes
						// the master takes from then on never reach it.
						replica.Do(t, 0, "CONFIG", "SET", "masterauth", "not-the-password")
						dead.Do(t, 0, "CLIENT", "KILL", "TYPE", "replica")
						time.Sleep(400 * time.Millisecond)
						dead.Stop()
					}()
				})
			}
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s),
				migrate.WithRateLimit(2000), migrate.WithBatchSize(50), migrate.WithProgress(kill))
			if err != nil {
				t.Fatal(err)
			}
			rep := migrateOK(t, m)
			select {
			case <-killed:
			default:
				t.Fatal("the master was not killed during the copy")
			}
			dst.WaitOK(t, dst.Masters[0])
			if rep.Keys != keys || rep.Failed != 0 {
				t.Errorf("report %+v, want %d keys copied", rep.Counts, keys)
			}
			redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
		})
	}
}

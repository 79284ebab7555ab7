package migrate_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"

	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestClusterReadFromReplicasSkipsUnsyncedReplica adds a replica to one master of a cluster
// whose first sync cannot finish (the master delays it for an hour), and walks the replicas:
// the master of that replica is read instead, and every key is copied.
func TestClusterReadFromReplicasSkipsUnsyncedReplica(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{})
	dst := redistest.Start(t, redistest.Config{})
	const n = 3000
	src.AddKeys(t, "k:", n, 10)
	master := src.Masters[1]
	masterID := src.ID(t, master)
	master.Do(t, 0, "CONFIG", "SET", "repl-diskless-sync", "yes")
	master.Do(t, 0, "CONFIG", "SET", "repl-diskless-sync-delay", "3600")
	replica := src.AddNode(t, redistest.Config{})
	replicaID := src.ID(t, replica)
	replica.Do(t, 0, "CLUSTER", "REPLICATE", masterID)
	src.WaitNodes(t, func(text string) bool {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, replicaID+" ") {
				return strings.Contains(line, "slave "+masterID)
			}
		}
		return false
	})
	if info, _ := replica.Do(t, 0, "INFO", "replication").ToString(); !strings.Contains(info, "master_link_status:down") {
		t.Fatalf("the new replica synced already; the test needs it not to:\n%s", info)
	}

	var log bytes.Buffer
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithReadFromReplicas(),
		migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if !strings.Contains(log.String(), "replica="+replica.Addr+" master="+master.Addr) || !strings.Contains(log.String(), "master_link_status:down") {
		t.Errorf("the log does not say which replica was passed over, and why:\n%s", log.String())
	}
	if rep.Keys != n || rep.Scanned != n || rep.Failed != 0 || rep.Skipped != 0 {
		t.Errorf("report %+v, want %d keys scanned and copied", rep.Counts, n)
	}
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
	if stats, _ := replica.Do(t, 0, "INFO", "commandstats").ToString(); strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
		t.Errorf("the replica that has not synced (%s) was walked", replica.Addr)
	}
	if stats, _ := master.Do(t, 0, "INFO", "commandstats").ToString(); !strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
		t.Errorf("its master %s was not walked", master.Addr)
	}
}

// TestClusterReadFromReplicasLinkLost walks the replicas of a cluster while one of them
// keeps losing its link to its master: the walk reads the rest of that master's slots on
// the master, and says so.
func TestClusterReadFromReplicasLinkLost(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1, Node: redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}}})
	dst := redistest.Start(t, redistest.Config{})
	const n = 3000
	src.AddKeys(t, "k:", n, 10)
	replica := src.Replicas[0]
	var master *redistest.Server
	info, _ := replica.Do(t, 0, "INFO", "replication").ToString()
	for _, m := range src.Masters {
		if strings.Contains(info, "master_port:"+strconv.Itoa(m.Port)+"\r\n") {
			master = m
		}
	}
	if master == nil {
		t.Fatalf("replica %s follows none of the masters:\n%s", replica.Addr, info)
	}
	// Once the walk has begun, keep cutting the replica's link.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	kc := replica.Client(t, 0)
	go func() {
		defer close(stopped)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			stats, _ := kc.Do(ctx, kc.B().Info().Section("commandstats").Build()).ToString()
			if strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
				kc.Do(ctx, kc.B().ClientKill().TypeMaster().Build())
			}
		}
	}()
	var log bytes.Buffer
	// A small scan count and a rate limit make a walk of many round trips, over a second.
	rep := mustMigrate(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithReadFromReplicas(),
		migrate.WithScanCount(10), migrate.WithRateLimit(2000), migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	cancel()
	<-stopped
	if rep.Keys != n || rep.Scanned != n || rep.Failed != 0 {
		t.Errorf("report %+v, want %d keys scanned and copied", rep.Counts, n)
	}
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
	if !strings.Contains(log.String(), "fell out of sync during the walk") || !strings.Contains(log.String(), "replica="+replica.Addr) {
		t.Errorf("the log does not say that replica %s was left for its master during the walk:\n%s", replica.Addr, log.String())
	}
	if stats, _ := master.Do(t, 0, "INFO", "commandstats").ToString(); !strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
		t.Errorf("master %s was not walked after its replica lost its link", master.Addr)
	}
}

// TestClusterAnnouncedHostnames copies from and into clusters that name their nodes by
// hostname and announce an IP nothing answers at, with every strategy that works with
// clusters, and compares key by key.
func TestClusterAnnouncedHostnames(t *testing.T) {
	t.Parallel()
	node := redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}}
	src := redistest.StartHostnameCluster(t, "localhost", node)
	dst := redistest.StartHostnameCluster(t, "localhost", node)
	srcCounts := redistest.FillCluster(t, src, redistest.Dataset{Small: true})
	one := redistest.Start(t, node) // a standalone server, target then source
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.MigrateKeys{}} {
		t.Run(s.Name(), func(t *testing.T) {
			// From the cluster into a standalone server.
			one.Do(t, 0, "FLUSHALL")
			rep := mustMigrate(t, src.Option(), one.Option(), s)
			want := 0
			for _, c := range srcCounts {
				want += c
			}
			if rep.Keys != int64(want) || rep.Failed != 0 {
				t.Errorf("from the cluster: report %+v, want %d keys copied", rep.Counts, want)
			}
			redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: one.Client(t, 0)}, "")

			// From that server back into the other cluster.
			dst.Flush(t)
			rep = mustMigrate(t, one.Option(), dst.Option(), s)
			if rep.Keys != int64(want) || rep.Failed != 0 {
				t.Errorf("into the cluster: report %+v, want %d keys copied", rep.Counts, want)
			}
			redistest.AssertSameSides(t, redistest.Side{Client: one.Client(t, 0)}, dst.Side(t), "")

			// From cluster to cluster.
			dst.Flush(t)
			rep = mustMigrate(t, src.Option(), dst.Option(), s)
			if rep.Keys != int64(want) || rep.Failed != 0 {
				t.Errorf("cluster to cluster: report %+v, want %d keys copied", rep.Counts, want)
			}
			redistest.AssertSameSides(t, src.Side(t), dst.Side(t), "")
		})
	}
}

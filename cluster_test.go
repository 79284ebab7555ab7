package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// clusterSide is one side of a cluster conformance run: a standalone server or a cluster.
type clusterSide struct {
	server  *redistest.Server
	cluster *redistest.Cluster
}

func (s clusterSide) option() rueidis.ClientOption {
	if s.cluster != nil {
		return s.cluster.Option()
	}
	return s.server.Option()
}

func startSide(t *testing.T, cluster bool, cfg redistest.ClusterConfig) clusterSide {
	t.Helper()
	if cluster {
		return clusterSide{cluster: redistest.StartCluster(t, cfg)}
	}
	return clusterSide{server: redistest.Start(t, cfg.Node)}
}

// runClusterConformance fills the source with the small conformance data set (a cluster
// gets every database's set in database 0), migrates it with s into an empty target (a
// standalone source's databases merged into a cluster target's database 0, names kept),
// compares both sides key by key and checks the report.
func runClusterConformance(t *testing.T, s migrate.Strategy, srcCluster, dstCluster bool, opts ...migrate.Option) *migrate.Report {
	t.Helper()
	src := startSide(t, srcCluster, redistest.ClusterConfig{Node: redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}}})
	dst := startSide(t, dstCluster, redistest.ClusterConfig{})
	d := redistest.Dataset{Small: true}
	var counts map[int]int
	if srcCluster {
		counts = redistest.FillCluster(t, src.cluster, d)
	} else {
		counts = redistest.Fill(t, src.server, d)
		if dstCluster {
			opts = append(opts, migrate.WithDBPrefix(""))
		}
	}
	m, err := migrate.New(src.option(), dst.option(), append([]migrate.Option{migrate.WithStrategy(s), migrate.WithVerify()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := m.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	assertSameClusterData(t, src, dst)
	if v := rep.Verify; v == nil || !v.Equal() || v.Compared != rep.Keys {
		t.Errorf("verify: %v, want every one of %d keys compared and equal", v, rep.Keys)
	}
	want := 0
	for _, n := range counts {
		want += n
	}
	if rep.Keys != int64(want) || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
		t.Errorf("report %+v, want %d keys copied and nothing else", rep.Counts, want)
	}
	if !srcCluster && rep.Scanned != int64(want) {
		t.Errorf("report scanned %d keys, want %d", rep.Scanned, want)
	}
	if rep.Strategy != s.Name() {
		t.Errorf("report strategy %q, want %q", rep.Strategy, s.Name())
	}
	return rep
}

// assertSameClusterData compares every data set database of src and dst, wherever it is:
// database N of a standalone server, or the keys "dbN:*" of a cluster's database 0.
func assertSameClusterData(t *testing.T, src, dst clusterSide) {
	t.Helper()
	side := func(s clusterSide, db int) redistest.Side {
		if s.cluster != nil {
			return s.cluster.Side(t)
		}
		if src.cluster != nil {
			db = 0 // a cluster source goes into database 0
		}
		return redistest.Side{Client: s.server.Client(t, db)}
	}
	for _, db := range redistest.DatasetDBs {
		redistest.AssertSameSides(t, side(src, db), side(dst, db), fmt.Sprintf("db%d:*", db))
	}
}

func TestClusterDumpRestore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src, dst bool
	}{
		{"standalone-to-cluster", false, true},
		{"cluster-to-standalone", true, false},
		{"cluster-to-cluster", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runClusterConformance(t, migrate.DumpRestore{}, tc.src, tc.dst)
		})
	}
}

var _ = errors.Is
var _ = strings.Contains

func TestClusterSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src, dst bool
	}{
		{"standalone-to-cluster", false, true},
		{"cluster-to-standalone", true, false},
		{"cluster-to-cluster", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runClusterConformance(t, migrate.Snapshot{}, tc.src, tc.dst)
		})
	}
}

func TestClusterMigrateKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src, dst bool
	}{
		{"standalone-to-cluster", false, true},
		{"cluster-to-standalone", true, false},
		{"cluster-to-cluster", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runClusterConformance(t, migrate.MigrateKeys{}, tc.src, tc.dst)
		})
	}
}

package redistest

import (
	"strconv"
	"testing"

	"github.com/redis/rueidis"
)

// StartPair starts a source and a target server, both stopped when the test ends.
func StartPair(t testing.TB, srcCfg, dstCfg Config) (src, dst *Server) {
	t.Helper()
	return Start(t, srcCfg), Start(t, dstCfg)
}

// Deployment is one side of a migration that may be a standalone server or a cluster:
// exactly one of Server and Cluster is set.
type Deployment struct {
	Server  *Server
	Cluster *Cluster
	client  rueidis.Client // the cluster's, opened by StartDeployment
}

// StartDeployment starts a cluster configured by cfg when cluster is set, else one server
// configured by cfg.Node; either is stopped when the test ends.
func StartDeployment(t testing.TB, cluster bool, cfg ClusterConfig) *Deployment {
	t.Helper()
	if cluster {
		c := StartCluster(t, cfg)
		return &Deployment{Cluster: c, client: c.Client(t)}
	}
	return &Deployment{Server: Start(t, cfg.Node)}
}

// Option returns the rueidis options that reach the server or the cluster.
func (d *Deployment) Option() rueidis.ClientOption {
	if d.Cluster != nil {
		return d.Cluster.Option()
	}
	return d.Server.Option()
}

// Side returns database db as a side to compare (see CompareSides); a cluster has database
// 0 only, and db is then ignored.
func (d *Deployment) Side(t testing.TB, db int) Side {
	t.Helper()
	if d.Cluster != nil {
		return d.Cluster.Side(t)
	}
	return Side{Client: d.Server.Client(t, db)}
}

// Fill writes the conformance data set (see Fill and FillCluster) and returns the number
// of keys written per data set database.
func (d *Deployment) Fill(t testing.TB, ds Dataset) map[int]int {
	t.Helper()
	if d.Cluster != nil {
		return FillCluster(t, d.Cluster, ds)
	}
	return Fill(t, d.Server, ds)
}

// Flush empties every database of every master (FLUSHALL), so that rows of a table that
// share servers start from nothing; a cluster's replicas follow their masters.
func (d *Deployment) Flush(t testing.TB) {
	t.Helper()
	if d.Cluster != nil {
		d.Cluster.Flush(t)
		return
	}
	d.Server.Do(t, 0, "FLUSHALL")
}

// DBSize returns the number of keys in databases dbs of the server (database 0 when none
// is given), or in the cluster.
func (d *Deployment) DBSize(t testing.TB, dbs ...int) int64 {
	t.Helper()
	if d.Cluster != nil {
		return d.Cluster.DBSize(t)
	}
	return d.Server.DBSize(t, dbs...)
}

// Get returns the string value of key, "" when it has none: from database 0 of the
// server, or from the cluster.
func (d *Deployment) Get(t testing.TB, key string) string {
	t.Helper()
	if d.Cluster != nil {
		c := d.client
		v, err := c.Do(t.Context(), c.B().Get().Key(key).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			t.Fatalf("redistest: GET %q on the cluster: %v", key, err)
		}
		return v
	}
	return d.Server.Get(t, key)
}

// Do runs one command on database 0 of the server, or on the cluster (routed by its
// first key), failing the test on error.
func (d *Deployment) Do(t testing.TB, args ...string) rueidis.RedisResult {
	t.Helper()
	if d.Cluster == nil {
		return d.Server.Do(t, 0, args...)
	}
	c := d.client
	r := c.Do(t.Context(), c.B().Arbitrary(args[0]).Keys(args[1]).Args(args[2:]...).Build())
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("redistest: %v on the cluster: %v", args, err)
	}
	return r
}

// SetKeys sets n string keys of database 0, prefix followed by 0 to n-1, key i to
// value(i), as SetKeys does on a server.
func (d *Deployment) SetKeys(t testing.TB, prefix string, n int, value func(i int) string) {
	t.Helper()
	if d.Cluster == nil {
		SetKeys(t, d.Server, 0, prefix, n, value)
		return
	}
	c := d.client
	cmds := make(rueidis.Commands, n)
	for i := range cmds {
		cmds[i] = c.B().Set().Key(prefix + strconv.Itoa(i)).Value(value(i)).Build()
	}
	for _, r := range c.DoMulti(t.Context(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatalf("redistest: set keys on the cluster: %v", err)
		}
	}
}

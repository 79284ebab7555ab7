package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Cluster is a Redis Cluster of real servers on loopback.
type Cluster struct {
	Masters  []*Server
	Replicas []*Server // Replicas[i] replicates Masters[i] when replicas were asked for
	Password string
	all      []*Server
}

// ClusterConfig says how to start a cluster. The zero value is three masters without
// replicas.
type ClusterConfig struct {
	Masters  int // default 3
	Replicas int // replicas per master, default 0
	// Node configures every node; cluster settings are added to it.
	Node Config
}

// size is the number of nodes.
func (cfg ClusterConfig) size() int {
	if cfg.Masters == 0 {
		return 3 * (1 + cfg.Replicas)
	}
	return cfg.Masters * (1 + cfg.Replicas)
}

// StartCluster starts a cluster with redis-cli --cluster create, waits until every node
// says cluster_state:ok, and stops it when the test ends.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed: run `make test` or `apt-get install redis-tools`")
	}
	Binary(t)
	n := cfg.size()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	c, err := launchCluster(cfg, dirs)
	if c != nil {
		t.Cleanup(c.Stop)
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// LaunchCluster is StartCluster for programs that are not tests (the benchmark): each node
// works in a directory of its own under dir. The caller stops it with Stop.
func LaunchCluster(cfg ClusterConfig, dir string) (*Cluster, error) {
	n := cfg.size()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(dirs[i], 0o700); err != nil {
			return nil, err
		}
	}
	c, err := launchCluster(cfg, dirs)
	if err != nil && c != nil {
		c.Stop()
	}
	return c, err
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, s := range c.all {
		s.Stop()
	}
}

func launchCluster(cfg ClusterConfig, dirs []string) (*Cluster, error) {
	if cfg.Masters == 0 {
		cfg.Masters = 3
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli is not installed: run `make test` or `apt-get install redis-tools`")
	}
	c := &Cluster{Password: cfg.Node.Password}
	nodes := make([]*Server, len(dirs))
	for i := range nodes {
		node := cfg.Node
		node.Lines = append(append([]string(nil), node.Lines...),
			"cluster-enabled yes", "cluster-node-timeout 2000", "cluster-require-full-coverage no")
		if node.Password != "" {
			node.Lines = append(node.Lines, "masterauth "+node.Password)
		}
		if port, err := FreePort(); err == nil {
			// The bus port defaults to port+10000, which may be taken: choose a free one.
			node.Lines = append(node.Lines, fmt.Sprintf("cluster-port %d", port))
		}
		node.Dir = dirs[i]
		s, err := Launch(node)
		if err != nil {
			return c, err
		}
		nodes[i] = s
		c.all = append(c.all, s)
	}
	args := []string{"--cluster", "create"}
	for _, s := range nodes {
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.Replicas), "--cluster-yes")
	if cfg.Node.Password != "" {
		args = append(args, "-a", cfg.Node.Password, "--no-auth-warning")
	}
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.Masters = nodes[:cfg.Masters]
	if err := c.waitOK(context.Background(), nodes, cfg.Masters*cfg.Replicas); err != nil {
		return c, err
	}
	// redis-cli pairs replicas with masters itself; read who follows whom.
	c.Replicas = append(c.Replicas, nodes[cfg.Masters:]...)
	return c, nil
}

// waitOK waits until every node reports cluster_state:ok, knows every node, and knows
// replicas of them as replicas.
func (c *Cluster) waitOK(ctx context.Context, nodes []*Server, replicas int) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range nodes {
		cl, err := s.Connect(0)
		if err != nil {
			return err
		}
		for {
			info, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(nodes))) {
				text, _ := cl.Do(ctx, cl.B().ClusterNodes().Build()).ToString()
				if strings.Count(text, "slave") >= replicas {
					break
				}
			}
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("cluster node %s not ready after 30s: %v %s", s.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return nil
}

// Option returns the rueidis options that reach the cluster.
func (c *Cluster) Option() rueidis.ClientOption {
	var addrs []string
	for _, s := range c.Masters {
		addrs = append(addrs, s.Addr)
	}
	return rueidis.ClientOption{InitAddress: addrs, Password: c.Password, DisableCache: true}
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) rueidis.Client {
	t.Helper()
	return clusterClient(t, c.Option())
}

// clusterClient connects with opt, or fails the test; the client is closed when it ends.
func clusterClient(t testing.TB, opt rueidis.ClientOption) rueidis.Client {
	t.Helper()
	cl, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("redistest: connect to cluster %v: %v", opt.InitAddress, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Side returns the cluster as a side to compare: a cluster client, and a client of each
// node that is a master now (failovers included), all closed when the test ends.
func (c *Cluster) Side(t testing.TB) Side {
	t.Helper()
	side := Side{Client: c.Client(t)}
	for _, s := range c.Nodes() {
		if s.Stopped() {
			continue
		}
		cl := s.Client(t, 0)
		role, err := cl.Do(context.Background(), cl.B().Role().Build()).ToArray()
		if err != nil || len(role) == 0 {
			continue
		}
		if r, _ := role[0].ToString(); r == "master" {
			side.Nodes = append(side.Nodes, cl)
		}
	}
	return side
}

// Nodes returns every node, masters first.
func (c *Cluster) Nodes() []*Server {
	return append(append([]*Server(nil), c.Masters...), c.Replicas...)
}

// FillCluster writes the conformance data set of each database of d (DatasetDBs by
// default) into database 0 of the cluster: a cluster has no other, and the keys of the data
// set of database N all start with "dbN:". It returns the number of keys written per N.
func FillCluster(t testing.TB, c *Cluster, d Dataset) map[int]int {
	t.Helper()
	cl := c.Client(t)
	counts := map[int]int{}
	for _, db := range d.dbs() {
		cmds := datasetCommands(cl, db, d)
		for i, r := range cl.DoMulti(context.Background(), cmds.list...) {
			if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
				t.Fatalf("redistest: fill cluster with db %d's data set: %v: %v", db, cmds.list[i].Commands()[0], err)
			}
		}
		counts[db] = len(cmds.keys)
	}
	return counts
}

// ID returns the cluster node id of s.
func (c *Cluster) ID(t testing.TB, s *Server) string {
	t.Helper()
	id, err := s.Do(t, 0, "CLUSTER", "MYID").ToString()
	if err != nil {
		t.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr, err)
	}
	return id
}

// Reshard moves n slots from master from to master to with redis-cli --cluster reshard,
// which migrates their keys. fromID and toID are the masters' ids (ID). It returns
// redis-cli's error and output, so that it can run beside the test's goroutine.
func (c *Cluster) Reshard(via *Server, fromID, toID string, n int) error {
	args := []string{"--cluster", "reshard", via.Addr, "--cluster-from", fromID, "--cluster-to", toID,
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes", "--cluster-pipeline", "20"}
	if c.Password != "" {
		args = append(args, "-a", c.Password, "--no-auth-warning")
	}
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	return nil
}

// WaitOK waits until server s, which must be up, says cluster_state:ok and that every slot
// is served.
func (c *Cluster) WaitOK(t testing.TB, s *Server) {
	t.Helper()
	cl := s.Client(t, 0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := cl.Do(context.Background(), cl.B().ClusterInfo().Build()).ToString()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not ok after 30s on %s: %v %s", s.Addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddKeys writes n string keys, prefix followed by 0 to n-1, each holding size bytes, into
// the cluster, and waits until every master's replicas have them.
func (c *Cluster) AddKeys(t testing.TB, prefix string, n, size int) {
	t.Helper()
	cl := c.Client(t)
	value := strings.Repeat("v", size)
	for start := 0; start < n; start += 1000 {
		end := min(start+1000, n)
		cmds := make(rueidis.Commands, 0, end-start)
		for i := start; i < end; i++ {
			cmds = append(cmds, cl.B().Set().Key(prefix+strconv.Itoa(i)).Value(value).Build())
		}
		for _, r := range cl.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Fatalf("redistest: add keys to the cluster: %v", err)
			}
		}
	}
	if len(c.Replicas) > 0 {
		for _, m := range c.Masters {
			m.Do(t, 0, "WAIT", strconv.Itoa(len(c.Replicas)/len(c.Masters)), "5000")
		}
	}
}

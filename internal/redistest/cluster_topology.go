package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clusterLines are the settings every node of a test cluster gets.
func clusterLines(node Config, busPort int) []string {
	lines := append(append([]string(nil), node.Lines...),
		"cluster-enabled yes", "cluster-node-timeout 2000", "cluster-require-full-coverage no",
		fmt.Sprintf("cluster-port %d", busPort))
	if node.Password != "" {
		lines = append(lines, "masterauth "+node.Password)
	}
	return lines
}

// AddNode starts one more cluster node, configured by node plus the cluster settings, makes
// it meet the cluster, and waits until every master knows it. It joins as a master without
// slots; the test decides what it becomes (CLUSTER REPLICATE, a reshard). It is stopped when
// the test ends.
func (c *Cluster) AddNode(t testing.TB, node Config) *Server {
	t.Helper()
	bus, err := FreePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	node.Lines = clusterLines(node, bus)
	s := Start(t, node)
	s.Do(t, 0, "CLUSTER", "MEET", c.Masters[0].Host, strconv.Itoa(c.Masters[0].Port), strconv.Itoa(c.busPort(t, c.Masters[0])))
	id := c.ID(t, s)
	c.WaitNodes(t, func(text string) bool { return strings.Contains(text, id) })
	// And until it knows every master.
	var ids []string
	for _, m := range c.Masters {
		ids = append(ids, c.ID(t, m))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		text, _ := s.Do(t, 0, "CLUSTER", "NODES").ToString()
		known := 0
		for _, mid := range ids {
			if strings.Contains(text, mid) {
				known++
			}
		}
		if known == len(ids) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: new node %s does not know every master after 30s:\n%s", s.Addr, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitNodes waits until the CLUSTER NODES of every master satisfies ok, which gets the
// reply as text, one node a line.
func (c *Cluster) WaitNodes(t testing.TB, ok func(text string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.Masters {
		for {
			text, err := m.Do(t, 0, "CLUSTER", "NODES").ToString()
			text = strings.TrimPrefix(text, "txt:") // RESP3 verbatim string
			if err == nil && ok(text) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: the cluster did not settle within 30s; %s says:\n%s", m.Addr, text)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// busPort returns the cluster bus port of node s.
func (c *Cluster) busPort(t testing.TB, s *Server) int {
	t.Helper()
	v, err := s.Do(t, 0, "CONFIG", "GET", "cluster-port").AsStrMap()
	if err != nil {
		t.Fatalf("redistest: CONFIG GET cluster-port on %s: %v", s.Addr, err)
	}
	port, _ := strconv.Atoi(v["cluster-port"])
	if port == 0 {
		port = s.Port + 10000
	}
	return port
}

// StartHostnameCluster starts a cluster of three masters that names its nodes to clients by
// hostname, as managed services do: every node announces hostname
// (cluster-announce-hostname) and prefers it (cluster-preferred-endpoint-type hostname), so
// CLUSTER SLOTS gives "hostname:port" while CLUSTER NODES still gives an IP. The IP the nodes
// announce is 127.0.0.2, where nothing but a relay of the cluster bus listens: a client that
// connects to the IP of CLUSTER NODES fails, one that uses the announced endpoint succeeds.
// hostname must resolve to 127.0.0.1 ("localhost"). It is stopped when the test ends.
func StartHostnameCluster(t testing.TB, hostname string, node Config) *Cluster {
	t.Helper()
	const announced = "127.0.0.2"
	c := &Cluster{Password: node.Password}
	buses := make([]int, 3)
	for i := range buses {
		bus, err := FreePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		buses[i] = bus
		cfg := node
		cfg.Lines = append(clusterLines(node, bus),
			"cluster-announce-ip "+announced,
			"cluster-announce-hostname "+hostname,
			"cluster-preferred-endpoint-type hostname")
		s := Start(t, cfg)
		// The nodes reach each other's bus at the announced IP: relay it to the real one.
		relay(t, net.JoinHostPort(announced, strconv.Itoa(bus)), net.JoinHostPort(s.Host, strconv.Itoa(bus)))
		c.Masters = append(c.Masters, s)
	}
	for i, s := range c.Masters {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		s.Do(t, 0, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
		s.Do(t, 0, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	for i, s := range c.Masters[1:] {
		c.Masters[0].Do(t, 0, "CLUSTER", "MEET", s.Host, strconv.Itoa(s.Port), strconv.Itoa(buses[i+1]))
	}
	if err := c.waitOK(context.Background(), c.Masters, 0); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c.WaitNodes(t, func(text string) bool {
		return strings.Count(text, ","+hostname+" ") == 3 && strings.Count(text, announced+":") == 3
	})
	return c
}

// relay copies every connection made to from, both ways, to to, until the test ends.
func relay(t testing.TB, from, to string) {
	t.Helper()
	l, err := net.Listen("tcp", from)
	if err != nil {
		t.Fatalf("redistest: relay %s to %s: %v", from, to, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			a, err := l.Accept()
			if err != nil {
				return // closed
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				a.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, a, b)
			mu.Unlock()
			for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = io.Copy(p[0], p[1]) // until either side goes away
					p[0].Close()
					p[1].Close()
				}()
			}
		}
	}()
}

package migrate

import (
	"strings"
	"testing"
)

func TestParseClusterNodes(t *testing.T) {
	t.Parallel()
	text := "txt:a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5 7 [8->-b2]\n" +
		"b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 8-10 [7-<-a1]\n" +
		"c3 :7002@17002 slave a1 0 0 1 connected\n" +
		"d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected\n"
	top, err := parseClusterNodes(text, "10.0.0.1:7000", endpointIP)
	if err != nil {
		t.Fatal(err)
	}
	for slot, want := range map[int]string{0: "a1", 5: "a1", 6: "", 7: "a1", 8: "b2", 10: "b2", 11: ""} {
		if got := top.owner[slot]; got != want {
			t.Errorf("slot %d owned by %q, want %q", slot, got, want)
		}
	}
	if to := top.migrating[8]; to != "b2" || len(top.migrating) != 1 {
		t.Errorf("migrating %v, want slot 8 to b2 only", top.migrating)
	}
	if a := top.nodes["b2"].addr; a != "127.0.0.1:7001" {
		t.Errorf("b2 at %q", a)
	}
	rs := top.replicasOf("a1")
	if len(rs) != 1 || rs[0].addr != "10.0.0.1:7002" {
		t.Errorf("replicas of a1: %+v, want c3 at the answering node's host", rs)
	}
	if !top.nodes["d4"].failed || !top.nodes["a1"].myself {
		t.Errorf("flags not read: %+v %+v", top.nodes["d4"], top.nodes["a1"])
	}
	ids, slots := top.masters()
	if len(ids) != 2 || len(slots["a1"]) != 7 || len(slots["b2"]) != 3 {
		t.Errorf("masters %v %v", ids, slots)
	}
}

func TestSplitNodeAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ field, ip, port, hostname string }{
		{"127.0.0.1:7000@17000", "127.0.0.1", "7000", ""},
		{"127.0.0.1:7000", "127.0.0.1", "7000", ""}, // before Redis 4
		{"127.0.0.1:7000@17000,node-a.example.com", "127.0.0.1", "7000", "node-a.example.com"},
		{"127.0.0.1:7000@17000,", "127.0.0.1", "7000", ""},
		{":7000@17000,node-a", "", "7000", "node-a"},
		{"127.0.0.1:7000@17000,node-a,shard-id=abc,tls-port=0", "127.0.0.1", "7000", "node-a"},
		{"127.0.0.1:7000@17000,,shard-id=abc", "127.0.0.1", "7000", ""},
		{"127.0.0.1:7000@17000,shard-id=abc,hostname=node-a", "127.0.0.1", "7000", "node-a"},
		{"::1:7000@17000,node-a", "::1", "7000", "node-a"},
		{":0@0", "", "0", ""},
	} {
		ip, port, hostname := splitNodeAddr(tc.field)
		if ip != tc.ip || port != tc.port || hostname != tc.hostname {
			t.Errorf("splitNodeAddr(%q) = %q, %q, %q; want %q, %q, %q", tc.field, ip, port, hostname, tc.ip, tc.port, tc.hostname)
		}
	}
}

// TestClusterEndpoints checks that each node gets the address rueidis would use, for each
// way a cluster names its nodes, as read from CLUSTER SLOTS.
func TestClusterEndpoints(t *testing.T) {
	t.Parallel()
	const text = "a1 10.0.0.1:7000@17000,node-a myself,master - 0 0 1 connected 0-8191\n" +
		"b2 10.0.0.2:7001@17001,node-b master - 0 0 2 connected 8192-16383\n" +
		"c3 10.0.0.3:7002@17002, slave a1 0 0 1 connected\n" +
		"d4 :7003@17003,node-d slave b2 0 0 2 connected\n" +
		"e5 :0@0,node-e master,noaddr - 0 0 0 disconnected\n"
	const self = "lb.example.com:7000"
	// The endpoints of a1, b2, c3 and d4, as CLUSTER SLOTS gives them; nil for null.
	str := func(s string) *string { return &s }
	slots := func(a, b, c, d *string) []slotEndpoint {
		var eps []slotEndpoint
		for i, e := range []*string{c, a, d, b} { // a replica first
			ep := slotEndpoint{id: []string{"c3", "a1", "d4", "b2"}[i], null: e == nil}
			if e != nil {
				ep.endpoint = *e
			}
			eps = append(eps, ep)
		}
		return eps
	}
	var null *string
	for _, tc := range []struct {
		name  string
		slots []slotEndpoint
		want  endpointType
		addrs map[string]string // "" for a node clients cannot reach
	}{
		{"ip", slots(str("10.0.0.1"), str("10.0.0.2"), str("10.0.0.3"), str("")), endpointIP,
			map[string]string{"a1": "10.0.0.1:7000", "b2": "10.0.0.2:7001", "c3": "10.0.0.3:7002", "d4": "lb.example.com:7003", "e5": ""}},
		{"hostname", slots(str("node-a"), str("node-b"), str("?"), str("node-d")), endpointHostname,
			map[string]string{"a1": "node-a:7000", "b2": "node-b:7001", "c3": "", "d4": "node-d:7003", "e5": ""}},
		{"unknown-endpoint", slots(null, null, null, null), endpointUnknown,
			map[string]string{"a1": "lb.example.com:7000", "b2": "lb.example.com:7001", "c3": "lb.example.com:7002", "d4": "lb.example.com:7003", "e5": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, err := parseClusterNodes(text, self, endpointIP)
			if err != nil {
				t.Fatal(err)
			}
			p := endpointTypeOf(tc.slots, top)
			if p != tc.want {
				t.Fatalf("endpoint type %v, want %v", p, tc.want)
			}
			top.locate(p, self)
			for id, want := range tc.addrs {
				n := top.nodes[id]
				if n.addr != want || n.failed != (want == "") {
					t.Errorf("%s at %q (failed %v), want %q", id, n.addr, n.failed, want)
				}
			}
			// The nodes' own replies, read during the walk, place them alike.
			again, err := parseClusterNodes(text, self, p)
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range tc.addrs {
				if a := again.nodes[id].addr; a != want {
					t.Errorf("%s at %q when parsed with %v, want %q", id, a, p, want)
				}
			}
		})
	}
}

func TestOutOfSync(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		info string
		ok   bool
	}{
		{"role:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\n", true},
		{"role:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nloading:0\r\n", true},
		{"role:slave\r\nmaster_link_status:down\r\nmaster_sync_in_progress:1\r\n", false}, // first sync
		{"role:slave\r\nmaster_link_status:down\r\nmaster_sync_in_progress:0\r\n", false},
		{"role:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nloading:1\r\n", false},
		{"role:master\r\n", false}, // promoted
		{"", false},
	} {
		if why := outOfSync(tc.info); (why == "") != tc.ok {
			t.Errorf("outOfSync(%q) = %q, want in sync %v", tc.info, why, tc.ok)
		}
	}
}

// TestClusterUnnamedMaster checks the message about a master that announces no hostname in
// a cluster that names its nodes by hostname: clients cannot reach it.
func TestClusterUnnamedMaster(t *testing.T) {
	t.Parallel()
	const text = "a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n" +
		"b2 10.0.0.2:7001@17001,node-b master - 0 0 2 connected 8192-16383\n"
	top, err := parseClusterNodes(text, "10.0.0.1:7000", endpointHostname)
	if err != nil {
		t.Fatal(err)
	}
	if n := top.nodes["a1"]; n.addr != "" || !n.failed {
		t.Errorf("a1 at %q (failed %v), want no address", n.addr, n.failed)
	}
	msg := top.unnamed([]uint16{0, 1, 8192})
	if !strings.Contains(msg, "master a1 (10.0.0.1:7000) announces no hostname") || !strings.Contains(msg, "cluster-announce-hostname") || strings.Contains(msg, "b2") {
		t.Errorf("unnamed: %q", msg)
	}
	if top.locate(endpointIP, "10.0.0.1:7000"); top.unnamed([]uint16{0}) != "" || top.nodes["a1"].addr != "10.0.0.1:7000" {
		t.Errorf("by IP: unnamed %q, a1 at %q", top.unnamed([]uint16{0}), top.nodes["a1"].addr)
	}
}

// TestEndpointTypeByName checks that a cluster is seen to prefer hostnames from a node's
// name alone, and IPs from its IP, whatever a node whose id is unknown says.
func TestEndpointTypeByName(t *testing.T) {
	t.Parallel()
	top, err := parseClusterNodes("a1 10.0.0.1:7000@17000,node-a myself,master - 0 0 1 connected 0-16383\n", "10.0.0.1:7000", endpointIP)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		eps  []slotEndpoint
		want endpointType
	}{
		{[]slotEndpoint{{endpoint: "node-a", id: "a1"}}, endpointHostname},
		{[]slotEndpoint{{endpoint: "10.0.0.1", id: "a1"}}, endpointIP},
		{[]slotEndpoint{{endpoint: "node-x", id: "zz"}, {endpoint: "node-a", id: "a1"}}, endpointHostname},
		{[]slotEndpoint{{endpoint: "", id: "a1"}}, endpointUnknown},
		{nil, endpointIP},
	} {
		if got := endpointTypeOf(tc.eps, top); got != tc.want {
			t.Errorf("endpointTypeOf(%+v) = %v, want %v", tc.eps, got, tc.want)
		}
	}
}

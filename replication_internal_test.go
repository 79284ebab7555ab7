package migrate

import (
	"errors"
	"strings"
	"testing"
)

// TestReplicationVersionCheck covers the version rule with versions the installed server
// cannot play: a replica must run the source's version or a newer one.
func TestReplicationVersionCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src, dst string
		ok       bool
	}{
		{"7.0.15", "7.0.15", true},
		{"6.2.14", "7.0.15", true},
		{"7.0.15", "7.2.4", true},
		{"4.0.14", "5.0.0", true},
		{"7.0.15", "7.0.9", false},
		{"7.2.0", "7.0.15", false},
		{"6.0.0", "5.0.14", false},
		{"", "5.0.0", true}, // unknown: the sync will tell
		{"7.0.0", "", true},
	} {
		j := &Job{
			Source: &Endpoint{Side: Source, Addr: "src:6379", Info: &ServerInfo{Version: tc.src}},
			Target: &Endpoint{Side: Target, Addr: "dst:6379", Info: &ServerInfo{Version: tc.dst}},
		}
		err := checkReplicaVersion(j)
		if (err == nil) != tc.ok {
			t.Errorf("source %q, target %q: %v, want ok=%v", tc.src, tc.dst, err, tc.ok)
			continue
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrIncompatible) {
			t.Errorf("source %q, target %q: %v does not wrap ErrUnsupported and ErrIncompatible", tc.src, tc.dst, err)
		}
		for _, want := range []string{"target dst:6379", "Redis " + tc.dst, "Redis " + tc.src, "upgrade the target"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	}
}

// TestReplicationCounting feeds the counters the INFO a target shows through a sync: its
// earlier keys while the transfer runs are not counted, keys loaded are, the counters
// never go back while it runs, and the last count leaves Keys at what the target holds.
func TestReplicationCounting(t *testing.T) {
	t.Parallel()
	j := &Job{Settings: Settings{Databases: []int{0, 3}}}
	s := &replicaSync{j: j, counted: map[int]int64{}, bytesBase: 100}
	steps := []struct {
		info      string
		final     bool
		keys, exp int64
		bytes     int64
	}{
		// Connecting, then receiving: the keyspace is still the target's own.
		{info: "master_link_status:down\nmaster_sync_in_progress:0\ntotal_net_repl_input_bytes:100\ndb0:keys=7,expires=0", keys: 0},
		{info: "master_link_status:down\nmaster_sync_in_progress:1\ntotal_net_repl_input_bytes:5100\ndb0:keys=7,expires=0", keys: 0, bytes: 5000},
		// Loading the source's data.
		{info: "master_link_status:down\nmaster_sync_in_progress:1\nloading:1\ntotal_net_repl_input_bytes:9100\ndb0:keys=40", keys: 40, bytes: 9000},
		// In sync, more keys written meanwhile.
		{info: "master_link_status:up\nmaster_sync_in_progress:0\nloading:0\ntotal_net_repl_input_bytes:9200\ndb0:keys=50\ndb3:keys=5", keys: 55, bytes: 9100},
		// Some expire: not counted back while it runs.
		{info: "master_link_status:up\nmaster_sync_in_progress:0\ntotal_net_repl_input_bytes:9300\ndb0:keys=45\ndb3:keys=5", keys: 55, bytes: 9200},
		// The end: Keys are what the target holds, the rest expired.
		{info: "role:master\ntotal_net_repl_input_bytes:9300\ndb0:keys=45\ndb3:keys=5", final: true, keys: 50, exp: 5, bytes: 9200},
	}
	for i, st := range steps {
		s.count(parseInfo(st.info), st.final)
		sum, per := j.Totals()
		if sum.Keys != st.keys || sum.Expired != st.exp || sum.Bytes != st.bytes {
			t.Fatalf("step %d: counts %+v, want %d keys, %d expired, %d bytes", i, sum, st.keys, st.exp, st.bytes)
		}
		if st.final && (per[0].Keys != 45 || per[3].Keys != 5 || per[0].Scanned != 50) {
			t.Errorf("final per database %+v, want db 0: 45 keys (50 seen), db 3: 5", per)
		}
	}
}

// TestReplicationCountingStoppedEarly stops before the target held the source's data: its
// own keys must not be counted as copied.
func TestReplicationCountingStoppedEarly(t *testing.T) {
	t.Parallel()
	j := &Job{Settings: Settings{Databases: []int{0}}}
	s := &replicaSync{j: j, counted: map[int]int64{}, bytesBase: -1}
	s.count(parseInfo("master_link_status:down\nmaster_sync_in_progress:1\nmaster_sync_read_bytes:300\ndb0:keys=7"), false)
	s.count(parseInfo("role:master\ndb0:keys=7"), true)
	if sum, _ := j.Totals(); sum.Keys != 0 || sum.Expired != 0 || sum.Bytes != 300 {
		t.Errorf("counts %+v, want no keys and the 300 bytes received", sum)
	}
}

// TestReplicationState reads a replica's state from INFO.
func TestReplicationState(t *testing.T) {
	t.Parallel()
	st := replState(parseInfo("role:slave\nmaster_link_status:up\nmaster_sync_in_progress:0\nslave_repl_offset:1234\nmaster_repl_offset:1234"))
	if !st.up || st.transfer || st.loading || st.offset != 1234 {
		t.Errorf("in sync: %+v", st)
	}
	st = replState(parseInfo("role:slave\nmaster_link_status:down\nmaster_sync_in_progress:1\nloading:1\nslave_repl_offset:1"))
	if st.up || !st.transfer || !st.loading || st.offset != -1 {
		t.Errorf("loading: %+v (an offset before the link is up means nothing)", st)
	}
	st = replState(parseInfo("role:master\nmaster_repl_offset:0"))
	if st.up || st.link != "none" {
		t.Errorf("master: %+v", st)
	}
}

package migrate

import "testing"

func TestParseClusterNodes(t *testing.T) {
	t.Parallel()
	text := "txt:a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5 7 [8->-b2]\n" +
		"b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 8-10 [7-<-a1]\n" +
		"c3 :7002@17002 slave a1 0 0 1 connected\n" +
		"d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected\n"
	top, err := parseClusterNodes(text, "10.0.0.1:7000")
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
	r := top.replicaOf("a1")
	if r == nil || r.addr != "10.0.0.1:7002" {
		t.Errorf("replica of a1: %+v, want c3 at the answering node's host", r)
	}
	if !top.nodes["d4"].failed || !top.nodes["a1"].myself {
		t.Errorf("flags not read: %+v %+v", top.nodes["d4"], top.nodes["a1"])
	}
	ids, slots := top.masters()
	if len(ids) != 2 || len(slots["a1"]) != 7 || len(slots["b2"]) != 3 {
		t.Errorf("masters %v %v", ids, slots)
	}
}

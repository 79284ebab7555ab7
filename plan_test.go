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

// TestPlan checks what Plan says of two standalone servers, a refused rung and the one it
// chooses, the facts of each side and the commands it may run, and that planning changes
// nothing.
func TestPlan(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Password: "pw"})
	dst := redistest.Start(t, redistest.Config{
		Rename: map[string]string{"REPLICAOF": "", "SLAVEOF": ""},
		Lines:  []string{"maxmemory 5mb", "maxmemory-policy allkeys-lru"},
		Users:  []string{"user app on >apppw ~* +@all -migrate"},
	})
	redistest.Fill(t, src, redistest.Dataset{}) // with a 10 MB value: more than the target's maxmemory
	dst.Do(t, 3, "SET", "already", "here")
	dstOpt := dst.Option()
	dstOpt.Username, dstOpt.Password = "app", "apppw"
	m, err := migrate.New(src.Option(), dstOpt, migrate.WithDiscardTarget(), migrate.WithEvictingTarget())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Chosen != "snapshot" || p.Steps[0].OK || !strings.Contains(p.Steps[0].Err.Error(), "REPLICAOF") {
		t.Errorf("plan chose %q with steps %v, want snapshot after a refused replication", p.Chosen, p.Steps)
	}
	if p.Source.Auth != "password" || p.Target.Auth != "ACL user app" || p.Source.Mode != "standalone" || p.Source.Keys == 0 {
		t.Errorf("facts: source %+v target %+v", p.Source, p.Target)
	}
	if p.Target.Commands["REPLICAOF"] != "renamed or disabled" || p.Source.Commands["DUMP"] != "ok" {
		t.Errorf("commands: target %v source %v", p.Target.Commands, p.Source.Commands)
	}
	text := p.String()
	for _, want := range []string{src.Addr, dst.Addr, "Redis ", "ACL user app", "replicaof: renamed or disabled",
		"chosen: snapshot", "may not fit", "allkeys-lru", "already has keys (db 3: 1)"} {
		if !strings.Contains(text, want) {
			t.Errorf("plan does not show %q:\n%s", want, text)
		}
	}
	// Planning changes nothing.
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target db 0 has %d keys after Plan", n)
	}
	if role, _ := dst.Do(t, 0, "ROLE").ToArray(); len(role) == 0 {
		t.Error("no role")
	}
}

// TestPlanCluster checks the facts Plan gives of a cluster, and that Replication refuses
// clusters on either side with the reason.
func TestPlanCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, redistest.ClusterConfig{})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A URL with one node's address is enough: rueidis finds the cluster.
	url, err := rueidis.ParseURL("redis://" + c.Masters[1].Addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := cl.Do(ctx, cl.B().Set().Key(fmt.Sprint("k", i)).Value("v").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	single := redistest.Start(t, redistest.Config{})
	for _, tc := range []struct {
		name     string
		src, dst rueidis.ClientOption
	}{
		{"cluster-source", url, single.Option()},
		{"cluster-target", single.Option(), c.Option()},
	} {
		m, err := migrate.New(tc.src, tc.dst, migrate.WithDiscardTarget())
		if err != nil {
			t.Fatal(err)
		}
		p, err := m.Plan(ctx)
		m.Close()
		if err != nil {
			t.Fatalf("%s: Plan: %v", tc.name, err)
		}
		f := p.Source
		if tc.name == "cluster-target" {
			f = p.Target
		}
		if f.Mode != "cluster" || f.Masters != 3 {
			t.Errorf("%s: facts say mode %q with %d masters, want cluster with 3", tc.name, f.Mode, f.Masters)
		}
		if tc.name == "cluster-source" && f.Keys != 300 {
			t.Errorf("%s: facts say %d keys, want 300 summed over the masters", tc.name, f.Keys)
		}
		if !strings.Contains(p.String(), "cluster") {
			t.Errorf("%s: the plan does not say cluster:\n%s", tc.name, p)
		}
		for _, s := range p.Steps {
			switch s.Strategy {
			case "replication":
				if s.OK || !errors.Is(s.Err, migrate.ErrUnsupported) || !strings.Contains(s.Err.Error(), "cluster") {
					t.Errorf("%s: replication verdict %v, want a refusal that names the cluster", tc.name, s.Err)
				}
			case "dump-restore", "snapshot", "migrate-keys":
				if !s.OK {
					t.Errorf("%s: %s refused: %v", tc.name, s.Strategy, s.Err)
				}
			}
		}
		if p.Chosen != "snapshot" {
			t.Errorf("%s: chosen %q, want snapshot", tc.name, p.Chosen)
		}
	}
}

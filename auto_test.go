package migrate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestAutoLadder runs Auto once per rung of the ladder, each time forbidding one more
// thing, and checks the strategy it chose, the reasons it gives for the better ones, and
// the data.
func TestAutoLadder(t *testing.T) {
	t.Parallel()
	noReplicaof := map[string]string{"REPLICAOF": "", "SLAVEOF": ""}
	for _, tc := range []struct {
		name     string
		src, dst map[string]string
		opts     []migrate.Option
		want     string
		reasons  map[string]string // strategy -> a part of its reason
	}{
		{name: "replication allowed", opts: []migrate.Option{migrate.WithDiscardTarget()}, want: "replication"},
		{name: "replication not allowed", want: "snapshot",
			reasons: map[string]string{"replication": "WithDiscardTarget()"}},
		{name: "replicaof disabled", dst: noReplicaof, opts: []migrate.Option{migrate.WithDiscardTarget()}, want: "snapshot",
			reasons: map[string]string{"replication": "REPLICAOF"}},
		{name: "sync disabled", src: map[string]string{"SYNC": "", "PSYNC": ""}, dst: noReplicaof,
			opts: []migrate.Option{migrate.WithDiscardTarget()}, want: "migrate-keys",
			reasons: map[string]string{"replication": "REPLICAOF", "snapshot": "PSYNC"}},
		{name: "migrate disabled", src: map[string]string{"SYNC": "", "PSYNC": "", "MIGRATE": ""}, dst: noReplicaof,
			want: "dump-restore", reasons: map[string]string{"replication": "WithDiscardTarget()", "snapshot": "PSYNC", "migrate-keys": "MIGRATE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{Rename: tc.src}, redistest.Config{Rename: tc.dst})
			counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
			rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Auto{}, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Strategy != tc.want {
				t.Fatalf("Auto ran %s, want %s; steps %v", rep.Strategy, tc.want, rep.Steps)
			}
			for _, s := range rep.Steps {
				if s.Strategy == tc.want {
					if !s.OK {
						t.Errorf("chosen %s has a failed step: %v", s.Strategy, s.Err)
					}
					continue
				}
				part, ok := tc.reasons[s.Strategy]
				if !ok || s.OK || !errors.Is(s.Err, migrate.ErrUnsupported) || !strings.Contains(s.Err.Error(), part) {
					t.Errorf("step %s: ok=%v err=%v, want a reason naming %q", s.Strategy, s.OK, s.Err, part)
				}
			}
			if len(rep.Steps) != len(tc.reasons)+1 {
				t.Errorf("%d steps, want %d: %v", len(rep.Steps), len(tc.reasons)+1, rep.Steps)
			}
			redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
			var want int64
			for _, n := range counts {
				want += int64(n)
			}
			if rep.Keys != want {
				t.Errorf("report: %d keys, want %d", rep.Keys, want)
			}
		})
	}
}

// TestAutoNothingCanRun forbids every rung: the error lists every strategy's reason and
// nothing changes.
func TestAutoNothingCanRun(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t,
		redistest.Config{Rename: map[string]string{"SYNC": "", "PSYNC": "", "MIGRATE": "", "DUMP": ""}},
		redistest.Config{Rename: map[string]string{"REPLICAOF": "", "SLAVEOF": ""}})
	src.Do(t, 0, "SET", "k", "v")
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Auto{}, migrate.WithDiscardTarget())
	if !errors.Is(err, migrate.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	for _, want := range []string{"replication:", "REPLICAOF", "snapshot:", "PSYNC", "migrate-keys:", "MIGRATE", "dump-restore:", "DUMP"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if rep.Keys != 0 || dst.DBSize(t, 0) != 0 {
		t.Errorf("something was copied: %v", rep)
	}
	if len(rep.Steps) != 4 {
		t.Errorf("steps %v, want all four strategies", rep.Steps)
	}
}

// TestAutoNever leaves out a strategy the user forbids.
func TestAutoNever(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Auto{Never: []string{"replication", "snapshot"}}, migrate.WithDiscardTarget())
	if err != nil || rep.Strategy != "migrate-keys" || len(rep.Steps) != 1 {
		t.Fatalf("err %v, ran %s, steps %v: want migrate-keys first", err, rep.Strategy, rep.Steps)
	}
}

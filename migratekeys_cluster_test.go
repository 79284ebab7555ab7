package migrate_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// onMessage is a slog.Handler that calls fn once, synchronously, when a record with message
// msg is logged: a hook into a strategy's Run.
type onMessage struct {
	msg  string
	once *sync.Once
	fn   func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.fn)
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// addSlotKeys writes n string keys prefix+i into database 0 of s, all in one slot.
func addSlotKeys(t *testing.T, s *redistest.Server, slot, n int, prefix string) {
	t.Helper()
	tag := redistest.SlotTag(slot)
	c := s.Client(t, 0)
	for i := range n {
		if err := c.Do(context.Background(), c.B().Set().Key(prefix+tag+strconv.Itoa(i)).Value(prefix+strconv.Itoa(i)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// addRangeKeys writes perSlot string keys prefix+tag+i into each slot from lo to hi, in
// database 0 of s.
func addRangeKeys(t *testing.T, s *redistest.Server, lo, hi, perSlot int, prefix string) {
	t.Helper()
	c := s.Client(t, 0)
	var cmds rueidis.Commands
	for slot := lo; slot <= hi; slot++ {
		tag := redistest.SlotTag(slot)
		for i := range perSlot {
			cmds = append(cmds, c.B().Set().Key(prefix+tag+strconv.Itoa(i)).Value(strconv.Itoa(slot)).Build())
		}
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrateKeysClusterOpenSlots copies a standalone source into a cluster whose master A
// is moving two slots, X and Y, to master B when the copy starts (the slots are opened as
// Run begins, after Check); the operator finishes X, then Y, while the copy runs. Every
// key must arrive, and be counted once.
func TestMigrateKeysClusterOpenSlots(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	a, b := dst.Masters[0], dst.Masters[1] // A serves slots 0 to 5460
	const x, y = 100, 200
	const plain, inSlot = 3000, 100
	redistest.AddKeys(t, src, 0, "k:", plain, 20)
	addSlotKeys(t, src, x, inSlot, "x:")
	addSlotKeys(t, src, y, inSlot, "y:")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	finished := make(chan error, 1)
	open := func() {
		for _, slot := range []int{x, y} {
			if err := dst.OpenSlot(ctx, slot, a, b); err != nil {
				t.Error(err)
			}
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			err := dst.FinishSlot(ctx, x, a, b)
			if err == nil {
				time.Sleep(700 * time.Millisecond)
				err = dst.FinishSlot(ctx, y, a, b)
			}
			finished <- err
		}()
	}
	log := slog.New(onMessage{msg: "migrate-keys: plan", once: &sync.Once{}, fn: open})
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}),
		migrate.WithRateLimit(2000), migrate.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	rep, err := m.Migrate(ctx)
	if ferr := <-finished; ferr != nil {
		t.Fatal(ferr)
	}
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	const keys = plain + 2*inSlot
	if rep.Keys != keys || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
		t.Errorf("report %+v, want %d keys copied and nothing else", rep.Counts, keys)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the copy took %v", d)
	}
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
}

// TestClusterReshardDuringCopy copies a standalone source into a cluster while a reshard
// moves 20 slots, keys included, from one master to another, with every strategy
// that copies into a cluster, and compares both sides key by key.
func TestClusterReshardDuringCopy(t *testing.T) {
	t.Parallel()
	for _, s := range []migrate.Strategy{migrate.MigrateKeys{}, migrate.DumpRestore{}, migrate.Snapshot{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{Lines: []string{"repl-diskless-sync-delay 0"}})
			dst := redistest.StartCluster(t, redistest.ClusterConfig{})
			// Half of the keys in the slots that move, where every batch meets them.
			const keys = 12000
			redistest.AddKeys(t, src, 0, "k:", keys/2, 20)
			addRangeKeys(t, src, 0, 19, keys/2/20, "r:")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resharded := make(chan error, 1)
			var once sync.Once
			progress := func(p migrate.Progress) {
				if p.Keys > 0 || p.Done {
					once.Do(func() {
						go func() { resharded <- dst.MoveSlots(ctx, 0, 19, dst.Masters[0], dst.Masters[1], 300*time.Millisecond) }()
					})
				}
			}
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(s),
				migrate.WithRateLimit(4000), migrate.WithProgress(progress))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			start := time.Now()
			rep, err := m.Migrate(ctx)
			t.Logf("copied in %v", time.Since(start))
			if rerr := <-resharded; rerr != nil {
				t.Fatal(rerr)
			}
			if err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if rep.Keys != keys || rep.Failed != 0 || rep.Skipped != 0 {
				t.Errorf("report %+v, want %d keys copied", rep.Counts, keys)
			}
			redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
		})
	}
}

// TestMigrateKeysClusterTargetFailover kills a master of the target cluster while a copy
// runs: its replica takes over, and MigrateKeys sends the keys of its slots there, as the
// other strategies do; if it cannot, its error names the node that failed.
func TestMigrateKeysClusterTargetFailover(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
	const keys = 3000
	redistest.AddKeys(t, src, 0, "k:", keys, 100)
	// Not the first address given, which an error might name for another reason.
	dead := dst.Masters[1]
	var once sync.Once
	kill := func(p migrate.Progress) {
		if p.Keys > 0 {
			once.Do(dead.Stop)
		}
	}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}),
		migrate.WithRateLimit(1500), migrate.WithBatchSize(50), migrate.WithProgress(kill))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := m.Migrate(ctx)
	if err != nil {
		if !strings.Contains(err.Error(), dead.Addr) || strings.Contains(err.Error(), "TargetAddr") {
			t.Fatalf("Migrate: %v; want it to name the node that failed, %s", err, dead.Addr)
		}
		t.Logf("Migrate: %v", err)
		return
	}
	dst.WaitOK(t, dst.Masters[0])
	if rep.Keys != keys || rep.Failed != 0 || rep.Skipped != 0 {
		t.Errorf("report %+v, want %d keys copied", rep.Counts, keys)
	}
	redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
}

// TestMigrateKeysClusterOpenSlotCheck copies a standalone source into a cluster with a slot
// left open by an interrupted reshard: the source's MIGRATE could not write the slot's keys
// (it sends RESTORE, which the importing node refuses), so Check refuses at once and says
// why, and Plan shows it.
func TestMigrateKeysClusterOpenSlotCheck(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	redistest.AddKeys(t, src, 0, "k:", 100, 10)
	addSlotKeys(t, src, 100, 5, "x:")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := func(s *redistest.Server) string { return dst.ID(t, s) }
	for _, tc := range []struct {
		name string
		slot int
		open func() error
	}{
		{"migrating and importing", 100, func() error { return dst.OpenSlot(ctx, 100, dst.Masters[0], dst.Masters[1]) }},
		{"importing only", 12000, func() error {
			return dst.Masters[0].Do(t, 0, "CLUSTER", "SETSLOT", "12000", "IMPORTING", id(dst.Masters[2])).Error()
		}},
	} {
		if err := tc.open(); err != nil {
			t.Fatal(err)
		}
		m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = m.Migrate(ctx)
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "slot "+strconv.Itoa(tc.slot)) ||
			!strings.Contains(err.Error(), "DumpRestore") {
			t.Errorf("%s: Migrate: %v; want ErrUnsupported naming slot %d and the strategies that can", tc.name, err, tc.slot)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: refused after %v", tc.name, d)
		}
		for _, n := range dst.Masters {
			if keys := n.DBSize(t, 0); keys != 0 {
				t.Errorf("%s: %s holds %d keys, want none written", tc.name, n.Addr, keys)
			}
		}
		plan, err := m.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Steps) != 1 || plan.Steps[0].OK || !strings.Contains(plan.Steps[0].Err.Error(), "slot "+strconv.Itoa(tc.slot)) {
			t.Errorf("%s: plan %+v, want migrate-keys refused for slot %d", tc.name, plan.Steps, tc.slot)
		}
		m.Close()
		for _, n := range dst.Masters {
			n.Do(t, 0, "CLUSTER", "SETSLOT", strconv.Itoa(tc.slot), "STABLE")
		}
	}
}

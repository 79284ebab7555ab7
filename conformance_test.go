package migrate_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// The conformance suite, in the manner of testing/slogtest: every built-in strategy (and
// the variants of how it reads or writes) runs the same cases over every topology, and a
// strategy that cannot run on a topology must say so. A row starts its servers once and
// runs its cases one after the other on them, emptied between cases.

// conformanceTopology is where a migration goes: from a server or a cluster, into a server
// or a cluster.
type conformanceTopology struct {
	name     string
	src, dst bool // a cluster
}

var conformanceTopologies = []conformanceTopology{
	{"standalone-to-standalone", false, false},
	{"standalone-to-cluster", false, true},
	{"cluster-to-standalone", true, false},
	{"cluster-to-cluster", true, true},
}

// conformanceRow is one strategy, or one way of running one, in the suite.
type conformanceRow struct {
	name string
	// setup returns the strategy and how to start the source and the target (every node,
	// for a cluster). Its t is the row's.
	setup func(t *testing.T) (s migrate.Strategy, src, dst redistest.Config)
	// variant runs the row between standalone servers only, with the small data set (every
	// type and encoding, without the 10 MB value): its point is how the strategy reads or
	// writes one server, which the full data set shows no better.
	variant bool
	// refuses says which conformanceTopologies the strategy refuses, and a word its error must say.
	refuses func(conformanceTopology) string
	// ttlSlack widens WithTTLTolerance for the copy's verification, for a strategy whose
	// copies may expire later than the source's keys.
	ttlSlack time.Duration
	// conflictRefusal, when set, is a word of the error with which the strategy, which
	// writes the target whole, refuses one that holds keys, whatever the conflict policy.
	conflictRefusal string
}

// plain is the setup of a strategy that needs nothing of the servers but their defaults.
func plainSetup(s migrate.Strategy) func(*testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
	return func(*testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		return s, redistest.Config{}, redistest.Config{}
	}
}

var conformanceRows = []conformanceRow{
	{name: "replication", setup: plainSetup(migrate.Replication{}), conflictRefusal: "WithDiscardTarget", refuses: func(top conformanceTopology) string {
		if top.src || top.dst {
			return "cluster"
		}
		return ""
	}},
	{name: "snapshot", setup: func(*testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		return migrate.Snapshot{}, redistest.Config{Lines: quickSync}, redistest.Config{}
	}},
	{name: "snapshot-disk-sync", variant: true, setup: func(*testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		// The source writes its snapshot to its disk before sending it ("$<len>").
		return migrate.Snapshot{}, redistest.Config{Lines: diskSync}, redistest.Config{}
	}},
	{name: "snapshot-bgsave-file", variant: true, setup: func(t *testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		dir := t.TempDir()
		return migrate.Snapshot{FromFile: filepath.Join(dir, "dump.rdb"), BGSave: true}, redistest.Config{Dir: dir}, redistest.Config{}
	}},
	{name: "snapshot-to-file", variant: true, conflictRefusal: "WithDiscardTarget", setup: func(t *testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		dstDir := t.TempDir()
		s := reloading{migrate.Snapshot{ToFile: filepath.Join(t.TempDir(), "snap.rdb")}, dstDir}
		return s, redistest.Config{Lines: quickSync}, redistest.Config{Dir: dstDir}
	}},
	// MIGRATE sends each key's TTL relative to the moment it reads it: the target's copy
	// expires later by the time the batch takes to travel, seconds for a batch that holds
	// the data set's 10 MB value on a loaded machine.
	{name: "migrate-keys", setup: plainSetup(migrate.MigrateKeys{}), ttlSlack: 5 * time.Second},
	{name: "migrate-keys-one-key-each", variant: true, setup: plainSetup(asVersion{source: "3.0.5"}), ttlSlack: 5 * time.Second},
	{name: "dump-restore", setup: plainSetup(migrate.DumpRestore{})},
	{name: "dump-restore-without-many-key-commands", variant: true, setup: func(*testing.T) (migrate.Strategy, redistest.Config, redistest.Config) {
		// Without MGET on the source and MSETNX or MSET on the target, strings go by DUMP
		// and SET.
		return migrate.DumpRestore{},
			redistest.Config{Rename: map[string]string{"MGET": ""}},
			redistest.Config{Rename: map[string]string{"MSETNX": "", "MSET": ""}}
	}},
}

// TestConformance runs every row of conformanceRows over every topology: a copy of the
// conformance data set, then each conflict policy over a target that holds some of
// the source's keys with other values and some with the same.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, row := range conformanceRows {
		for _, top := range conformanceTopologies {
			if row.variant && (top.src || top.dst) {
				continue
			}
			t.Run(row.name+"/"+top.name, func(t *testing.T) {
				t.Parallel()
				s, srcCfg, dstCfg := row.setup(t)
				src := redistest.StartDeployment(t, top.src, redistest.ClusterConfig{Node: srcCfg})
				dst := redistest.StartDeployment(t, top.dst, redistest.ClusterConfig{Node: dstCfg})
				c := conformance{conformanceRow: row, s: s, top: top, src: src, dst: dst}
				if row.refuses != nil {
					if says := row.refuses(top); says != "" {
						c.refused(t, says)
						return
					}
				}
				t.Run("copy", c.copy)
				for _, policy := range []migrate.Conflict{migrate.Fail, migrate.Skip, migrate.Replace} {
					t.Run("conflict-"+policy.String(), func(t *testing.T) { c.conflicts(t, policy) })
				}
			})
		}
	}
}

// conformance is one row of the suite on one topology, with its servers.
type conformance struct {
	conformanceRow
	s        migrate.Strategy
	top      conformanceTopology
	src, dst *redistest.Deployment
}

// migrate runs the row's strategy with opts.
func (c conformance) migrate(t *testing.T, opts ...migrate.Option) (*migrate.Report, error) {
	t.Helper()
	return runMigration(t, c.src.Option(), c.dst.Option(), c.s, opts...)
}

// fresh empties both sides, for a case to start from nothing.
func (c conformance) fresh(t *testing.T) {
	t.Helper()
	c.src.Flush(t)
	c.dst.Flush(t)
}

// copy migrates the conformance data set (full unless the row is a variant) into an empty
// target, compares both sides key by key, and checks the report's counts and its
// verification.
func (c conformance) copy(t *testing.T) {
	c.fresh(t)
	counts := c.src.Fill(t, redistest.Dataset{Small: c.variant})
	opts := []migrate.Option{migrate.WithVerify()}
	if c.ttlSlack > 0 {
		opts = append(opts, migrate.WithTTLTolerance(c.ttlSlack))
	}
	if !c.top.src && c.top.dst {
		// A standalone source's databases merge into the cluster's only one, names kept:
		// the data set's names say their database.
		opts = append(opts, migrate.WithDBPrefix(""))
	}
	rep, err := c.migrate(t, opts...)
	if err != nil {
		t.Errorf("Migrate: %v", err) // and tell what differs
	}
	// Database N's data set is database N of a server, or the keys "dbN:*" of a cluster;
	// a cluster's keys go into database 0 of a server.
	for _, db := range redistest.DatasetDBs {
		dstDB := db
		if c.top.src {
			dstDB = 0
		}
		redistest.AssertSameSides(t, c.src.Side(t, db), c.dst.Side(t, dstDB), fmt.Sprintf("db%d:*", db))
	}
	total := redistest.Total(counts)
	if n := c.dst.DBSize(t, redistest.DatasetDBs...); n != total {
		t.Errorf("the target holds %d keys, want the source's %d", n, total)
	}
	want := counts
	if c.top.src {
		want = map[int]int{0: int(total)} // a cluster has database 0 only
	}
	assertCopied(t, rep, want)
	if rep.Strategy != c.s.Name() {
		t.Errorf("report strategy %q, want %q", rep.Strategy, c.s.Name())
	}
	if v := rep.Verify; v == nil {
		t.Errorf("no verification in the report")
	} else if !v.Equal() || v.Compared != rep.Keys {
		t.Errorf("verify: %v, want every one of %d keys compared and equal; %v", v, rep.Keys, v.Examples)
	}
}

const (
	conflictKeys = 100
	conflictNote = "target" // the value of the keys the target holds with another value
)

var (
	// conflictDiffering are the keys the target holds with another value than the source's.
	conflictDiffering = []string{"k:5", "k:77"}
	// conflictIdentical are the keys the target holds with the source's value: no conflict.
	conflictIdentical = []string{"k:1", "k:42"}
)

// conflicts copies conflictKeys keys "k:N" (value "src-N") into a target that holds those
// of conflictDiffering with another value and those of conflictIdentical with the same,
// under policy, in batches of 16. Fail stops with ErrConflict naming a key and keeps the
// target's values; Skip keeps them and counts them skipped; Replace overwrites them.
// Identical keys are no conflict: counted skipped under Fail and Skip; Replace overwrites
// them unread (reading them would cost a round trip) and counts them copied.
func (c conformance) conflicts(t *testing.T, policy migrate.Conflict) {
	c.fresh(t)
	c.src.SetKeys(t, "k:", conflictKeys, redistest.Numbered("src-"))
	for _, k := range conflictDiffering {
		c.dst.Do(t, "SET", k, conflictNote)
	}
	for _, k := range conflictIdentical {
		c.dst.Do(t, "SET", k, "src-"+strings.TrimPrefix(k, "k:"))
	}
	rep, err := c.migrate(t, migrate.WithConflict(policy), migrate.WithBatchSize(16))
	if c.conflictRefusal != "" {
		wantRefused(t, err, c.conflictRefusal)
		if rep.Keys != 0 || c.dst.DBSize(t) != int64(len(conflictDiffering)+len(conflictIdentical)) || c.dst.Get(t, conflictDiffering[0]) != conflictNote {
			t.Errorf("report %+v, target %d keys; want the target as it was", rep.Counts, c.dst.DBSize(t))
		}
		return
	}

	// Whatever the policy, each key on the target is the source's or one the target held,
	// and the report counts as copied what the migration wrote.
	fromSource := 0
	for i := range conflictKeys {
		k := "k:" + strconv.Itoa(i)
		switch v := c.dst.Get(t, k); v {
		case "src-" + strconv.Itoa(i):
			fromSource++
		case "", conflictNote:
		default:
			t.Errorf("target %s = %q", k, v)
		}
	}
	wrote := fromSource - len(conflictIdentical) // the conflictIdentical keys were there before
	if policy == migrate.Replace {
		wrote = fromSource // and were overwritten
	}
	if want := int64(wrote); rep.Keys != want {
		t.Errorf("report %+v, but the migration wrote %d keys", rep.Counts, want)
	}
	if n := c.src.DBSize(t); n != conflictKeys {
		t.Errorf("the source holds %d keys, want its %d", n, conflictKeys)
	}
	kept := func() {
		t.Helper()
		for _, k := range conflictDiffering {
			if v := c.dst.Get(t, k); v != conflictNote {
				t.Errorf("target %s = %q, want the target's value kept", k, v)
			}
		}
	}
	switch policy {
	case migrate.Fail:
		if !errors.Is(err, migrate.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
		if !strings.Contains(err.Error(), `"k:5"`) && !strings.Contains(err.Error(), `"k:77"`) {
			t.Errorf("conflict error names no conflicting key: %v", err)
		}
		kept()
		if rep.Failed < 1 || rep.Skipped > int64(len(conflictIdentical)) {
			t.Errorf("report %+v, want the conflict counted as failed, and at most the identical keys skipped", rep.Counts)
		}
	case migrate.Skip:
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		kept()
		skipped := len(conflictDiffering) + len(conflictIdentical)
		if rep.Keys != int64(conflictKeys-skipped) || rep.Skipped != int64(skipped) || rep.Failed != 0 {
			t.Errorf("report %+v, want %d copied and %d skipped", rep.Counts, conflictKeys-skipped, skipped)
		}
	case migrate.Replace:
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if fromSource != conflictKeys {
			t.Errorf("the target holds %d of the source's keys, want all %d", fromSource, conflictKeys)
		}
		if rep.Keys != conflictKeys || rep.Skipped != 0 || rep.Failed != 0 {
			t.Errorf("report %+v, want all %d copied", rep.Counts, conflictKeys)
		}
	}
	if policy != migrate.Fail {
		if n := c.dst.DBSize(t); n != conflictKeys {
			t.Errorf("the target holds %d keys, want %d", n, conflictKeys)
		}
	}
}

// refused checks that the row's strategy refuses the topology under each conflict policy,
// with an error that says says, before it writes anything.
func (c conformance) refused(t *testing.T, says string) {
	t.Helper()
	c.src.SetKeys(t, "k:", 10, redistest.Numbered("src-"))
	for _, policy := range []migrate.Conflict{migrate.Fail, migrate.Skip, migrate.Replace} {
		rep, err := c.migrate(t, migrate.WithConflict(policy))
		wantRefused(t, err, says)
		if rep.Keys != 0 || c.dst.DBSize(t) != 0 {
			t.Errorf("%s: report %+v, target %d keys; want nothing copied", policy, rep.Counts, c.dst.DBSize(t))
		}
	}
}

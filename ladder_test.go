package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestLadderNothingCanRun blocks every rung of Auto's ladder, without WithDiscardTarget:
// the error gives, under each rung's name, every reason that blocks it, Auto's own rule
// for Replication and Replication's own refusal alike; Plan gives the same verdicts, and
// nothing is copied.
func TestLadderNothingCanRun(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t,
		redistest.Config{Rename: map[string]string{"SYNC": "", "PSYNC": "", "MIGRATE": "", "DUMP": ""}},
		redistest.Config{Rename: map[string]string{"REPLICAOF": "", "SLAVEOF": ""}})
	src.Do(t, 0, "SET", "k", "v")
	m, err := migrate.New(src.Option(), dst.Option())
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
	rep, err := m.Migrate(ctx)
	if !errors.Is(err, migrate.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	t.Log(err)
	// Each rung's reasons, in the rung's part of the message.
	msg := err.Error()
	parts := map[string][]string{
		"replication":  {"WithDiscardTarget()", "REPLICAOF", "target " + dst.Addr},
		"snapshot":     {"PSYNC", "source " + src.Addr},
		"migrate-keys": {"MIGRATE", "source " + src.Addr},
		"dump-restore": {"DUMP", "source " + src.Addr},
	}
	order := []string{"replication", "snapshot", "migrate-keys", "dump-restore"}
	for i, name := range order {
		at := strings.Index(msg, "\n  "+name+":")
		if at < 0 {
			t.Errorf("the error has no part for %s:\n%s", name, msg)
			continue
		}
		part := msg[at+1:]
		if i+1 < len(order) {
			if end := strings.Index(part, "\n  "+order[i+1]+":"); end >= 0 {
				part = part[:end]
			}
		}
		for _, want := range parts[name] {
			if !strings.Contains(part, want) {
				t.Errorf("the part of %s does not say %q:\n%s", name, want, part)
			}
		}
	}
	// Replication's two reasons go on lines of their own, under its name.
	_, after, _ := strings.Cut(msg, "\n  replication:\n    replication replaces")
	if lines := strings.Split(after, "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], "    ") || !strings.Contains(lines[1], "REPLICAOF") {
		t.Errorf("replication's reasons are not indented under its name:\n%s", msg)
	}
	if rep.Keys != 0 || dst.DBSize(t, 0) != 0 {
		t.Errorf("something was copied: %v", rep)
	}
	if p.Chosen != "" || len(p.Steps) != len(order) || len(rep.Steps) != len(order) {
		t.Fatalf("plan chose %q with steps %v, report steps %v: want all four refused", p.Chosen, p.Steps, rep.Steps)
	}
	for i, s := range p.Steps {
		r := rep.Steps[i]
		if s.Strategy != order[i] || r.Strategy != order[i] || s.OK || r.OK || sameRefusal(s.Err) != sameRefusal(r.Err) {
			t.Errorf("step %d: plan %s %v, migrate %s %v: want %s refused alike", i, s.Strategy, s.Err, r.Strategy, r.Err, order[i])
		}
	}
	// In the plan, one reason a line, in the "why not" column.
	_, after, _ = strings.Cut(p.String(), "\nreplication   no       replication replaces")
	if lines := strings.Split(after, "\n"); len(lines) < 2 || !strings.HasPrefix(lines[1], strings.Repeat(" ", 23)) ||
		!strings.Contains(lines[1], "REPLICAOF") {
		t.Errorf("the plan does not show replication's reasons one a line:\n%s", p)
	}
}

// probeKey is the name of the key a check probes with, random in each check.
var probeKey = regexp.MustCompile(`migrate:probe:(\{[0-9]+\}:)?[0-9a-f]+`)

// sameRefusal is the text of a refusal, the probe's key left out, to compare those of
// two checks.
func sameRefusal(err error) string {
	return probeKey.ReplaceAllString(err.Error(), "migrate:probe:KEY")
}

// TestLadderPlanAgreesWithMigrate gives each built-in strategy alone, and Auto, to New,
// on an empty target and on one with a key, with and without WithDiscardTarget: Plan's
// verdict is what Migrate does. Replication given alone runs on an empty target without
// WithDiscardTarget: the option guards the target's keys, and Auto's rule is Auto's.
func TestLadderPlanAgreesWithMigrate(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: quickSync})
	redistest.SetKeys(t, src, 0, "k", 20, redistest.Same("v"))
	for _, tc := range []struct {
		strategy migrate.Strategy
		keys     bool // the target holds a key of its own
		discard  bool
		want     string // the strategy that runs; "" when refused
	}{
		{strategy: migrate.Replication{}, want: "replication"},
		{strategy: migrate.Replication{}, discard: true, want: "replication"},
		{strategy: migrate.Replication{}, keys: true},
		{strategy: migrate.Replication{}, keys: true, discard: true, want: "replication"},
		{strategy: migrate.Snapshot{}, want: "snapshot"},
		{strategy: migrate.Snapshot{}, discard: true, want: "snapshot"},
		{strategy: migrate.Snapshot{}, keys: true, want: "snapshot"},
		{strategy: migrate.Snapshot{}, keys: true, discard: true, want: "snapshot"},
		{strategy: migrate.MigrateKeys{}, want: "migrate-keys"},
		{strategy: migrate.MigrateKeys{}, discard: true, want: "migrate-keys"},
		{strategy: migrate.MigrateKeys{}, keys: true, want: "migrate-keys"},
		{strategy: migrate.MigrateKeys{}, keys: true, discard: true, want: "migrate-keys"},
		{strategy: migrate.DumpRestore{}, want: "dump-restore"},
		{strategy: migrate.DumpRestore{}, discard: true, want: "dump-restore"},
		{strategy: migrate.DumpRestore{}, keys: true, want: "dump-restore"},
		{strategy: migrate.DumpRestore{}, keys: true, discard: true, want: "dump-restore"},
		{strategy: migrate.Auto{}, want: "snapshot"},
		{strategy: migrate.Auto{}, discard: true, want: "replication"},
		{strategy: migrate.Auto{}, keys: true, want: "snapshot"},
		{strategy: migrate.Auto{}, keys: true, discard: true, want: "replication"},
	} {
		name := fmt.Sprintf("%s/keys=%v/discard=%v", tc.strategy.Name(), tc.keys, tc.discard)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dst := redistest.Start(t, redistest.Config{})
			var before int64
			if tc.keys {
				dst.Do(t, 0, "SET", "own", "x")
				before = 1
			}
			opts := []migrate.Option{migrate.WithStrategy(tc.strategy)}
			if tc.discard {
				opts = append(opts, migrate.WithDiscardTarget())
			}
			m, err := migrate.New(src.Option(), dst.Option(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p, err := m.Plan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := m.Migrate(ctx)

			if p.Chosen != tc.want {
				t.Errorf("plan chose %q, want %q:\n%s", p.Chosen, tc.want, p)
			}
			if tc.want == "" {
				// Refused by the strategy's Check: Migrate says what Plan said, and
				// changes nothing.
				if len(p.Steps) != 1 || p.Steps[0].OK {
					t.Fatalf("plan steps %v, want one refusal", p.Steps)
				}
				why := p.Steps[0].Err
				if !errors.Is(err, migrate.ErrUnsupported) || !errors.Is(why, migrate.ErrUnsupported) || !strings.Contains(err.Error(), why.Error()) {
					t.Errorf("Migrate: %v\nwant Plan's refusal: %v", err, why)
				}
				if !strings.Contains(why.Error(), "WithDiscardTarget") {
					t.Errorf("the refusal does not name WithDiscardTarget: %v", why)
				}
				if n := dst.DBSize(t, 0); n != before || rep.Keys != 0 {
					t.Errorf("refused, yet the target holds %d keys (want %d) and the report %v", n, before, rep)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan chose %q, yet Migrate: %v", p.Chosen, err)
			}
			if rep.Strategy != tc.want {
				t.Errorf("Migrate ran %s, plan chose %s", rep.Strategy, p.Chosen)
			}
			// Auto's verdicts, from the best rung to the one that ran, are Plan's.
			if _, auto := tc.strategy.(migrate.Auto); auto {
				if len(rep.Steps) == 0 || len(rep.Steps) > len(p.Steps) {
					t.Fatalf("report steps %v, plan steps %v", rep.Steps, p.Steps)
				}
				for i, s := range rep.Steps {
					ps := p.Steps[i]
					if s.Strategy != ps.Strategy || s.OK != ps.OK || (s.Err == nil) != (ps.Err == nil) ||
						s.Err != nil && sameRefusal(s.Err) != sameRefusal(ps.Err) {
						t.Errorf("step %d: Migrate %s %v %v, Plan %s %v %v", i, s.Strategy, s.OK, s.Err, ps.Strategy, ps.OK, ps.Err)
					}
				}
			} else if rep.Steps != nil {
				t.Errorf("report steps %v, want none for a strategy given alone", rep.Steps)
			}
			// The data is there; the target's own key too, unless replication replaced it.
			want := 20 + before
			if tc.want == "replication" {
				want = 20
			}
			if n := dst.DBSize(t, 0); n != want || rep.Keys != 20 {
				t.Errorf("the target holds %d keys, want %d; report %v", n, want, rep)
			}
		})
	}
}

// TestLadderPlanCommonRefusal prints once, not on every strategy's line, the refusal that
// every strategy shares.
func TestLadderPlanCommonRefusal(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Config{})
	m, err := migrate.New(s.Option(), s.Option())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := m.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 4 || p.Chosen != "" {
		t.Fatalf("plan chose %q with steps %v, want all four refused", p.Chosen, p.Steps)
	}
	text := p.String()
	if n := strings.Count(text, "same server"); n != 1 {
		t.Errorf("the plan says the refusal %d times, want once:\n%s", n, text)
	}
	for _, want := range []string{"replication   no", "dump-restore  no", "why not, for every strategy: target " + s.Addr} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan does not show %q:\n%s", want, text)
		}
	}
}

// settingsProbe is a user's own Strategy: it reads the Settings from the Job, as the
// built-in strategies do, and lets Auto, called from its own code, do the copy.
type settingsProbe struct {
	got      migrate.Settings
	limit    int
	filtered bool
	auto     migrate.Auto
}

func (*settingsProbe) Name() string { return "probe" }

func (s *settingsProbe) Check(ctx context.Context, j *migrate.Job) error {
	s.got, s.limit, s.filtered = j.Settings, j.BatchLimit(), j.Filtered
	return s.auto.Check(ctx, j)
}

func (s *settingsProbe) Run(ctx context.Context, j *migrate.Job) error { return s.auto.Run(ctx, j) }

// TestLadderUserStrategySettings gives a user's strategy every setting the built-in ones
// read, and lets it run Auto from its own code.
func TestLadderUserStrategySettings(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	for _, db := range []int{0, 2, 5} {
		redistest.SetKeys(t, src, db, "k", 10, redistest.Same(fmt.Sprint("db", db)))
		redistest.SetKeys(t, src, db, "other", 3, redistest.Same("x"))
	}
	probe := &settingsProbe{auto: migrate.Auto{Never: []string{"replication", "snapshot"}}}
	m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(probe),
		migrate.WithMatch("k*"), migrate.WithDatabases(2, 0), migrate.WithDBPrefix("db%d:"), migrate.WithReadFromReplicas(),
		migrate.WithRateLimit(1000), migrate.WithBatchSize(500), migrate.WithTTLTolerance(2*time.Second), migrate.WithConflict(migrate.Skip))
	if err != nil {
		t.Fatal(err)
	}
	rep := migrateOK(t, m)
	g := probe.got
	if g.Match != "k*" || fmt.Sprint(g.Databases) != "[0 2]" || !g.DatabasesChosen || !g.MergeDatabases || g.DBPrefix != "db%d:" ||
		!g.ReadFromReplicas || g.RateLimit != 1000 || g.BatchSize != 500 || g.TTLTolerance != 2*time.Second ||
		g.Conflict != migrate.Skip || g.ScanCount != 1000 || g.Concurrency != 8 || g.Logger == nil || !probe.filtered {
		t.Errorf("the strategy got %+v (filtered %v)", g, probe.filtered)
	}
	if probe.limit != 100 {
		t.Errorf("BatchLimit %d, want 100: a tenth of a second at 1000 keys a second", probe.limit)
	}
	// MigrateKeys cannot rename keys: Auto ran DumpRestore, under the user's strategy.
	if rep.Strategy != "probe" || rep.Keys != 20 {
		t.Errorf("report %v, want probe with 20 keys", rep)
	}
	if n := dst.DBSize(t, 0); n != 20 {
		t.Errorf("the target holds %d keys, want 20", n)
	}
	if v, _ := dst.Do(t, 0, "GET", "db2:k7").ToString(); v != "db2" {
		t.Errorf("db2:k7 = %q on the target, want db2", v)
	}
}

// TestLadderSnapshotMatchLateDatabase filters keys by name only: a database that gains
// its first keys after the migration started is copied as without the filter (only
// WithDatabases or SelectDB name the databases), its keys filtered.
func TestLadderSnapshotMatchLateDatabase(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Lines: slowSync}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "a", 20, redistest.Same("db0"))
	redistest.SetKeys(t, src, 0, "b", 20, redistest.Same("db0"))
	rep, _, err := migrateWithLateWrite(t, src, dst.Option(), func() {
		redistest.SetKeys(t, src, 1, "a", 5, redistest.Same("db1"))
		redistest.SetKeys(t, src, 1, "b", 5, redistest.Same("db1"))
	}, migrate.WithMatch("a*"))
	if err != nil {
		t.Fatal(err)
	}
	if n0, n1 := dst.DBSize(t, 0), dst.DBSize(t, 1); n0 != 20 || n1 != 5 {
		t.Errorf("the target holds %d keys in database 0 and %d in 1, want 20 and 5", n0, n1)
	}
	assertCopied(t, rep, map[int]int64{0: 20, 1: 5})
}

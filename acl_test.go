package migrate_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// leastPrivilege are the users of the README's least-privilege table: for each strategy,
// the ACL rules each side needs (after "on >PASSWORD ~* resetchannels -@all"), and, for
// each rule, what taking it away gives: "" when the copy still works without it, else a
// text the refusal must hold (the command it names).
//
// "run" marks a rule whose absence the source does not tell Check on Redis 7 (PSYNC and SYNC
// are not allowed in MULTI, which the server checks before the ACL, and ACL DRYRUN is the
// admin's), so the copy is refused as it starts, still before any key is written; "-" one
// whose absence is not tried here (Replication would wait for a sync that never comes).
var leastPrivilege = []struct {
	strategy migrate.Strategy
	opts     []migrate.Option
	src, dst map[string]string
}{
	{strategy: migrate.DumpRestore{},
		src: map[string]string{"+scan": "SCAN", "+dump": "DUMP", "+pexpiretime": "PEXPIRETIME", "+mget": "", "+info": "", "+config|get": ""},
		dst: map[string]string{"+restore": "RESTORE", "+set": "SET", "+msetnx": "", "+mset": "", "+info": "", "+config|get": ""}},
	{strategy: migrate.Snapshot{},
		src: map[string]string{"+psync": "run PSYNC", "+replconf": "", "+info": "", "+config|get": ""},
		dst: map[string]string{"+restore": "RESTORE", "+set": "SET", "+info": "", "+config|get": ""}},
	{strategy: migrate.MigrateKeys{},
		src: map[string]string{"+scan": "SCAN", "+multi": "MULTI", "+exec": "EXEC", "+exists": "EXISTS", "+migrate": "MIGRATE",
			"+dump": "DUMP", "+info": "", "+config|get": ""},
		dst: map[string]string{"+select": "SELECT", "+restore": "RESTORE", "+exists": "EXISTS", "+dump": "DUMP",
			"+info": "", "+config|get": "", "+multi": "", "+discard": ""}},
	{strategy: migrate.Replication{}, opts: []migrate.Option{migrate.WithDiscardTarget()},
		src: map[string]string{"+psync": "-", "+replconf": "REPLCONF", "+ping": "PING", "+info": "INFO", "+multi": "", "+discard": ""},
		dst: map[string]string{"+replicaof": "REPLICAOF", "+config|get": "CONFIG GET", "+config|set": "CONFIG SET", "+info": "INFO",
			"+multi": "", "+discard": ""}},
}

// leastVerify are the rules Verify needs on each side.
var leastVerify = []string{"+scan", "+type", "+dump", "+pexpiretime", "+exists", "+info", "+config|get",
	"+get", "+hgetall", "+lrange", "+smembers", "+zrange", "+xrange", "+xinfo|groups"}

// rulesOf lists a rule set in order, without the rule left out.
func rulesOf(set map[string]string, without string) string {
	var rules []string
	for r := range set {
		if r != without {
			rules = append(rules, r)
		}
	}
	slices.Sort(rules)
	return strings.Join(rules, " ")
}

// setUser (re)defines the ACL user "mig" on s with only the rules given.
func setUser(t *testing.T, s *redistest.Server, rules string) {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", "mig", "reset", "on", ">mig-secret", "~*", "resetchannels", "-@all"}, strings.Fields(rules)...)
	if err := s.Do(t, 0, args...).Error(); err != nil {
		t.Fatalf("ACL SETUSER %s: %v", rules, err)
	}
}

// asMig is s's client option, logged in as mig.
func asMig(s *redistest.Server) rueidis.ClientOption {
	o := s.Option()
	o.Username, o.Password = "mig", "mig-secret"
	return o
}

// fillSmall writes a few keys of each type into database 0, some with a TTL.
func fillSmall(t *testing.T, s *redistest.Server) {
	t.Helper()
	for i := range 5 {
		n := strconv.Itoa(i)
		s.Do(t, 0, "SET", "s:"+n, "v"+n)
		s.Do(t, 0, "HSET", "h:"+n, "f", n)
		s.Do(t, 0, "RPUSH", "l:"+n, "a", "b", n)
		s.Do(t, 0, "SADD", "set:"+n, "a", n)
		s.Do(t, 0, "ZADD", "z:"+n, "1", n)
		s.Do(t, 0, "XADD", "x:"+n, "*", "f", n)
	}
	s.Do(t, 0, "SET", "ttl:s", "v", "EX", "3600")
	s.Do(t, 0, "HSET", "ttl:h", "f", "v")
	s.Do(t, 0, "EXPIRE", "ttl:h", "3600")
}

// TestLeastPrivilege runs each strategy, Plan and Verify under the users of the README's
// least-privilege table, and shows that taking away any rule the table calls needed gives
// a refusal naming the command before any key is written.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	for _, tc := range leastPrivilege {
		t.Run(tc.strategy.Name(), func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
			fillSmall(t, src)
			migrateAs := func(t *testing.T, srcRules, dstRules string) (*migrate.Plan, *migrate.Report, error) {
				t.Helper()
				dst.Do(t, 0, "FLUSHALL")
				setUser(t, src, srcRules)
				setUser(t, dst, dstRules)
				m, err := migrate.New(asMig(src), asMig(dst), append([]migrate.Option{migrate.WithStrategy(tc.strategy)}, tc.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				p, err := m.Plan(ctx)
				if err != nil {
					t.Fatalf("Plan: %v", err)
				}
				rep, err := m.Migrate(ctx)
				return p, rep, err
			}
			srcRules, dstRules := rulesOf(tc.src, ""), rulesOf(tc.dst, "")
			t.Run("all", func(t *testing.T) {
				p, rep, err := migrateAs(t, srcRules, dstRules)
				if err != nil {
					t.Fatalf("Migrate with source %q, target %q: %v\n%v", srcRules, dstRules, err, p)
				}
				if p.Chosen != tc.strategy.Name() {
					t.Errorf("Plan chose %q:\n%v", p.Chosen, p)
				}
				if rep.Keys == 0 && tc.strategy.Name() != "replication" {
					t.Errorf("report %+v", rep.Counts)
				}
				redistest.AssertSame(t, src, dst, 0)
				setUser(t, src, strings.Join(leastVerify, " "))
				setUser(t, dst, strings.Join(leastVerify, " "))
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				vr, err := migrate.Verify(ctx, asMig(src), asMig(dst))
				if err != nil || !vr.Equal() || vr.Compared == 0 {
					t.Fatalf("Verify as %q: %+v, %v", leastVerify, vr, err)
				}
			})
			for _, side := range []struct {
				name string
				set  map[string]string
			}{{"source", tc.src}, {"target", tc.dst}} {
				for rule, want := range side.set {
					if want == "-" {
						continue
					}
					t.Run(side.name+" without "+rule, func(t *testing.T) {
						s, d := srcRules, dstRules
						if side.name == "source" {
							s = rulesOf(tc.src, rule)
						} else {
							d = rulesOf(tc.dst, rule)
						}
						p, _, err := migrateAs(t, s, d)
						if want == "" {
							if err != nil {
								t.Fatalf("without %s: %v", rule, err)
							}
							redistest.AssertSame(t, src, dst, 0)
							return
						}
						want, atRun := strings.CutPrefix(want, "run ")
						refused := errors.Is(err, migrate.ErrUnsupported) && !atRun ||
							atRun && err != nil && strings.Contains(err.Error(), "ACL user")
						if !refused || !strings.Contains(err.Error(), want) {
							t.Fatalf("without %s on the %s: err = %v, want ErrUnsupported naming %s\n%v", rule, side.name, err, want, p)
						}
						if n := dst.DBSize(t, 0); n != 0 {
							t.Errorf("the target got %d keys before the refusal", n)
						}
					})
				}
			}
		})
	}
}

// TestCheckNamesEveryRefusal shows that a Check gathers every command a user may not run,
// on both sides, into one error, so that one change of the users is enough; and that Plan's
// Facts.Commands gives the same probe's answers, for every command a strategy needs.
func TestCheckNamesEveryRefusal(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{Rename: map[string]string{"MSETNX": ""}})
	fillSmall(t, src)
	// MULTI and DISCARD let the probe tell about commands it may not run to find out.
	setUser(t, src, "+mget +info +multi +discard")      // no SCAN, DUMP, PEXPIRETIME
	setUser(t, dst, "+info +set +mset +multi +discard") // no RESTORE
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.MigrateKeys{}} {
		m, err := migrate.New(asMig(src), asMig(dst), migrate.WithStrategy(s))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		p, err := m.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Migrate(ctx)
		if !errors.Is(err, migrate.ErrUnsupported) {
			t.Fatalf("%s: err = %v, want ErrUnsupported", s.Name(), err)
		}
		want := []string{"source", "SCAN", "+scan", "DUMP", "target", "RESTORE", `ACL user "mig"`, "ACL SETUSER mig +restore"}
		if s.Name() == "dump-restore" {
			want = append(want, "PEXPIRETIME", "+pexpiretime")
		} else {
			want = append(want, "MIGRATE", "+migrate", "EXISTS", "+exec")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error does not say %q: %v", s.Name(), w, err)
			}
		}
		if n := dst.DBSize(t, 0); n != 0 {
			t.Errorf("the target got %d keys", n)
		}
		if p.Chosen != "" || len(p.Steps) != 1 || p.Steps[0].Err == nil || !strings.Contains(p.Steps[0].Err.Error(), "SCAN") {
			t.Errorf("%s: Plan does not give the refusal: %v", s.Name(), p)
		}
		for side, wants := range map[*migrate.Facts]map[string]string{
			p.Source: {"SCAN": "refused by ACL", "DUMP": "refused by ACL", "MGET": "ok", "MULTI": "ok", "INFO": "ok",
				"MIGRATE": "refused by ACL", "PSYNC": "unknown", "REPLCONF": "refused by ACL", "CONFIG GET": "refused by ACL"},
			p.Target: {"RESTORE": "refused by ACL", "SET": "ok", "MSET": "ok", "MSETNX": "renamed or disabled",
				"REPLICAOF": "refused by ACL", "CONFIG SET": "refused by ACL", "FUNCTION RESTORE": "refused by ACL"},
		} {
			for cmd, state := range wants {
				if got := side.Commands[cmd]; got != state {
					t.Errorf("Plan: the %s's %s is %q, want %q", side.Side, cmd, got, state)
				}
			}
		}
	}
}

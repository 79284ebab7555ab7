package migrate_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestMigrateKeysMoveConflicts puts two of the source's keys on the target beforehand and
// checks each policy when moving, with batches and with one MIGRATE per key: the source
// keeps exactly the keys not moved. (The conformance suite checks each policy copying.)
func TestMigrateKeysMoveConflicts(t *testing.T) {
	t.Parallel()
	const n = 100
	conflicting := []string{"k:5", "k:77"}
	for _, policy := range []migrate.Conflict{migrate.Fail, migrate.Skip, migrate.Replace} {
		for _, version := range []string{"", "3.0.5"} {
			name := policy.String()
			if version != "" {
				name += " one key each"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
				redistest.SetKeys(t, src, 0, "k:", n, redistest.Numbered("src-"))
				for _, k := range conflicting {
					dst.Do(t, 0, "SET", k, "target")
				}
				s := asVersion{MigrateKeys: migrate.MigrateKeys{Move: true}, source: version}
				rep, err := runMigration(t, src.Option(), dst.Option(), s,
					migrate.WithConflict(policy), migrate.WithBatchSize(16))

				// Whatever the policy, each key on the target is either the source's or
				// one of the conflicting keys, and the report counts what was copied.
				copied := 0
				for i := range n {
					k := "k:" + strconv.Itoa(i)
					switch v := dst.Get(t, k); v {
					case "src-" + strconv.Itoa(i):
						copied++
					case "", "target":
					default:
						t.Errorf("target %s = %q", k, v)
					}
				}
				if rep.Keys != int64(copied) {
					t.Errorf("report %+v, but the target holds %d of the source's keys", rep.Counts, copied)
				}
				if left := src.DBSize(t, 0); left != n-int64(copied) {
					t.Errorf("source keeps %d keys, want %d (those not moved)", left, n-copied)
				}

				switch policy {
				case migrate.Fail:
					if !errors.Is(err, migrate.ErrConflict) {
						t.Fatalf("error %v, want ErrConflict", err)
					}
					if !strings.Contains(err.Error(), `"k:5"`) && !strings.Contains(err.Error(), `"k:77"`) {
						t.Errorf("error %q names no conflicting key", err)
					}
					for _, k := range conflicting {
						if v := dst.Get(t, k); v != "target" {
							t.Errorf("target %s = %q, want it kept", k, v)
						}
					}
					if rep.Failed < 1 {
						t.Errorf("report %+v, want the conflict counted as failed", rep.Counts)
					}
				case migrate.Skip:
					if err != nil {
						t.Fatal(err)
					}
					if rep.Skipped != 2 || rep.Keys != n-2 || copied != n-2 {
						t.Errorf("report %+v, %d copied; want 2 skipped, %d copied", rep.Counts, copied, n-2)
					}
					for _, k := range conflicting {
						if v := dst.Get(t, k); v != "target" {
							t.Errorf("target %s = %q, want it kept", k, v)
						}
					}
				case migrate.Replace:
					if err != nil {
						t.Fatal(err)
					}
					if rep.Keys != n || copied != n {
						t.Errorf("report %+v, %d copied; want all %d", rep.Counts, copied, n)
					}
				}
			})
		}
	}
}

// TestMigrateKeysRunAgain runs a migration twice under Fail: the second finds every key on
// the target with the source's value, which is no conflict, copies nothing and skips them.
func TestMigrateKeysRunAgain(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.SetKeys(t, src, 0, "k:", 100, redistest.Numbered("src-"))
	for run, want := range []int64{100, 0} {
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
		if err != nil || rep.Keys != want || rep.Failed != 0 || rep.Skipped != 100-want {
			t.Errorf("run %d: report %+v, error %v; want %d keys copied and the others skipped", run+1, rep.Counts, err, want)
		}
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestMigrateKeysRefusedDuringBatch makes MIGRATE meet keys the check before the batch did
// not see, as when a writer creates them on the target meanwhile: this program checks one
// server, and TargetAddr sends the keys to another, which holds k:5. Moving, the refused key
// is the one left on the source.
func TestMigrateKeysRefusedDuringBatch(t *testing.T) {
	t.Parallel()
	for _, policy := range []migrate.Conflict{migrate.Fail, migrate.Skip} {
		for _, version := range []string{"", "3.0.5"} {
			name := policy.String()
			if version != "" {
				name += " one key each"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				src, checked := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
				dst := redistest.Start(t, redistest.Config{})
				redistest.SetKeys(t, src, 0, "k:", 100, redistest.Numbered("src-"))
				dst.Do(t, 0, "SET", "k:5", "target")
				s := asVersion{MigrateKeys: migrate.MigrateKeys{Move: true, TargetAddr: dst.Addr}, source: version}
				if version == "" {
					// After a BUSYKEY, batches of keys are settled by reading the target
					// itself, which must be the server MIGRATE writes to.
					checked = dst
				}
				rep, err := runMigration(t, src.Option(), checked.Option(), s,
					migrate.WithConflict(policy), migrate.WithBatchSize(16))
				if v := dst.Get(t, "k:5"); v != "target" {
					t.Errorf("target k:5 = %q, want it kept", v)
				}
				if v := src.Get(t, "k:5"); v != "src-5" {
					t.Errorf("source k:5 = %q, want it kept", v)
				}
				moved := dst.DBSize(t, 0) - 1
				if rep.Keys != moved || src.DBSize(t, 0) != 100-moved {
					t.Errorf("report %+v; the target holds %d moved keys, the source %d", rep.Counts, moved, src.DBSize(t, 0))
				}
				if policy == migrate.Skip {
					if err != nil || rep.Skipped != 1 || rep.Keys != 99 {
						t.Errorf("report %+v, error %v; want 99 moved and k:5 skipped", rep.Counts, err)
					}
					return
				}
				if !errors.Is(err, migrate.ErrConflict) || !strings.Contains(err.Error(), `"k:5"`) || rep.Failed != 1 {
					t.Errorf("report %+v, error %v; want ErrConflict naming k:5, counted as failed", rep.Counts, err)
				}
			})
		}
	}
}

// TestMigrateKeysRunAgainHashtables runs a copy twice under Fail into a target that stores
// hashes and sets as hashtables: their DUMP payloads differ from the source's (listpacks),
// the values do not, so the second run finds every key already there and skips it.
func TestMigrateKeysRunAgainHashtables(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{Lines: []string{"hash-max-listpack-entries 0", "set-max-intset-entries 0",
		"zset-max-listpack-entries 0"}})
	c := src.Client(t, 0)
	const n = 40
	var cmds rueidis.Commands
	field := strings.Repeat("f", 65)
	for i := range n {
		k := strconv.Itoa(i)
		h := c.B().Hset().Key("h:" + k).FieldValue()
		for f := range 5 {
			h = h.FieldValue(field+strconv.Itoa(f), field+k)
		}
		cmds = append(cmds, h.Build(),
			c.B().Sadd().Key("s:"+k).Member("1", "2", "3", k).Build(),
			c.B().Zadd().Key("z:"+k).ScoreMember().ScoreMember(1, "a").ScoreMember(2, "b"+k).Build(),
			c.B().Set().Key("e:"+k).Value(k).ExSeconds(1000).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	const keys = 4 * n
	for run, want := range []migrate.Counts{{Keys: keys}, {Skipped: keys}} {
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		if rep.Keys != want.Keys || rep.Skipped != want.Skipped || rep.Failed != 0 || rep.Expired != 0 {
			t.Errorf("run %d: report %+v, want %d copied and %d skipped", run+1, rep.Counts, want.Keys, want.Skipped)
		}
	}
	redistest.AssertSame(t, src, dst, 0)
}

// TestMigrateKeysSameValueOtherTTL finds on the target a key with the source's value and
// another expiry: under Fail that is a conflict, named, and nothing is overwritten.
func TestMigrateKeysSameValueOtherTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src, dst string }{
		{"longer", "100", "5000"},
		{"none on the target", "100", ""},
		{"none on the source", "", "100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{})
			dst := redistest.Start(t, redistest.Config{})
			set := func(s *redistest.Server, ttl string) {
				args := []string{"SET", "user:1", "same"}
				if ttl != "" {
					args = append(args, "EX", ttl)
				}
				s.Do(t, 0, args...)
			}
			set(src, tc.src)
			set(dst, tc.dst)
			rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
			var me *migrate.Error
			if !errors.Is(err, migrate.ErrConflict) || !errors.As(err, &me) || me.Key != "user:1" {
				t.Fatalf("Migrate: %v, want ErrConflict naming user:1", err)
			}
			if rep.Failed != 1 || rep.Keys != 0 || rep.Skipped != 0 {
				t.Errorf("report %+v, want the key counted as failed", rep.Counts)
			}
			ttl, _ := dst.Do(t, 0, "TTL", "user:1").AsInt64()
			if want := map[string]int64{"": -1, "100": 100, "5000": 5000}[tc.dst]; ttl > want || ttl < want-5 {
				t.Errorf("the target's TTL is %d, want %s left alone", ttl, tc.dst)
			}
		})
	}
}

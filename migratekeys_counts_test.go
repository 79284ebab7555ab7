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

// TestMigrateKeysFullTarget copies into a small noeviction target that fills up: MIGRATE
// fails with OOM in the middle of a batch, and the report counts as copied exactly the keys
// the target holds, the others of the failed batches as failed.
func TestMigrateKeysFullTarget(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{Lines: []string{"maxmemory 4mb", "maxmemory-policy noeviction"}})
	const keys = 6000
	redistest.AddKeys(t, src, 0, "k:", keys, 1000)
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.MigrateKeys{})
	if err == nil || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("Migrate: %v, want the target's OOM", err)
	}
	held := dst.DBSize(t, 0)
	if held == 0 || held == keys {
		t.Fatalf("the target holds %d keys: the test needs a target that fills up part way", held)
	}
	if rep.Keys != held {
		t.Errorf("report %+v: %d keys copied, and the target holds %d", rep.Counts, rep.Keys, held)
	}
	if rep.Failed == 0 || rep.Keys+rep.Failed+rep.Skipped+rep.Expired > keys {
		t.Errorf("report %+v: want failed keys, and no more keys counted than the %d on the source", rep.Counts, keys)
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

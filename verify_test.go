package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

func verify(t *testing.T, src, dst *redistest.Server, opts ...migrate.Option) *migrate.VerifyReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := migrate.Verify(ctx, src.Option(), dst.Option(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestVerify plants one difference of each kind in an exact copy and expects Verify to
// find each, and nothing before.
func TestVerify(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
	// A set emptied down to a few integers keeps its hash-table encoding; its copy is
	// loaded as an intset, so the DUMP payloads differ while the values are equal.
	for i := 0; i < 200; i++ {
		src.Do(t, 0, "SADD", "encoded", fmt.Sprint(i))
	}
	for i := 3; i < 200; i++ {
		src.Do(t, 0, "SREM", "encoded", fmt.Sprint(i))
	}
	if _, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, src, dst)
	want := 1
	for _, n := range counts {
		want += n
	}
	if !rep.Equal() || rep.Compared != int64(want) {
		t.Fatalf("exact copy: %v (examples %v), want %d keys compared and no difference", rep, rep.Examples, want)
	}

	dst.Do(t, 0, "DEL", "db0:str:int")                 // missing
	dst.Do(t, 3, "SET", "extra", "x")                  // extra
	dst.Do(t, 0, "DEL", "db0:set:small")               // type
	dst.Do(t, 0, "RPUSH", "db0:set:small", "a")        //
	dst.Do(t, 0, "HSET", "db0:hash:small", "f1", "v2") // value
	dst.Do(t, 15, "XACK", "db15:stream", "g1", "1700000000005-2")
	dst.Do(t, 0, "PEXPIRE", "db0:str:ttl", "10")    // ttl, then gone: missing
	dst.Do(t, 0, "PEXPIRE", "db0:list:ttl", "9999") // ttl
	dst.Do(t, 3, "PERSIST", "db3:ttl:1")            // ttl
	time.Sleep(20 * time.Millisecond)
	rep = verify(t, src, dst, migrate.WithVerifyExamples(100))
	got := fmt.Sprint(rep.Examples)
	for _, c := range []struct {
		n    int64
		want int64
		what string
	}{{rep.Missing, 2, "missing"}, {rep.Extra, 1, "extra"}, {rep.TypeMismatch, 1, "type"}, {rep.ValueMismatch, 2, "value"}, {rep.TTLMismatch, 2, "ttl"}} {
		if c.n != c.want {
			t.Errorf("%s: %d, want %d; examples: %s", c.what, c.n, c.want, got)
		}
	}
	for _, k := range []string{"db0:str:int", "extra", "db0:set:small", "db0:hash:small", "db15:stream", "db0:list:ttl", "db3:ttl:1"} {
		if !strings.Contains(got, fmt.Sprintf("%q", k)) {
			t.Errorf("examples do not name %q: %s", k, got)
		}
	}
	if rep.Equal() {
		t.Error("Equal() with differences")
	}

	// The same filters as a migration: only db 3 is compared.
	rep = verify(t, src, dst, migrate.WithDatabases(3))
	if rep.Extra != 1 || rep.TTLMismatch != 1 || rep.Missing+rep.TypeMismatch+rep.ValueMismatch != 0 {
		t.Errorf("db 3 only: %v", rep)
	}
	// A sample compares about that fraction.
	rep = verify(t, src, dst, migrate.WithSample(0.5))
	if rep.Compared < int64(want)/4 || rep.Compared > int64(want)*3/4 {
		t.Errorf("sample of half: %d keys compared of %d", rep.Compared, want)
	}
}

func TestMigrateWithVerify(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	rep, err := runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithVerify())
	if err != nil || rep.Verify == nil || !rep.Verify.Equal() || rep.Verify.Compared != rep.Keys {
		t.Fatalf("err %v, verify %v, want an equal verification of %d keys", err, rep.Verify, rep.Keys)
	}
	// A key on the target that the source lacks, kept by Skip, makes verification fail.
	dst.Do(t, 0, "SET", "db0:str:int", "other")
	rep, err = runMigration(t, src.Option(), dst.Option(), migrate.DumpRestore{}, migrate.WithVerify(), migrate.WithConflict(migrate.Skip))
	if !errors.Is(err, migrate.ErrMismatch) || rep.Verify.ValueMismatch != 1 {
		t.Fatalf("err %v, verify %v, want ErrMismatch with one value mismatch", err, rep.Verify)
	}
}

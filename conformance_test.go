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

// runConformance fills a source with the conformance data set, migrates it into an empty
// target with strategy s, compares both sides key by key, and checks the report's counts.
// Every strategy runs it.
func runConformance(t *testing.T, s migrate.Strategy, srcCfg, dstCfg redistest.Config, opts ...migrate.Option) *migrate.Report {
	t.Helper()
	src, dst := startPair(t, srcCfg, dstCfg)
	counts := redistest.Fill(t, src, redistest.Dataset{})
	m, err := migrate.New(src.Option(), dst.Option(), append([]migrate.Option{migrate.WithStrategy(s)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := m.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
	want := 0
	for _, n := range counts {
		want += n
	}
	if rep.Keys != int64(want) || rep.Failed != 0 || rep.Skipped != 0 || rep.Expired != 0 {
		t.Errorf("report %+v, want %d keys copied and nothing else", rep.Counts, want)
	}
	for _, db := range redistest.DatasetDBs {
		if got := rep.Databases[db].Keys; got != int64(counts[db]) {
			t.Errorf("report db %d: %d keys, want %d", db, got, counts[db])
		}
	}
	if rep.Strategy != s.Name() {
		t.Errorf("report strategy %q, want %q", rep.Strategy, s.Name())
	}
	return rep
}

// startPair starts a source and a target server.
func startPair(t *testing.T, srcCfg, dstCfg redistest.Config) (src, dst *redistest.Server) {
	t.Helper()
	return redistest.Start(t, srcCfg), redistest.Start(t, dstCfg)
}

// runConflicts copies 100 keys into a target that holds one of them, under each conflict
// policy, and checks the target's value, the error and the counts.
func runConflicts(t *testing.T, s migrate.Strategy) {
	t.Helper()
	for _, tc := range []struct {
		policy  migrate.Conflict
		wantErr error
		want    string // the target's value of "k1" afterwards
		skipped int64
	}{
		{migrate.Fail, migrate.ErrConflict, "target", 0},
		{migrate.Skip, nil, "target", 1},
		{migrate.Replace, nil, "source", 0},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			src, dst := startPair(t, redistest.Config{}, redistest.Config{})
			c := src.Client(t, 0)
			for i := 0; i < 100; i++ {
				c.Do(context.Background(), c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("source").Build())
			}
			dst.Do(t, 0, "SET", "k1", "target")
			rep, err := migrateWith(t, src, dst, migrate.WithStrategy(s), migrate.WithConflict(tc.policy))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !strings.Contains(err.Error(), `"k1"`) {
				t.Errorf("conflict error does not name the key: %v", err)
			}
			if got, _ := dst.Do(t, 0, "GET", "k1").ToString(); got != tc.want {
				t.Errorf("target k1 = %s, want %s", got, tc.want)
			}
			if rep.Skipped != tc.skipped {
				t.Errorf("Skipped = %d, want %d", rep.Skipped, tc.skipped)
			}
			if tc.wantErr == nil && (rep.Keys+rep.Skipped != 100 || dbsize(t, dst, 0) != 100) {
				t.Errorf("report %+v, target %d keys; want 100 keys copied or skipped", rep.Counts, dbsize(t, dst, 0))
			}
		})
	}
}

package migrate_test

import (
	"context"
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

package migrate_test

import (
	"context"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestTLSStrategies runs DumpRestore, Snapshot and Replication with TLS on the source, on
// the target and on both, the servers speaking TLS only with certificates of a private CA,
// mutual TLS on some, and compares both sides key by key.
func TestTLSStrategies(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}, migrate.Replication{}} {
		for _, tc := range []struct {
			name     string
			src, dst *redistest.TLS
		}{
			{"source", &redistest.TLS{CA: ca, AuthClients: true}, nil},
			{"target", nil, &redistest.TLS{CA: ca, AuthClients: true}},
			{"both", &redistest.TLS{CA: ca, AuthClients: true}, &redistest.TLS{CA: ca}},
		} {
			t.Run(s.Name()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dstTLS := tc.dst
				if _, ok := s.(migrate.Replication); ok && tc.src != nil {
					// The target connects to a TLS source as its replica: over TLS, with
					// its certificate, which the source asks for.
					if dstTLS == nil {
						dstTLS = &redistest.TLS{CA: ca, ListenPlain: true}
					}
					d := *dstTLS
					d.Replication = true
					dstTLS = &d
				}
				src := redistest.Start(t, redistest.Config{TLS: tc.src})
				dst := redistest.Start(t, redistest.Config{TLS: dstTLS})
				counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
				rep := migrateTLS(t, s, src, dst)
				redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
				want := 0
				for _, n := range counts {
					want += n
				}
				if rep.Keys != int64(want) || rep.Failed != 0 || rep.Skipped != 0 {
					t.Errorf("report %+v, want %d keys copied and nothing else", rep.Counts, want)
				}
			})
		}
	}
}

// migrateTLS migrates from src to dst with strategy s, as their Option describes them
// (TLS included), and fails the test on error.
func migrateTLS(t *testing.T, s migrate.Strategy, src, dst *redistest.Server, opts ...migrate.Option) *migrate.Report {
	t.Helper()
	m, err := migrate.New(src.Option(), dst.Option(), append([]migrate.Option{migrate.WithStrategy(s), migrate.WithDiscardTarget()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := m.Migrate(ctx)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return rep
}

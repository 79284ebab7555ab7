package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestTLSClusterBothPorts reaches clusters whose nodes listen on a plain port and on a
// tls-port. With tls-cluster yes, a TLS client (at a node's tls-port) and a plain one (at
// its plain port) each copy it exactly, by DumpRestore and Snapshot: the cluster names its
// nodes to each by the port of its kind. With tls-cluster no it names them by their plain
// ports only, which a TLS client cannot use: the migration is refused, saying so, rather
// than taking the one node reached for a standalone server.
func TestTLSClusterBothPorts(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	start := func(tlsCluster bool) (*redistest.Cluster, map[int]int) {
		cl := redistest.StartCluster(t, redistest.ClusterConfig{Node: redistest.Config{
			TLS: &redistest.TLS{CA: ca, ListenPlain: true, AlsoTLS: true, AuthClients: true, Cluster: tlsCluster}}})
		return cl, redistest.FillCluster(t, cl, redistest.Dataset{Small: true})
	}
	t.Run("tls-cluster yes", func(t *testing.T) {
		t.Parallel()
		cl, counts := start(true)
		addr, cfg := cl.Masters[0].TLSAddr(t)
		for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}} {
			for _, tls := range []bool{true, false} {
				name := s.Name() + "/plain client"
				src := cl.Option()
				if tls {
					name = s.Name() + "/TLS client"
					src.InitAddress, src.TLSConfig = []string{addr}, cfg.Clone()
				}
				t.Run(name, func(t *testing.T) {
					dst := redistest.Start(t, redistest.Config{})
					rep := mustMigrate(t, src, dst.Option(), s, migrate.WithDiscardTarget())
					redistest.AssertSameSides(t, cl.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
					assertCopied(t, rep, map[int]int64{0: redistest.Total(counts)})
				})
			}
		}
	})
	t.Run("tls-cluster no", func(t *testing.T) {
		t.Parallel()
		cl, _ := start(false)
		addr, cfg := cl.Masters[0].TLSAddr(t)
		src := cl.Option()
		src.InitAddress, src.TLSConfig = []string{addr}, cfg
		src.Dialer.Timeout = time.Second
		for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}} {
			t.Run(s.Name(), func(t *testing.T) {
				t.Parallel()
				dst := redistest.Start(t, redistest.Config{})
				m, err := migrate.New(src, dst.Option(), migrate.WithStrategy(s))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err = m.Migrate(ctx)
				if !errors.Is(err, migrate.ErrUnsupported) {
					t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported", err)
				}
				for _, w := range []string{"source " + addr, "plain ports", "tls-cluster no", "set tls-cluster yes"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if n := dst.DBSize(t, 0); n != 0 {
					t.Errorf("the target holds %d keys, want none", n)
				}
			})
		}
	})
}

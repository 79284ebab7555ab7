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

// TestMigrateKeysTLS copies by MIGRATE into a target that speaks TLS only and asks clients
// for a certificate, standalone and cluster, from a source that listens without TLS and
// runs with tls-cluster yes (its MIGRATE then speaks TLS, with its certificate), without
// TargetAddr, and compares both sides key by key.
func TestMigrateKeysTLS(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	srcTLS := &redistest.TLS{CA: ca, Cluster: true, ListenPlain: true}
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{TLS: srcTLS})
		dst := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
		rep := mustMigrate(t, src.Option(), dst.Option(), migrate.MigrateKeys{}, migrate.WithDiscardTarget())
		redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
		assertCopied(t, rep, counts)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{TLS: srcTLS})
		dst := redistest.StartTLSCluster(t, ca.TLS(true), redistest.Config{})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true, DBs: []int{0}})
		rep := mustMigrate(t, src.Option(), dst.Option(), migrate.MigrateKeys{}, migrate.WithDiscardTarget())
		redistest.AssertSameSides(t, redistest.Side{Client: src.Client(t, 0)}, dst.Side(t), "")
		assertCopied(t, rep, counts)
	})
	t.Run("cluster source", func(t *testing.T) {
		t.Parallel()
		src := redistest.StartTLSCluster(t, ca.TLS(true), redistest.Config{})
		dst := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
		counts := src.Fill(t, redistest.Dataset{Small: true, DBs: []int{0}})
		rep := mustMigrate(t, src.Option(), dst.Option(), migrate.MigrateKeys{}, migrate.WithDiscardTarget())
		redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
		assertCopied(t, rep, counts)
	})
	// The target listens on both ports and is reached over TLS; TargetAddr names its plain
	// port, which a source without tls-cluster reaches.
	t.Run("TargetAddr at the plain port", func(t *testing.T) {
		t.Parallel()
		src := redistest.Start(t, redistest.Config{})
		dst := redistest.Start(t, redistest.Config{TLS: &redistest.TLS{CA: ca, ListenPlain: true, AlsoTLS: true}})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
		addr, cfg := dst.TLSAddr(t)
		dstOpt := dst.Option()
		dstOpt.InitAddress, dstOpt.TLSConfig = []string{addr}, cfg
		rep := mustMigrate(t, src.Option(), dstOpt, migrate.MigrateKeys{TargetAddr: dst.Addr}, migrate.WithDiscardTarget())
		redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
		assertCopied(t, rep, counts)
	})
}

// TestMigrateKeysTLSCheck gives MigrateKeys a source whose MIGRATE would not speak the
// target port's protocol, and checks that Check refuses it, naming tls-cluster and what to
// set, before any key is sent.
func TestMigrateKeysTLSCheck(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	for _, tc := range []struct {
		name     string
		src, dst *redistest.TLS
		side     migrate.Side
		want     []string
	}{
		{"TLS target, source without tls-cluster", &redistest.TLS{CA: ca, ListenPlain: true}, ca.TLS(true), migrate.Source,
			[]string{"tls-cluster no", "set tls-cluster yes", "tls-auth-clients yes", "DumpRestore"}},
		{"TLS target, plain source", nil, ca.TLS(false), migrate.Source,
			[]string{"tls-cluster", "DumpRestore"}},
		{"plain target, source with tls-cluster yes", &redistest.TLS{CA: ca, ListenPlain: true, Cluster: true}, nil, migrate.Target,
			[]string{"tls-cluster yes", "speaks TLS", "reached without TLS", "CONFIG SET tls-cluster no"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{TLS: tc.src})
			dst := redistest.Start(t, redistest.Config{TLS: tc.dst})
			src.Do(t, 0, "SET", "k", "v")
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := m.Migrate(ctx)
			if !errors.Is(err, migrate.ErrUnsupported) {
				t.Fatalf("Migrate: %v, want an error wrapping ErrUnsupported", err)
			}
			t.Log(err)
			addr := src.Addr
			if tc.side == migrate.Target {
				addr = dst.Addr
			}
			for _, w := range append([]string{string(tc.side) + " " + addr}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if rep != nil && rep.Keys != 0 {
				t.Errorf("report %+v, want nothing copied", rep.Counts)
			}
			if n := dst.DBSize(t, 0); n != 0 {
				t.Errorf("the target holds %d keys, want none", n)
			}
		})
	}
}

// TestMigrateKeysTLSUnread gives MigrateKeys a TLS target and a source whose user may not
// run CONFIG: Check says that tls-cluster could not be read and how to go ahead, and with
// MigrateKeys.TargetAddr set (the user's confirmation) the copy runs.
func TestMigrateKeysTLSUnread(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	src := redistest.Start(t, redistest.Config{TLS: &redistest.TLS{CA: ca, ListenPlain: true, Cluster: true}})
	dst := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
	src.Do(t, 0, "ACL", "SETUSER", "mover", "on", ">mover-pass", "~*", "+@all", "-config")
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true, DBs: []int{0}})
	srcOpt := src.Option()
	srcOpt.Username, srcOpt.Password = "mover", "mover-pass"

	m, err := migrate.New(srcOpt, dst.Option(), migrate.WithStrategy(migrate.MigrateKeys{}))
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
	for _, w := range []string{"source " + src.Addr, "tls-cluster could not be read", "NOPERM", "set MigrateKeys.TargetAddr"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("the target holds %d keys, want none", n)
	}

	rep := mustMigrate(t, srcOpt, dst.Option(), migrate.MigrateKeys{TargetAddr: dst.Addr}, migrate.WithDiscardTarget(), migrate.WithDatabases(0))
	redistest.AssertSame(t, src, dst, 0)
	assertCopied(t, rep, counts)
}

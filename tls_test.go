package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

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
			srcOpt   func(*rueidis.ClientOption) // changes the source's option
		}{
			{"source", &redistest.TLS{CA: ca, AuthClients: true}, nil, nil},
			{"target", nil, &redistest.TLS{CA: ca, AuthClients: true}, nil},
			{"both", &redistest.TLS{CA: ca, AuthClients: true}, &redistest.TLS{CA: ca}, nil},
			// A certificate for localhost only, reached at 127.0.0.1 with ServerName
			// "localhost": every connection to the source must check that name.
			{"source by server name", &redistest.TLS{CA: ca, AuthClients: true, NameOnly: true}, nil, nil},
			// No CA to check the certificate with, and the user turned the check off.
			{"source unverified", &redistest.TLS{CA: ca}, nil, func(o *rueidis.ClientOption) {
				o.TLSConfig.RootCAs, o.TLSConfig.InsecureSkipVerify = nil, true
			}},
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
				srcOpt := src.Option()
				if tc.srcOpt != nil {
					tc.srcOpt(&srcOpt)
				}
				rep := mustMigrate(t, srcOpt, dst.Option(), s, migrate.WithDiscardTarget())
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

// TestTLSErrors gives each side, in turn, a TLS setting that cannot work, and checks that
// the error names the side, the address and the cause in words, and holds no password.
func TestTLSErrors(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	const password = "s3cret-tls-pass"
	tlsSrv := redistest.Start(t, redistest.Config{Password: password, TLS: ca.TLS(false)})
	mutual := redistest.Start(t, redistest.Config{Password: password, TLS: ca.TLS(true)})
	plain := redistest.Start(t, redistest.Config{Password: password})
	named := redistest.Start(t, redistest.Config{Password: password, TLS: &redistest.TLS{CA: ca, NameOnly: true}})
	for _, tc := range []struct {
		name string
		srv  *redistest.Server
		opt  func(*rueidis.ClientOption)
		want []string
	}{
		{"untrusted certificate", tlsSrv, func(o *rueidis.ClientOption) { o.TLSConfig.RootCAs = nil },
			[]string{"certificate signed by unknown authority", "RootCAs"}},
		{"wrong server name", tlsSrv, func(o *rueidis.ClientOption) { o.TLSConfig.ServerName = "wrong.example" },
			[]string{"not wrong.example", "ServerName"}},
		{"address not in the certificate", named, func(o *rueidis.ClientOption) { o.TLSConfig.ServerName = "" },
			[]string{"doesn't contain any IP SANs", "set TLSConfig.ServerName"}},
		{"plain to TLS", tlsSrv, func(o *rueidis.ClientOption) { o.TLSConfig = nil },
			[]string{"the server speaks TLS: use rediss:// or set TLSConfig"}},
		// A plain server waits for the end of a line that a TLS hello does not send: the
		// dial times out, after the option's Dialer.Timeout.
		{"TLS to plain", plain, func(o *rueidis.ClientOption) {
			o.TLSConfig, o.Dialer.Timeout = redistest.NewCA(t).ClientConfig(), time.Second
		},
			[]string{"the server does not speak TLS"}},
		{"no client certificate", mutual, func(o *rueidis.ClientOption) { o.TLSConfig.Certificates = nil },
			[]string{"client certificate", "Certificates"}},
	} {
		for _, side := range []migrate.Side{migrate.Source, migrate.Target} {
			t.Run(tc.name+"/"+string(side), func(t *testing.T) {
				t.Parallel()
				good := redistest.Start(t, redistest.Config{})
				bad := tc.srv.Option()
				tc.opt(&bad)
				src, dst := bad, good.Option()
				if side == migrate.Target {
					src, dst = good.Option(), bad
				}
				m, err := migrate.New(src, dst, migrate.WithStrategy(migrate.DumpRestore{}))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err = m.Migrate(ctx)
				if err == nil {
					t.Fatal("Migrate: no error")
				}
				msg := err.Error()
				for _, w := range append([]string{string(side) + " " + tc.srv.Addr}, tc.want...) {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not say %q", msg, w)
					}
				}
				if strings.Contains(msg, password) || strings.Contains(msg, "PRIVATE KEY") {
					t.Errorf("error %q holds a secret", msg)
				}
				var e *migrate.Error
				if !errors.As(err, &e) || e.Side != side || e.Addr != tc.srv.Addr {
					t.Errorf("error %#v is not a *migrate.Error of the %s %s", err, side, tc.srv.Addr)
				}
			})
		}
	}
}

// TestTLSReplicationCheck gives Replication a target that cannot replicate the way the
// source is reached, and checks that Check refuses it, saying what to set, and leaves the
// target alone.
func TestTLSReplicationCheck(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	for _, tc := range []struct {
		name     string
		src, dst *redistest.TLS
		want     []string
	}{
		{"TLS source, target without certificates", ca.TLS(true), nil,
			[]string{"no TLS certificates", "tls-cert-file", "tls-ca-cert-file", "tls-replication yes"}},
		{"TLS source, target with tls-replication no", ca.TLS(false), ca.TLS(false),
			[]string{"tls-replication no", "CONFIG SET tls-replication yes", "tls-port"}},
		{"plain source, target with tls-replication yes", nil, &redistest.TLS{CA: ca, ListenPlain: true, Replication: true},
			[]string{"would speak TLS to the source", "CONFIG SET tls-replication no"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := redistest.Start(t, redistest.Config{TLS: tc.src})
			dst := redistest.Start(t, redistest.Config{TLS: tc.dst})
			src.Do(t, 0, "SET", "k", "v")
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(migrate.Replication{}), migrate.WithDiscardTarget())
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
			for _, w := range append([]string{"target " + dst.Addr}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if role, _ := dst.Do(t, 0, "ROLE").ToArray(); len(role) == 0 || must(role[0].ToString()) != "master" {
				t.Errorf("the target is no longer a master: %v", role)
			}
			if n := dst.DBSize(t, 0); n != 0 {
				t.Errorf("the target holds %d keys, want none", n)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestTLSPlan checks that Plan shows TLS per side: how the client connects, and the
// server's own TLS connections, and that Replication can run from a TLS source into a
// target that replicates over TLS.
func TestTLSPlan(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	src := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
	dst := redistest.Start(t, redistest.Config{TLS: &redistest.TLS{CA: ca, ListenPlain: true, Replication: true}})
	src.Do(t, 0, "SET", "k", "v")
	srcOpt := src.Option()
	srcOpt.TLSConfig.ServerName = "localhost"
	m, err := migrate.New(srcOpt, dst.Option(), migrate.WithDiscardTarget())
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
	if want := "on: name localhost, verified, client certificate"; p.Source.TLS != want {
		t.Errorf("source TLS %q, want %q", p.Source.TLS, want)
	}
	if want := "off; server: tls-replication yes"; p.Target.TLS != want {
		t.Errorf("target TLS %q, want %q", p.Target.TLS, want)
	}
	if p.Chosen != "replication" {
		t.Errorf("chosen %q, want replication:\n%s", p.Chosen, p)
	}
	if !strings.Contains(p.String(), "tls  ") {
		t.Errorf("the plan shows no tls row:\n%s", p)
	}

	srcOpt.TLSConfig.InsecureSkipVerify = true
	m2, err := migrate.New(srcOpt, dst.Option(), migrate.WithStrategy(migrate.DumpRestore{}))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if p, err = m2.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "on: name localhost, NOT verified (InsecureSkipVerify)"; !strings.Contains(p.Source.TLS, want) {
		t.Errorf("source TLS %q does not say %q", p.Source.TLS, want)
	}
}

// TestTLSCluster copies a cluster that speaks TLS only (tls-cluster yes, mutual TLS) into a
// TLS standalone server, by DumpRestore and by Snapshot (one replication connection per
// master), and compares both sides key by key.
func TestTLSCluster(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	cl := redistest.StartTLSCluster(t, ca.TLS(true), redistest.Config{})
	counts := cl.Fill(t, redistest.Dataset{Small: true})
	want := 0
	for _, n := range counts {
		want += n
	}
	for _, s := range []migrate.Strategy{migrate.DumpRestore{}, migrate.Snapshot{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			dst := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
			rep := mustMigrate(t, cl.Option(), dst.Option(), s, migrate.WithDiscardTarget())
			redistest.AssertSameSides(t, cl.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
			if rep.Keys != int64(want) || rep.Failed != 0 || rep.Skipped != 0 {
				t.Errorf("report %+v, want %d keys copied and nothing else", rep.Counts, want)
			}
		})
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestTLSFlags migrates between servers that speak TLS only, with certificates of a
// private CA, through the TLS flags: mutual TLS on both sides (-tls-ca, -tls-cert and
// -tls-key for both), and a target whose certificate holds only the name localhost
// (-to-tls-server-name).
func TestTLSFlags(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	src := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
	dst := redistest.Start(t, redistest.Config{TLS: &redistest.TLS{CA: ca, AuthClients: true, NameOnly: true}})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	r := runCommand(t, nil, "-from", "rediss://"+src.Addr, "-to", "rediss://"+dst.Addr,
		"-tls-ca", ca.File, "-tls-cert", ca.ClientCert, "-tls-key", ca.ClientKey, "-to-tls-server-name", "localhost",
		"-strategy", "dump-restore", "-verify")
	if r.code != 0 {
		t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "0 missing, 0 extra") {
		t.Errorf("verify does not say the sides are the same:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "WARNING") {
		t.Errorf("a warning without -tls-insecure: %s", r.stderr)
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
}

// TestTLSInsecureFlag copies from a TLS server whose CA the command is not given, with
// -from-tls-insecure, and checks the loud warning.
func TestTLSInsecureFlag(t *testing.T) {
	t.Parallel()
	ca := redistest.NewCA(t)
	src := redistest.Start(t, redistest.Config{TLS: ca.TLS(false)})
	dst := redistest.Start(t, redistest.Config{})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	r := runCommand(t, nil, "-from", "rediss://"+src.Addr, "-to", url(dst, ""), "-from-tls-insecure", "-strategy", "dump-restore")
	if r.code != 0 {
		t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"WARNING: -from-tls-insecure", "source's TLS certificate is NOT verified", "-from-tls-ca"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
		}
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
}

// TestTLSFlagErrors gives the TLS flags settings that cannot work, and checks that the
// command says which flag to set, in its own words, not the library's.
func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	ca, other := redistest.NewCA(t), redistest.NewCA(t)
	mutual := redistest.Start(t, redistest.Config{TLS: ca.TLS(true)})
	plain := redistest.Start(t, redistest.Config{})
	plainURL, tlsURL := url(plain, ""), "rediss://"+mutual.Addr
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"untrusted CA", []string{"-from", plainURL, "-to", tlsURL, "-tls-ca", other.File,
			"-tls-cert", ca.ClientCert, "-tls-key", ca.ClientKey},
			1, []string{"target " + mutual.Addr, "certificate signed by unknown authority", "set -to-tls-ca to the PEM file of the CA"}},
		{"no client certificate", []string{"-from", tlsURL, "-to", plainURL, "-from-tls-ca", ca.File},
			1, []string{"source " + mutual.Addr, "-from-tls-cert and -from-tls-key"}},
		{"plain URL to a TLS port", []string{"-from", "redis://" + mutual.Addr, "-to", plainURL},
			1, []string{"source " + mutual.Addr, "the server speaks TLS: use rediss:// in -from"}},
		{"side flag without rediss://", []string{"-from", plainURL, "-to", plainURL, "-from-tls-ca", ca.File},
			2, []string{"-from-tls-ca is set, but -from is not a rediss:// URL"}},
		{"shared flag without rediss://", []string{"-from", plainURL, "-to", plainURL, "-tls-insecure"},
			2, []string{"-tls-insecure is set, but neither -from nor -to is a rediss:// URL"}},
		{"certificate without key", []string{"-from", tlsURL, "-to", plainURL, "-tls-cert", ca.ClientCert},
			2, []string{"-tls-cert needs -tls-key"}},
		{"CA file without a certificate", []string{"-from", tlsURL, "-to", plainURL, "-from-tls-ca", ca.ClientKey},
			2, []string{"-from-tls-ca " + ca.ClientKey + ": no PEM certificate in it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCommand(t, nil, append(tc.args, "-strategy", "dump-restore")...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d: %s\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "TLSConfig") || strings.Contains(r.stderr, "PRIVATE KEY") {
				t.Errorf("stderr names the library's settings, or a key:\n%s", r.stderr)
			}
			if n, _ := plain.Do(t, 0, "DBSIZE").AsInt64(); n != 0 {
				t.Errorf("the plain server holds %d keys, want none", n)
			}
		})
	}
}

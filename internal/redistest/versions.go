package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// ServersEnv names the environment variable that gives the directory of server
// binaries for the version matrix (one executable a version, as /work/shared/servers
// holds them). `make test` sets it when ../shared/servers exists.
const ServersEnv = "MIGRATE_TEST_SERVERS"

// A Release is one server binary of the version matrix.
type Release struct {
	// Name is the binary's file name ("redis-7.2", "valkey-8.0"), or "redis-server" for
	// the installed one.
	Name string
	// Binary is the executable's path, for Config.Binary.
	Binary string
	// Product is "Redis" or "Valkey".
	Product string
	// Version is the product's version as major*10000+minor*100+patch (Valkey 8.0.1 is
	// 80001).
	Version int
}

// String returns the release as "Valkey 8.0.1".
func (r Release) String() string {
	return r.Product + " " + versionString(r.Version)
}

// Valkey reports whether the release is Valkey.
func (r Release) Valkey() bool { return r.Product == "Valkey" }

// AtLeast reports whether the release is of product (any, when "") at version
// major.minor or newer.
func (r Release) AtLeast(product string, major, minor int) bool {
	return (product == "" || product == r.Product) && r.Version >= major*10000+minor*100
}

// Releases returns the server releases of the version matrix, oldest first: every
// executable in the directory $MIGRATE_TEST_SERVERS names, and the installed
// redis-server (Debian's 7.0). When the variable is unset it skips the test, saying how
// to enable the matrix; when the directory cannot be read it fails it.
func Releases(t testing.TB) []Release {
	t.Helper()
	dir := os.Getenv(ServersEnv)
	if dir == "" {
		t.Skipf("the version matrix needs server binaries: set %s to a directory of them "+
			"(make test sets it to ../shared/servers when that exists)", ServersEnv)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s=%s: %v", ServersEnv, dir, err)
	}
	var rels []Release
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		rel, ok := release(e.Name(), path)
		if !ok {
			t.Fatalf("%s: %s does not say its version with --version", ServersEnv, path)
		}
		rels = append(rels, rel)
	}
	if path, err := exec.LookPath("redis-server"); err == nil {
		if rel, ok := release("redis-server", path); ok {
			rels = append(rels, rel)
		}
	}
	sort.Slice(rels, func(i, j int) bool {
		if rels[i].Version != rels[j].Version {
			return rels[i].Version < rels[j].Version
		}
		return rels[i].Product < rels[j].Product
	})
	return rels
}

// release describes the server binary at path by its --version output.
func release(name, path string) (Release, bool) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return Release{}, false
	}
	product := "Redis"
	if strings.HasPrefix(string(out), "Valkey") {
		product = "Valkey"
	}
	v := version(path)
	return Release{Name: name, Binary: path, Product: product, Version: v}, v > 0
}

// StartRelease starts a server of release rel configured by cfg (its Binary set to the
// release's), and stops it when the test ends. Config lines a release does not know
// are the caller's to leave out; the helper itself passes each version only what it
// takes (DEBUG is enabled from 7.0, where the setting appeared).
func StartRelease(t testing.TB, rel Release, cfg Config) *Server {
	t.Helper()
	cfg.Binary = rel.Binary
	return Start(t, cfg)
}

// FindRelease returns the release whose binary is called name ("redis-6.2"), and skips the
// test, saying how to enable the matrix, when there is none.
func FindRelease(t testing.TB, name string) Release {
	t.Helper()
	for _, rel := range Releases(t) {
		if rel.Name == name {
			return rel
		}
	}
	t.Skipf("%s is not among the servers of %s", name, ServersEnv)
	return Release{}
}

func versionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

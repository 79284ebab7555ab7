package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"

	"github.com/redismigrate/migrate/internal/redistest"
)

// The sets versions and bigstring (not run by default: -sets=versions,bigstring) need the
// server binaries of the version matrix (-servers, by default $MIGRATE_TEST_SERVERS or
// ../shared/servers; see internal/redistest/versions.go).
//
// versions copies the mixed set from Redis 7.4 into Redis 6.2, which cannot read 7.4's
// payloads, so that every value is rewritten (downgrade.go), and into Redis 7.4, where they
// go as they are, with each strategy that rewrites (Snapshot, DumpRestore), and prints the
// ratio of the two times: the cost of rewriting.
//
// bigstring copies one string of 1 GB (times -scale) from Redis 7.4 into Redis 7.4, whose
// proto-max-bulk-len both raise to hold it, with Snapshot and DumpRestore: it goes in
// pieces (WithKeyBudget's default, 32 MiB, is far below it), and the peak RSS of the
// migrating process is what it shows.

// serversDir is where the version matrix's binaries are.
var serversDir string

func defaultServersDir() string {
	if d := os.Getenv(redistest.ServersEnv); d != "" {
		return d
	}
	return filepath.Join("..", "shared", "servers")
}

// launch starts a server of release name ("redis-7.4") with the given lines, in a
// directory of its own under dir.
func launch(dir, name string, lines ...string) (*redistest.Server, error) {
	bin := filepath.Join(serversDir, name)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the %s binary (set -servers or %s to the version matrix's directory): %w", name, redistest.ServersEnv, err)
	}
	d, err := os.MkdirTemp(dir, name+"-")
	if err != nil {
		return nil, err
	}
	return redistest.Launch(redistest.Config{Binary: bin, Dir: d, Lines: lines})
}

// rewriters are the strategies that rewrite payloads for an older target.
var rewriters = []string{"snapshot", "dump-restore"}

func runVersionsSet(names []string, scale float64) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "migrate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src, err := launch(dir, "redis-7.4", "repl-diskless-sync yes", "repl-diskless-sync-delay 0")
	if err != nil {
		return err
	}
	defer src.Stop()
	keys, err := load(ctx, src, "mixed", scale)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	targets := map[string]*redistest.Server{}
	for _, rel := range []string{"redis-7.4", "redis-6.2"} {
		s, err := launch(dir, rel)
		if err != nil {
			return err
		}
		defer s.Stop()
		targets[rel] = s
	}
	for _, name := range names {
		if !strings.Contains(strings.Join(rewriters, ","), name) {
			continue
		}
		var secs [2]float64
		for i, rel := range []string{"redis-7.4", "redis-6.2"} {
			dst := targets[rel]
			if err := flush(ctx, dst); err != nil {
				return err
			}
			before := usage{src: cpuSeconds(ctx, src), dst: cpuSeconds(ctx, dst)}
			r, err := runStrategy("versions", name, src.Addr, dst.Addr, keys)
			if err != nil {
				return fmt.Errorf("into %s: %w", rel, err)
			}
			secs[i] = r.Seconds
			fmt.Printf("%-8s %-14s %9.2f %12.0f %9.1f %9s %8dMB  %s (7.4 into %s)\n", "versions", name, r.Seconds, float64(r.Keys)/r.Seconds,
				float64(r.Bytes)/r.Seconds/1e6, "-", r.PeakKiB/1024, cpuSince(ctx, src, dst, before, r.CPU), strings.TrimPrefix(rel, "redis-"))
		}
		fmt.Printf("%-8s %-14s rewriting for 6.2 costs %.2fx the time into 7.4\n", "versions", name, secs[1]/secs[0])
	}
	return nil
}

func runBigStringSet(names []string, scale float64) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "migrate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	size := max(64<<20, int64(float64(1<<30)*scale))
	lines := []string{"proto-max-bulk-len 2gb", "client-query-buffer-limit 2gb", "repl-diskless-sync yes", "repl-diskless-sync-delay 0"}
	src, err := launch(dir, "redis-7.4", lines...)
	if err != nil {
		return err
	}
	defer src.Stop()
	dst, err := launch(dir, "redis-7.4", lines...)
	if err != nil {
		return err
	}
	defer dst.Stop()
	// Random windows, so that the RDB holds it plain (LZF would shrink a repeated one).
	c, err := src.Connect(0)
	if err != nil {
		return err
	}
	w := &writer{ctx: ctx, c: c, rnd: rand.New(rand.NewSource(1))}
	for off := int64(0); off < size; off += 1 << 20 {
		w.add(c.B().Append().Key("big").Value(w.value(int(min(1<<20, size-off)))).Build())
		if off%(64<<20) == 0 {
			if err := w.flush(); err != nil {
				c.Close()
				return err
			}
		}
	}
	err = w.flush()
	c.Close()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	for _, name := range names {
		if !strings.Contains(strings.Join(rewriters, ","), name) {
			continue
		}
		if err := flush(ctx, dst); err != nil {
			return err
		}
		r, err := runStrategy("bigstring", name, src.Addr, dst.Addr, 1)
		if err != nil {
			return err
		}
		fmt.Printf("%-8s %-14s %9.2f %12s %9.1f %9s %8dMB  one string of %d MB\n", "bigstr", name, r.Seconds, "-",
			float64(r.Bytes)/r.Seconds/1e6, "-", r.PeakKiB/1024, size>>20)
	}
	return nil
}

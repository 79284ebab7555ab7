package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCheckpointResume interrupts a copy with -checkpoint twice, by SIGKILL and then by
// Ctrl-C, runs the same command again each time, and checks that the runs continue (the
// summary says "resumed from"), that the target ends with every key, and that a last run says the copy is
// already complete.
func TestCheckpointResume(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{"dump-restore", "migrate"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			const n = 6000
			src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
			load(t, src, n)
			file := filepath.Join(t.TempDir(), "checkpoint.json")
			args := []string{"-from", url(src, ""), "-to", url(dst, ""), "-strategy", strategy, "-checkpoint", file}
			for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
				cmd, _, out, errOut := startCommand(t, append(args, "-rate", "3000", "-batch", "50")...)
				time.Sleep(600 * time.Millisecond)
				_ = cmd.Process.Signal(sig)
				_ = cmd.Wait()
				if sig == syscall.SIGINT && !strings.Contains(out.String(), "resumed from checkpoint saved") {
					t.Errorf("run %d does not say it resumed:\n%s\n%s", i+1, out.String(), errOut.String())
				}
				if i > 0 && !strings.Contains(errOut.String(), "run the same command again") {
					t.Errorf("Ctrl-C does not say how to continue:\n%s", errOut.String())
				}
			}
			copied, _ := dst.Do(t, 0, "DBSIZE").AsInt64()
			if copied == 0 || copied >= n {
				t.Fatalf("target has %d keys after two interrupted copies of %d", copied, n)
			}
			r := runCommand(t, nil, append(args, "-verify")...)
			if r.code != 0 || !strings.Contains(r.stdout, "resumed from checkpoint saved") {
				t.Fatalf("exit %d, want 0 and a resumed run:\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if copied, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); copied != n {
				t.Errorf("target has %d keys, want %d", copied, n)
			}
			r = runCommand(t, nil, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "already complete") {
				t.Errorf("exit %d, want 0 and \"already complete\":\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

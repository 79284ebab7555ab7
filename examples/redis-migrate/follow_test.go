package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// syncBuffer is a bytes.Buffer a running command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// incrWriter INCRs counters c0..c4 on s, one after another, until stop is called, which
// returns how many INCRs the source acknowledged.
func incrWriter(t *testing.T, s *redistest.Server) (stop func() int64) {
	t.Helper()
	c := s.Client(t, 0)
	var done atomic.Bool
	var n atomic.Int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; !done.Load(); i++ {
			if c.Do(context.Background(), c.B().Incr().Key(fmt.Sprintf("c%d", i%5)).Build()).Error() == nil {
				n.Add(1)
			}
		}
	}()
	return func() int64 { done.Store(true); <-finished; return n.Load() }
}

// waitFor waits until buf holds text, or fails.
func waitFor(t *testing.T, buf *syncBuffer, text string, cmd *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), text) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no %q on stderr after 20s:\n%s", text, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counters returns the values of c0..c4 on s.
func counters(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	var out []string
	for i := range 5 {
		v, _ := s.Do(t, 0, "GET", fmt.Sprintf("c%d", i)).ToString()
		out = append(out, v)
	}
	return out
}

const caughtUp = "has caught up"

// TestFollowCutoverPause follows a source under a writer of INCRs and cuts over by
// SIGUSR1 with -cutover-pause: while the source's writes are still paused after the
// command returned, the target holds exactly what the source holds.
func TestFollowCutoverPause(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	load(t, src, 2000)
	stopWriter := incrWriter(t, src)
	defer stopWriter()
	defer src.Do(t, 0, "CLIENT", "UNPAUSE")

	cmd, _, out, errOut := startCommand(t, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "snapshot",
		"-follow", "-cutover-pause", "10s")
	waitFor(t, errOut, caughtUp, cmd)
	time.Sleep(300 * time.Millisecond) // a few more writes to follow
	_ = cmd.Process.Signal(syscall.SIGUSR1)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("err %v; stderr:\n%s", err, errOut.String())
	}
	// The source's writes stay paused: it holds what it held at the cutover.
	if d := redistest.Diff(t, src, dst, 0, ""); len(d) > 0 {
		t.Errorf("target differs from the source after the cutover: %v", d)
	}
	s, d := counters(t, src), counters(t, dst)
	if fmt.Sprint(s) != fmt.Sprint(d) {
		t.Errorf("counters: source %v, target %v", s, d)
	}
	if s[0] == "" {
		t.Errorf("the writer wrote nothing: %v", s)
	}
	if !strings.Contains(out.String(), "followed") || !strings.Contains(errOut.String(), "stay paused until") {
		t.Errorf("no followed line or pause notice:\n%s\n%s", out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "following: lag") {
		t.Errorf("no live following line on stderr:\n%s", errOut.String())
	}
	src.Do(t, 0, "CLIENT", "UNPAUSE")
	if n := stopWriter(); n == 0 {
		t.Errorf("the writer wrote nothing")
	}
}

// TestFollowCutoverStdin cuts over by a line on stdin, after the writer stopped.
func TestFollowCutoverStdin(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	load(t, src, 1000)
	stopWriter := incrWriter(t, src)
	defer stopWriter()

	cmd, stdin, out, errOut := startCommand(t, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "snapshot", "-follow")
	waitFor(t, errOut, caughtUp, cmd)
	written := stopWriter()
	_, _ = io.WriteString(stdin, "\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("err %v; stderr:\n%s", err, errOut.String())
	}
	if d := redistest.Diff(t, src, dst, 0, ""); len(d) > 0 {
		t.Errorf("target differs from the source after the cutover: %v", d)
	}
	if written == 0 || !strings.Contains(out.String(), "followed") {
		t.Errorf("writer wrote %d; summary:\n%s", written, out.String())
	}
}

// TestFollowInterrupt stops following by Ctrl-C: exit status 130, no cutover, and the
// summary says up to which offset of the source the target holds the writes.
func TestFollowInterrupt(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	load(t, src, 1000)
	stopWriter := incrWriter(t, src)
	defer stopWriter()

	cmd, _, out, errOut := startCommand(t, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "snapshot", "-follow")
	waitFor(t, errOut, caughtUp, cmd)
	time.Sleep(300 * time.Millisecond)
	sent := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("took %v to stop after Ctrl-C", d)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("err %v, want exit 130; stderr %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "followed  ") || !strings.Contains(out.String(), "replication offset") {
		t.Errorf("summary does not say what was followed:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "interrupted while following, without cutover") {
		t.Errorf("stderr does not say following stopped without cutover:\n%s", errOut.String())
	}
	if n, _ := dst.Do(t, 0, "EXISTS", "c0").AsInt64(); n != 1 {
		t.Errorf("the target has no counter after following")
	}
}

// TestCutoverPauseRefused refuses -cutover-pause without -follow.
func TestCutoverPauseNeedsFollow(t *testing.T) {
	t.Parallel()
	r := runCommand(t, nil, "-from", "redis://127.0.0.1:1", "-to", "redis://127.0.0.1:2", "-cutover-pause", "5s")
	if r.code != 2 || !strings.Contains(r.stderr, "need -follow") {
		t.Errorf("code %d, stderr %s", r.code, r.stderr)
	}
}

// TestCutoverPauseNotAllowed refuses -cutover-pause, before copying anything, when the
// source's user may not run CLIENT PAUSE, and says which right to grant.
func TestCutoverPauseNotAllowed(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Users: []string{"user mig on >pw ~* &* +@all -client|pause"}})
	dst := redistest.Start(t, redistest.Config{})
	load(t, src, 100)
	r := runCommand(t, nil, "-from", "redis://mig:pw@"+src.Addr, "-to", url(dst, ""), "-strategy", "snapshot",
		"-follow", "-cutover-pause", "5s")
	if r.code != 2 || !strings.Contains(r.stderr, "refuses CLIENT PAUSE") || !strings.Contains(r.stderr, "+client|pause") {
		t.Errorf("code %d, stderr %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "pw@") {
		t.Errorf("the password is in the message: %s", r.stderr)
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); n != 0 {
		t.Errorf("the target has %d keys after a refused run", n)
	}
}

// TestCutoverPauseOldSource refuses -cutover-pause on a source older than Redis 6.2.
func TestCutoverPauseOldSource(t *testing.T) {
	t.Parallel()
	var old *redistest.Release
	for _, r := range redistest.Releases(t) {
		if !r.AtLeast("", 6, 2) {
			old = &r
			break
		}
	}
	if old == nil {
		t.Skip("no release older than 6.2 in the version matrix")
	}
	src := redistest.Start(t, redistest.Config{Binary: old.Binary})
	dst := redistest.Start(t, redistest.Config{})
	r := runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "snapshot",
		"-follow", "-cutover-pause", "5s")
	if r.code != 2 || !strings.Contains(r.stderr, "needs 6.2 or later") {
		t.Errorf("code %d, stderr %s", r.code, r.stderr)
	}
}

// TestFollowDumpRestore follows, with -strategy dump-restore, a source that refuses PSYNC,
// through its keyspace notifications that -source-notifications turns on, under a writer
// of INCRs; the cutover by SIGUSR1 with -cutover-pause leaves the target equal to the
// source, and the source's notify-keyspace-events as they were.
func TestFollowDumpRestore(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Rename: map[string]string{"PSYNC": "", "SYNC": ""}})
	dst := redistest.Start(t, redistest.Config{})
	load(t, src, 2000)
	stopWriter := incrWriter(t, src)
	defer stopWriter()
	defer src.Do(t, 0, "CLIENT", "UNPAUSE")

	cmd, _, out, errOut := startCommand(t, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore",
		"-follow", "-source-notifications", "-cutover-pause", "10s")
	waitFor(t, errOut, caughtUp, cmd)
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGUSR1)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("err %v; stderr:\n%s", err, errOut.String())
	}
	if d := redistest.Diff(t, src, dst, 0, ""); len(d) > 0 {
		t.Errorf("target differs from the source after the cutover: %v", d)
	}
	if s, d := counters(t, src), counters(t, dst); fmt.Sprint(s) != fmt.Sprint(d) || s[0] == "" {
		t.Errorf("counters: source %v, target %v", s, d)
	}
	if !strings.Contains(out.String(), "keys copied again") || !strings.Contains(errOut.String(), "keys waiting") {
		t.Errorf("no followed line or live following line:\n%s\n%s", out.String(), errOut.String())
	}
	if v, _ := src.Do(t, 0, "CONFIG", "GET", "notify-keyspace-events").AsStrMap(); v["notify-keyspace-events"] != "" {
		t.Errorf("notify-keyspace-events after the migration: %q, want them put back off", v["notify-keyspace-events"])
	}
	src.Do(t, 0, "CLIENT", "UNPAUSE")
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// binary is the command, built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "redis-migrate-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "redis-migrate")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build redis-migrate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCommand(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errOut.String()}
}

func url(s *redistest.Server, password string) string {
	if password != "" {
		return fmt.Sprintf("redis://:%s@%s", password, s.Addr)
	}
	return "redis://" + s.Addr
}

func load(t *testing.T, s *redistest.Server, n int) {
	t.Helper()
	c := s.Client(t, 0)
	cmds := make(rueidis.Commands, 0, n)
	for i := 0; i < n; i++ {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("v").Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{Rename: map[string]string{"REPLICAOF": "", "SLAVEOF": ""}})
	load(t, src, 10)
	r := runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-plan")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"replication", "no", "snapshot", "yes", "chosen: snapshot", src.Addr, dst.Addr, "db0=10"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan does not show %q:\n%s", want, r.stdout)
		}
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); n != 0 {
		t.Errorf("-plan changed the target: %d keys", n)
	}
}

func TestCopyAndVerify(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{Password: "t-secret"})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	r := runCommand(t, []string{"REDIS_MIGRATE_TO_PASSWORD=t-secret"},
		"-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore", "-verify")
	if r.code != 0 {
		t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"strategy  dump-restore", "total", "verify", "0 missing, 0 extra"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary does not show %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "keys/s") {
		t.Errorf("no progress line on stderr: %s", r.stderr)
	}
	redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
}

func TestBadURL(t *testing.T) {
	t.Parallel()
	r := runCommand(t, nil, "-from", "http://user:pa55word@host:1", "-to", "redis://127.0.0.1:1")
	if r.code != 2 || !strings.Contains(r.stderr, "-from") || strings.Contains(r.stderr, "pa55word") {
		t.Fatalf("exit %d, stderr %q: want 2, naming -from, without the password", r.code, r.stderr)
	}
	r = runCommand(t, nil, "-to", "redis://127.0.0.1:1")
	if r.code != 2 || !strings.Contains(r.stderr, "-from is required") {
		t.Fatalf("exit %d, stderr %q: want 2 and -from is required", r.code, r.stderr)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{Password: "right-one"})
	load(t, src, 10)
	r := runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, "wrong-one"), "-strategy", "dump-restore")
	if r.code != 1 || !strings.Contains(r.stderr, "target "+dst.Addr) || !strings.Contains(r.stderr, "Password") {
		t.Fatalf("exit %d, stderr %q: want 1, naming the target and what to check", r.code, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, "wrong-one") || strings.Contains(r.stderr+r.stdout, "right-one") {
		t.Fatalf("a password is printed: %s %s", r.stdout, r.stderr)
	}
}

func TestInterrupt(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	load(t, src, 5000)
	cmd := exec.Command(binary, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore", "-rate", "2000")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	sent := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if d := time.Since(sent); d > time.Second {
		t.Errorf("took %v to stop after Ctrl-C", d)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("err %v, want exit 130; stderr %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "total") || !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("no summary after Ctrl-C:\n%s\n%s", out.String(), errOut.String())
	}
	copied, _ := dst.Do(t, 0, "DBSIZE").AsInt64()
	if copied == 0 || copied >= 5000 {
		t.Errorf("target has %d keys after an interrupted copy of 5000", copied)
	}
}

// TestCluster copies a standalone server into a cluster reached through one node's URL
// (the library asks it for the others) and verifies the copy.
func TestCluster(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.StartCluster(t, redistest.ClusterConfig{})
	load(t, src, 500)
	to := "redis://" + dst.Masters[0].Addr
	r := runCommand(t, nil, "-from", url(src, ""), "-to", to, "-plan")
	if r.code != 0 || !strings.Contains(r.stdout, "cluster of 3 masters") {
		t.Fatalf("plan: exit %d, want the target shown as a cluster:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCommand(t, nil, "-from", url(src, ""), "-to", to, "-strategy", "dump-restore", "-verify")
	if r.code != 0 || !strings.Contains(r.stdout, "500 keys compared: 0 missing") {
		t.Fatalf("copy: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	srcSide := redistest.Side{Client: src.Client(t, 0)}
	srcSide.Nodes = []rueidis.Client{srcSide.Client}
	redistest.AssertSameSides(t, srcSide, dst.Side(t), "")
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// startCommand starts the command with args in the background and returns it, its stdin,
// and what it writes on stdout and stderr (read stdout once it exited).
func startCommand(t *testing.T, args ...string) (*exec.Cmd, io.WriteCloser, *bytes.Buffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut := &bytes.Buffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, out, errOut
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
	cmd, _, out, errOut := startCommand(t, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore", "-rate", "2000")
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

// TestMalformedURLs gives URLs the command cannot read, most with a password holding a
// character a URL must percent-encode: the password (every part of it) never appears in
// the output, and the message says what to do.
func TestMalformedURLs(t *testing.T) {
	t.Parallel()
	const encode = "percent-encode"
	for _, tc := range []struct {
		flag, url, want string
	}{
		{"-from", `redis://:S3CRET"T0KEN\x@127.0.0.1:1`, encode},
		{"-from", `redis://:S3CRET#T0KEN@127.0.0.1:1`, encode},
		{"-from", `redis://:12#S3CRET@127.0.0.1:1`, encode},
		{"-from", `redis://:S3CRET?T0KEN@127.0.0.1:1`, encode},
		{"-from", `redis://:S3CRET/T0KEN@127.0.0.1:1`, encode},
		{"-from", `redis://:S3CRET%T0KEN@127.0.0.1:1`, encode},
		{"-from", `redis://:S3CRET T0KEN@127.0.0.1:1`, encode},
		{"-from", `redis://us"er:S3CRET@127.0.0.1:1`, encode},
		{"-from", `redis://user:S3CRET@127.0.0.1:63x9`, `invalid port ":63x9"`},
		{"-from", `redis://user:S3CRET@[::1`, "want redis://"},
		{"-from", `redis://user:S3CRET@127.0.0.1:1/abc`, "invalid database number"},
		{"-from", `user:S3CRET@127.0.0.1:1`, "no scheme"},
		{"-from", `redis//user:S3CRET@127.0.0.1:1`, "no scheme"},
		{"-from", `http://user:S3CRET@127.0.0.1:1`, `scheme "http"`},
		{"-to", `rediss://app:S3CRET#T0KEN@127.0.0.1:1`, "REDIS_MIGRATE_TO_PASSWORD"},
	} {
		args := []string{"-from", "redis://127.0.0.1:1", "-to", "redis://127.0.0.1:1", "-plan"}
		if tc.flag == "-from" {
			args[1] = tc.url
		} else {
			args[3] = tc.url
		}
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code := run(ctx, args, &stdout, &stderr)
		cancel()
		out := stdout.String() + stderr.String()
		if strings.Contains(out, "S3CRET") || strings.Contains(out, "T0KEN") {
			t.Errorf("%s %s: the password is printed: %s", tc.flag, tc.url, out)
		}
		if code != 2 || !strings.Contains(stderr.String(), tc.flag+" ") || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s %s: exit %d, stderr %q: want 2, naming %s and saying %q", tc.flag, tc.url, code, stderr.String(), tc.flag, tc.want)
		}
		if tc.want == encode && (!strings.Contains(stderr.String(), "%23") || !strings.Contains(stderr.String(), "REDIS_MIGRATE_")) {
			t.Errorf("%s %s: %q does not say how to encode or where else to put the password", tc.flag, tc.url, stderr.String())
		}
	}
}

// TestDBPrefixFlag merges two databases into one with -db-prefix, keeping keys apart that
// an ambiguous prefix would merge, and shows that the refusals name the flags.
func TestDBPrefixFlag(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	src.Do(t, 1, "SET", "2k", "from-db1")
	src.Do(t, 12, "SET", "k", "from-db12")
	r := runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore", "-db-prefix", "db%d")
	if r.code != 2 || !strings.Contains(r.stderr, "-db-prefix") || !strings.Contains(r.stderr, `"db12k"`) || strings.Contains(r.stderr, "WithDBPrefix") {
		t.Errorf("-db-prefix db%%d: exit %d, stderr %q: want 2 and a refusal in the command's words", r.code, r.stderr)
	}
	r = runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "dump-restore", "-db-prefix", "db%d:", "-verify")
	if r.code != 0 || !strings.Contains(r.stdout, "2 keys compared: 0 missing") {
		t.Fatalf("-db-prefix db%%d: exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for k, want := range map[string]string{"db1:2k": "from-db1", "db12:k": "from-db12"} {
		if got, err := dst.Do(t, 0, "GET", k).ToString(); err != nil || got != want {
			t.Errorf("target %q = %q (%v), want %q", k, got, err, want)
		}
	}
	for _, db := range []int{1, 12} {
		if n, _ := dst.Do(t, db, "DBSIZE").AsInt64(); n != 0 {
			t.Errorf("target db %d holds %d keys, want none: -db-prefix merges into db 0", db, n)
		}
	}
}

// TestReadFromReplicasFlag walks a cluster source on its replicas with -read-from-replicas.
func TestReadFromReplicasFlag(t *testing.T) {
	t.Parallel()
	src := redistest.StartCluster(t, redistest.ClusterConfig{Replicas: 1})
	dst := redistest.Start(t, redistest.Config{})
	src.AddKeys(t, "k:", 300, 10)
	r := runCommand(t, nil, "-from", "redis://"+src.Masters[0].Addr, "-to", url(dst, ""), "-strategy", "dump-restore", "-read-from-replicas")
	if r.code != 0 || !strings.Contains(r.stdout, "300") {
		t.Fatalf("exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, s := range src.Masters {
		if stats, _ := s.Do(t, 0, "INFO", "commandstats").ToString(); strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
			t.Errorf("master %s was walked", s.Addr)
		}
	}
	for _, s := range src.Replicas {
		if stats, _ := s.Do(t, 0, "INFO", "commandstats").ToString(); !strings.Contains(stats, "cmdstat_cluster|getkeysinslot") {
			t.Errorf("replica %s was not walked", s.Addr)
		}
	}
}

// TestFlagNames rewrites the library's option names as the command's flags.
func TestFlagNames(t *testing.T) {
	for in, want := range map[string]string{
		`use migrate.WithDBPrefix("db%d:") (or WithDBPrefix("") to keep the names)`:  `use -db-prefix 'db%d:' (or -db-prefix '' to keep the names)`,
		`copy one with migrate.WithDatabases(n)`:                                     `copy one with -db n`,
		`use WithConflict(Skip) to keep it or WithConflict(Replace) to overwrite it`: `use -conflict skip to keep it or -conflict replace to overwrite it`,
		`allowed with WithDiscardTarget(): not supported here`:                       `allowed with -discard-target: not supported here`,
		`WithReadFromReplicas walks a replica`:                                       `-read-from-replicas walks a replica`,
		`WithVerifyExamples and WithTTLTolerance stay`:                               `WithVerifyExamples and WithTTLTolerance stay`,
	} {
		if got := flagNames(in); got != want {
			t.Errorf("flagNames(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTargetAddrFlag gives MigrateKeys the target's address as the source reaches it, and
// names the flag, not the library's field, when that address leads nowhere.
func TestTargetAddrFlag(t *testing.T) {
	t.Parallel()
	src, dst := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	load(t, src, 20)
	r := runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "migrate",
		"-target-addr", fmt.Sprintf("localhost:%d", dst.Port))
	if r.code != 0 {
		t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); n != 20 {
		t.Errorf("target holds %d keys, want 20", n)
	}
	dst.Do(t, 0, "FLUSHALL")
	r = runCommand(t, nil, "-from", url(src, ""), "-to", url(dst, ""), "-strategy", "migrate", "-target-addr", "127.0.0.1:1")
	if r.code == 0 || !strings.Contains(r.stderr, "-target-addr") || strings.Contains(r.stderr, "MigrateKeys.TargetAddr") {
		t.Errorf("exit %d, stderr %q: want a failure that names -target-addr", r.code, r.stderr)
	}
	if n, _ := dst.Do(t, 0, "DBSIZE").AsInt64(); n != 0 {
		t.Errorf("target holds %d keys after the failed run", n)
	}
}

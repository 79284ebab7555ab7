package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ReleasesDir returns the directory of server binaries of other releases: the environment
// variable MIGRATE_TEST_SERVERS, else ../shared/servers (beside the repository), or "" when
// neither exists.
func ReleasesDir() string {
	for _, d := range []string{os.Getenv("MIGRATE_TEST_SERVERS"), filepath.Join("..", "shared", "servers")} {
		if d == "" {
			continue
		}
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return ""
}

// StartRelease starts the server binary name ("redis-5.0", "redis-7.4", "valkey-8.0", ...)
// of ReleasesDir on a free loopback port, with no persistence, and stops it when the test
// ends. It skips the test, saying how to enable it, when the binary is not there. Only the
// options every release knows are given: configure the rest with CONFIG SET.
func StartRelease(t testing.TB, name string) *Server {
	t.Helper()
	dir := ReleasesDir()
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); dir == "" || err != nil {
		t.Skipf("%s not found: set MIGRATE_TEST_SERVERS to the directory of server binaries (see /work/shared/servers/README.md)", name)
	}
	var lastErr error
	for range 5 {
		s, err := startRelease(bin, t.TempDir())
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("redistest: start %s: %v", name, lastErr)
	return nil
}

func startRelease(bin, dir string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	log := filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", log)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Host: "127.0.0.1", Port: port,
		Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("exited at start: %s", s.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			ok := pingLoading(c)
			c.Close()
			if ok {
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("%s did not answer within 10s: %s", s.Addr, s.logTail())
}

// Package redistest starts real redis-server processes on free loopback ports for tests.
//
// Every server is stopped, and its files removed, by t.Cleanup. Tests that need a server
// fail with a clear message when redis-server is not installed.
//
// Starting: Start, StartPair, StartCluster, and StartDeployment for a side that may be
// either. Writing: Fill (the conformance data set), SetKeys, AddKeys, StartWriter. Reading:
// Server.Do, DBSize, Get, Info, WaitInfo, Config, Int. Comparing: AssertSame,
// AssertSameSides, Diff. Leaks: WaitGoroutines. Tests of the migrate package keep beside
// them only what is specific to them; the helpers that need the migrate package itself
// (running a migration, judging a report) are in its migrate_test.go.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Config says how to start one server. The zero value starts a plain server with no
// password, no persistence and the DEBUG command enabled for local connections.
type Config struct {
	// Password sets requirepass (the default user's password).
	Password string
	// Users are ACL rules, one user a line, as "user NAME on >pass ~* +@all".
	Users []string
	// Rename maps a command to its new name; an empty new name disables the command.
	Rename map[string]string
	// Lines are extra configuration lines, as "proto-max-bulk-len 1mb".
	Lines []string
	// Dir is the working directory (where dumps go); default a fresh temporary one.
	Dir string
	// DBFilename is the dump's file name; default dump.rdb.
	DBFilename string
	// TLS, when set, makes the server speak TLS only (see tls.go); default plain.
	TLS *TLS
	// Binary is the server executable; default redis-server from PATH (see versions.go
	// for the version matrix's).
	Binary string
}

// Server is one running redis-server.
type Server struct {
	Addr     string // host:port
	Host     string
	Port     int
	Password string
	Dir      string
	cfg      Config
	cmd      *exec.Cmd
	done     chan struct{}
	stopOnce sync.Once
}

// Binary returns the path of redis-server, or fails the test with what to do.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: run `make test` (it installs it as root) or `apt-get install redis-server`")
	}
	return p
}

// Start starts a server configured by cfg and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Binary == "" {
		Binary(t)
	}
	s, err := Launch(cfg)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch starts a server configured by cfg, for programs that are not tests (the demo, the
// benchmark). cfg.Dir must be set. The caller stops it.
func Launch(cfg Config) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if cfg.Binary != "" {
		bin, err = cfg.Binary, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed: run `make test` (it installs it as root) or `apt-get install redis-server`")
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("redistest.Launch: Config.Dir is not set")
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(bin, cfg)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // returned by FreePort in this process
)

// FreePort returns a loopback TCP port that was free a moment ago and that it has not
// returned before in this process: the kernel often hands out a port it just freed again,
// and two servers starting at once would then share one address.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports[port] {
			ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port not returned before in 100 tries")
}

func start(bin string, cfg Config) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir := cfg.Dir
	dbfile := cfg.DBFilename
	if dbfile == "" {
		dbfile = "dump.rdb"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "port %d\nbind 127.0.0.1\ndir %s\ndbfilename %s\n", port, dir, dbfile)
	b.WriteString("save \"\"\nappendonly no\ndaemonize no\nloglevel warning\nrepl-diskless-sync-delay 0\n")
	fmt.Fprintf(&b, "logfile %s\n", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
	if v := version(bin); v >= 70000 {
		b.WriteString("enable-debug-command local\n")
	}
	if cfg.Password != "" {
		fmt.Fprintf(&b, "requirepass %s\n", cfg.Password)
	}
	for _, u := range cfg.Users {
		fmt.Fprintf(&b, "%s\n", u)
	}
	for from, to := range cfg.Rename {
		if to == "" {
			to = `""`
		}
		fmt.Fprintf(&b, "rename-command %s %s\n", from, to)
	}
	for _, l := range cfg.Lines {
		fmt.Fprintf(&b, "%s\n", l)
	}
	if cfg.TLS != nil {
		b.WriteString(cfg.TLS.conf(port))
	}
	conf := filepath.Join(dir, fmt.Sprintf("redis-%d.conf", port))
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, conf)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Host: "127.0.0.1", Port: port,
		Password: cfg.Password, Dir: dir, cfg: cfg, cmd: cmd, done: make(chan struct{}),
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady("start"); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady waits until the server just started (at when: "start", "restart") answers PING
// with anything but LOADING, for up to 10 s.
func (s *Server) waitReady(when string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited at %s: %s", when, s.logTail())
		default:
		}
		if c, err := s.dial(200 * time.Millisecond); err == nil {
			ok := pingLoading(c)
			c.Close()
			if ok {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer within 10s of its %s: %s", s.Addr, when, s.logTail())
}

// pingLoading reports whether the server answers PING with anything but LOADING.
func pingLoading(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && !strings.HasPrefix(line, "-LOADING")
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, fmt.Sprintf("redis-%d.log", s.Port)))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// Log returns the server's log file.
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, fmt.Sprintf("redis-%d.log", s.Port)))
	return string(data)
}

// Stop kills the server and waits for it to exit. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// Stopped reports whether the server has exited.
func (s *Server) Stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Shutdown asks the server to exit cleanly (SHUTDOWN NOSAVE) and waits for it.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Option returns the rueidis options that reach this server, and only it (not the
// cluster it may be part of), as the default user.
func (s *Server) Option() rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:       []string{s.Addr},
		Password:          s.Password,
		DisableCache:      true,
		ForceSingleClient: true,
		TLSConfig:         s.TLSConfig(),
	}
}

// Client returns a client of database db as the default user, closed when the test ends.
func (s *Server) Client(t testing.TB, db int) rueidis.Client {
	t.Helper()
	c, err := s.Connect(db)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Connect returns a client of database db as the default user; the caller closes it.
func (s *Server) Connect(db int) (rueidis.Client, error) {
	opt := s.Option()
	opt.SelectDB = db
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect %s db %d: %w", s.Addr, db, err)
	}
	return c, nil
}

// Do runs one command on database db and returns its result, failing the test on error.
func (s *Server) Do(t testing.TB, db int, args ...string) rueidis.RedisResult {
	t.Helper()
	c := s.Client(t, db)
	r := c.Do(context.Background(), c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatalf("redistest: %s on %s: %v", strings.Join(args, " "), s.Addr, err)
	}
	return r
}

var (
	versionMu   sync.Mutex
	versionNums = map[string]int{} // by binary
)

// Version returns the installed redis-server's version as major*10000+minor*100+patch.
func Version(t testing.TB) int { return version(Binary(t)) }

func version(bin string) int {
	versionMu.Lock()
	defer versionMu.Unlock()
	if v, ok := versionNums[bin]; ok {
		return v
	}
	versionNum := 0
	out, err := exec.Command(bin, "--version").Output()
	if err == nil {
		// "Redis server v=7.0.15 sha=...", "Valkey server v=8.0.1 sha=..."
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				parts := strings.SplitN(v, ".", 3)
				for i, p := range parts {
					n, _ := strconv.Atoi(p)
					versionNum += n * []int{10000, 100, 1}[i]
				}
			}
		}
	}
	versionNums[bin] = versionNum
	return versionNum
}

// OptionFor returns the rueidis options that reach addr as the default user without a
// password.
func OptionFor(addr string) rueidis.ClientOption {
	return rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true}
}

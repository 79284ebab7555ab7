package redistest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Restart stops the server cleanly (SIGTERM; with appendonly yes it keeps its data), leaves
// it down for down, during which connections are refused, and starts it again at the same
// address with the same configuration, waiting until it answers. Not safe to call while
// another goroutine stops the server.
func (s *Server) Restart(down time.Duration) error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("redis-server on %s did not exit within 10s of SIGTERM", s.Addr)
	}
	time.Sleep(down)
	conf := filepath.Join(s.Dir, fmt.Sprintf("redis-%d.conf", s.Port))
	cmd := exec.Command(s.cmd.Path, conf)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done, s.stopOnce = cmd, make(chan struct{}), sync.Once{}
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	return s.waitReady("restart")
}

// Pause stops the server's process (SIGSTOP): it keeps its connections and accepts new
// ones, but answers nothing until Continue.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Continue resumes a server stopped by Pause (SIGCONT).
func (s *Server) Continue() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

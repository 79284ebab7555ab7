package redistest

import (
	"fmt"
	"os"
)

// ForExample starts a server outside a test, for runnable examples, and returns it with the
// function that stops it and removes its files. It panics when the server does not start.
func ForExample(cfg Config) (s *Server, stop func()) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		panic(err)
	}
	if cfg.Dir == "" {
		cfg.Dir = dir
	}
	s, err = Launch(cfg)
	if err != nil {
		_ = os.RemoveAll(dir)
		panic(fmt.Sprintf("redistest: %v", err))
	}
	return s, func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	}
}

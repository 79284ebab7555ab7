package redistest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// ForExample starts a server outside a test, for runnable examples, and returns it with the
// function that stops it and removes its files. It panics when the server does not start.
func ForExample(cfg Config) (s *Server, stop func()) {
	tb := &exampleTB{}
	return Start(tb, cfg), tb.cleanup
}

// exampleTB is the part of testing.TB that Start uses. The embedded interface is nil: Start
// calls none of the other methods.
type exampleTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func (e *exampleTB) Helper() {}

func (e *exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (e *exampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		panic(err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (e *exampleTB) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// cleanup runs the cleanups, the last registered first, as testing does.
func (e *exampleTB) cleanup() {
	e.mu.Lock()
	fs := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

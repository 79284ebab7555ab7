package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// cutover is what -follow gives to migrate.WithFollow: once the target has caught up it
// waits for the operator (Enter on stdin, or SIGUSR1), then, with -cutover-pause, pauses
// the source's writes (CLIENT PAUSE ms WRITE) and returns, so that the final catch-up the
// library then waits for holds every write the source will ever accept before the pause
// ends: the window in which the operator points the application at the target.
type cutover struct {
	stderr io.Writer
	pause  time.Duration
	src    rueidis.Client // the source, for CLIENT PAUSE; nil without -cutover-pause

	requested chan struct{} // one value when the operator asked for the cutover
	stopSig   func()

	mu       sync.Mutex
	pausedAt time.Time // when CLIENT PAUSE was sent; zero before
}

// newCutover listens for the operator's cutover request: a line on stdin, or SIGUSR1.
// End it with close.
func newCutover(stdin io.Reader, stderr io.Writer, pause time.Duration, src rueidis.Client) *cutover {
	c := &cutover{stderr: stderr, pause: pause, src: src, requested: make(chan struct{}, 1)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	c.stopSig = func() { signal.Stop(sig); close(done) }
	go func() {
		for {
			select {
			case <-sig:
				c.request()
			case <-done:
				return
			}
		}
	}()
	if stdin != nil {
		// A line (Enter) asks for the cutover; the end of stdin (as /dev/null) does not.
		// The goroutine ends with the process: a read of stdin cannot be interrupted.
		go func() {
			r := bufio.NewReader(stdin)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				c.request()
			}
		}()
	}
	return c
}

func (c *cutover) request() {
	select {
	case c.requested <- struct{}{}:
	default:
	}
}

func (c *cutover) close() { c.stopSig() }

// run is the function given to WithFollow.
func (c *cutover) run(ctx context.Context) error {
	fmt.Fprintf(c.stderr, "\nredis-migrate: the target has caught up and follows the source's writes; "+
		"press Enter (or kill -USR1 %d) to cut over, Ctrl-C to stop without cutover\n", os.Getpid())
	select {
	case <-c.requested:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.pause <= 0 {
		fmt.Fprintln(c.stderr, "redis-migrate: cutting over: waiting for the target to hold every write the source accepted until now")
		return nil
	}
	ms := strconv.FormatInt(c.pause.Milliseconds(), 10)
	if err := onEach(ctx, c.src, "CLIENT", "PAUSE", ms, "WRITE"); err != nil {
		return fmt.Errorf("cutover: CLIENT PAUSE %s WRITE on the source: %w; nothing was paused, the source still takes writes", ms, err)
	}
	now := time.Now()
	c.mu.Lock()
	c.pausedAt = now
	c.mu.Unlock()
	fmt.Fprintf(c.stderr, "redis-migrate: cutting over: the source refuses writes until %s (-cutover-pause %s); "+
		"waiting for the target to hold every write it accepted\n", now.Add(c.pause).Format("15:04:05.000"), c.pause)
	return nil
}

// paused returns when the source's writes were paused; zero when they were not.
func (c *cutover) paused() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pausedAt
}

// finish tells the operator, once Migrate returned, what the pause means now. After a
// migration that did not complete, the pause is lifted (CLIENT UNPAUSE): the application
// stays on the source. After a complete one it is left to end by itself: the writes the
// application sends to the source until then wait, and would be lost to the target if the
// pause were lifted before the application points at the target.
func (c *cutover) finish(ok bool) {
	at := c.paused()
	if at.IsZero() {
		return
	}
	end := at.Add(c.pause)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := onEach(ctx, c.src, "CLIENT", "UNPAUSE"); err != nil {
			fmt.Fprintf(c.stderr, "redis-migrate: CLIENT UNPAUSE on the source failed (%v): its writes stay paused until %s\n",
				err, end.Format("15:04:05.000"))
			return
		}
		fmt.Fprintln(c.stderr, "redis-migrate: the migration did not complete: the source's writes are unpaused (CLIENT UNPAUSE)")
		return
	}
	if time.Now().After(end) {
		fmt.Fprintf(c.stderr, "redis-migrate: warning: the pause ended at %s, before the final catch-up did: "+
			"writes the source accepted after it may be missing on the target; use a longer -cutover-pause\n", end.Format("15:04:05.000"))
		return
	}
	fmt.Fprintf(c.stderr, "redis-migrate: cut over: the target holds every write of the source; the source's writes stay paused until %s: "+
		"point the application at the target now\n", end.Format("15:04:05.000"))
}

// checkPause refuses -cutover-pause, before anything is copied, on a source that cannot
// pause its writes: older than Redis 6.2 (no CLIENT PAUSE ... WRITE), or where the user
// may not run CLIENT PAUSE. The probe is a pause of 0 ms, which holds no write.
func checkPause(ctx context.Context, src rueidis.Client) error {
	info, err := src.Do(ctx, src.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return fmt.Errorf("-cutover-pause: INFO server on the source: %w", err)
	}
	var version string
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	if version != "" && !atLeast(version, 6, 2) {
		return fmt.Errorf("-cutover-pause: the source runs Redis %s, which cannot pause only writes (CLIENT PAUSE ... WRITE needs 6.2 or later); "+
			"run without -cutover-pause and stop the application's writes before the cutover", version)
	}
	if err := onEach(ctx, src, "CLIENT", "PAUSE", "0", "WRITE"); err != nil {
		return fmt.Errorf("-cutover-pause: the source refuses CLIENT PAUSE (%v): grant the user +client|pause and +client|unpause, "+
			"or run without -cutover-pause and stop the application's writes before the cutover", err)
	}
	return nil
}

// onEach sends the command to every node of c (the one server of a standalone source,
// every node of a cluster), and returns the first error, naming the node.
func onEach(ctx context.Context, c rueidis.Client, command, sub string, args ...string) error {
	for addr, n := range c.Nodes() {
		if err := n.Do(ctx, n.B().Arbitrary(command, sub).Args(args...).Build()).Error(); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
	}
	return nil
}

// atLeast reports whether version (as "6.2.14") is major.minor or later.
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	maj, _ := strconv.Atoi(parts[0])
	mnr := 0
	if len(parts) > 1 {
		mnr, _ = strconv.Atoi(parts[1])
	}
	return maj > major || maj == major && mnr >= minor
}

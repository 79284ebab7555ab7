package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// A server that restarts, or a connection of ours that is cut (CLIENT KILL, a network
// blip), is waited for by one policy wherever a step meets it: rueidis's own retries of the
// reads (retryDelay), the restorer's writes, MigrateKeys' batches, the writes of a key copied
// in pieces (bigkeys.go) and a follow's commits (follow_offset.go) (reconnectRetry). A
// server that stalls (it accepts connections but does not answer, as under SIGSTOP) is not
// waited for beyond the ConnWriteTimeout of its ClientOption: the step gives up at once with
// an error that says so (explainStall).
const (
	// reconnectWait bounds how long a step waits for a side whose connections fail (refused,
	// reset, closed) to answer again before it gives up with an error: a restart of a server
	// that loads a small data set takes seconds.
	reconnectWait = 30 * time.Second
)

// reconnectRetry returns the policy of a step that sends again what a lost connection took:
// clusterRetry's pauses, for at most reconnectWait.
func reconnectRetry() clusterRetry { return clusterRetry{limit: reconnectWait} }

// stalled reports whether err is a server that did not answer in time: the connection's
// deadline (ConnWriteTimeout) passed, or its background PING got no answer.
func stalled(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// reconnectable reports whether sending again may cure err, once the server is back: no
// reply because the connection failed (but not a stall), a server still loading its data
// (LOADING), or MIGRATE's IOERR, the source that could not reach its target.
func reconnectable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || stalled(err) {
		return false
	}
	kind, _ := classifyRelayed(err)
	switch kind {
	case replyLost, replyUnreachable:
		return true
	case replyMoving:
		text, _, _ := errorReply(err)
		return strings.HasPrefix(text, "LOADING")
	}
	return false
}

// retryDelay is the RetryDelay of every client of the library: rueidis sends a read-only
// command again when its connection failed, and asks this how long to pause first. It
// pauses as clusterRetry does, for at most reconnectWait in all, and gives up at once on a
// stall, which ConnWriteTimeout has already waited for.
func retryDelay(attempts int, _ rueidis.Completed, err error) time.Duration {
	if stalled(err) {
		return -1
	}
	pause, waited := clusterRetryDelay, time.Duration(0)
	for range attempts - 1 {
		waited += pause
		pause = min(2*pause, clusterRetryMaxDelay)
	}
	if waited >= reconnectWait {
		return -1
	}
	return pause
}

// explainStall adds to err, when it is a stall of side e, what happened and what to do;
// Endpoint.Err calls it, so that every error of a stalled side says so, once.
func (e *Endpoint) explainStall(err error) error {
	var done *stallError
	if !stalled(err) || errors.As(err, &done) {
		return err
	}
	return &stallError{side: e.Side, timeout: e.connWriteTimeout(), err: err}
}

// stallError is a side that did not answer within its ConnWriteTimeout.
type stallError struct {
	side    Side
	timeout time.Duration
	err     error
}

func (s *stallError) Error() string {
	return fmt.Sprintf("the %s did not answer within ConnWriteTimeout (%s): it is stalled (stopped, swapping, busy with a "+
		"long command or a fork) or unreachable; check it, or raise ConnWriteTimeout in its ClientOption if it may pause "+
		"that long: %v", s.side, s.timeout, s.err)
}

func (s *stallError) Unwrap() error { return s.err }

// connWriteTimeout is the ConnWriteTimeout rueidis applies: the option's, or its default.
func (e *Endpoint) connWriteTimeout() time.Duration {
	if d := e.Option.ConnWriteTimeout; d > 0 {
		return d
	}
	return max(rueidis.DefaultTCPKeepAlive, e.Option.Dialer.KeepAlive) * 10
}

// stallCheck asks side e whether it answers (PING), and returns the error of a stall, nil
// otherwise. MIGRATE's IOERR does not tell a target that refuses connections (restarting:
// waited for) from one that does not answer (stalled: not waited for beyond its
// ConnWriteTimeout); asking it does.
func (e *Endpoint) stallCheck(ctx context.Context) error {
	c, err := e.Default()
	if err != nil {
		return nil // the wait that follows tells
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); stalled(err) {
		return e.Err("ping", "", err)
	}
	return nil
}

// explainReconnect returns the error of a step that waited in vain (w) for side e to
// answer again after its connections failed: err is the last try's error. An *Error keeps
// its side, address, operation and key, the explanation inside.
func (e *Endpoint) explainReconnect(w *clusterWaitError, err error) error {
	wrap := func(err error) error {
		return fmt.Errorf("%v for the %s at %s to answer again, in vain: %w; check that it runs and accepts connections "+
			"(a server restarted with appendonly yes or an RDB file keeps its data), then run the migration again", w, e.Side, e.Addr, err)
	}
	var x *Error
	if errors.As(err, &x) {
		c := *x
		c.Err = wrap(x.Err)
		return &c
	}
	return e.Err("reconnect", "", wrap(err))
}

// scanPage sends one SCAN of a walk of side e (args are its arguments) and returns its page.
// It is read-only, so rueidis sends it again when its connection fails (retryDelay), but a
// cursor holds only on the server the walk began on: a restarted server hashes its keys
// anew, and the cursor of the one before would skip some. So INFO server goes in the same
// pipeline, on the same connection, and a page from a server whose run_id changed ends the
// walk with an error. Where INFO gave no run_id when the migration started, nothing is
// compared.
func (e *Endpoint) scanPage(ctx context.Context, c rueidis.Client, args []string) (rueidis.ScanEntry, error) {
	scan := c.B().Arbitrary("SCAN").Args(args...).ReadOnly()
	was := e.Info.Fields["run_id"]
	if was == "" {
		return c.Do(ctx, scan).AsScanEntry()
	}
	res := c.DoMulti(ctx, scan, infoCommand(c, "server"))
	page, err := res[0].AsScanEntry()
	if err != nil {
		return page, err
	}
	text, err := res[1].ToString()
	if err != nil {
		return page, err
	}
	if now := parseInfo(text).Fields["run_id"]; now != was {
		return page, fmt.Errorf("the %s restarted during the walk of its keys (run_id %s, now %s): the SCAN cursor of "+
			"the server before would skip keys on this one, so the walk stops; run the migration again", e.Side, was, now)
	}
	return page, nil
}

// resumeHint adds to the error that stopped a run with a checkpoint (WithCheckpoint) that
// running the migration again continues it. A cancelled run is left as it is.
func resumeHint(ctx context.Context, j *Job, err error) error {
	if err == nil || j.checkpoint == nil || ctx.Err() != nil || errors.Is(err, ErrCheckpoint) {
		return err
	}
	where := "the checkpoint (WithCheckpoint)"
	if f, ok := j.checkpoint.store.(checkpointFile); ok {
		where = "the checkpoint file " + string(f)
	}
	return fmt.Errorf("%w; %s holds the progress: once that is fixed, run the migration again with it to continue "+
		"where it stopped", err, where)
}

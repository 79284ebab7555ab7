package migrate

import (
	"context"
	"time"
)

// sleepCtx waits for d, or returns ctx.Err() when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctxErr prefers the context's error, so a cancelled migration says so rather than
// reporting the closed connection it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// inFlight returns the context for one pipeline of writes: it ends grace after ctx does. A
// pipeline under way when the migration is cancelled (or another batch fails) then
// completes and its replies are counted exactly, rather than left to settle, while a
// server that does not answer still holds the cancellation up only briefly. Call done when
// the replies are in.
func inFlight(ctx context.Context, grace time.Duration) (wctx context.Context, done context.CancelFunc) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return wctx, func() { stop(); cancel() }
}

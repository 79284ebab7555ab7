package migrate

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// fanOut runs walk, which emits batches of keys, beside workers goroutines that each call
// work on the batches, and returns the first error (the context's, when it ended). The
// channel between them holds as many batches as there are workers, so memory is bounded by
// the batches in flight.
func fanOut(ctx context.Context, workers int, walk func(ctx context.Context, emit func([]string) error) error,
	work func(ctx context.Context, keys []string) error) error {
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []string, workers)
	g.Go(func() error {
		defer close(batches)
		return walk(gctx, func(keys []string) error {
			select {
			case batches <- keys:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range workers {
		g.Go(func() error {
			for keys := range batches {
				if err := work(gctx, keys); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

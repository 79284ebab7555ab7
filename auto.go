package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Auto is a Strategy that walks the ladder: it checks each strategy in order of preference
// and runs the first that can run here. The Report names the strategy that ran, and its Plan
// says why each better one was passed over. The zero value prefers Replication, Snapshot,
// MigrateKeys, then DumpRestore; Replication only with WithDiscardTarget(), since it
// replaces the target's whole data set. Auto is the default strategy of New.
type Auto struct {
	// Strategies replaces the order of preference; user-written strategies may be part of
	// it. Empty means Replication{}, Snapshot{}, MigrateKeys{}, DumpRestore{}.
	Strategies []Strategy
	// Never names strategies not to use, as "replication".
	Never []string
}

// Name returns "auto".
func (Auto) Name() string { return "auto" }

func (a Auto) strategies() []Strategy {
	list := a.Strategies
	if len(list) == 0 {
		list = []Strategy{Replication{}, Snapshot{}, MigrateKeys{}, DumpRestore{}}
	}
	var out []Strategy
	for _, s := range list {
		if !slices.Contains(a.Never, s.Name()) {
			out = append(out, s)
		}
	}
	return out
}

// Check reports whether any strategy can run; when none can, the error wraps
// ErrUnsupported and gives every strategy's reason. It remembers its choice for Run.
func (a Auto) Check(ctx context.Context, j *Job) error {
	s, err := a.choose(ctx, j)
	if err == nil {
		j.mu.Lock()
		j.chosen = s
		j.mu.Unlock()
	}
	return err
}

// choose returns the first strategy that passes its check, and records the verdicts in the
// job for the Report.
func (a Auto) choose(ctx context.Context, j *Job) (Strategy, error) {
	var reasons []string
	var steps []Step
	var chosen Strategy
	for _, s := range a.strategies() {
		err := checkFor(ctx, j, s)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		steps = append(steps, Step{Strategy: s.Name(), OK: err == nil, Err: err})
		if err == nil {
			chosen = s
			break
		}
		if !errors.Is(err, ErrUnsupported) {
			// Not a refusal but a failure (a lost connection, say): stop here.
			return nil, err
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", s.Name(), err))
	}
	j.mu.Lock()
	j.steps = steps
	j.mu.Unlock()
	if chosen == nil {
		return nil, fmt.Errorf("no strategy can run here:\n  %s\n%w", strings.Join(reasons, "\n  "), ErrUnsupported)
	}
	return chosen, nil
}

// Run runs the strategy Check chose, or chooses now when Check was not called.
func (a Auto) Run(ctx context.Context, j *Job) error {
	j.mu.Lock()
	s := j.chosen
	j.mu.Unlock()
	if s == nil {
		var err error
		if s, err = a.choose(ctx, j); err != nil {
			return err
		}
	}
	j.Logger.Info("migrate: auto chose a strategy", "strategy", s.Name())
	j.mu.Lock()
	j.ran = s.Name()
	j.mu.Unlock()
	return s.Run(ctx, j)
}

package migrate

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Auto is a Strategy that walks the ladder: it checks each strategy in order of preference
// and runs the first that can run here. The Report names the strategy that ran, and its Plan
// says why each better one was passed over. The zero value prefers Replication, Snapshot,
// MigrateKeys, then DumpRestore; Replication only with WithDiscardTarget(), since it
// replaces the target's whole data set (that rule is Auto's: Replication given alone
// with WithStrategy runs on an empty target without the option). Auto is the default
// strategy of New.
//
// When no strategy can run, the error wraps ErrUnsupported and gives, under each
// strategy's name, every reason that blocks it.
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

// Check reports whether any strategy of the ladder can run; when none can, the error wraps
// ErrUnsupported and gives every strategy's reasons.
func (a Auto) Check(ctx context.Context, j *Job) error {
	_, _, err := choose(ctx, j, a, false)
	return err
}

// Run checks the ladder again, as Check does, and runs the first strategy that can run.
func (a Auto) Run(ctx context.Context, j *Job) error {
	_, s, err := choose(ctx, j, a, false)
	if err != nil {
		return err
	}
	j.Logger.Info("migrate: auto chose a strategy", "strategy", s.Name())
	return s.Run(ctx, j)
}

// autoOf returns the Auto that s is, if it is one.
func autoOf(s Strategy) (Auto, bool) {
	switch a := s.(type) {
	case Auto:
		return a, true
	case *Auto:
		if a != nil {
			return *a, true
		}
	}
	return Auto{}, false
}

// rungs are the strategies that choose checks for s: the ladder of an Auto, else s alone.
func rungs(s Strategy) []Strategy {
	if a, ok := autoOf(s); ok {
		return a.strategies()
	}
	return []Strategy{s}
}

// choose is the one place that decides what runs, for Migrate, Plan and Auto alike. Given
// the strategy given to New, it checks each of its rungs in order (Auto's ladder, or the
// strategy alone) and returns the verdicts and the strategy to run: the first rung that
// can run. Under Auto, Replication needs WithDiscardTarget besides its own Check. Without
// all, it stops at the rung to run, so that the verdicts say why each better one was
// passed over; with all (Plan), it gives every rung's verdict.
//
// When no rung can run, the error wraps ErrUnsupported: a single strategy's own refusal,
// or, for Auto, a noStrategyError that lists every rung's reasons. A Check that fails
// rather than refuses (an error that does not wrap ErrUnsupported, as a lost connection)
// ends the choice with that error, and so does ctx; a rung after the chosen one that fails
// so only has that failure as its verdict.
func choose(ctx context.Context, j *Job, s Strategy, all bool) ([]Step, Strategy, error) {
	_, auto := autoOf(s)
	var steps []Step
	var run Strategy
	for _, c := range rungs(s) {
		err := c.Check(ctx, j)
		if auto {
			err = autoRule(j, c, err)
		}
		if ctx.Err() != nil {
			return steps, nil, ctx.Err()
		}
		steps = append(steps, Step{Strategy: c.Name(), OK: err == nil, Err: err})
		switch {
		case run != nil:
			continue // Plan's verdict of a worse rung
		case err == nil:
			run = c
			if !all {
				return steps, run, nil
			}
		case !errors.Is(err, ErrUnsupported):
			return steps, nil, err
		}
	}
	switch {
	case run != nil:
		return steps, run, nil
	case !auto:
		return steps, nil, steps[0].Err
	}
	return steps, nil, &noStrategyError{steps: steps}
}

// autoRule adds Auto's own rule to the verdict checked of strategy s: Replication replaces
// the target's whole data set, so Auto uses it only when WithDiscardTarget allows that.
// The rule is given together with what Check found, so that the user who adds the option
// is not surprised by the next refusal.
func autoRule(j *Job, s Strategy, checked error) error {
	switch s.(type) {
	case Replication, *Replication:
	default:
		return checked
	}
	if j.DiscardTarget {
		return checked
	}
	rule := unsupported("replication replaces the target's whole data set and Auto uses it only when allowed with WithDiscardTarget()")
	if checked == nil {
		return rule
	}
	return errors.Join(rule, checked)
}

// noStrategyError is Auto's error when no rung of the ladder can run: each rung's
// reasons, indented under its name. It wraps each rung's error, and ErrUnsupported.
type noStrategyError struct {
	steps []Step
}

func (e *noStrategyError) Error() string {
	var b strings.Builder
	b.WriteString("no strategy can run here:")
	for _, s := range e.steps {
		lines := reasonLines(s.Err)
		if len(lines) == 1 {
			b.WriteString("\n  " + s.Strategy + ": " + lines[0])
			continue
		}
		b.WriteString("\n  " + s.Strategy + ":")
		for _, l := range lines {
			b.WriteString("\n    " + l)
		}
	}
	b.WriteString("\n" + ErrUnsupported.Error())
	return b.String()
}

// Unwrap returns every rung's error and ErrUnsupported, which the ladder may not hold when
// it is empty (Auto.Never names every strategy).
func (e *noStrategyError) Unwrap() []error {
	errs := make([]error, 0, len(e.steps)+1)
	for _, s := range e.steps {
		errs = append(errs, s.Err)
	}
	return append(errs, ErrUnsupported)
}

// reasonLines splits a refusal into its lines: one per reason of an errors.Join, and one
// per line of a reason that spans several.
func reasonLines(err error) []string {
	if err == nil {
		return []string{""}
	}
	return strings.Split(err.Error(), "\n")
}

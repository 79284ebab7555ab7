// Package migrate copies the data of one Redis server into another, including when the
// usual tools are forbidden.
//
// Moving Redis data is a ladder of fallbacks, each rung a Strategy: make the target a
// replica of the source (Replication); take a snapshot and load it (Snapshot); let the
// source push keys with MIGRATE (MigrateKeys); or read each key with DUMP and write it with
// RESTORE (DumpRestore), which works almost everywhere. A Migrator made by New runs one
// strategy between a source and a target described as rueidis.ClientOption values, and
// returns a Report of what it copied.
//
// The source is only read, unless a strategy is told otherwise; nothing on the target is
// overwritten unless WithConflict(Replace) (or a strategy's own explicit option) allows it.
//
// Either side may be a Redis Cluster, described by the addresses of some of its nodes
// (rueidis finds the others): DumpRestore, Snapshot and MigrateKeys copy into, out of and
// between clusters, Replication refuses them. A cluster has only database 0, so several
// databases of a standalone source go into a cluster only with WithDatabases(n) (one) or
// WithDBPrefix (all, renamed).
package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/time/rate"
)

// Migrator copies a source into a target.
type Migrator interface {
	// Migrate checks what every strategy needs (the target is not the source, it has
	// every database the copy writes, and, unless WithEvictingTarget, it does not evict
	// keys when the data cannot fit), then that the strategy can run, then runs it; a
	// refusal wraps ErrUnsupported. A migration during which the target evicts keys fails
	// with an error wrapping ErrEvicted. Migrate returns a Report even when it fails or ctx
	// is cancelled, with what was done until then; the error then says why it stopped (and
	// wraps context.Canceled on cancellation).
	Migrate(ctx context.Context) (*Report, error)
	// Plan probes both sides without changing anything and says, for the strategy given
	// to New (each of the ladder's for Auto), whether it can run here and why not, with the
	// facts it found. What every strategy needs (see Migrate), when missing, is every
	// strategy's reason. Plan decides as Migrate does: the strategy it chooses is the one
	// Migrate runs, and a refusal is the one Migrate returns, as long as the servers do not
	// change in between. A check that fails rather than refuses (a lost connection) makes
	// Plan return its error.
	Plan(ctx context.Context) (*Plan, error)
	// Close closes every connection the Migrator opened. Call it once Migrate returned.
	Close()
}

// Report says what a migration did.
type Report struct {
	Strategy string // the Name of the strategy that ran (the one Auto chose)
	// Steps are Auto's verdicts, as Plan gives them: why each better strategy was passed
	// over, then the one that ran; every strategy's reasons when none could. Nil for other
	// strategies.
	Steps     []Step
	Counts    // summed over every database
	Duration  time.Duration
	Databases map[int]Counts // per source database
	// Verify is the comparison made after the copy when WithVerify is given, else nil.
	Verify *VerifyReport
	// Incompatible lists the keys the target could not hold whole that WithIncompatible
	// let the migration leave out or copy in part; empty when there were none.
	Incompatible IncompatibleReport
	// Followed is how many commands of the source's replication stream were applied after
	// the copy (WithFollow, by a Snapshot); SELECT, MULTI and EXEC are not counted. For a
	// DumpRestore following keyspace notifications, how many keys were copied again (or
	// deleted) because a notification named them.
	Followed int64
	// SourceOffset is the source's replication offset (master_repl_offset) up to which the
	// target holds its writes, once a Snapshot restored its snapshot and followed them; also
	// when following stopped on an error; from a cluster source, the sum of its masters'.
	// 0 otherwise.
	SourceOffset int64
	// Resumed says where this run continued an interrupted migration from the checkpoint
	// given with WithCheckpoint ("checkpoint saved ...: databases 0 done; database 3 from SCAN
	// cursor 1234"); "" when it started from the beginning.
	Resumed string
	// AlreadyComplete reports that the checkpoint given with WithCheckpoint says this
	// migration finished: this run copied nothing.
	AlreadyComplete bool
	// Repairs counts the repair passes of a DumpRestore following keyspace notifications
	// (every selected key copied again, and those the source no longer has deleted) made
	// because notifications may have been lost (the subscription dropped) or named no key
	// (FLUSHDB, FLUSHALL, SWAPDB); Rewalks those made because more keys waited than its
	// queue holds.
	Repairs, Rewalks int64
}

func (r *Report) String() string {
	s := fmt.Sprintf("%s: %d keys copied (%d bytes), %d skipped, %d expired, %d failed in %s",
		r.Strategy, r.Keys, r.Bytes, r.Skipped, r.Expired, r.Failed, r.Duration.Round(time.Millisecond))
	switch {
	case r.SourceOffset > 0:
		s += fmt.Sprintf("; %d commands followed, up to the source's offset %d", r.Followed, r.SourceOffset)
	case r.Followed > 0: // a DumpRestore following keyspace notifications
		s += fmt.Sprintf("; %d keys copied again after notifications", r.Followed)
	}
	if r.Repairs > 0 || r.Rewalks > 0 {
		s += fmt.Sprintf("; %d repair passes, %d re-walks", r.Repairs, r.Rewalks)
	}
	return s
}

// New returns a Migrator from source to target. Each side is described as for
// rueidis.NewClient (address, username, password, TLS). A non-zero SelectDB on the source
// means that database only, unless WithDatabases says otherwise. New only checks the
// options; it connects when Migrate runs.
func New(source, target rueidis.ClientOption, opts ...Option) (Migrator, error) {
	cfg := defaults()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	if len(source.InitAddress) == 0 {
		return nil, errors.New("migrate: source has no address (set InitAddress)")
	}
	if len(target.InitAddress) == 0 {
		return nil, errors.New("migrate: target has no address (set InitAddress)")
	}
	return &migrator{cfg: cfg, src: newEndpoint(Source, source), dst: newEndpoint(Target, target)}, nil
}

type migrator struct {
	cfg      config
	src, dst *Endpoint
	closeMu  sync.Mutex
}

func (m *migrator) Close() {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	m.src.close()
	m.dst.close()
}

// job connects to both sides and prepares what a strategy receives.
func (m *migrator) job(ctx context.Context) (*Job, error) {
	j := &Job{Source: m.src, Target: m.dst, Settings: m.cfg.Settings, start: time.Now()}
	// The Job's own slices: a strategy may change them without changing the next run's.
	j.Types = slices.Clone(j.Types)
	j.DatabasesChosen = j.DatabasesChosen || m.src.Option.SelectDB != 0
	j.Filtered = j.Match != "" || len(j.Types) > 0 || j.DatabasesChosen
	if j.RateLimit > 0 {
		// A tenth of a second's worth at once keeps the measured rate close to the limit.
		burst := max(1, int(j.RateLimit/10))
		j.limiter = rate.NewLimiter(rate.Limit(j.RateLimit), burst)
	}
	// Both sides at once: a wrong password or address fails before anything is copied.
	errs := make(chan error, 2)
	go func() { errs <- m.src.probe(ctx) }()
	go func() { errs <- m.dst.probe(ctx) }()
	if err := errors.Join(<-errs, <-errs); err != nil {
		return nil, err
	}
	j.Databases = m.databases()
	var total int64
	for _, db := range j.Databases {
		total += m.src.Info.Keyspace[db]
	}
	j.SetTotal(total)
	return j, nil
}

// dbList names databases for messages, as "0, 3, 15".
func dbList(dbs []int) string {
	parts := make([]string, len(dbs))
	for i, db := range dbs {
		parts[i] = strconv.Itoa(db)
	}
	return strings.Join(parts, ", ")
}

func (m *migrator) databases() []int {
	switch {
	case len(m.cfg.Databases) > 0:
		dbs := append([]int(nil), m.cfg.Databases...)
		sort.Ints(dbs)
		return dbs
	case m.src.Option.SelectDB != 0 || len(m.src.Info.Fields) == 0:
		return []int{m.src.Option.SelectDB}
	}
	return slices.Sorted(maps.Keys(m.src.Info.Keyspace))
}

func (m *migrator) Migrate(ctx context.Context) (*Report, error) {
	start := time.Now()
	s := m.cfg.strategy
	rep := &Report{Strategy: s.Name(), Databases: map[int]Counts{}}
	j, err := m.job(ctx)
	if err != nil {
		rep.Duration = time.Since(start)
		return rep, err
	}
	m.cfg.Logger.Info("migrate: starting", "strategy", s.Name(), "source", m.src.Addr, "target", m.dst.Addr,
		"databases", j.Databases, "estimated_keys", j.total)

	var run Strategy
	err = checkSides(ctx, j, m.cfg.evicting)
	if err == nil {
		var steps []Step
		steps, run, err = choose(ctx, j, s, false)
		if _, auto := autoOf(s); auto {
			rep.Steps = steps
			if run != nil {
				m.cfg.Logger.Info("migrate: auto chose a strategy", "strategy", run.Name())
			}
		}
	}
	if run != nil {
		rep.Strategy = run.Name()
	}
	if err == nil && m.cfg.checkpoint != nil {
		if j.checkpoint, err = m.resume(ctx, j, run, rep); err == nil && rep.AlreadyComplete {
			rep.Duration = time.Since(start)
			m.cfg.Logger.Info("migrate: the checkpoint says this migration is complete; nothing to do")
			return rep, nil
		}
	}
	stop := m.reportProgress(j, rep.Strategy)
	if err == nil {
		evicted := m.watchEvictions(ctx, j)
		failovers := watchFailovers(ctx, j)
		err = evicted(failovers(run.Run(ctx, j)))
		if j.checkpoint != nil {
			err = errors.Join(err, j.checkpoint.finish(ctx, err))
		}
	}
	stop()

	rep.Counts, rep.Databases = j.Totals()
	j.mu.Lock()
	rep.Incompatible = j.incompatible
	j.mu.Unlock()
	rep.Followed, rep.SourceOffset = j.followReport()
	rep.Repairs, rep.Rewalks = j.notifyReport()
	if err == nil && m.cfg.verify {
		rep.Verify, err = m.verify(ctx, j)
		if err == nil && !rep.Verify.Equal() {
			err = fmt.Errorf("%w: %s", ErrMismatch, rep.Verify)
		}
	}
	rep.Duration = time.Since(start)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		err = fmt.Errorf("migrate: %s: %w", s.Name(), err)
	}
	m.cfg.Logger.Info("migrate: done", "report", rep.String(), "error", err)
	return rep, err
}

// watchEvictions reads how many keys the target has evicted (evicted_keys in INFO stats, on
// every master of a cluster) and returns a function that, given the run's error, reads it
// again and adds an error wrapping ErrEvicted when it rose: keys the strategy wrote may be
// gone although every write succeeded. Where INFO is refused at the start, nothing can be
// told, and the returned function logs so; a read that fails at the end fails a run that
// succeeded.
func (m *migrator) watchEvictions(ctx context.Context, j *Job) func(error) error {
	before, err := evictions(ctx, j.Target)
	if err != nil {
		return func(ran error) error {
			m.cfg.Logger.Warn("migrate: cannot tell whether the target evicts keys during the migration", "error", err)
			return ran
		}
	}
	return func(ran error) error {
		evicted := evictedSince(ctx, j, before)
		if evicted != nil && ran != nil && !errors.Is(evicted, ErrEvicted) {
			return ran // the run's failure says more than the target that stopped answering
		}
		return errors.Join(ran, evicted)
	}
}

// evictedSince returns an error wrapping ErrEvicted when the target's masters evicted keys
// since before was read.
func evictedSince(ctx context.Context, j *Job, before map[string]evicted) error {
	// Read even when the run was cancelled, briefly: evictions are worth knowing then too.
	rctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	if ctx.Err() != nil {
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	}
	defer cancel()
	n, where, err := evictedCount(rctx, j.Target, before)
	// A server that evicts for long goes on in the background: count until it stops.
	for i := 0; err == nil && n > 0 && i < 50; i++ {
		if sleepCtx(rctx, 20*time.Millisecond) != nil {
			break
		}
		again, at, rerr := evictedCount(rctx, j.Target, before)
		if rerr != nil || again <= n {
			break
		}
		n, where = again, at
	}
	if err != nil {
		return fmt.Errorf("read whether the target evicted keys during the migration: %w", err)
	}
	if n == 0 {
		return nil
	}
	on := ""
	if len(where) > 1 {
		on = " (" + strings.Join(where, ", ") + ")"
	}
	return j.Target.Err("check evictions", "", fmt.Errorf(
		"the target evicted %d keys during the migration%s (evicted_keys in INFO stats; maxmemory-policy %s), so copied keys may be gone; "+
			"give the target more memory (maxmemory) or the noeviction policy, and migrate again: %w",
		n, on, j.Target.Info.Policy, ErrEvicted))
}

// evictedCount returns how many keys e's masters evicted since before was read, and where.
// A counter that went down (a restarted server) counts from 0.
func evictedCount(ctx context.Context, e *Endpoint, before map[string]evicted) (n int64, where []string, err error) {
	after, err := evictions(ctx, e)
	if err != nil {
		return 0, nil, err
	}
	for _, id := range slices.Sorted(maps.Keys(after)) {
		d := after[id].n
		if b, ok := before[id]; ok && d >= b.n {
			d -= b.n
		}
		if d > 0 {
			n += d
			where = append(where, fmt.Sprintf("%d on %s", d, after[id].addr))
		}
	}
	return n, where, nil
}

// evicted is one master's evicted_keys counter.
type evicted struct {
	addr string
	n    int64
}

// evictions reads evicted_keys on every master of e, by node id ("" for a standalone server).
func evictions(ctx context.Context, e *Endpoint) (map[string]evicted, error) {
	infos, err := masterInfos(ctx, e, "stats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]evicted, len(infos))
	for _, m := range infos {
		v, ok := m.info.Fields["evicted_keys"]
		if !ok {
			return nil, e.Err("info stats", "", fmt.Errorf("INFO stats on %s has no evicted_keys", m.addr))
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		out[m.id] = evicted{addr: m.addr, n: n}
	}
	return out, nil
}

// reportProgress calls the progress callback every 250 ms until the returned function is
// called, which makes the last call (Done set) and returns after it.
func (m *migrator) reportProgress(j *Job, name string) func() {
	fn := m.cfg.progress
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(j.progress(name, false))
			case <-done:
				fn(j.progress(name, true))
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

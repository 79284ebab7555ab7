package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Job is what a Strategy receives: both sides, the Settings the options made, and the
// counters that feed Progress and the Report. A strategy written by a user gets exactly what
// the built-in ones get: the Settings, and the methods that apply them ([Job.TargetDB],
// [Job.TargetKey], [Job.SourceKeys], [Job.Wait], [Job.BatchLimit]). A Job holds the state
// of one migration, and no strategy's own.
type Job struct {
	Source *Endpoint
	Target *Endpoint

	// Settings are the options' values, with Databases resolved to the databases copied.
	Settings
	// Filtered reports whether the user narrowed the copy (Match, Types, DatabasesChosen);
	// strategies that copy everything must refuse then.
	Filtered bool

	limiter *rate.Limiter // from RateLimit
	start   time.Time
	total   int64

	mu     sync.Mutex
	counts map[int]*Counts

	incompatible IncompatibleReport          // keys the target could not hold whole, for the Report
	followed     atomic.Pointer[followStats] // set when a strategy follows the source's stream (WithFollow)
	checkpoint   *checkpointer               // WithCheckpoint's, while DumpRestore or MigrateKeys runs
}

// Counts are the numbers of keys (and bytes) a migration handled.
type Counts struct {
	Scanned int64 // keys read from the source's key walk
	Keys    int64 // keys copied
	Bytes   int64 // bytes of the copied values: DUMP payloads, or a string's own bytes where it is read with MGET
	// Skipped counts keys left alone because they exist on the target: under Skip, whatever
	// they hold; under Fail, those that already hold the source's value and expiry (within
	// Job.TTLTolerance), as when a migration runs again. Under Replace a key on the target is
	// overwritten without being read, and counted in Keys.
	Skipped int64
	Expired int64 // keys that expired or vanished between the walk and the copy
	Failed  int64 // keys that could not be copied
}

func (c *Counts) add(o Counts) {
	c.Scanned += o.Scanned
	c.Keys += o.Keys
	c.Bytes += o.Bytes
	c.Skipped += o.Skipped
	c.Expired += o.Expired
	c.Failed += o.Failed
}

// Progress is a snapshot of a running migration, given to the WithProgress callback.
type Progress struct {
	Strategy string
	Counts
	Total   int64         // estimated keys to handle, from INFO keyspace / DBSIZE; 0 if unknown
	Elapsed time.Duration // since Migrate started
	Done    bool          // set on the last call

	// Following reports that the initial copy is done and the target follows the source's
	// writes (WithFollow, by a Snapshot or a DumpRestore).
	Following bool
	// Commands is how many commands of the source's replication stream the target applied
	// (SELECT, MULTI and EXEC not counted); for a DumpRestore, how many keys it copied
	// again (or deleted) after notifications.
	Commands int64
	// LagBytes is how many bytes of the stream arrived and are not applied yet.
	LagBytes int64
	// LagAge is the age of the oldest write that arrived and is not applied yet; 0 when
	// the target holds every write that arrived.
	LagAge time.Duration
	// LagKeys is, for a DumpRestore that follows keyspace notifications, how many keys the
	// notifications named that wait to be copied again; LagAge is then how long the first
	// of them has waited.
	LagKeys int64
}

// TargetDB returns the target database that source database db is copied into: db itself,
// or 0 when the target is a cluster (which has no other) or WithDBPrefix merges the
// databases (MergeDatabases).
func (j *Job) TargetDB(db int) int {
	if j.MergeDatabases || j.Target.Cluster() {
		return 0
	}
	return db
}

// TargetKey returns the name that key of source database db takes on the target: its own,
// or with the prefix WithDBPrefix gives that database.
func (j *Job) TargetKey(db int, key string) string {
	if j.DBPrefix == "" {
		return key
	}
	return dbPrefix(j.DBPrefix, db) + key
}

// SourceKeys returns the source databases and key names that target key of target database
// tdb may come from, among the databases copied: the reverse of TargetDB and TargetKey.
func (j *Job) SourceKeys(tdb int, key string) (dbs []int, keys []string) {
	for _, db := range j.Databases {
		if j.TargetDB(db) != tdb {
			continue
		}
		k := key
		if j.DBPrefix != "" {
			p := dbPrefix(j.DBPrefix, db)
			if !strings.HasPrefix(key, p) {
				continue
			}
			k = key[len(p):]
		}
		dbs, keys = append(dbs, db), append(keys, k)
	}
	return dbs, keys
}

// Count adds c to the counters of database db. Strategies call it once per batch.
func (j *Job) Count(db int, c Counts) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.counts == nil {
		j.counts = map[int]*Counts{}
	}
	dc := j.counts[db]
	if dc == nil {
		dc = &Counts{}
		j.counts[db] = dc
	}
	dc.add(c)
}

// SetTotal sets the estimated number of keys the migration will handle.
func (j *Job) SetTotal(n int64) {
	j.mu.Lock()
	j.total = n
	j.mu.Unlock()
}

// Totals returns the counters summed over every database, and per database.
func (j *Job) Totals() (Counts, map[int]Counts) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var sum Counts
	per := make(map[int]Counts, len(j.counts))
	for db, c := range j.counts {
		sum.add(*c)
		per[db] = *c
	}
	return sum, per
}

// Wait blocks until the rate limit allows reading n more keys from the source, or ctx
// ends. Without a rate limit it returns at once. When ctx's deadline would pass before the
// limit lets the keys through, it returns at once an error wrapping
// context.DeadlineExceeded, as if it had waited until the deadline.
func (j *Job) Wait(ctx context.Context, n int) error {
	if j.limiter == nil {
		return nil
	}
	for n > 0 {
		step := min(n, j.limiter.Burst())
		if err := j.limiter.WaitN(ctx, step); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if deadline, ok := ctx.Deadline(); ok {
				// The limiter refuses to wait past the deadline, with an error of its own.
				return fmt.Errorf("the rate limit (WithRateLimit) lets %d more keys through only after the deadline %s: %w",
					step, deadline.UTC().Format(time.RFC3339Nano), context.DeadlineExceeded)
			}
			return err
		}
		n -= step
	}
	return nil
}

// BatchLimit returns how many keys a batch may hold: BatchSize, or fewer when the rate
// limit (RateLimit) lets fewer through at once, so that a batch is read at the pace the
// limit sets rather than in bursts.
func (j *Job) BatchLimit() int {
	if j.limiter != nil && j.limiter.Burst() < j.BatchSize {
		return max(1, j.limiter.Burst())
	}
	return j.BatchSize
}

// progress returns the Progress of the strategy named, the one that runs.
func (j *Job) progress(strategy string, done bool) Progress {
	sum, _ := j.Totals()
	j.mu.Lock()
	total := j.total
	j.mu.Unlock()
	p := Progress{Strategy: strategy, Counts: sum, Total: total, Elapsed: time.Since(j.start), Done: done}
	j.followProgress(&p)
	return p
}

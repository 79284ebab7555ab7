package migrate

import "context"

// A Strategy copies the data of the source into the target by one method. The built-in
// strategies, from the most faithful rung of the ladder to the most widely allowed, are
// Replication, Snapshot, MigrateKeys and DumpRestore; Auto chooses among them. Users may
// write their own, which receive the same Job.
type Strategy interface {
	// Name is a short stable name, as "dump-restore".
	Name() string
	// Check reports, without changing anything on either side, whether the strategy can
	// run here. Its error wraps ErrUnsupported and says why.
	Check(ctx context.Context, job *Job) error
	// Run copies the data. It counts what it does with job.Count and returns promptly,
	// with an error wrapping ctx.Err(), when ctx is cancelled.
	Run(ctx context.Context, job *Job) error
}

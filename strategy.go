package migrate

import "context"

// A Strategy copies the data of the source into the target by one method. The built-in
// strategies, from the most faithful rung of the ladder to the most widely allowed, are
// Replication, Snapshot, MigrateKeys and DumpRestore; [Auto] chooses among them. Users may
// write their own, which receive the same [Job]: both sides, the [Settings] the options
// made, and the methods that apply them.
//
// Migrate and Plan call Check first (for Auto, each rung's) and decide alike on what it
// returns; Migrate then calls Run.
type Strategy interface {
	// Name is a short stable name, as "dump-restore".
	Name() string
	// Check reports, without changing anything on either side, whether the strategy can
	// run here. Its error wraps ErrUnsupported and says why; when several independent
	// reasons block it, it may join them (errors.Join), and Plan and Auto show each on a
	// line of its own. An error that does not wrap ErrUnsupported is a failure (a lost
	// connection, a mistake to fix), which stops Migrate, Plan and Auto's ladder.
	Check(ctx context.Context, job *Job) error
	// Run copies the data. It counts what it does with job.Count and returns promptly,
	// with an error wrapping ctx.Err(), when ctx is cancelled.
	Run(ctx context.Context, job *Job) error
}

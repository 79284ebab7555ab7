package migrate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// An Option configures a Migrator. Options are applied in order by New, which returns the
// first invalid one's error. Verify takes the options that say what to compare and how to
// read, and refuses the others (see Verify).
type Option func(*config) error

// Settings are what the options say about a migration: which keys to copy, how to read
// and write them, and what may become of the target. Job carries them to every strategy,
// built-in or a user's own, so that a strategy honours the options without knowing them
// one by one. Each field names the option that sets it and its default.
type Settings struct {
	// Match is the glob-style pattern, as SCAN MATCH reads it, that a key must match to be
	// copied (WithMatch). The default "" copies every key.
	Match string
	// Types are the key types to copy, as TYPE names them (WithTypes). The default, empty,
	// copies every type.
	Types []string
	// Databases are the source databases to copy, in increasing order, each into the
	// target database TargetDB gives. WithDatabases names them; by default they are the
	// source's databases that have keys (INFO keyspace) when Migrate starts, or the source
	// option's SelectDB alone when that is not 0, or database 0 alone when INFO is refused.
	// A cluster source has only database 0.
	Databases []int
	// DatabasesChosen reports whether the user named the databases (WithDatabases, or a
	// non-zero SelectDB on the source): then no other database is copied, not even one that
	// gains its first keys while the migration runs. The default is false.
	DatabasesChosen bool
	// ScanCount is the COUNT hint of each SCAN call (WithScanCount). The default is 1000.
	ScanCount int
	// BatchSize is how many keys go in one pipelined batch (WithBatchSize); see
	// [Job.BatchLimit] for the limit a rate limit adds. The default is 256.
	BatchSize int
	// Concurrency is how many batches are in flight at once (WithConcurrency). The default
	// is 8.
	Concurrency int
	// Conflict is what becomes of a key that already exists on the target (WithConflict).
	// The default is Fail.
	Conflict Conflict
	// RateLimit is the most keys a second read from the source (WithRateLimit); 0, the
	// default, is no limit. Strategies honour it with [Job.Wait] and [Job.BatchLimit].
	RateLimit float64
	// DiscardTarget allows strategies that replace the target's whole data set to discard
	// the keys it holds (WithDiscardTarget). The default is false.
	DiscardTarget bool
	// ReadFromReplicas walks the keys of a cluster source on the replicas rather than the
	// masters (WithReadFromReplicas). The default is false.
	ReadFromReplicas bool
	// MergeDatabases reports that every database goes into database 0 of the target, each
	// key renamed with DBPrefix (WithDBPrefix). The default is false: each database goes
	// into the same number (a cluster target has database 0 only; see [Job.TargetDB]).
	MergeDatabases bool
	// DBPrefix is WithDBPrefix's format, one %d replaced by a key's source database, that
	// [Job.TargetKey] puts before each key's name; "" keeps the names. It is set only with
	// MergeDatabases. The default is "".
	DBPrefix string
	// TTLTolerance is how far apart two expiries may be and still count as the same
	// (WithTTLTolerance): when deciding whether a key already on the target is the
	// source's, and in Verify. The default is one second.
	TTLTolerance time.Duration
	// Logger is where the library logs what it decides and does (WithLogger). The default
	// discards the logs. Passwords are never logged.
	Logger *slog.Logger
	// Incompatible is what becomes of a key the target cannot hold whole
	// (WithIncompatible). The default is FailIncompatible.
	Incompatible Incompatible
	// Follow, when set, makes the strategy keep the target in sync with the source's writes
	// after the copy, and is called once the target has caught up (WithFollow). The default,
	// nil, copies one moment.
	Follow func(ctx context.Context) error
	// SpoolDir is the directory of the file that holds the source's replication stream
	// while it waits to be applied (WithSpoolDir). The default "" is os.TempDir().
	SpoolDir string
	// KeyBudget is the most bytes of one key's value that is read whole into memory
	// (WithKeyBudget); a larger key is copied in pieces. The default is 32 MiB.
	KeyBudget int64
	// OffsetKey is the name of the key in database 0 of a standalone target where a
	// following Snapshot keeps the source's replication offset it applied (WithOffsetKey).
	// The default is "migrate:offset".
	OffsetKey string
	// SetNotifications lets a following DumpRestore set the source's
	// notify-keyspace-events for the migration (WithSourceNotifications). The default is
	// false: the source's configuration is left alone.
	SetNotifications bool
	// ProbeNotifications lets a following DumpRestore prove, on a source that refuses
	// CONFIG GET, that its keyspace notifications cover every write, with probe keys it
	// writes and deletes (WithNotificationProbe). The default is false.
	ProbeNotifications bool
}

// config is what New keeps: the Settings, and the options that only Migrate or only
// Verify read. defaults() is the one place the defaults live.
type config struct {
	Settings
	strategy Strategy
	progress func(Progress)
	verify   bool // WithVerify
	evicting bool // WithEvictingTarget
	// migrateOnly names the options given that mean something to Migrate only, which
	// Verify refuses.
	migrateOnly []string

	// Verify's own.
	sample   float64
	examples int

	checkpoint CheckpointStore // WithCheckpoint
}

func defaults() config {
	return config{
		Settings: Settings{
			ScanCount:    1000,
			BatchSize:    256,
			Concurrency:  8,
			Conflict:     Fail,
			TTLTolerance: time.Second,
			KeyBudget:    defaultKeyBudget,
			OffsetKey:    "migrate:offset",
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		strategy: Auto{},
		sample:   1,
		examples: 10,
	}
}

// WithStrategy sets how the data is copied. The default is Auto{}: the first strategy of
// the ladder that can run here.
func WithStrategy(s Strategy) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("WithStrategy: nil strategy")
		}
		c.strategy = s
		c.forMigrateOnly("WithStrategy")
		return nil
	}
}

// WithMatch copies only the keys that match the glob-style pattern, as SCAN MATCH reads it.
// The default is every key.
func WithMatch(pattern string) Option {
	return func(c *config) error {
		if pattern == "" {
			return fmt.Errorf("WithMatch: empty pattern (leave the option out to copy every key)")
		}
		c.Match = pattern
		return nil
	}
}

// scanTypes are the names SCAN TYPE and TYPE use. HyperLogLogs and bitmaps are strings,
// geo sets are zsets.
var scanTypes = map[string]bool{"string": true, "list": true, "set": true, "zset": true, "hash": true, "stream": true}

// WithTypes copies only keys of these types: "string", "list", "set", "zset", "hash",
// "stream" (HyperLogLogs and bitmaps are strings, geo sets are zsets). The default is
// every type.
func WithTypes(types ...string) Option {
	return func(c *config) error {
		if len(types) == 0 {
			return fmt.Errorf("WithTypes: no type given")
		}
		for _, t := range types {
			if !scanTypes[t] {
				return fmt.Errorf("WithTypes: unknown type %q (want string, list, set, zset, hash or stream)", t)
			}
		}
		c.Types = dedupe(types)
		return nil
	}
}

// WithDatabases copies only these database numbers, each into the same number on the
// target; into database 0 of a cluster target, which takes several only with WithDBPrefix.
// The default is every database of the source that has keys (from INFO keyspace),
// or only the source option's SelectDB when that is not 0.
func WithDatabases(dbs ...int) Option {
	return func(c *config) error {
		if len(dbs) == 0 {
			return fmt.Errorf("WithDatabases: no database given")
		}
		for _, db := range dbs {
			if db < 0 {
				return fmt.Errorf("WithDatabases: negative database %d", db)
			}
		}
		c.Databases = dedupe(dbs)
		c.DatabasesChosen = true
		return nil
	}
}

// WithScanCount sets the COUNT hint of each SCAN call. The default is 1000.
func WithScanCount(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("WithScanCount: %d is not positive", n)
		}
		c.ScanCount = n
		return nil
	}
}

// WithBatchSize sets how many keys go in one pipelined batch. The default is 256.
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("WithBatchSize: %d is not positive", n)
		}
		c.BatchSize = n
		return nil
	}
}

// WithConcurrency sets how many batches are in flight at once. The default is 8.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("WithConcurrency: %d is not positive", n)
		}
		c.Concurrency = n
		return nil
	}
}

// WithConflict sets what happens to a key that already exists on the target. The default
// is Fail: the migration stops with an error wrapping ErrConflict and the target's key is
// kept. Replace is refused together with WithDBPrefix("") (see there).
func WithConflict(p Conflict) Option {
	return func(c *config) error {
		if p < Fail || p > Replace {
			return fmt.Errorf("WithConflict: unknown policy %d", int(p))
		}
		c.Conflict = p
		c.forMigrateOnly("WithConflict")
		return c.checkMergeConflict("WithConflict")
	}
}

// WithRateLimit reads at most keysPerSecond keys a second from the source, to protect a
// production server; Verify walks each side at that rate too. A context deadline that the
// limit cannot meet ends the copy early with an error wrapping context.DeadlineExceeded.
// The default is no limit.
func WithRateLimit(keysPerSecond float64) Option {
	return func(c *config) error {
		if keysPerSecond <= 0 || math.IsInf(keysPerSecond, 0) || math.IsNaN(keysPerSecond) {
			return fmt.Errorf("WithRateLimit: %v is not a positive number of keys per second", keysPerSecond)
		}
		c.RateLimit = keysPerSecond
		return nil
	}
}

// WithDiscardTarget allows strategies that replace the target's whole data set
// (Replication, which makes the target a replica, and loading a dump in place of the
// target's) to discard the keys the target holds. The default is to refuse them when the
// target has keys, with an error that names this option.
func WithDiscardTarget() Option {
	return func(c *config) error {
		c.DiscardTarget = true
		c.forMigrateOnly("WithDiscardTarget")
		return nil
	}
}

// WithReadFromReplicas walks the keys of a cluster source on a replica of each master rather
// than on the master, to spare the masters, when a master has a healthy replica. Only the
// walk moves: values are still read where the cluster client sends them (the masters). A
// replica lags its master, so keys written just before the walk may be missed, and a slot
// being moved is read on the importing master. The default is to walk the masters. It does
// nothing for a standalone source.
func WithReadFromReplicas() Option {
	return func(c *config) error {
		c.ReadFromReplicas = true
		return nil
	}
}

// WithDBPrefix copies every selected source database into database 0 of the target, each
// key renamed with the prefix format gives its database: format holds one %d, replaced by the
// source database's number ("db%d:" puts key k of database 3 at "db3:k"). The text after
// %d must hold a character that is not a digit, so that no database's prefix begins
// another's and two keys never take the same name: with "db%d", key "2k" of database 1 and
// key "k" of database 12 would both be "db12k"; such a format is refused.
//
// An empty format keeps the names: the user's promise that no name is in two of the
// databases. Under Fail (the default) a name in two databases with two values stops the
// migration with ErrConflict when the second copy meets the first, and under Skip the
// second is counted as skipped (the first is kept); under Replace the second would
// silently overwrite the first, so an empty format is refused together with
// WithConflict(Replace).
//
// It is how several databases of a standalone source go into a cluster, which has only
// database 0; without it such a migration is refused, and a single database
// (WithDatabases(n)) goes into database 0 as it is. MigrateKeys cannot rename keys and
// refuses a non-empty format. The default copies each database into the same number, keys
// unchanged.
func WithDBPrefix(format string) Option {
	return func(c *config) error {
		if err := checkDBPrefix(format); err != nil {
			return err
		}
		c.MergeDatabases, c.DBPrefix = true, format
		return c.checkMergeConflict("WithDBPrefix")
	}
}

// checkDBPrefix refuses a format under which two databases' keys may take the same name.
// Names pa+k1 and pb+k2 of databases a≠b are equal only if one prefix begins the other.
// The prefixes are L+digits(a)+R and L+digits(b)+R; when R holds a non-digit, the digit
// run after L ends at the same place in both, so one begins the other only if a = b. When
// R is all digits (or empty), L+"1"+R begins L+"1"+R+"2"+R, the prefix of database 1R2.
func checkDBPrefix(format string) error {
	if format == "" {
		return nil
	}
	if strings.Count(format, "%") != 1 || strings.Count(format, "%d") != 1 {
		return fmt.Errorf("WithDBPrefix: format %q must hold exactly one %%d and no other %%, as in \"db%%d:\"", format)
	}
	after := format[strings.Index(format, "%d")+2:]
	if strings.Trim(after, "0123456789") != "" {
		return nil
	}
	// The collision format allows, to show it: database 1's key "2"+R+"k" and database
	// 1R2's key "k".
	why := "the prefix of one database may begin another's"
	if b, err := strconv.Atoi("1" + after + "2"); err == nil {
		short, long := dbPrefix(format, 1), dbPrefix(format, b)
		k := long[len(short):] + "k"
		why = fmt.Sprintf("key %q of database 1 and key %q of database %d would both be %q", k, "k", b, short+k)
	}
	return fmt.Errorf("WithDBPrefix: format %q is ambiguous: %s; put a character that is not a digit after %%d, as in \"db%%d:\"", format, why)
}

// checkMergeConflict refuses WithDBPrefix("") with WithConflict(Replace), in either order:
// a name in two databases would keep only the value copied last, with no error.
func (c *config) checkMergeConflict(option string) error {
	if c.MergeDatabases && c.DBPrefix == "" && c.Conflict == Replace {
		return fmt.Errorf("%s: WithDBPrefix(\"\") with WithConflict(Replace) would let a key of one database silently overwrite the key of the same name in another; "+
			"give a prefix such as \"db%%d:\", or use Fail or Skip, under which a name in two databases is reported", option)
	}
	return nil
}

// dbPrefix is the prefix format gives database db.
func dbPrefix(format string, db int) string {
	if format == "" {
		return ""
	}
	return fmt.Sprintf(format, db)
}

// WithProgress calls fn with the counters of the running migration at most every 250 ms,
// and once more at the end with Progress.Done set. fn runs on its own goroutine, never
// two calls at once. The default is no calls.
func WithProgress(fn func(Progress)) Option {
	return func(c *config) error {
		c.progress = fn
		c.forMigrateOnly("WithProgress")
		return nil
	}
}

// WithLogger sets where the library logs what it decides and does. The default discards
// the logs. Passwords are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("WithLogger: nil logger")
		}
		c.Logger = l
		return nil
	}
}

// forMigrateOnly records that the option named is given, for Verify to refuse it.
func (c *config) forMigrateOnly(option string) {
	if !slices.Contains(c.migrateOnly, option) {
		c.migrateOnly = append(c.migrateOnly, option)
	}
}

func dedupe[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := make([]T, 0, len(in))
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// WithVerify makes Migrate compare the target with the source once the copy is done (see
// Verify) and put the result in Report.Verify; differences make Migrate return an error
// wrapping ErrMismatch. The default is no verification.
func WithVerify() Option {
	return func(c *config) error {
		c.verify = true
		c.forMigrateOnly("WithVerify")
		return nil
	}
}

// WithSample makes Verify compare only a fraction of the keys, chosen at random, for very
// large data sets. The default is 1: every key.
func WithSample(fraction float64) Option {
	return func(c *config) error {
		if !(fraction > 0 && fraction <= 1) {
			return fmt.Errorf("WithSample: %v is not in (0, 1]", fraction)
		}
		c.sample = fraction
		return nil
	}
}

// WithTTLTolerance sets how far apart the expiry of a key may be on both sides before
// Verify counts it as a TTL mismatch. The default is one second.
func WithTTLTolerance(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("WithTTLTolerance: negative duration %v", d)
		}
		c.TTLTolerance = d
		return nil
	}
}

// WithVerifyExamples sets how many differences VerifyReport.Examples keeps. The default
// is 10.
func WithVerifyExamples(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("WithVerifyExamples: negative count %d", n)
		}
		c.examples = n
		return nil
	}
}

// WithEvictingTarget allows a target that evicts keys when full (maxmemory set, with a
// maxmemory-policy other than noeviction) to receive more data than fits under its
// maxmemory. The default is to refuse, before the first write, a migration whose selected
// data (estimated from the source's used memory, with a margin) does not fit in the room
// the target has left. Either way, a migration during which the target evicts keys fails
// with an error wrapping ErrEvicted that says how many.
func WithEvictingTarget() Option {
	return func(c *config) error {
		c.forMigrateOnly("WithEvictingTarget")
		c.evicting = true
		return nil
	}
}

// Incompatible says what becomes of a key the target cannot hold whole: on a target older
// than the source, a hash whose fields have TTLs (Redis 7.4) or a value of a format this
// package cannot rewrite for it; a module value on a target that runs no module (see
// WithIncompatible).
type Incompatible int

const (
	// FailIncompatible stops the migration at the first such key, with an error that
	// names it and the reason and wraps ErrIncompatible. The default.
	FailIncompatible Incompatible = iota
	// SkipIncompatible leaves such keys out; they count as Skipped and are listed in
	// Report.Incompatible.
	SkipIncompatible
	// TrimIncompatible copies such keys without the part the target cannot hold (a hash
	// without its field TTLs, whose fields then do not expire), and leaves out those that
	// have no such part; both are counted and listed in Report.Incompatible.
	TrimIncompatible
)

// WithIncompatible says what becomes of a key that the target cannot hold whole. The
// default is FailIncompatible: nothing is ever dropped silently.
func WithIncompatible(p Incompatible) Option {
	return func(c *config) error {
		if p < FailIncompatible || p > TrimIncompatible {
			return fmt.Errorf("WithIncompatible: unknown policy %d", p)
		}
		c.forMigrateOnly("WithIncompatible")
		c.Incompatible = p
		return nil
	}
}

// WithFollow makes the migration live: after the initial copy the strategy keeps the target
// in sync with the writes the source accepts, and calls cutover once the target has caught
// up. Following goes on while cutover runs (the application stops writing to the source,
// or is pointed at the target). When cutover returns nil, Migrate waits until the target
// holds every write the source accepted until then (the source's master_repl_offset read at
// that moment; for a DumpRestore, every key notified before a marker sent then), stops
// following and returns the Report. When it returns an error, Migrate
// stops following and returns that error; the target keeps what it has. Cancelling
// Migrate's context stops following promptly; cutover gets a context cancelled then, and
// Migrate returns once it has returned.
//
// Snapshot and Replication can follow, and DumpRestore through the source's keyspace
// notifications where the source refuses PSYNC (see WithSourceNotifications); MigrateKeys
// refuses WithFollow with an error wrapping ErrUnsupported, and Auto takes the first
// strategy of its ladder that can follow. The default is to copy one moment, without following.
func WithFollow(cutover func(ctx context.Context) error) Option {
	return func(c *config) error {
		if cutover == nil {
			return fmt.Errorf("WithFollow: nil cutover function")
		}
		c.Follow = cutover
		c.forMigrateOnly("WithFollow")
		return nil
	}
}

// WithSpoolDir sets the directory where a following Snapshot keeps the source's
// replication stream until it is applied: one file, read as it is written, so that a slow
// restore never makes the source hold the writes in its own buffers (and cut the link at
// its client-output-buffer-limit for replicas), nor this process in memory. The file is
// removed when Migrate returns, whatever the outcome. It needs room for the snapshot and
// the writes received and not yet applied: on Linux the disk space of what the target
// holds is given back as the follow goes (the file keeps its size, with holes); elsewhere
// the file keeps every write of the copy and the follow. The default is os.TempDir().
func WithSpoolDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return fmt.Errorf("WithSpoolDir: empty directory")
		}
		c.SpoolDir = dir
		c.forMigrateOnly("WithSpoolDir")
		return nil
	}
}

// WithCheckpoint keeps the migration's progress in s, so that a migration that stops (a
// crash, a kill, a lost connection, a cancelled context) continues where it stopped when
// Migrate runs again with the same store, rather than starting over; see CheckpointFile.
//
// It resumes DumpRestore, MigrateKeys and Snapshot (named by WithStrategy, or chosen by
// Auto); Replication is refused (ErrUnsupported). A Snapshot interrupted while it restored
// restores a new snapshot, after deleting the keys the interrupted run wrote when the
// target held no key at the first start (else it is refused with ErrCheckpoint: those keys
// cannot be told from the target's). A Snapshot that follows (WithFollow) continues the
// source's stream exactly where the target's offset key (WithOffsetKey) says, with PSYNC
// (from a cluster source, each master's; into a cluster target, from the latest point
// every slot's offset key covers, skipping in each slot the writes its key says it holds).
// A DumpRestore that follows keyspace notifications (WithFollow) finishes the interrupted
// walk, then compares and repairs every selected key (the notifications sent while no run
// listened are lost), then follows again. The keys the interrupted run wrote are the
// migration's own: when the target held no key in the databases written at the first start,
// the rest of the walk overwrites them under any conflict policy; else it keeps the policy,
// and under Fail a key that differs from the source's stops the run.
//
// For DumpRestore and MigrateKeys, the position of the key walk is saved several times a
// second in the background (the copy never waits for it) and at the end of each database:
// on a standalone source, the SCAN cursor below which every batch is written; on a cluster
// source, the slots whose keys are all written. Keys written after the last save are found
// again on the target with the source's value and counted as Skipped, under
// any conflict policy: they are not conflicts. The checkpoint names the source, the target,
// the strategy and the filters; a checkpoint of another migration, or a damaged one, makes
// Migrate fail with an error wrapping ErrCheckpoint. Once the migration succeeds, the
// checkpoint says it is complete, and Migrate run again copies nothing and sets
// Report.AlreadyComplete. Report.Resumed says where a run continued. The default keeps no
// checkpoint.
func WithCheckpoint(s CheckpointStore) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("WithCheckpoint: nil store")
		}
		c.checkpoint = s
		c.forMigrateOnly("WithCheckpoint")
		return nil
	}
}

// WithKeyBudget sets the most bytes of one key's value that DumpRestore reads whole into
// memory. A larger key, or one larger than the target's proto-max-bulk-len, is copied in
// pieces: windows of its value written into a temporary key on the target, renamed onto
// the key once whole with its expiry (see DumpRestore). The size of each key is asked of
// the source (MEMORY USAGE, one pipeline a batch) before its value is read; where the
// source refuses MEMORY USAGE, the value read is measured instead. The budget bounds what
// one key costs in memory; the keys of the batches in flight (WithBatchSize,
// WithConcurrency) each stay below it. The default is 32 MiB. Snapshot does not yet honour
// it: it reads each value of the source's RDB whole.
func WithKeyBudget(bytes int64) Option {
	return func(c *config) error {
		if bytes < 1024 {
			return fmt.Errorf("WithKeyBudget: %d bytes; want at least 1024", bytes)
		}
		c.KeyBudget = bytes
		c.forMigrateOnly("WithKeyBudget")
		return nil
	}
}

// WithOffsetKey names the key where a following Snapshot (WithFollow) keeps, in database 0
// of the target, how far it applied the source's replication stream: the source's
// replication id and offset, written in the same MULTI/EXEC as each batch of writes it
// covers. So the target always says exactly which writes it holds: a connection to the
// target that fails while a batch is under way is opened again and the batch sent again
// only when it did not land, and WithCheckpoint resumes following exactly where the target
// stands (PSYNC). The key is left out of the copy and of the Report's counts, and deleted
// once the migration completes; a run stopped by an error keeps it when WithCheckpoint is
// given, to resume from. From a cluster source each master's stream has its own key, the
// name followed by ":" and the master's address. Verify, given the same option, does not
// count the key as an extra one. Name a key that neither side uses. The default is
// "migrate:offset". On a cluster target, where a MULTI cannot span slots, each slot has its
// own key: the name with a hash tag that lands on the slot after it ("migrate:offset{3Xk}"),
// or before it when the name has a brace; each batch goes as one MULTI/EXEC per slot.
func WithOffsetKey(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("WithOffsetKey: empty name")
		}
		c.OffsetKey = name
		return nil
	}
}

// WithSourceNotifications lets a DumpRestore that follows the source (WithFollow) set the
// source's notify-keyspace-events to what it needs, with CONFIG SET, when the flags there
// do not cover every write, and put the old value back when Migrate returns, whether it
// succeeds, fails or is cancelled. The default leaves the source's configuration alone: a
// DumpRestore with WithFollow then refuses a source whose flags do not cover every write,
// and its Check names the flags missing. Managed services refuse CONFIG SET; there the
// flags are set through the service's own console or parameter group (for example
// "KEA").
func WithSourceNotifications() Option {
	return func(c *config) error {
		c.SetNotifications = true
		c.forMigrateOnly("WithSourceNotifications")
		return nil
	}
}

// WithNotificationProbe lets a DumpRestore that follows the source (WithFollow) find out
// what the source's keyspace notifications cover when it refuses CONFIG GET, as managed
// services do: on each server of the source it writes a probe key of each class of
// notifications (named migrate:notify-probe:{<random>}:<class>, in the first selected
// database), watches which notifications arrive, and deletes the keys. These are the only
// writes the migration makes to the source. A class whose notification does not come is
// refused, named. Eviction ("e") cannot be probed: no write causes one; a source that
// evicts keys while the migration follows it needs "e" in its flags.
func WithNotificationProbe() Option {
	return func(c *config) error {
		c.ProbeNotifications = true
		c.forMigrateOnly("WithNotificationProbe")
		return nil
	}
}

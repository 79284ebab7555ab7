package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// Snapshot copies a point-in-time snapshot of the source. By default it connects to the
// source as a new replica would (PSYNC, or SYNC), streams the RDB snapshot the source sends
// through an RDBReader, writes no file anywhere, and restores each key on the target with
// RESTORE, into the same database number. FromFile reads an RDB file instead; ToFile writes
// the snapshot to a file, for the target to load in place of its data, instead of restoring.
//
// The copy is the source's data at the moment the snapshot starts: writes made after that
// moment are not copied, unless WithFollow is given. Then Snapshot stays attached as a
// replica that wants the stream, keeps what the source sends in a spool file (WithSpoolDir)
// while it restores, and replays the writes that follow the snapshot on the target, in
// order, until the cutover (see WithFollow and the README's Live migration): a source that
// answers PSYNC continues after a dropped link (PSYNC <replid> <offset>) while its backlog
// (repl-backlog-size) still holds the writes since, else the migration fails with an error
// wrapping ErrFollowLost; one that only speaks SYNC cannot continue. From a cluster source
// it follows every master for the slots it served at the start, and stops when a slot
// moves; into a cluster target each write goes to its slot's master (see the README). A
// following Snapshot refuses FromFile, ToFile, WithTypes and WithConflict(Skip), and stops at a
// FLUSHDB or FLUSHALL that would delete keys the target held before; WithMatch and
// WithDatabases drop the writes they do not select, and stop at a write they select only in
// part; WithDBPrefix renames the keys of the writes, and stops at one it cannot rename
// exactly. It needs, besides PSYNC and REPLCONF, COMMAND INFO and COMMAND GETKEYS on the
// source with WithMatch, WithDBPrefix or a cluster on either side, and every command the
// stream holds allowed on the target. Each batch of the stream goes in one MULTI/EXEC with
// the offset key (WithOffsetKey; on a cluster target one per slot, with its slot's key), so that a connection killed on the
// way is survived exactly, and WithCheckpoint resumes a following Snapshot where the target
// stands; an interrupted restore resumes with a new snapshot (see WithCheckpoint).
//
// Over replication it needs PSYNC or SYNC, and REPLCONF, on the source: not renamed, and
// allowed to the ACL user (+psync +sync +replconf); managed services usually refuse them,
// and DumpRestore then still works. The source forks to produce the snapshot, as for any new
// replica, and follows its own settings: with repl-diskless-sync (the default from Redis 7.0)
// it first waits repl-diskless-sync-delay (5 s by default) for other replicas. From Redis 7.0
// the connection asks for the snapshot only (REPLCONF rdb-only), so the source buffers no
// writes for it; an older source buffers them as for any replica, and may cut a long
// transfer at its client-output-buffer-limit for replicas.
//
// From a cluster source it opens one replication connection per master, all at once, and
// keeps from each master's snapshot only the keys of the slots that master served when the
// migration started, so every slot comes from exactly one snapshot (a master's RDB may hold
// keys of a slot it is importing or has just given away). Each master's snapshot is its own
// point in time. It refuses a cluster whose slots are being moved (CLUSTER SETSLOT
// MIGRATING), and fails, to be run again, when a slot moves before every master has forked
// its snapshot; a master that fails during the transfer fails the migration too. Use
// DumpRestore to copy a cluster that is being resharded. FromFile with BGSave, and ToFile,
// which hold one server's data, are refused for a cluster source. Keys go to a cluster
// target by slot: the cluster client sends each RESTORE to the node that serves its key and
// follows MOVED and ASK during a resharding.
//
// Restoring needs RESTORE on the target, and FUNCTION RESTORE for function libraries; a
// target older than the snapshot's RDB version gets each value rewritten in a form it
// reads (see WithIncompatible), and ToFile refuses it. A value larger than the target
// takes in one command (proto-max-bulk-len) or than WithKeyBudget is never held whole: it
// is written in pieces as it streams in, into a temporary key renamed into place once
// whole (see the README's Keys of any size). One
// goroutine reads the snapshot, at the pace the restore allows, and WithConcurrency
// goroutines restore batches of one database, of at most WithBatchSize keys and 1 MiB of
// values. It honours WithMatch (with Redis's glob rules), WithTypes, WithDatabases,
// WithRateLimit and the conflict policy as DumpRestore does, and the TTLs: keys already
// expired in the snapshot are counted as Expired, not written. Scanned counts the keys that
// pass the filters and reach a restoring goroutine (a cancelled migration leaves the rest
// uncounted); collections left empty, which Redis does not load either, are skipped.
//
// WithDatabases, or the source option's SelectDB, name the databases copied, and no key of
// another database in the snapshot is copied. By default they are those with keys when the
// migration starts (Job.Databases), and the snapshot, taken later or read from FromFile, may
// hold others. Such a database is copied where it has a place: into the same number on a
// standalone target, which must have that database, or with its prefix under WithDBPrefix.
// A cluster target has only database 0: without WithDBPrefix, a database that would share
// it with another stops the migration with an error wrapping ErrUnsupported that names it,
// and nothing is merged. When WithMatch or WithTypes narrow the copy, the databases with
// keys at the start are the only ones copied.
//
// Module values are restored like any other, and need the module on the target; WithTypes,
// which names no module type, leaves them out. Function libraries (Redis 7.0) are restored
// with FUNCTION RESTORE whatever the filters: the conflict policy decides about a library of
// the same name with other code (Fail: an error wrapping ErrConflict; Skip: keep the
// target's; Replace: REPLACE). They are logged, not counted in the Report, whose counts are
// keys; on a cluster target they are not restored, and logged as such.
//
// The zero value reads over replication and restores.
type Snapshot struct {
	// FromFile, when set, is the path of an RDB file to read the snapshot from, instead of
	// a replication connection. The source server is then not read, except for BGSave.
	// An AOF file that starts with an RDB preamble is refused when commands follow it.
	FromFile string

	// BGSave, with FromFile, first makes the source save its data with BGSAVE (BGSAVE
	// SCHEDULE) and waits until that save is complete; FromFile must then be the source's
	// dump file (its dir and dbfilename, CONFIG GET dir dbfilename), readable by this
	// process: for a migration that runs beside the source. It needs BGSAVE and INFO on the
	// source, and the source forks. The default is to read FromFile as it is.
	BGSave bool

	// ToFile, when set, writes the snapshot to this path as a plain RDB file instead of
	// restoring it: the bytes as received, in a temporary file of the same directory, parsed
	// as they arrive so that a damaged transfer fails, synced and then renamed into place,
	// with mode 0600. Since the file holds every key and replaces the target's data when
	// loaded, the filters are refused (ErrUnsupported), the conflict policy does not apply,
	// and a target that holds keys needs WithDiscardTarget. The Report counts the keys
	// written (Keys, Bytes) and those already expired (Expired), which Redis drops on load,
	// once the file is complete and, with Load, loaded.
	ToFile string

	// Load, with ToFile, is called once the file is complete, with its path, to put it in
	// place of the target's data: typically stop the target, move the file to the target's
	// dir and dbfilename, start the target, and return once it serves again. Its error fails
	// the migration. The default is to leave the file where ToFile says.
	Load func(ctx context.Context, path string) error
}

// Name returns "snapshot".
func (Snapshot) Name() string { return "snapshot" }

// snapshotBatchBytes bounds the payload bytes of one RESTORE batch, so that batches of
// large values stay small in memory while batches of small ones hold WithBatchSize keys.
const snapshotBatchBytes = 1 << 20

// Check verifies, without changing anything, that the snapshot can be read (PSYNC or SYNC
// neither renamed nor refused to the ACL user where the server tells; FromFile readable and
// an RDB; BGSAVE allowed), that it can be written (RESTORE, and SET from Redis 6.2, allowed
// on the target; or the directory of ToFile writable, no filter, the target empty or
// WithDiscardTarget), and that the target reads the snapshot's RDB version. The commands
// refused on either side are named in one error.
func (s Snapshot) Check(ctx context.Context, j *Job) error {
	if err := s.checkFollow(j); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	if err := checkTargetDatabases(j); err != nil {
		return err
	}
	fromServer := s.FromFile == "" || s.BGSave
	if fromServer && j.Source.Cluster() {
		if err := s.checkCluster(ctx, j); err != nil {
			return err
		}
	}
	version := j.Source.Info.RDBVersion()
	versionOf := describeVersion(j.Source.Info)
	// The commands each side refuses, all of them at once.
	var refused []error
	switch {
	case s.FromFile == "":
		if err := checkSync(ctx, j.Source); err != nil {
			refused = append(refused, err)
		}
	case s.BGSave:
		if err := checkCommand(ctx, j.Source, "BGSAVE", "SCHEDULE"); err != nil {
			refused = append(refused, fmt.Errorf("BGSave needs BGSAVE on the source; leave BGSave out to read FromFile as it is: %w", err))
		}
		if _, err := os.Stat(filepath.Dir(s.FromFile)); err != nil {
			return fmt.Errorf("FromFile %s: its directory cannot be read; BGSave needs the source's dump path (CONFIG GET dir dbfilename): %w", s.FromFile, err)
		}
	default:
		v, err := fileRDBVersion(s.FromFile)
		if err != nil {
			return err
		}
		version, versionOf = v, "the file "+s.FromFile
	}
	if s.ToFile != "" && j.MergeDatabases {
		return fmt.Errorf("ToFile writes the source's databases and names as they are, and WithDBPrefix merges them; leave one out: %w", ErrUnsupported)
	}
	if s.ToFile == "" {
		if err := checkRestore(ctx, j.Target); err != nil {
			refused = append(refused, err)
		}
	}
	if err := joinRefusals(refused...); err != nil {
		return err
	}
	if s.ToFile != "" {
		if err := s.checkToFile(ctx, j); err != nil {
			return err
		}
	}
	return checkSnapshotVersion(j, version, versionOf, s.ToFile != "")
}

// validate refuses options that do not go together.
func (s Snapshot) validate() error {
	switch {
	case s.BGSave && s.FromFile == "":
		return fmt.Errorf("BGSave needs FromFile, the source's dump path: %w", ErrUnsupported)
	case s.Load != nil && s.ToFile == "":
		return fmt.Errorf("Load needs ToFile, the file it puts in place: %w", ErrUnsupported)
	}
	return nil
}

// Run reads the snapshot and restores it, or writes it to ToFile. It returns promptly on
// cancellation, closing the replication connection, with an error wrapping ctx.Err().
func (s Snapshot) Run(ctx context.Context, j *Job) error {
	if err := s.validate(); err != nil {
		return err
	}
	if j.Follow != nil {
		return s.follow(ctx, j)
	}
	if resumed, _ := j.checkpoint.snapshotResumed(); resumed && s.ToFile == "" {
		if err := s.restartResumed(ctx, j); err != nil {
			return err
		}
	}
	if s.FromFile == "" && j.Source.Cluster() {
		return s.runCluster(ctx, j)
	}
	in, err := s.open(ctx, j)
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer in.Close()
	if s.ToFile != "" {
		err = s.write(ctx, j, in)
	} else {
		err = s.restore(ctx, j, in)
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// snapshotInput is the RDB being read and what to say about it.
type snapshotInput struct {
	io.Reader
	// fail describes an error that happened while reading, naming where the input comes from.
	fail      func(op string, err error) error
	complete  func() error // checks the transfer's end, once the RDB reader drained it
	closeOnce sync.Once
	close     func() error
}

// Close closes the input; it may be called more than once, and from another goroutine to
// interrupt a read.
func (in *snapshotInput) Close() {
	in.closeOnce.Do(func() { _ = in.close() })
}

func (s Snapshot) open(ctx context.Context, j *Job) (*snapshotInput, error) {
	if s.FromFile == "" {
		rs, err := openReplication(ctx, j.Source, j.Logger)
		if err != nil {
			return nil, err
		}
		return &snapshotInput{
			Reader: rs, complete: rs.complete, close: rs.Close,
			fail: func(op string, err error) error { return j.Source.Err(op+" of the replication snapshot", "", err) },
		}, nil
	}
	var saved time.Time
	if s.BGSave {
		var err error
		if saved, err = bgsave(ctx, j); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(s.FromFile)
	if err != nil {
		return nil, fmt.Errorf("open FromFile %s: %w", s.FromFile, err)
	}
	if s.BGSave {
		// Redis renames its finished dump into place: an older file is not the source's.
		if fi, err := f.Stat(); err == nil && fi.ModTime().Before(saved.Add(-time.Second)) {
			f.Close()
			return nil, fmt.Errorf("FromFile %s was not rewritten by the source's BGSAVE (modified %s); it must be the source's dump file (CONFIG GET dir dbfilename): %w",
				s.FromFile, fi.ModTime().Format(time.RFC3339), ErrUnsupported)
		}
	}
	j.Logger.Info("snapshot: reading an RDB file", "path", s.FromFile)
	return &snapshotInput{
		Reader: f, complete: func() error { return nil }, close: f.Close,
		fail: func(op string, err error) error {
			return fmt.Errorf("%s of FromFile %s: %w", op, s.FromFile, err)
		},
	}, nil
}

// restoreBatch is keys of one database, restored together.
type restoreBatch struct {
	db    int
	items []dumped
}

// restore feeds batches of entries to Concurrency workers that RESTORE them.
func (s Snapshot) restore(ctx context.Context, j *Job, in *snapshotInput) error {
	r, err := newRestorer(ctx, j)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	// A failing worker must stop a reader blocked on the network too.
	defer context.AfterFunc(gctx, in.Close)()
	batches := make(chan restoreBatch, j.Concurrency)
	g.Go(func() error {
		defer close(batches)
		return s.read(gctx, j, in, batches, newSnapshotDBs(j), nil)
	})
	startRestorers(gctx, g, j.Concurrency, r, batches)
	return g.Wait()
}

// startRestorers starts n goroutines in g that restore the batches until the channel is
// closed or ctx ends (one failed). A batch counts as Scanned when a goroutine takes it: the
// batches left in the channel when the group stops were never handled, and count nowhere.
func startRestorers(ctx context.Context, g *errgroup.Group, n int, r *restorer, batches <-chan restoreBatch) {
	for range n {
		g.Go(func() error {
			for {
				var b restoreBatch
				ok := false
				select {
				case b, ok = <-batches:
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !ok {
					return nil
				}
				r.j.Count(b.db, Counts{Scanned: int64(len(b.items))})
				err := r.restore(ctx, b.db, b.items)
				releaseBatch(b.items)
				if err != nil {
					return err
				}
			}
		})
	}
}

// read reads the snapshot, keeps the entries of the databases dbs copies that the filters
// select, and sends them in batches of one database, restoring function libraries on the
// way.
//
// owned, when not nil, keeps only the keys of the slots it marks: those the cluster master
// that sends this snapshot served when the migration started.
func (s Snapshot) read(ctx context.Context, j *Job, in *snapshotInput, out chan<- restoreBatch, dbs *snapshotDBs, owned *[slotCount]bool) error {
	rd := NewRDBReader(in)
	keep := snapshotFilter(j)
	if owned != nil {
		filter := keep
		keep = func(e *RDBEntry) bool { return owned[keySlot(e.Key)] && filter(e) }
	}
	// Values too large to restore whole are copied in pieces as they are read (snapshot_bigkeys.go).
	big := readPieces(ctx, j, rd, func(e *RDBEntry) (bool, error) {
		kept, err := dbs.keep(ctx, e.DB)
		return kept && keep(e), err
	})
	defer big.close()
	db, keepDB := -1, false // the database being read, and whether it is copied
	b := batchBuilder{maxKeys: j.BatchLimit(), maxBytes: snapshotBatchBytes}
	flush := func() error {
		if len(b.items) == 0 {
			return nil
		}
		if err := j.Wait(ctx, len(b.items)); err != nil {
			return err
		}
		batch := b.take()
		select {
		case out <- batch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	functions := 0
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if big.wrote(err) {
				return err // the target's, or the key's
			}
			return in.fail("read", ctxErr(ctx, err))
		}
		if e.Kind == RDBFunction {
			if err := restoreFunction(ctx, j, e); err != nil {
				return err
			}
			functions++
			continue
		}
		if e.DB != db {
			if keepDB, err = dbs.keep(ctx, e.DB); err != nil {
				return err
			}
			db = e.DB
		}
		if !keepDB || !keep(e) {
			continue
		}
		if e.DB != b.db && len(b.items) > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		b.add(e)
		if b.full() {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := finish(rd, in); err != nil {
		return err
	}
	j.Logger.Info("snapshot: read to the end", "rdb_version", rd.Version(), "bytes", rd.Offset(),
		"function_libraries", functions, "empty_collections_skipped", rd.SkippedEmpty())
	return flush()
}

// finish checks that nothing follows the RDB in the input, and that the transfer ended well.
func finish(rd *RDBReader, in *snapshotInput) error {
	var extra [1]byte
	n, err := io.ReadFull(rd.Rest(), extra[:])
	switch {
	case n > 0:
		return in.fail("read", fmt.Errorf("%w: data follows the RDB's end (an AOF file with an RDB preamble? its commands would be lost)", ErrCorruptRDB))
	case err != io.EOF:
		return in.fail("read", err)
	}
	if err := in.complete(); err != nil {
		return in.fail("read", err)
	}
	return nil
}

// snapshotFilter returns whether an entry passes the job's match and type filters; the
// databases are snapshotDBs' to decide.
func snapshotFilter(j *Job) func(*RDBEntry) bool {
	match, types := j.Match, j.Types
	follow := j.Follow != nil // a following Snapshot's own keys on the target (WithOffsetKey)
	return func(e *RDBEntry) bool {
		return (match == "" || globMatch(match, e.Key)) &&
			(len(types) == 0 || slices.Contains(types, e.TypeName())) &&
			(!follow || j.TargetDB(e.DB) != 0 || !j.isOffsetKey(j.TargetKey(e.DB, e.Key)))
	}
}

// snapshotDBs decides which databases of the snapshot are copied. The snapshot holds what
// the source holds when it forks, or what FromFile holds, which may be more databases than
// Job.Databases, those with keys when the migration started. The readers of a cluster
// source's masters share one.
type snapshotDBs struct {
	j      *Job
	listed map[int]bool // Job.Databases
	// chosen says the user named the databases, so that no other is copied.
	chosen bool

	mu   sync.Mutex
	late map[int]error // databases beyond Job.Databases seen so far: nil copied, errLeftOut left out, else why the migration stops
	// db0 is, on a cluster target without WithDBPrefix, the source database that its only
	// database takes; -1 while none does.
	db0 int
}

// errLeftOut marks a database that is not copied.
var errLeftOut = errors.New("left out")

func newSnapshotDBs(j *Job) *snapshotDBs {
	d := &snapshotDBs{j: j, listed: make(map[int]bool, len(j.Databases)), late: map[int]error{}, db0: -1}
	for _, db := range j.Databases {
		d.listed[db] = true
	}
	if len(j.Databases) > 0 {
		d.db0 = j.Databases[0]
	}
	// The default databases are those INFO showed with keys, and a database that gains keys
	// later is copied too; where INFO is refused, database 0 only, as for every strategy.
	d.chosen = j.DatabasesChosen || len(j.Source.Info.Fields) == 0
	return d
}

// keep reports whether the keys of database db are copied, or why the migration must stop.
func (d *snapshotDBs) keep(ctx context.Context, db int) (bool, error) {
	if d.listed[db] {
		return true, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	err, seen := d.late[db]
	if !seen {
		err = d.decide(ctx, db)
		d.late[db] = err
	}
	switch {
	case err == errLeftOut:
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// decide says, for database db, which the snapshot holds and Job.Databases does not, what
// becomes of its keys: copied where it has a place, left out when the user named the
// databases, or an error that stops the migration. It runs once per such database.
func (d *snapshotDBs) decide(ctx context.Context, db int) error {
	j := d.j
	log := j.Logger.With("db", db)
	switch {
	case d.chosen:
		log.Info("snapshot: database not selected, its keys are left out", "databases", j.Databases)
		return errLeftOut
	case j.MergeDatabases:
		log.Info("snapshot: database had no keys when the migration started, and is copied with its prefix")
		return nil
	case j.Target.Cluster():
		if d.db0 < 0 {
			d.db0 = db
			log.Info("snapshot: database had no keys when the migration started, and is copied into the cluster's database 0")
			return nil
		}
		return j.Target.Err("map databases", "", fmt.Errorf(
			"the source's database %d had no keys when the migration started and is in the snapshot, and the target is a cluster, "+
				"whose only database 0 takes database %d; copy one with migrate.WithDatabases(n), or merge them into database 0 "+
				"with migrate.WithDBPrefix(\"db%%d:\") (or WithDBPrefix(\"\") to keep the names): %w", db, d.db0, ErrUnsupported))
	}
	// The same number on the target, which must have it.
	if _, err := j.Target.Client(db); err != nil {
		if ctx.Err() != nil || classifyReply(err) != replyNoDB {
			return err
		}
		count, selected := "fewer", "n"
		if len(j.Databases) > 0 {
			selected = dbList(j.Databases)
		}
		if c, cerr := j.Target.Default(); cerr == nil {
			if v, ok := configGet(ctx, c, "databases"); ok {
				count = "only " + v
			}
		}
		return j.Target.Err(fmt.Sprintf("select db %d", db), "", fmt.Errorf(
			"the source's database %d had no keys when the migration started and is in the snapshot, and the target has %s databases; "+
				"leave it out with migrate.WithDatabases(%s), merge the databases into database 0 with migrate.WithDBPrefix(\"db%%d:\"), "+
				"or give the target more databases (its databases setting): %w", db, count, selected, ErrUnsupported))
	}
	log.Info("snapshot: database had no keys when the migration started, and is copied into the same number")
	return nil
}

// batchBuilder collects entries of one database. Their payloads are copied back to back
// into one buffer that becomes one string, which the RESTORE commands slice: one
// allocation a batch rather than one a key.
type batchBuilder struct {
	maxKeys, maxBytes int
	db                int
	items             []dumped
	ends              []int // where each item's payload ends in payloads
	payloads          strings.Builder
	lastBytes         int // payload bytes of the previous batch, to size the next one
}

func (b *batchBuilder) add(e *RDBEntry) {
	if len(b.items) == 0 {
		b.db = e.DB
		b.items = newBatch(b.maxKeys)
		b.ends = b.ends[:0]
		b.payloads.Grow(min(b.lastBytes+b.lastBytes/8, b.maxBytes))
	}
	b.payloads.Write(e.Payload)
	b.ends = append(b.ends, b.payloads.Len())
	b.items = append(b.items, dumped{key: e.Key, expireAt: e.ExpireAtMs, sealed: true})
}

func (b *batchBuilder) full() bool {
	return len(b.items) >= b.maxKeys || b.payloads.Len() >= b.maxBytes
}

// take returns the batch and starts an empty one.
func (b *batchBuilder) take() restoreBatch {
	all := b.payloads.String()
	start := 0
	for i, end := range b.ends {
		b.items[i].payload = all[start:end]
		start = end
	}
	out := restoreBatch{db: b.db, items: b.items}
	b.lastBytes = len(all)
	b.items = nil
	b.payloads = strings.Builder{}
	return out
}

// restoreFunction restores one function library on the target, following the conflict
// policy for a library of the same name.
func restoreFunction(ctx context.Context, j *Job, e *RDBEntry) error {
	if j.Target.Info.Mode == "cluster" {
		j.Logger.Warn("snapshot: function library not restored on a cluster target; load it on every primary", "library", e.Key)
		return nil
	}
	c, err := j.Target.Default()
	if err != nil {
		return err
	}
	// An older target reads the library's payload once it carries its own RDB version.
	payload, err := functionPayload(j, e.Payload)
	if err != nil {
		return j.Target.Err("restore function library", e.Key, err)
	}
	cmd := c.B().FunctionRestore().SerializedValue(string(payload))
	var res rueidis.RedisResult
	if j.Conflict == Replace {
		res = c.Do(ctx, cmd.Replace().Build())
	} else {
		res = c.Do(ctx, cmd.Append().Build())
	}
	err = res.Error()
	if err == nil {
		j.Logger.Info("snapshot: function library restored", "library", e.Key)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	op := "restore function library"
	if classifyReply(err) != replyExists {
		return j.Target.Err(op, e.Key, err)
	}
	if same, _ := sameLibrary(ctx, c, e); same {
		return nil
	}
	if j.Conflict == Skip {
		j.Logger.Info("snapshot: function library kept: the target has one of the same name", "library", e.Key)
		return nil
	}
	return j.Target.Err(op, e.Key, fmt.Errorf("the target has a library of that name with other code: %w", ErrConflict))
}

// sameLibrary reports whether the target's library named as e has e's code.
func sameLibrary(ctx context.Context, c rueidis.Client, e *RDBEntry) (bool, error) {
	libs, err := c.Do(ctx, c.B().FunctionList().Libraryname(e.Key).Withcode().Build()).ToArray()
	if err != nil {
		return false, err
	}
	for _, l := range libs {
		m, err := l.AsMap()
		if err != nil {
			continue
		}
		nameMsg, codeMsg := m["library_name"], m["library_code"]
		name, _ := nameMsg.ToString()
		code, _ := codeMsg.ToString()
		if name == e.Key {
			return code == e.Code, nil
		}
	}
	return false, nil
}

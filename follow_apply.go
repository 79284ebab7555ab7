package migrate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// applyBatch is the most commands sent to the target in one pipeline.
const applyBatch = 1024

// syncQuiet is how long the stream of a source that speaks SYNC only must stay quiet after
// the cutover before following stops: such a source tells no offset to wait for.
const syncQuiet = time.Second

// streamCommand is one command of the source's stream, as sent to the target.
type streamCommand struct {
	name string // upper case
	key  string // the first argument, for messages
	end  int64  // the stream position after it
	// slotKey is, on a cluster target, the key whose slot the command is sent to ("" none).
	slotKey string
}

// applier replays the stream, in order, on one connection to the target: each batch of
// commands in one MULTI/EXEC with the offset key (commit), SELECT as the source sends it,
// the source's own transactions within it. It waits for each batch's replies before the
// next. On a cluster target it sends each slot's commands to its node instead, one
// transaction per slot (see clusterQueue, commitSlots).
type applier struct {
	f     *follower
	c     applyConn
	r     *spoolReader
	br    *bufio.Reader
	start int64 // where the stream starts in the spool
	pos   int64 // stream bytes read and parsed
	// cmdStart is where the command being handled starts
	cmdStart int64

	batch   []rueidis.Completed
	cmds    []streamCommand
	inMulti bool
	args    []string

	dbs    *snapshotDBs // which source databases are copied
	keys   *streamKeys  // where the keys of a command are, for WithMatch
	keepDB bool         // whether the stream's current database is copied
	srcDB  int          // the stream's current database

	cluster     bool // the target is a cluster
	txStart     int  // on a cluster target, the batch index of the open transaction's MULTI
	splitLogged bool // a transaction across slots was logged

	// The offset key (WithOffsetKey) commits each batch with its offset: see commit, and
	// commitSlots on a cluster target, where key is the name its slots' keys are made of.
	key        string
	committed  int64          // the source offset up to which the target holds the stream
	batchSrcDB int            // the stream's source database where the batch starts
	client     rueidis.Client // whose connection c is, to take another after a failure
	release    func()         // gives c back
	connDB     int            // the database c is in once the queued commands ran
	batchDB    int            // the database c is in before the batch
}

// apply applies the stream after the RDB until the cutover asks to stop (see WithFollow),
// or an error. g runs the cutover function.
func (f *follower) apply(ctx context.Context, g *errgroup.Group) error {
	j := f.j
	select {
	case <-f.rdbDone:
	default:
		// The RDB reader ended, so the RDB is whole; the receiver may not have said so yet.
		select {
		case <-f.rdbDone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := f.sp.streamReader(ctx)
	a := &applier{f: f, r: r, br: bufio.NewReaderSize(r, 64<<10), start: r.pos, dbs: newSnapshotDBs(j), keepDB: true,
		keys: newStreamKeys(j.Source), cluster: j.Target.Cluster(), txStart: -1, key: j.offsetKey(f.node), committed: f.base}
	if j.Target.Cluster() {
		// The cluster client: each command goes to its slot's node (see clusterQueue).
		c, err := j.Target.Client(0)
		if err != nil {
			return err
		}
		a.c = c
		if err := a.resumeDB(ctx); err != nil {
			return err
		}
	} else {
		// A client of its own: the connection's database follows the stream's SELECT, so it
		// must not return to a pool, nor be reconnected to another database behind our back.
		opt := j.Target.Option
		client, err := rueidis.NewClient(opt)
		if err != nil {
			return j.Target.Err("connect to apply the stream", "", explainDial(opt, j.Target.Addr, err))
		}
		defer client.Close()
		dc, release := client.Dedicate()
		a.c, a.client, a.release = dc, client, release
		defer func() { a.release() }()
		a.connDB, a.batchDB = opt.SelectDB, opt.SelectDB
		if err := a.resumeDB(ctx); err != nil {
			return err
		}
	}
	f.setOffset(f.base)
	f.st.following.Store(true)
	j.Logger.Info("snapshot: follow: snapshot restored; applying the source's writes", "offset", f.base)

	cutover := f.gate.done
	started := false
	stopAt := int64(-1)        // the source's offset to reach, once cutover returned
	var quiet <-chan time.Time // after the cutover, when the source speaks SYNC
	var nextCheck time.Time    // when to read the source's offset again, before the cutover
	var recheck <-chan time.Time
	for {
		_, _, serr, changed := f.sp.state()
		if a.br.Buffered() == 0 && a.r.available() == 0 {
			if !a.inMulti {
				// Within a transaction, its end is on the way: it goes in one pipeline.
				if err := a.flush(ctx); err != nil {
					return err
				}
			}
			if stopAt >= 0 && f.base+f.applied.Load() >= stopAt {
				j.Logger.Info("snapshot: follow: the target holds every write the source accepted until the cutover", "offset", f.base+a.pos)
				return nil
			}
			if serr != nil {
				return serr
			}
			if !started && !a.inMulti && time.Now().After(nextCheck) {
				// Caught up with what arrived; and with what the source accepted?
				caught := f.syncOnly()
				if !caught {
					at, err := f.sourceOffset(ctx)
					if err != nil {
						return err
					}
					caught = f.base+f.applied.Load() >= at
					nextCheck = time.Now().Add(50 * time.Millisecond)
					recheck = time.After(50 * time.Millisecond)
				}
				if caught {
					started, recheck = true, nil
					j.Logger.Info("snapshot: follow: the target caught up", "source", f.src.Addr, "offset", f.base+a.pos)
					f.gate.caughtUp(ctx, g, j)
				}
			}
			select {
			case <-recheck:
			case <-changed:
				if quiet != nil {
					quiet = time.After(syncQuiet)
				}
			case <-quiet:
				j.Logger.Info("snapshot: follow: the stream was quiet after the cutover; stopping", "applied", f.base+f.applied.Load())
				return nil
			case <-cutover:
				cutover = nil
				if err := f.gate.err; err != nil {
					return fmt.Errorf("the cutover function (WithFollow) failed; following stopped, the target holds the source's writes up to offset %d: %w",
						f.base+f.applied.Load(), err)
				}
				if f.syncOnly() {
					// SYNC tells no offsets: stop once the stream has been quiet for
					// syncQuiet, every write sent by then applied.
					j.Logger.Warn("snapshot: follow: the source speaks SYNC, which tells no offsets; stopping once its stream is quiet", "quiet", syncQuiet)
					quiet = time.After(syncQuiet)
					continue
				}
				var err error
				if stopAt, err = f.sourceOffset(ctx); err != nil {
					return err
				}
				j.Logger.Info("snapshot: follow: cutover done; catching up", "source_offset", stopAt, "applied", f.base+a.pos)
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if err := a.next(ctx); err != nil {
			return err
		}
		if len(a.batch) >= applyBatch && !a.inMulti {
			if err := a.flush(ctx); err != nil {
				return err
			}
			if stopAt >= 0 && f.base+f.applied.Load() >= stopAt {
				// Writes still come after the cutover; those until it are on the target.
				j.Logger.Warn("snapshot: follow: the source still takes writes after the cutover; stopping at the cutover's offset", "offset", f.base+a.pos)
				return nil
			}
		}
	}
}

// next reads one command and queues it, or handles it when it is for this replica.
func (a *applier) next(ctx context.Context) error {
	args, n, err := a.read()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return a.f.src.Err("read the replication stream", "", fmt.Errorf("at offset %d: %w", a.f.base+a.pos, err))
	}
	a.cmdStart = a.pos
	a.pos += n
	if len(args) == 0 {
		return nil
	}
	name := strings.ToUpper(args[0])
	switch name {
	case "PING":
		return nil // the master's keepalive; it counts in the offset
	case "PUBLISH", "SPUBLISH":
		// Messages, not data: the subscribers of the target are not the migration's to
		// feed, and its user may not be allowed to publish.
		return nil
	case "REPLCONF":
		if len(args) > 1 && strings.EqualFold(args[1], "GETACK") {
			// Answer with what the target holds, this command excluded, as Redis does.
			if err := a.flush(ctx); err != nil {
				return err
			}
			a.f.applied.Store(a.pos - n)
			a.f.ack()
			a.f.applied.Store(a.pos)
		}
		return nil
	case "MULTI":
		a.inMulti = true
	case "EXEC":
		a.inMulti = false
	case "SELECT":
		db, err := strconv.Atoi(args[len(args)-1])
		if err != nil || len(args) != 2 {
			return a.f.src.Err("read the replication stream", "", fmt.Errorf("unexpected %q at offset %d", strings.Join(args, " "), a.f.base+a.pos))
		}
		if a.keepDB, err = a.dbs.keep(ctx, db); err != nil {
			return err
		}
		a.srcDB = db
		if !a.keepDB {
			return nil
		}
		a.connDB = a.f.j.TargetDB(db)
		args = []string{"SELECT", strconv.Itoa(a.connDB)}
	default:
		if a.f.owned != nil {
			if err := a.ownSlots(ctx, name, args); err != nil {
				return err
			}
		}
		keep, err := a.crossDB(ctx, name, args)
		if err != nil || !keep {
			return err
		}
		if a.f.j.Match != "" {
			if keep, err = a.matched(ctx, name, args); err != nil || !keep {
				return err
			}
		}
		if a.f.j.MergeDatabases {
			if args, err = a.prefixed(ctx, name, args); err != nil {
				return err
			}
		}
	}
	if a.cluster {
		return a.clusterQueue(ctx, name, args)
	}
	a.queue(name, args, "")
	return nil
}

// crossDB reports whether a command of the current database is applied, and stops with an
// error a command that reaches into a database the migration does not copy while it
// copies this one, or the reverse: its replay could not be exact.
func (a *applier) crossDB(ctx context.Context, name string, args []string) (bool, error) {
	other := -1
	own := a.f.j.Target.Info.Keyspace // the target's keys before the migration
	if held, known := a.f.j.checkpoint.targetHeld(); known {
		own = held // before its first run: the keys now there may be the migration's own
	}
	switch name {
	case "FLUSHALL":
		if a.f.j.DatabasesChosen {
			return false, a.unreplayable(ctx, name, "", "it empties every database of the target, and the migration copies only some (WithDatabases)")
		}
		for db, n := range own {
			if n > 0 {
				return false, a.unreplayable(ctx, name, "", fmt.Sprintf("it would delete the keys the target's database %d held before the migration", db))
			}
		}
	case "FLUSHDB":
		if db := a.f.j.TargetDB(a.srcDB); a.keepDB && own[db] > 0 {
			return false, a.unreplayable(ctx, name, "", fmt.Sprintf("it would delete the keys the target's database %d held before the migration", db))
		}
	case "SWAPDB":
		if len(args) == 3 {
			for _, d := range args[1:] {
				n, _ := strconv.Atoi(d)
				keep, err := a.dbs.keep(ctx, n)
				if err != nil {
					return false, err
				}
				if !keep {
					return false, a.unreplayable(ctx, name, "", fmt.Sprintf("database %d is not copied (WithDatabases)", n))
				}
			}
		}
	case "MOVE":
		if len(args) == 3 {
			other, _ = strconv.Atoi(args[2])
		}
	case "COPY":
		for i := 3; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], "DB") {
				other, _ = strconv.Atoi(args[i+1])
			}
		}
	}
	if other >= 0 {
		keep, err := a.dbs.keep(ctx, other)
		if err != nil {
			return false, err
		}
		if keep != a.keepDB {
			return false, a.unreplayable(ctx, name, args[1], "it moves a key between a database the migration copies and one it does not (WithDatabases)")
		}
	}
	return a.keepDB, nil
}

// matched reports whether a command's keys match WithMatch, and stops with an error a
// command whose keys partly match, or that changes keys it does not name.
func (a *applier) matched(ctx context.Context, name string, args []string) (bool, error) {
	switch name {
	case "FLUSHDB", "FLUSHALL", "SWAPDB":
		return false, a.unreplayable(ctx, name, "", "it changes every key of a database, and the migration copies only the keys WithMatch selects")
	}
	keys, err := a.keys.keys(ctx, args)
	if err != nil {
		return false, err
	}
	in, out := "", ""
	for _, k := range keys {
		if globMatch(a.f.j.Match, k) {
			in = k
		} else {
			out = k
		}
	}
	if in != "" && out != "" {
		return false, a.unreplayable(ctx, name, in, fmt.Sprintf("its keys are partly selected by WithMatch(%q): %q is, %q is not", a.f.j.Match, in, out))
	}
	// A command without keys (FUNCTION LOAD, PUBLISH, ...) is applied, as the snapshot's
	// function libraries are restored whatever the filters.
	return in != "" || len(keys) == 0, nil
}

// prefixed returns the command with its keys renamed as WithDBPrefix renames those of
// the stream's current database, or stops with an error a command whose keys are not at
// fixed places, or that reaches into other databases.
func (a *applier) prefixed(ctx context.Context, name string, args []string) ([]string, error) {
	switch name {
	case "FLUSHDB", "FLUSHALL", "SWAPDB", "MOVE":
		return nil, a.unreplayable(ctx, name, "", "WithDBPrefix merges the databases into one, where it would change other databases' keys")
	case "COPY":
		for _, arg := range args[3:] {
			if strings.EqualFold(arg, "DB") {
				return nil, a.unreplayable(ctx, name, args[1], "WithDBPrefix merges the databases into one, and COPY ... DB reaches into another")
			}
		}
	}
	idx, movable, err := a.keys.positions(ctx, args)
	if err != nil {
		return nil, err
	}
	if movable {
		return nil, a.unreplayable(ctx, name, "", "its keys are not at fixed places (movablekeys in COMMAND INFO), so WithDBPrefix cannot rename them")
	}
	if len(idx) == 0 {
		return args, nil
	}
	out := make([]string, len(args))
	copy(out, args)
	for _, i := range idx {
		out[i] = a.f.j.TargetKey(a.srcDB, args[i])
	}
	return out, nil
}

// unreplayable is the error of a command of the stream that cannot be replayed exactly.
// The commands before it are applied first, except those of a transaction it belongs to.
func (a *applier) unreplayable(ctx context.Context, name, key, why string) error {
	f := a.f
	at := f.base + a.pos
	a.pos = a.cmdStart // this command is not applied
	if a.inMulti {
		k := len(a.cmds) - 1
		for k >= 0 && a.cmds[k].name != "MULTI" {
			k--
		}
		if k >= 0 {
			a.pos = f.applied.Load()
			if k > 0 {
				a.pos = a.cmds[k-1].end
			}
			a.batch, a.cmds = a.batch[:k], a.cmds[:k]
		}
	}
	if err := a.flush(ctx); err != nil {
		return err
	}
	return f.src.Err("follow "+name, key, fmt.Errorf(
		"the source's write %s (ending at its replication offset %d) cannot be replayed exactly on the target: %s; "+
			"following stopped, and the target holds the source's writes up to offset %d: %w",
		name, at, why, f.base+f.applied.Load(), ErrUnsupported))
}

// flush commits the queued commands (commit) and records them applied: the source
// replicates only writes it made, so any error means the target cannot hold what the
// source holds.
func (a *applier) flush(ctx context.Context) error {
	f := a.f
	if len(a.batch) > 0 {
		if err := a.commit(ctx); err != nil {
			return err
		}
		f.st.commands.Add(int64(countCommands(a.cmds)))
		a.batch, a.cmds = a.batch[:0], a.cmds[:0]
	}
	f.applied.Store(a.pos)
	f.setOffset(f.base + a.pos)
	f.sp.lag(a.pos)  // forgets the arrivals of what is applied
	f.sp.free(a.pos) // and the disk space it took
	return nil
}

// countCommands counts the writes applied: SELECT, MULTI and EXEC left out.
func countCommands(cmds []streamCommand) int {
	n := 0
	for _, c := range cmds {
		if c.name != "MULTI" && c.name != "EXEC" && c.name != "SELECT" {
			n++
		}
	}
	return n
}

// inMultiAt reports whether command i of the batch is inside a transaction (after its MULTI).
func (a *applier) inMultiAt(i int) bool {
	for k := i; k >= 0; k-- {
		switch a.cmds[k].name {
		case "MULTI":
			return true
		case "EXEC":
			return k != i
		}
	}
	return false
}

// read parses one command of the stream (an array of bulk strings) and returns it with
// the bytes it took.
func (a *applier) read() ([]string, int64, error) {
	line, n, err := a.line()
	if err != nil {
		return nil, 0, err
	}
	if len(line) == 0 {
		return nil, n, nil
	}
	if line[0] != '*' {
		// An inline command: a bare newline, or words.
		return strings.Fields(line), n, nil
	}
	count, err := strconv.Atoi(line[1:])
	if err != nil || count < 0 {
		return nil, 0, fmt.Errorf("%w: bad array header %q in the replication stream", ErrCorruptRDB, line)
	}
	a.args = a.args[:0]
	for range count {
		h, hn, err := a.line()
		if err != nil {
			return nil, 0, err
		}
		n += hn
		if len(h) == 0 || h[0] != '$' {
			return nil, 0, fmt.Errorf("%w: bad bulk header %q in the replication stream", ErrCorruptRDB, h)
		}
		size, err := strconv.Atoi(h[1:])
		if err != nil || size < 0 {
			return nil, 0, fmt.Errorf("%w: bad bulk header %q in the replication stream", ErrCorruptRDB, h)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(a.br, buf); err != nil {
			return nil, 0, err
		}
		n += int64(size + 2)
		a.args = append(a.args, string(buf[:size]))
	}
	return a.args, n, nil
}

// line reads one CRLF-terminated line, returning it without the line end.
func (a *applier) line() (string, int64, error) {
	b, err := a.br.ReadString('\n')
	if err != nil {
		return "", 0, err
	}
	return strings.TrimRight(b, "\r\n"), int64(len(b)), nil
}

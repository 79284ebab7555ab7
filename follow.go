package migrate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// ErrFollowLost means a following migration lost the source's replication stream and
// cannot continue it: the link dropped and the source no longer holds the writes since
// then in its replication backlog (repl-backlog-size), or it only speaks SYNC, which cannot
// continue. The target holds the writes up to the offset the Report gives; the wrapping
// error says what to do.
var ErrFollowLost = errors.New("replication stream lost")

// refuseFollow returns an error wrapping ErrUnsupported when WithFollow is given to a
// strategy that copies one moment only.
func refuseFollow(j *Job, strategy string) error {
	if j.Follow == nil {
		return nil
	}
	return fmt.Errorf("%s copies the keys as they are at one moment and cannot follow the writes after the copy (WithFollow); "+
		"Snapshot{} follows them through the source's replication stream, Replication{} makes the target a replica, "+
		"DumpRestore{} through its keyspace notifications: %w",
		strategy, ErrUnsupported)
}

// checkFollow refuses, when WithFollow is given, what a following Snapshot does not do.
func (s Snapshot) checkFollow(j *Job) error {
	if j.Follow == nil {
		return nil
	}
	why := ""
	switch {
	case s.FromFile != "" || s.ToFile != "":
		why = "FromFile and ToFile hold one moment; a following Snapshot reads the source's replication stream and restores"
	case j.Conflict == Skip:
		why = "WithConflict(Skip) keeps keys of the target that the source's writes would then change, mixing both; use Fail or Replace with WithFollow"
	case len(j.Types) > 0:
		why = "a following Snapshot cannot filter the stream of writes by type (WithTypes): a command does not say the type of the keys it changes " +
			"(DEL, EXPIRE, RENAME, ...), and the type a key had at the copy may change after it; use WithMatch to select keys by name"
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%s: %w", why, ErrUnsupported)
}

// followStats are what Progress and the Report say about following.
type followStats struct {
	following atomic.Bool
	commands  atomic.Int64 // commands applied
	offset    atomic.Int64 // the source's replication offset the target holds
	// lag returns the bytes of the stream received and not applied, and when the oldest
	// of them arrived (zero when none).
	lag func() (int64, time.Time)

	// A DumpRestore following keyspace notifications (follow_notify.go): keys waiting to
	// be copied again (nil otherwise), keys deleted because the source no longer had them,
	// and its repair passes.
	lagKeys          func() int64
	deleted          atomic.Int64
	repairs, rewalks atomic.Int64
}

// followProgress fills the following fields of p.
func (j *Job) followProgress(p *Progress) {
	st := j.followed.Load()
	if st == nil {
		return
	}
	p.Following = st.following.Load()
	p.Commands = st.commands.Load()
	var oldest time.Time
	if p.LagBytes, oldest = st.lag(); !oldest.IsZero() {
		p.LagAge = time.Since(oldest)
	}
	if st.lagKeys != nil {
		p.LagKeys = st.lagKeys()
	}
}

// followReport returns the Report's following fields.
func (j *Job) followReport() (commands, offset int64) {
	if st := j.followed.Load(); st != nil {
		return st.commands.Load(), st.offset.Load()
	}
	return 0, 0
}

// follower follows one server's replication stream: the source, or one master of a
// cluster source. It holds the replication connection, the spool it fills, and what has
// been received and applied.
type follower struct {
	s  Snapshot
	j  *Job
	sp *spool
	st *followStats

	src   *Endpoint        // the server followed
	node  string           // its address, on a cluster source; "" for a standalone one
	owned *[slotCount]bool // on a cluster source, the slots its master served at the start
	gate  *cutoverGate

	mu sync.Mutex
	rs *replStream // the current replication connection

	replID string // "" when the source only speaks SYNC
	base   int64  // the source's offset where the stream after the RDB starts
	// continued says the stream continues an interrupted run's (WithCheckpoint): no RDB
	// comes, and the target's offset key says where it stands.
	continued bool
	startDB   int // the source database of the stream where a continued stream starts
	// slotEnd is, on a cluster target, the source offset each slot's offset key holds (-1
	// none): see commitSlots. nil until one is written or read.
	slotEnd *[slotCount]int64

	applied  atomic.Int64  // bytes of the stream applied (or skipped: PING, REPLCONF)
	reported int64         // the offset this follower added to followStats.offset
	rdbDone  chan struct{} // closed once the whole RDB is in the spool
	finished chan struct{} // closed when following ends, before the connection closes
	once     sync.Once
}

// setOffset records the source offset the target holds of this follower's stream; on a
// cluster source the Report's offset is the sum of every master's.
func (f *follower) setOffset(off int64) {
	f.st.offset.Add(off - f.reported)
	f.reported = off
}

// finish ends following: the receiver stops, and the connection closes.
func (f *follower) finish() {
	f.once.Do(func() {
		close(f.finished)
		f.mu.Lock()
		f.rs.Close()
		f.mu.Unlock()
	})
}

// cutoverGate calls the cutover function once every follower has caught up with its
// source, and tells them all what it returned.
type cutoverGate struct {
	mu      sync.Mutex
	waiting int // followers not caught up yet
	done    chan struct{}
	err     error
}

// caughtUp says that one more follower has caught up; the last one starts the cutover
// function in g.
func (c *cutoverGate) caughtUp(ctx context.Context, g *errgroup.Group, j *Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting--
	if c.waiting != 0 {
		return
	}
	j.Logger.Info("follow: the target caught up; calling the cutover function")
	g.Go(func() error {
		// Once called, the application may write to the target: a resumed run must know.
		if c.err = j.checkpoint.cutover(ctx); c.err == nil {
			c.err = j.Follow(ctx)
		}
		close(c.done)
		return nil
	})
}

// follow copies the snapshot and follows the stream after it; see WithFollow. From a
// cluster source it follows every master that serves slots, each stream applied in its
// own order (see followSources).
func (s Snapshot) follow(ctx context.Context, j *Job) (err error) {
	srcs, owned, err := followSources(ctx, j)
	if err != nil {
		return err
	}
	st := &followStats{}
	gate := &cutoverGate{waiting: len(srcs), done: make(chan struct{})}
	var fs []*follower
	defer func() {
		for _, f := range fs {
			f.finish()
			f.sp.remove()
		}
	}()
	resumed, at := j.checkpoint.snapshotResumed()
	if resumed && at != nil {
		if fs, err = s.continueFollow(ctx, j, st, gate, srcs, owned); err != nil {
			return err
		}
	}
	if resumed && len(fs) == 0 {
		if err := s.restartResumed(ctx, j); err != nil {
			return err
		}
	}
	continued := len(fs) > 0
	if !continued {
		if fs, err = s.openFollowers(ctx, j, st, gate, srcs, owned); err != nil {
			return err
		}
	}
	if j.Source.Cluster() {
		if err := checkSlotsKept(ctx, j, srcs, owned); err != nil {
			return err
		}
	}
	st.lag = func() (lag int64, oldest time.Time) {
		for _, f := range fs {
			n, at := f.sp.lag(f.applied.Load())
			lag += n
			if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
				oldest = at
			}
		}
		return lag, oldest
	}
	j.followed.Store(st)

	g, gctx := errgroup.WithContext(ctx)
	for _, f := range fs {
		g.Go(func() error { return f.receive(gctx) })
		g.Go(func() error { return f.acknowledge(gctx) })
	}
	g.Go(func() error {
		// A continued stream's snapshot was restored by the interrupted run.
		if !continued {
			err := s.restoreFollowed(gctx, j, fs)
			if err == nil {
				err = startFollowing(gctx, j, fs)
			}
			if err != nil {
				for _, f := range fs {
					f.finish()
				}
				return err
			}
		}
		for _, f := range fs {
			g.Go(func() error {
				defer f.finish()
				return f.apply(gctx, g)
			})
		}
		return nil
	})
	err = g.Wait()
	if err == nil && j.Source.Cluster() {
		// A slot that moved while following, even without a write the streams showed.
		err = checkSlotsKept(ctx, j, srcs, owned)
	}
	switch {
	case err == nil:
		// Complete before the offset key goes: a run killed in between must not start over
		// onto a target the application already writes to.
		if err = j.checkpoint.completed(ctx); err == nil {
			for _, f := range fs {
				f.dropOffsetKey(ctx)
			}
		}
	case j.checkpoint == nil:
		// Nothing resumes from it.
		for _, f := range fs {
			f.dropOffsetKey(ctx)
		}
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// openFollowers connects to each server followed (the source, or each master of a cluster
// source, with the slots it serves) as a replica that wants the snapshot and the stream
// after it, each spooled to a file of its own. The followers it returns with an error are
// the caller's to close.
func (s Snapshot) openFollowers(ctx context.Context, j *Job, st *followStats, gate *cutoverGate, srcs []*Endpoint, owned []*[slotCount]bool) ([]*follower, error) {
	var fs []*follower
	for i, e := range srcs {
		rs, err := openReplicationWith(ctx, e, j.Logger, replOptions{follow: true})
		if err != nil {
			return fs, ctxErr(ctx, err)
		}
		sp, err := newSpool(j.SpoolDir, rs.rdbLen, rs.eofMark)
		if err != nil {
			rs.Close()
			return fs, err
		}
		f := &follower{
			s: s, j: j, sp: sp, st: st, rs: rs, replID: rs.replID, base: rs.offset, src: e, owned: owned[i], gate: gate,
			rdbDone: make(chan struct{}), finished: make(chan struct{}),
		}
		if owned[i] != nil {
			f.node = e.Addr
		}
		fs = append(fs, f)
		if rs.replID == "" {
			j.Logger.Warn("snapshot: follow: the source answered SYNC, not PSYNC: a dropped link cannot be continued, and the migration will fail then", "source", e.Addr)
		}
		j.Logger.Info("snapshot: follow: spooling the replication stream", "source", e.Addr, "path", sp.path, "offset", f.base)
	}
	return fs, nil
}

// restoreFollowed restores the RDB of every follower's spool, through one restorer; each
// keeps the keys of its slots on a cluster source.
func (s Snapshot) restoreFollowed(ctx context.Context, j *Job, fs []*follower) error {
	r, err := newRestorer(ctx, j)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan restoreBatch, j.Concurrency)
	dbs := newSnapshotDBs(j)
	var readers sync.WaitGroup
	for _, f := range fs {
		readers.Add(1)
		g.Go(func() error {
			defer readers.Done()
			rd := f.sp.rdbReader(gctx)
			in := &snapshotInput{
				Reader: rd, complete: func() error { return nil }, close: rd.Close,
				fail: func(op string, err error) error { return f.src.Err(op+" of the replication snapshot", "", err) },
			}
			defer in.Close()
			defer context.AfterFunc(gctx, in.Close)()
			return s.read(gctx, j, in, batches, dbs, f.owned)
		})
	}
	go func() {
		readers.Wait()
		close(batches)
	}()
	startRestorers(gctx, g, j.Concurrency, r, batches)
	return g.Wait()
}

// followSources returns the servers whose streams a following Snapshot reads: the source,
// or every master of a cluster source with the slots it serves now (nil for a standalone
// one).
func followSources(ctx context.Context, j *Job) ([]*Endpoint, []*[slotCount]bool, error) {
	if !j.Source.Cluster() {
		return []*Endpoint{j.Source}, []*[slotCount]bool{nil}, nil
	}
	t, err := j.Source.topology(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(t.migrating) > 0 {
		return nil, nil, j.Source.Err("check slots", "", unsupported(
			"%d slot(s) of the source cluster are being moved (CLUSTER SETSLOT MIGRATING); a following Snapshot follows each master for the slots it serves: run once the resharding is done",
			len(t.migrating)))
	}
	ids, slots := t.masters()
	var eps []*Endpoint
	var owned []*[slotCount]bool
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			return nil, nil, j.Source.Err("connect for replication", "", fmt.Errorf(
				"master %s, which serves %d slot(s), is failing; run again once the cluster has promoted a replica", n.addr, len(slots[id])))
		}
		o := new([slotCount]bool)
		for _, sl := range slots[id] {
			o[sl] = true
		}
		eps = append(eps, j.Source.nodeEndpoint(n.addr))
		owned = append(owned, o)
	}
	return eps, owned, nil
}

// checkSlotsKept fails when a slot of the cluster source moved since followSources read
// who serves it, before every master's snapshot started.
func checkSlotsKept(ctx context.Context, j *Job, srcs []*Endpoint, owned []*[slotCount]bool) error {
	t, err := j.Source.topology(ctx)
	if err != nil {
		return err
	}
	for i, e := range srcs {
		for sl, mine := range owned[i] {
			if mine && (t.ownerAddr(uint16(sl)) != e.Addr || len(t.migrating) > 0) {
				return slotMoved(j, uint16(sl), e.Addr)
			}
		}
	}
	return nil
}

// slotMoved is the error of a slot of a cluster source that left the master followed for it.
func slotMoved(j *Job, slot uint16, addr string) error {
	return j.Source.Err("follow", "", fmt.Errorf(
		"slot %d, which master %s served when the migration started, moved (or a resharding started) while following; "+
			"a following Snapshot follows each master for the slots it served at the start, and cannot follow a resharding: "+
			"migrate again once it is done: %w", slot, addr, ErrUnsupported))
}

// syncOnly reports whether the source speaks SYNC only, and tells no offsets.
func (f *follower) syncOnly() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replID == ""
}

// conn returns the current replication connection.
func (f *follower) conn() *replStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rs
}

// receive appends what the source sends to the spool, at the source's pace, and
// reconnects after a dropped link. What stops it is told to the spool's readers.
func (f *follower) receive(ctx context.Context) error {
	buf := make([]byte, 64<<10)
	rdbDone := f.continued
	for {
		rs := f.conn()
		n, err := rs.br.Read(buf)
		if n > 0 {
			done, werr := f.sp.append(buf[:n])
			if werr != nil {
				f.sp.fail(werr)
				return werr
			}
			if done && !rdbDone {
				rdbDone = true
				close(f.rdbDone)
			}
		}
		if err == nil {
			continue
		}
		select {
		case <-f.finished:
			return nil
		default:
		}
		if ctx.Err() != nil {
			f.sp.fail(ctx.Err())
			return nil
		}
		if err := f.reconnect(ctx, rdbDone, err); err != nil {
			f.sp.fail(err)
			return nil // the applier returns it once it applied what arrived
		}
	}
}

// reconnect continues the stream on a new connection after the link dropped with cause.
func (f *follower) reconnect(ctx context.Context, rdbDone bool, cause error) error {
	e, log := f.src, f.j.Logger
	if !rdbDone {
		return e.Err("receive the replication snapshot", "", fmt.Errorf(
			"the link dropped before the whole snapshot arrived (%v); migrate again", cause))
	}
	if f.syncOnly() {
		return e.Err("follow", "", fmt.Errorf(
			"the replication link dropped (%v), and the source speaks SYNC only, which cannot continue a stream; "+
				"the target holds the writes up to the point the Report gives: %w", cause, ErrFollowLost))
	}
	at := f.base + f.sp.received() + 1
	log.Warn("snapshot: follow: the replication link dropped; continuing", "source", e.Addr, "error", cause, "offset", at)
	var last error
	for attempt := range 10 {
		if attempt > 0 {
			if err := sleepCtx(ctx, time.Duration(min(attempt, 5))*200*time.Millisecond); err != nil {
				return err
			}
		}
		f.mu.Lock()
		id := f.replID
		f.mu.Unlock()
		rs, err := openReplicationWith(ctx, e, log, replOptions{follow: true, replID: id, offset: at})
		if err == nil {
			f.mu.Lock()
			select {
			case <-f.finished:
				rs.Close()
			default:
				f.rs.Close()
				f.rs, f.replID = rs, rs.replID
			}
			f.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrFollowLost) || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return e.Err("follow", "", fmt.Errorf("the replication link dropped (%v) and could not be opened again: %w", cause, last))
}

// acknowledge tells the source, once the RDB has arrived and then every second, how far the
// target has applied the stream (REPLCONF ACK): the source then keeps the link (its
// repl-timeout), starts the stream after a diskless RDB, and INFO replication and WAIT
// there see the migration's progress.
func (f *follower) acknowledge(ctx context.Context) error {
	select {
	case <-f.rdbDone:
	case <-f.finished:
		return nil
	case <-ctx.Done():
		return nil
	}
	// After a diskless RDB the source starts the stream at the first acknowledgement it
	// gets once it has seen the transfer through, a moment after the last byte; until then
	// it buffers the writes for us. Acknowledge often until the stream flows.
	eager := time.NewTicker(10 * time.Millisecond)
	defer eager.Stop()
	for start := time.Now(); f.sp.received() == 0 && time.Since(start) < 2*time.Second; {
		f.ack()
		select {
		case <-eager.C:
		case <-f.finished:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	eager.Stop()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		f.ack()
		select {
		case <-t.C:
		case <-f.finished:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// ack sends REPLCONF ACK with the offset applied. A failure is the receiver's to find.
func (f *follower) ack() {
	off := strconv.FormatInt(f.base+f.applied.Load(), 10)
	if err := f.conn().send("REPLCONF", "ACK", off); err != nil {
		f.j.Logger.Debug("snapshot: follow: REPLCONF ACK failed", "error", err)
	}
}

// sourceOffset reads the source's master_repl_offset: every write it accepted so far.
func (f *follower) sourceOffset(ctx context.Context) (int64, error) {
	var c rueidis.Client
	var err error
	if f.node != "" {
		c, err = f.j.Source.node(f.node) // this master, not the cluster client's pick
	} else {
		c, err = f.j.Source.Default()
	}
	if err != nil {
		return 0, err
	}
	text, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return 0, f.src.Err("info replication", "", err)
	}
	v, ok := parseInfo(text).Fields["master_repl_offset"]
	n, perr := strconv.ParseInt(v, 10, 64)
	if !ok || perr != nil {
		return 0, f.src.Err("info replication", "", fmt.Errorf("INFO has no master_repl_offset; the final catch-up cannot be measured"))
	}
	return n, nil
}

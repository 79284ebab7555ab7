package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
)

// A following DumpRestore (WithFollow) follows a source that refuses PSYNC through its
// keyspace notifications: it subscribes to the notifications of the selected databases
// before its walk starts, queues each key they name (once, however often it is named), and
// once the walk is done copies each queued key again from the source's current value, or
// deletes it on the target when the source no longer has it. Notifications are delivered at
// most once, so anything that may have lost some (a dropped subscription, a full queue) and
// the writes that name no key (FLUSHDB, FLUSHALL, SWAPDB) lead to a repair pass: every
// selected key copied again, and the target's keys that the source no longer has deleted.
// A run resumed from a checkpoint missed every notification sent while no run listened: it
// subscribes, finishes the interrupted walk, and starts with such a pass.

// notifyQueueLimit bounds the keys waiting to be copied again; past it the names are
// dropped for a repair pass over every selected key, which covers them. A variable for
// the tests only.
var notifyQueueLimit = 1 << 17

// notifyWatchEvery is how often the subscriptions are pinged (a dead link shows within
// notifyIdleTimeout) and INFO commandstats read for FLUSHDB, FLUSHALL and SWAPDB.
const (
	notifyWatchEvery  = 250 * time.Millisecond
	notifyIdleTimeout = 5 * time.Second
)

// notifyFollow is one following DumpRestore: what it copied, what waits to be copied again,
// and why a repair pass is due.
type notifyFollow struct {
	d  DumpRestore
	j  *Job
	rj *Job // the follow's own Job: Replace (the conflict policy is the initial copy's), its own counters
	st *followStats
	q  *keyQueue

	r *restorer // writes with REPLACE, counts into rj

	flags  string // the source's notify-keyspace-events
	subsMu sync.Mutex
	subs   map[string]*subscription // by the address of the server subscribed to
	lost   chan error               // a subscription dropped, and why
	// gap says a subscription dropped and is not made again yet: notifications may be
	// missing, and no marker proves anything.
	gap   atomic.Bool
	spawn func(func() error) // runs a subscription's reader beside the follow
	// subCtx is the subscriptions' context: they close when it ends.
	subCtx context.Context
	// repair holds why a repair pass is due, "" when none; set after a loss once the
	// subscription is back, so that the pass sees every write the notifications missed.
	repairMu sync.Mutex
	repair   string
	wake     chan struct{} // tells the worker something changed

	flushes int64 // FLUSHDB, FLUSHALL and SWAPDB calls seen in INFO commandstats

	// checked are the servers whose flags were checked when the follow began, by address; a
	// master that joins a cluster source later is checked before it is subscribed to.
	checked map[string]bool
}

// follow copies the selected keys and follows the source's writes through keyspace
// notifications until the cutover function returns; see WithFollow and DumpRestore.
func (d DumpRestore) follow(ctx context.Context, j *Job) (err error) {
	putBack, err := setNotifications(ctx, j)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, putBack()) }()
	nodes, err := sourceNotifyFlags(ctx, j.Source)
	if err != nil {
		return err
	}
	flags := "K" // keyspace channels, unless a server notifies on keyevent ones only
	for _, n := range nodes {
		if !strings.Contains(n.value, "K") {
			flags = "E"
		}
	}
	if probeWanted(nodes) {
		// The flags cannot be read: the probe says which channels carry every class.
		servers, err := notifyServers(ctx, j.Source)
		if err != nil {
			return err
		}
		if flags, err = probeNotifications(ctx, j, servers); err != nil {
			return err
		}
	}
	if !j.checkpoint.isResumed() {
		if err := refuseHeldTargetKeys(ctx, j); err != nil {
			return err
		}
	}
	n := &notifyFollow{d: d, j: j, st: &followStats{}, q: newKeyQueue(notifyQueueLimit), wake: make(chan struct{}, 1)}
	n.rj = &Job{Source: j.Source, Target: j.Target, Settings: j.Settings, Filtered: j.Filtered, limiter: j.limiter, start: j.start}
	n.rj.Conflict = Replace
	if n.r, err = newRestorer(ctx, n.rj); err != nil {
		return err
	}
	n.q.wake = n.wake
	n.st.lag = func() (int64, time.Time) { return 0, n.q.oldest() }
	n.st.lagKeys = n.q.len
	if n.flushes, err = n.flushCalls(ctx); err != nil {
		return err
	}
	n.flags, n.subs, n.lost = flags, map[string]*subscription{}, make(chan error, 1)
	n.checked = map[string]bool{}
	for _, node := range nodes {
		n.checked[node.addr] = true
	}
	defer n.keepIncompatible()

	g, gctx := errgroup.WithContext(ctx)
	// The readers and the watcher stop with the worker.
	wctx, stopWatching := context.WithCancel(gctx)
	defer stopWatching()
	n.spawn, n.subCtx = func(read func() error) { g.Go(read) }, wctx
	defer n.closeSubscriptions()
	if err := n.subscribe(wctx, false, nil); err != nil {
		stopWatching()
		n.closeSubscriptions()
		_ = g.Wait() // the readers of those made
		return err
	}
	j.followed.Store(n.st)
	walked := make(chan struct{})
	g.Go(func() error { return n.watch(wctx, walked) })
	resumed := j.checkpoint.isResumed()
	g.Go(func() error {
		defer stopWatching()
		if err := n.walk(gctx, resumed); err != nil {
			return err
		}
		close(walked)
		if resumed {
			// The keys the interrupted runs wrote may have changed since, unnotified.
			n.needRepair("resumed from a checkpoint: the writes made while no run listened were not notified")
		}
		n.st.following.Store(true)
		j.Logger.Info("dump-restore: follow: the initial copy is done; copying the keys written since", "queued", n.q.len())
		return n.work(gctx, g)
	})
	err = g.Wait()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// walk copies the selected keys: the walk of WithFollow's initial copy, or, when resumed
// from a checkpoint (WithCheckpoint), the rest of the interrupted run's walk. The keys an
// interrupted run wrote are the migration's own, and the source may have changed them since:
// when the target held no key in the databases written when the migration first started
// (the checkpoint says), every key the resumed walk meets there is one, and it writes with
// REPLACE; otherwise it keeps the conflict policy, under which a key that holds the source's
// value is no conflict.
func (n *notifyFollow) walk(ctx context.Context, resumed bool) error {
	j := n.j
	policy := j.Conflict
	if !resumed || policy == Replace || !j.checkpoint.targetEmptyAtStart(j) {
		err := n.d.copyAll(ctx, j)
		if resumed && errors.Is(err, ErrConflict) {
			err = fmt.Errorf("%w (this run resumed a following DumpRestore whose target held keys when the migration first started, "+
				"so a key the interrupted run wrote and the source changed since cannot be told from the target's own: "+
				"compare the key, or remove the checkpoint and migrate again with WithConflict(Replace))", err)
		}
		return err
	}
	j.Conflict = Replace // read by the restorer only while copyAll runs
	defer func() { j.Conflict = policy }()
	return n.d.copyAll(ctx, j)
}

// needRepair asks the worker for a repair pass, for why.
func (n *notifyFollow) needRepair(why string) {
	n.repairMu.Lock()
	if n.repair == "" {
		n.repair = why
	}
	n.repairMu.Unlock()
	n.signal()
}

// takeRepair returns why a repair pass is due ("" when none) and clears it; the queue is
// emptied with it, the pass covering every name it held.
func (n *notifyFollow) takeRepair() string {
	n.repairMu.Lock()
	defer n.repairMu.Unlock()
	why := n.repair
	if why == "" && n.q.takeOverflow() {
		why = "overflow"
	}
	if why != "" {
		n.q.clear()
	}
	n.repair = ""
	return why
}

func (n *notifyFollow) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// work copies the queued keys again, runs repair passes, calls the cutover function once
// the target holds every write notified until a moment (a marker), and returns once it
// holds every write notified until the cutover returned. g runs the cutover function.
func (n *notifyFollow) work(ctx context.Context, g *errgroup.Group) error {
	j := n.j
	gate := &cutoverGate{waiting: 1, done: make(chan struct{})}
	cutover := gate.done
	started, returned := false, false
	var marks <-chan int64  // the queue position of the marker sent, when one is in flight
	markAt := int64(-1)     // the queue position the target must reach, once a marker came back
	var markAgain time.Time // when a marker that did not come back may be sent again
	tick := time.NewTicker(notifyWatchEvery)
	defer tick.Stop()
	// event takes what happened: a marker's reply, the cutover's return; block waits for
	// one, or for a new key or a tick.
	event := func(block bool) error {
		var idle <-chan time.Time
		var woken <-chan struct{}
		if block {
			idle, woken = tick.C, n.wake
		} else {
			closed := make(chan time.Time)
			close(closed)
			idle = closed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case at, ok := <-marks:
			marks = nil
			if ok {
				markAt = at
			} else {
				markAgain = time.Now().Add(notifyWatchEvery) // a subscription dropped: once it is back
			}
		case <-cutover:
			cutover = nil
			if err := gate.err; err != nil {
				return fmt.Errorf("the cutover function (WithFollow) failed; following stopped, the target holds the source's writes notified until then: %w", err)
			}
			returned, marks, markAt = true, nil, -1
			j.Logger.Info("dump-restore: follow: cutover done; copying the writes notified until now")
		case <-woken:
		case <-idle:
		}
		return nil
	}
	for {
		if err := event(false); err != nil {
			return err
		}
		if why := n.takeRepair(); why != "" {
			if err := n.repairPass(ctx, why); err != nil {
				return err
			}
			if markAt < 0 {
				marks = nil // its connection may be gone: a new marker is sent
			}
			continue
		}
		// Every key notified before the marker is on the target once the queue holds only
		// keys named since.
		if markAt >= 0 && n.q.reached(markAt) && !n.gap.Load() {
			markAt = -1
			switch {
			case !started:
				started = true
				gate.caughtUp(ctx, g, j)
			case returned:
				// A flush between the last reading and the marker is a write the
				// notifications do not show; a master that began to serve slots, a server
				// whose notifications were not read.
				if err := n.finalFlushCheck(ctx); err != nil {
					return err
				}
				if n.j.Source.Cluster() {
					if err := n.subscribe(ctx, true, nil); err != nil {
						return err
					}
				}
				if n.repairDue() {
					continue
				}
				j.Logger.Info("dump-restore: follow: the target holds every write notified until the cutover returned", "copied_again", n.st.commands.Load())
				return nil
			}
		}
		if marks == nil && markAt < 0 && (!started || returned) && time.Now().After(markAgain) {
			marks = n.mark()
		}
		if keys := n.q.take(j.BatchLimit()); len(keys) > 0 {
			if err := n.copyAgain(ctx, keys); err != nil {
				return err
			}
			continue
		}
		if err := event(true); err != nil {
			return err
		}
	}
}

// finalFlushCheck is checkFlushes once the cutover returned, which on a cluster source
// waits for a master failing over, as clusterRetry says.
func (n *notifyFollow) finalFlushCheck(ctx context.Context) error {
	var wait clusterRetry
	for {
		err := n.checkFlushes(ctx)
		if err == nil || !n.j.Source.Cluster() {
			return err
		}
		if werr := wait.wait(ctx); werr != nil {
			if _, ok := werr.(*clusterWaitError); ok {
				return err
			}
			return werr
		}
	}
}

// repairDue reports whether a repair pass waits.
func (n *notifyFollow) repairDue() bool {
	n.repairMu.Lock()
	defer n.repairMu.Unlock()
	return n.repair != ""
}

// copyAgain copies queued keys again from the source, with their current value and
// expiry, or deletes them on the target when the source no longer has them (or they are no
// longer of a selected type).
func (n *notifyFollow) copyAgain(ctx context.Context, keys []queuedKey) error {
	byDB := map[int][]string{}
	for _, k := range keys {
		byDB[k.db] = append(byDB[k.db], k.key)
	}
	for db, names := range byDB {
		if err := n.copyKeys(ctx, db, names); err != nil {
			return err
		}
		n.st.commands.Add(int64(len(names)))
	}
	return nil
}

// copyKeys copies keys of source database db again, through the follow's own Job: the
// restorer writes them with REPLACE. What the source no longer has is deleted on the target.
// A cluster on either side that fails over or moves slots meanwhile is waited for, as
// clusterRetry says, and the keys copied again.
func (n *notifyFollow) copyKeys(ctx context.Context, db int, keys []string) error {
	var wait clusterRetry
	for {
		err := n.copyKeysOnce(ctx, db, keys)
		if err == nil || !(n.j.Source.Cluster() || n.j.Target.Cluster()) || !retryable(ctx, err) {
			return err
		}
		n.j.Logger.Info("dump-restore: follow: a cluster is failing over or moving slots; copying again", "error", err)
		if werr := wait.wait(ctx); werr != nil {
			if _, ok := werr.(*clusterWaitError); ok {
				return err
			}
			return werr
		}
	}
}

// copyKeysOnce is one try of copyKeys.
func (n *notifyFollow) copyKeysOnce(ctx context.Context, db int, keys []string) error {
	j := n.rj
	src, err := j.Source.Client(db)
	if err != nil {
		return err
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		if len(j.Types) > 0 {
			cmds[i] = src.B().Type().Key(k).Build()
		} else {
			cmds[i] = src.B().Exists().Key(k).Build()
		}
	}
	var present, gone []string
	for i, res := range src.DoMulti(ctx, cmds...) {
		if len(j.Types) > 0 {
			typ, err := res.ToString()
			if err != nil {
				return j.Source.Err(fmt.Sprintf("type in db %d", db), keys[i], ctxErr(ctx, err))
			}
			if typ != "none" && slices.Contains(j.Types, typ) {
				present = append(present, keys[i])
			} else {
				gone = append(gone, keys[i])
			}
			continue
		}
		n, err := res.AsInt64()
		if err != nil {
			return j.Source.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if n > 0 {
			present = append(present, keys[i])
		} else {
			gone = append(gone, keys[i])
		}
	}
	if len(present) > 0 {
		r := n.r
		rd := &dumper{j: j, src: src, db: db}
		rd.mget.Store(r.setStrings && (len(j.Types) == 0 || slices.Contains(j.Types, "string")))
		out, err := rd.read(ctx, present)
		if err != nil {
			return err
		}
		err = r.restore(ctx, db, out)
		releaseBatch(out)
		if err != nil {
			return err
		}
	}
	if len(gone) == 0 {
		return nil
	}
	tdb := j.TargetDB(db)
	tc, err := j.Target.Client(tdb)
	if err != nil {
		return err
	}
	dels := make(rueidis.Commands, len(gone))
	for i, k := range gone {
		dels[i] = tc.B().Del().Key(j.TargetKey(db, k)).Build()
	}
	for i, res := range tc.DoMulti(ctx, dels...) {
		if err := res.Error(); err != nil {
			return j.Target.Err(fmt.Sprintf("del in db %d", tdb), j.TargetKey(db, gone[i]), ctxErr(ctx, err))
		}
	}
	n.st.deleted.Add(int64(len(gone)))
	return nil
}

// repairPass copies every selected key of the source again and deletes on the target the
// selected keys the source no longer has: after a loss of notifications, a full queue, or
// a write that names no key. The queue was emptied when the pass was taken; writes during
// the pass are queued and copied after it.
func (n *notifyFollow) repairPass(ctx context.Context, why string) error {
	j := n.j
	if why == "overflow" {
		n.st.rewalks.Add(1)
		j.Logger.Warn("dump-restore: follow: more keys were written than the queue holds; copying every selected key again", "queue_limit", n.q.limit)
	} else {
		n.st.repairs.Add(1)
		j.Logger.Warn("dump-restore: follow: notifications may have been lost; comparing and repairing every selected key", "why", why)
	}
	start := time.Now()
	for _, db := range j.Databases {
		walk := func(ctx context.Context, emit func([]string) error) error {
			return j.scan(ctx, j.Source, db, false, emit)
		}
		if err := fanOut(ctx, j.Concurrency, walk, func(ctx context.Context, keys []string) error {
			return n.copyKeys(ctx, db, keys)
		}); err != nil {
			return err
		}
	}
	// The target's keys that map to a selected source key: those the source no longer has
	// are deleted (copyKeys finds them gone).
	if err := j.selectedTargetKeys(ctx, j.Concurrency, func(ctx context.Context, bySource map[int][]string) error {
		for sdb, names := range bySource {
			if err := n.goneOnly(ctx, sdb, names); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	j.Logger.Info("dump-restore: follow: repair pass done", "why", why, "took", time.Since(start))
	return nil
}

// errInScope stops refuseHeldTargetKeys's walk at the first key found.
var errInScope = errors.New("a key in scope")

// refuseHeldTargetKeys refuses a following DumpRestore whose target already holds keys that
// its repair passes would delete when the source lacks them (a selected database, a name
// WithMatch selects): such a pass cannot tell the target's own keys from those the migration
// wrote, and nothing is destroyed by surprise.
func refuseHeldTargetKeys(ctx context.Context, j *Job) error {
	var sdb int
	var held string
	err := j.selectedTargetKeys(ctx, 1, func(_ context.Context, bySource map[int][]string) error {
		for db, names := range bySource {
			sdb, held = db, names[0]
			return errInScope
		}
		return nil
	})
	if errors.Is(err, errInScope) {
		tdb := j.TargetDB(sdb)
		return j.Target.Err(fmt.Sprintf("scan db %d", tdb), j.TargetKey(sdb, held), unsupported(
			"the target already holds keys among those selected (database %d); a DumpRestore that follows "+
				"the source repairs lost notifications by deleting the selected keys the source lacks, and cannot tell "+
				"the target's own keys from those it wrote: empty that database of the target, narrow the selection "+
				"(WithMatch, WithDatabases, WithDBPrefix), or follow with Snapshot", tdb))
	}
	return err
}

// selectedTargetKeys walks the target's keys that map to a selected source key (of a
// selected database, with a name WithMatch selects), with workers at once, and hands fn
// each page's as source names by source database.
func (j *Job) selectedTargetKeys(ctx context.Context, workers int, fn func(ctx context.Context, bySource map[int][]string) error) error {
	seen := map[int]bool{}
	for _, db := range j.Databases {
		tdb := j.TargetDB(db)
		if seen[tdb] {
			continue
		}
		seen[tdb] = true
		match := j.Match
		if j.DBPrefix != "" {
			match = "" // target names carry a prefix; Match applies to the source's names
		}
		walk := func(ctx context.Context, emit func([]string) error) error {
			return j.scanMatch(ctx, j.Target, tdb, match, false, emit)
		}
		if err := fanOut(ctx, workers, walk, func(ctx context.Context, keys []string) error {
			bySource := map[int][]string{}
			for _, k := range keys {
				dbs, names := j.SourceKeys(tdb, k)
				for i, sdb := range dbs {
					if j.Match == "" || globMatch(j.Match, names[i]) {
						bySource[sdb] = append(bySource[sdb], names[i])
					}
				}
			}
			if len(bySource) == 0 {
				return nil
			}
			return fn(ctx, bySource)
		}); err != nil {
			return err
		}
	}
	return nil
}

// goneOnly deletes on the target those of keys (of source database db) that the source no
// longer has; the others were copied by the pass's walk of the source.
func (n *notifyFollow) goneOnly(ctx context.Context, db int, keys []string) error {
	src, err := n.j.Source.Client(db)
	if err != nil {
		return err
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = src.B().Exists().Key(k).Build()
	}
	var gone []string
	for i, res := range src.DoMulti(ctx, cmds...) {
		v, err := res.AsInt64()
		if err != nil {
			return n.j.Source.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if v == 0 || len(n.j.Types) > 0 {
			gone = append(gone, keys[i]) // with WithTypes, copyKeys reads the type
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return n.copyKeys(ctx, db, gone)
}

// watch, until ctx ends: pings the subscriptions, so that a dead link shows; subscribes
// again after a loss and asks for a repair pass then; on a cluster source, follows which
// masters serve slots (a failover, a new master), and subscribes to them; and reads INFO
// commandstats for the writes that name no key. Before the walk is done (walked), a flush
// is seen by the walk itself and only the count is updated.
func (n *notifyFollow) watch(ctx context.Context, walked <-chan struct{}) error {
	t := time.NewTicker(notifyWatchEvery)
	defer t.Stop()
	for tick := 1; ; tick++ {
		var lost error
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case lost = <-n.lost:
		}
		if lost != nil || (n.j.Source.Cluster() && tick%4 == 0) {
			if err := n.subscribe(ctx, true, lost); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		for _, s := range n.live() {
			s.ping()
		}
		select {
		case <-walked:
		default:
			continue
		}
		if err := n.checkFlushes(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if n.j.Source.Cluster() {
				continue // a master failing over: read again at the next tick
			}
			return err
		}
	}
}

// checkFlushes asks for a repair pass when the source ran FLUSHDB, FLUSHALL or SWAPDB
// since the last reading: their notifications name no key.
func (n *notifyFollow) checkFlushes(ctx context.Context) error {
	calls, err := n.flushCalls(ctx)
	if err != nil {
		return err
	}
	if old := atomic.SwapInt64(&n.flushes, calls); calls != old {
		n.needRepair("the source ran FLUSHDB, FLUSHALL or SWAPDB, which notify no key")
	}
	return nil
}

// flushCalls reads how many times the source ran FLUSHDB, FLUSHALL and SWAPDB (INFO
// commandstats), summed over the masters of a cluster source.
func (n *notifyFollow) flushCalls(ctx context.Context) (int64, error) {
	infos, err := masterInfos(ctx, n.j.Source, "commandstats")
	if err != nil {
		return 0, fmt.Errorf("a following DumpRestore reads INFO commandstats to see FLUSHDB, FLUSHALL and SWAPDB, which notify no key: %w", err)
	}
	var sum int64
	for _, m := range infos {
		sum += flushCallsOf(m.info.Fields)
	}
	return sum, nil
}

// flushCallsOf sums the calls of FLUSHDB, FLUSHALL and SWAPDB in the fields of INFO
// commandstats.
func flushCallsOf(fields map[string]string) int64 {
	var sum int64
	for _, name := range []string{"cmdstat_flushdb", "cmdstat_flushall", "cmdstat_swapdb"} {
		v := fields[name] // calls=3,usec=...
		if len(v) < 6 || v[:6] != "calls=" {
			continue
		}
		end := 6
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		c, _ := strconv.ParseInt(v[6:end], 10, 64)
		sum += c
	}
	return sum
}

// checkFollowNotify refuses, when WithFollow is given to a DumpRestore, what a follow
// through keyspace notifications cannot do, and checks what it needs: the flags of
// notify-keyspace-events (checkNotifications), and EXISTS and INFO on the source, DEL on
// the target. It changes nothing.
func checkFollowNotify(ctx context.Context, j *Job) error {
	if j.Follow == nil {
		return nil
	}
	switch {
	case j.Conflict == Skip:
		return unsupported("WithConflict(Skip) keeps keys of the target that the source's writes would then change, mixing both; use Fail or Replace with WithFollow")
	}
	key := probeKey()
	return joinRefusals(
		checkNotifications(ctx, j),
		checkCommands(ctx, j.Source, []string{"EXISTS", key}, []string{"INFO", "commandstats"}),
		checkCommands(ctx, j.Target, []string{"DEL", key}))
}

// setNotifications sets the source's notify-keyspace-events (on every node of a cluster
// source) when WithSourceNotifications allows it and the flags there lack some, and returns
// the function that puts the old values back, whatever became of ctx.
func setNotifications(ctx context.Context, j *Job) (putBack func() error, err error) {
	if !j.SetNotifications {
		return func() error { return nil }, nil
	}
	e := j.Source
	nodes, err := sourceNotifyFlags(ctx, e)
	if err != nil {
		return nil, err
	}
	set := func(ctx context.Context, n notifyFlags, value string) error {
		if err := n.c.Do(ctx, n.c.B().ConfigSet().ParameterValue().ParameterValue("notify-keyspace-events", value).Build()).Error(); err != nil {
			return e.Err("config set notify-keyspace-events "+value+" on "+n.addr, "", ctxErr(ctx, err))
		}
		return nil
	}
	var changed []notifyFlags
	putBack = func() error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		var errs []error
		for _, n := range changed {
			if err := set(pctx, n, n.value); err != nil {
				errs = append(errs, fmt.Errorf("put back the source's notify-keyspace-events %q (do it by hand): %w", n.value, err))
				continue
			}
			j.Logger.Info("dump-restore: follow: put back the source's notify-keyspace-events", "server", n.addr, "value", n.value)
		}
		return errors.Join(errs...)
	}
	for _, n := range nodes {
		if !n.ok {
			return nil, errors.Join(e.Err("config get notify-keyspace-events on "+n.addr, "", unsupported(
				"the source refuses CONFIG GET; WithSourceNotifications needs it, and CONFIG SET")), putBack())
		}
		missing := missingNotifyFlags(e, n.value)
		if missing == "" {
			continue
		}
		if err := set(ctx, n, n.value+missing); err != nil {
			return nil, errors.Join(err, putBack())
		}
		changed = append(changed, n)
		j.Logger.Info("dump-restore: follow: set the source's notify-keyspace-events for the migration", "server", n.addr, "was", n.value, "now", n.value+missing)
	}
	return putBack, nil
}

// keepIncompatible adds what the follow's own Job met of keys the target cannot hold whole
// to the migration's, for the Report.
func (n *notifyFollow) keepIncompatible() {
	n.rj.mu.Lock()
	in := n.rj.incompatible
	n.rj.mu.Unlock()
	n.j.mu.Lock()
	defer n.j.mu.Unlock()
	r := &n.j.incompatible
	r.Skipped += in.Skipped
	r.Trimmed += in.Trimmed
	r.Keys = append(r.Keys, in.Keys[:min(len(in.Keys), max(0, incompatibleExamples-len(r.Keys)))]...)
}

// notifyReport returns the Report's repair passes and re-walks.
func (j *Job) notifyReport() (repairs, rewalks int64) {
	if st := j.followed.Load(); st != nil {
		return st.repairs.Load(), st.rewalks.Load()
	}
	return 0, 0
}

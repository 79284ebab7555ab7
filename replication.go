package migrate

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Replication copies the source by making the target its replica. The target runs
// REPLICAOF (SLAVEOF before Redis 5.0, or when only SLAVEOF is allowed) towards the source,
// loads the source's whole data set in the initial sync, then follows every write the
// source takes, until it is promoted back to a master with REPLICAOF NO ONE. It copies every
// database, values, TTLs and streams exactly as the source holds them, and it is the only
// strategies that lose no write made during the copy, with a following Snapshot: the target
// keeps replicating while the cutover function of WithFollow moves the application over.
//
// Run makes the target a replica, waits until the initial sync is done and the target has
// every write the source took until then, calls the cutover function of WithFollow if it is
// given, waits until the target has every write the source took until it returned, and
// promotes the target. Without WithFollow it promotes the target as soon as it is in sync.
// When the cutover function returns an error, Run detaches the target and returns that
// error.
// If a step fails, or ctx is cancelled, Run detaches the target (REPLICAOF NO ONE) and puts
// its configuration back before it returns: the target is never left replicating. A target
// detached before the initial sync finished may hold a partial or empty data set. Redis
// refuses REPLICAOF NO ONE while a replica loads the data it received, so when the
// migration stops during the loading, Run waits for the loading to end (at most
// SyncTimeout) before it detaches the target and returns.
//
// Replication replaces the target's whole data set: a target that holds keys is refused
// unless WithDiscardTarget is given. Filters (WithMatch, WithTypes, WithDatabases, a
// non-zero SelectDB on the source) are refused, since a replica copies everything, and so
// are WithDBPrefix, a target that is already a replica, and clusters on either side: a
// cluster's masters each hold part of the slots, and a cluster node cannot become the
// replica of a server outside its cluster. Use Snapshot or DumpRestore for clusters.
//
// It needs, on the target: REPLICAOF or SLAVEOF, INFO, and CONFIG GET and CONFIG SET of
// masterauth and masteruser when they must change. The target authenticates to the source
// with the source's Password (masterauth) and Username (masteruser, Redis 6.0 or newer);
// the target's earlier values are put back at the end. The target must run the same Redis
// version as the source or a newer one, and reach the source at SourceAddr; with TLS, the
// target needs tls-replication yes and its certificates. On the source it needs INFO, and
// the source's user needs what a replica runs (PSYNC, REPLCONF, PING). How the source
// serves the sync is the source's business: with repl-diskless-sync (the default from
// Redis 7.0) it first waits repl-diskless-sync-delay (5 seconds by default) for more
// replicas.
//
// The Report counts, per database, the keys the target holds at the end (Keys), the most
// keys it held while it loaded (Scanned; keys that vanished since, expired or deleted on the
// source, are counted as Expired), and the bytes the target received from the source
// (Bytes, from total_net_repl_input_bytes on Redis 7.0 and newer, otherwise the size of the
// initial transfer as far as it was seen), all bytes in the lowest database.
//
// The zero value is ready to use.
type Replication struct {
	// SourceAddr is the address, host:port, at which the target reaches the source. The
	// default is the source's address as given to New, which is right unless the target
	// sees the source through another network (containers, NAT, a proxy). An address that
	// is not host:port fails Check with an error that does not wrap ErrUnsupported: it is
	// a mistake to fix, not a reason to try another strategy.
	SourceAddr string
	// LinkTimeout bounds how long the target may go without syncing during the initial
	// sync: at first, to connect to the source, authenticate and be accepted as a replica
	// (the source's repl-diskless-sync-delay included); later, to get a dropped link back.
	// The default is 30 seconds.
	LinkTimeout time.Duration
	// SyncTimeout bounds how long the initial sync may take, from REPLICAOF until the
	// target has caught up with the source; it bounds again the catch-up after the cutover
	// function of WithFollow.
	// The default is 10 minutes.
	SyncTimeout time.Duration
}

const (
	defaultLinkTimeout = 30 * time.Second
	defaultSyncTimeout = 10 * time.Minute
	// replPoll is how often the target's INFO is read while it syncs: short, so small
	// copies finish fast; INFO is cheap.
	replPoll = 10 * time.Millisecond
	// cleanupTimeout bounds each command that cleans up after a failure, run when ctx
	// may be done already.
	cleanupTimeout = 10 * time.Second
)

// Name returns "replication".
func (Replication) Name() string { return "replication" }

// Check reports why the target cannot be made a replica of the source, without changing
// anything on either side. It refuses filters, clusters, a target that is already a
// replica, a target older than the source, a target that holds keys without
// WithDiscardTarget, a target with fewer databases than the source's databases setting,
// a target that refuses REPLICAOF and SLAVEOF (renamed, disabled or denied by ACL), and
// a target that cannot be given the source's credentials
// (CONFIG GET or CONFIG SET of masterauth or masteruser refused), and a source whose user
// may not run what the replica runs there (PSYNC or SYNC, REPLCONF, PING). The commands
// refused on either side are named in one error, with the rule to grant. Commands are
// probed without being run: each is queued in a MULTI block that is discarded, or, when
// MULTI is refused, looked up with COMMAND INFO and ACL DRYRUN.
func (r Replication) Check(ctx context.Context, j *Job) error {
	if _, _, err := r.sourceHostPort(j); err != nil {
		return err
	}
	if j.MergeDatabases {
		return j.Source.Err("check filters", "", unsupported(
			"a replica keeps every database and key name, and WithDBPrefix merges databases; leave it out or use another strategy"))
	}
	if j.Filtered {
		return j.Source.Err("check filters", "", unsupported(
			"replication copies every key of every database and cannot honour %s; leave the filter out or use another strategy",
			filterName(j)))
	}
	for _, e := range []*Endpoint{j.Source, j.Target} {
		if e.Info == nil || len(e.Info.Fields) == 0 {
			return e.Err("check info", "", unsupported(
				"INFO is refused on the %s, and replication needs it to follow the sync", e.Side))
		}
		if e.Info.Mode == "cluster" {
			why := "a cluster node cannot be made a replica of a server outside its cluster"
			if e.Side == Source {
				why = "replication copies one server, not a cluster's shards"
			}
			return e.Err("check mode", "", unsupported(
				"the %s is a cluster node (redis_mode:cluster), and %s; use another strategy", e.Side, why))
		}
	}
	if j.Target.Info.Role == "slave" {
		return j.Target.Err("check role", "", unsupported(
			"the target is already a replica of %s (role:slave); detach it first (REPLICAOF NO ONE) if it may be overwritten",
			net.JoinHostPort(j.Target.Info.Fields["master_host"], j.Target.Info.Fields["master_port"])))
	}
	if err := checkReplicaVersion(j); err != nil {
		return err
	}
	if err := checkTargetEmpty(j); err != nil {
		return err
	}
	if err := checkDatabaseSetting(ctx, j, false); err != nil {
		return err
	}
	// What each side refuses, all of it at once: the target's REPLICAOF and CONFIG, its
	// TLS settings, the source user's replication commands.
	var errs []error
	if _, err := replicaOfCommand(ctx, j); err != nil {
		errs = append(errs, err)
	}
	settings, err := authSettings(ctx, j)
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range settings {
		// Setting the current value again: harmless even if it ran.
		if err := checkCommand(ctx, j.Target, "CONFIG", "SET", s.name, s.old); err != nil {
			errs = append(errs, fmt.Errorf("the target must be given the source's credentials (%s): %w", s.name, err))
		}
	}
	if err := checkTLSReplication(ctx, j); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkSourceUser(ctx, j))
	return joinRefusals(errs...)
}

// Run makes the target a replica of the source, waits for it to be in sync, calls the
// cutover function of WithFollow, waits again, and promotes the target; see Replication.
func (r Replication) Run(ctx context.Context, j *Job) error {
	host, port, err := r.sourceHostPort(j)
	if err != nil {
		return err
	}
	dst, err := j.Target.Default()
	if err != nil {
		return err
	}
	src, err := j.Source.Default()
	if err != nil {
		return err
	}
	cmd, err := replicaOfCommand(ctx, j)
	if err != nil {
		return err
	}
	settings, err := authSettings(ctx, j)
	if err != nil {
		return err
	}
	s := &replicaSync{
		r: r, j: j, dst: dst, src: src, cmd: cmd, host: host, port: port,
		addr: net.JoinHostPort(host, port), settings: settings, counted: map[int]int64{},
	}
	s.bytesBase = -1
	s.deniedBase = s.aclDenied(ctx)
	if info, err := readInfo(ctx, dst); err == nil {
		if n, err := strconv.ParseInt(info.Fields["total_net_repl_input_bytes"], 10, 64); err == nil {
			s.bytesBase = n
		}
	}
	return s.run(ctx)
}

// replicaSync is one run of Replication: the target's clients, what was changed on it, and
// what was counted.
type replicaSync struct {
	r          Replication
	j          *Job
	dst, src   rueidis.Client
	cmd        string // "REPLICAOF" or "SLAVEOF"
	host, port string
	addr       string // host:port, for messages
	settings   []setting

	changed  []setting // settings set so far, to put back
	attached bool      // REPLICAOF was sent
	started  bool      // the target was seen syncing
	loaded   bool      // the target was seen holding the source's data (loading or in sync)
	synced   bool      // the initial sync finished

	counted   map[int]int64 // keys counted per database
	bytes     int64         // bytes counted
	bytesBase int64         // total_net_repl_input_bytes before REPLICAOF, -1 if unknown
	// deniedBase is how many commands the source's ACLs had refused before REPLICAOF, -1
	// when unknown or once the source serves the target as a replica.
	deniedBase int64
	deniedRead time.Time // when it was last read again
}

// deniedBurst is how many ACL refusals on the source, between two readings half a second
// apart, tell that the target's replication commands are being refused.
const deniedBurst = 20

// aclDenied returns how many commands the source's ACLs have refused since it started
// (NOPERM replies in INFO errorstats, Redis 6.2), or -1 when it does not say.
func (s *replicaSync) aclDenied(ctx context.Context) int64 {
	text, err := s.src.Do(ctx, s.src.B().Info().Section("errorstats").Build()).ToString()
	if err != nil || !strings.Contains(text, "# Errorstats") {
		return -1
	}
	f := parseInfo(text).Fields["errorstat_NOPERM"] // count=N
	n, err := strconv.ParseInt(strings.TrimPrefix(f, "count="), 10, 64)
	if err != nil {
		return 0 // none refused yet
	}
	return n
}

// refusedBySource tells, while the target has not begun to sync, whether the source's ACLs
// refuse what the target runs as a replica (PSYNC, SYNC, REPLCONF, PING): the source counts
// each refusal, and the replica tries again every second. Check cannot tell this on Redis 7,
// which answers for PSYNC and SYNC only through ACL DRYRUN; this tells within seconds,
// before the target has dropped any of its data.
func (s *replicaSync) refusedBySource(ctx context.Context, now time.Time) error {
	if s.deniedBase < 0 || now.Sub(s.deniedRead) < 500*time.Millisecond {
		return nil
	}
	s.deniedRead = now
	// A refused replica tries again at once, so its refusals come by the hundreds a second;
	// another client's few NOPERMs are not enough to stop the migration.
	n := s.aclDenied(ctx)
	if n-s.deniedBase < deniedBurst {
		if n >= 0 {
			s.deniedBase = n
		}
		return nil
	}
	user := s.j.Source.Option.Username
	if user == "" {
		user = "default"
	}
	return s.j.Source.Err("serve the target as a replica", "", unsupported(
		"the source's ACLs refused %d command(s) in the last half second (INFO errorstats, NOPERM) while the target asked it to replicate, and it has not taken the target as its replica: "+
			"the source's user %q, which the target logs in as (masteruser), needs what a replica runs (ACL SETUSER %s +psync +replconf +ping)",
		n-s.deniedBase, user, user))
}

func (s *replicaSync) run(ctx context.Context) error {
	for _, st := range s.settings {
		if err := s.setConfig(ctx, st.name, st.want); err != nil {
			return s.abort(ctx, s.j.Target.Err("set "+st.name, "", ctxErr(ctx, err)))
		}
		s.changed = append(s.changed, st)
	}
	s.attached = true
	if err := s.dst.Do(ctx, s.dst.B().Arbitrary(s.cmd).Args(s.host, s.port).Build()).Error(); err != nil {
		return s.abort(ctx, s.j.Target.Err(fmt.Sprintf("make it a replica (%s %s)", s.cmd, s.addr), "", ctxErr(ctx, err)))
	}
	s.j.Logger.Info("migrate: replication: target attached", "target", s.j.Target.Addr, "source", s.addr)
	if err := s.waitSync(ctx); err != nil {
		return s.abort(ctx, err)
	}
	if s.j.Follow != nil {
		s.j.Logger.Info("migrate: replication: target in sync, calling the cutover function", "target", s.j.Target.Addr)
		if err := s.j.Follow(ctx); err != nil {
			return s.abort(ctx, s.j.Target.Err("cutover", "", fmt.Errorf("the cutover function (WithFollow) failed: %w", err)))
		}
		if err := s.catchUp(ctx, "after cutover", time.Now().Add(s.r.syncTimeout())); err != nil {
			return s.abort(ctx, err)
		}
	}
	if err := s.detach(ctx); err != nil {
		return s.abort(ctx, s.j.Target.Err(fmt.Sprintf("promote (%s NO ONE)", s.cmd), "", ctxErr(ctx, err)))
	}
	s.attached = false
	if err := s.restoreConfig(ctx); err != nil {
		return s.abort(ctx, err)
	}
	if info, err := readInfo(ctx, s.dst); err == nil {
		s.count(info, true)
	}
	s.j.Logger.Info("migrate: replication: target promoted", "target", s.j.Target.Addr)
	return nil
}

// waitSync waits until the target has loaded the initial sync and caught up with the
// source, counting progress meanwhile.
func (s *replicaSync) waitSync(ctx context.Context) error {
	start := time.Now()
	syncBy := start.Add(s.r.syncTimeout())
	active := start // when the target was last seen syncing
	for {
		info, err := readInfo(ctx, s.dst)
		if err != nil {
			return s.j.Target.Err("wait for the initial sync (INFO)", "", ctxErr(ctx, err))
		}
		st := s.observe(info)
		if st.up && !st.transfer && !st.loading {
			s.synced = true
			break
		}
		now := time.Now()
		served := s.sourceServesTarget(ctx, info)
		if st.transfer || st.loading || served {
			s.started, active = true, now
		}
		if served || st.loading {
			s.deniedBase = -1 // the source took the target as its replica
		}
		if err := s.refusedBySource(ctx, now); err != nil {
			return err
		}
		switch {
		case now.Sub(active) > s.r.linkTimeout():
			what := "could not sync from"
			if s.started {
				what = "lost the link to"
			}
			return s.j.Target.Err("wait for the link to "+s.addr, "", fmt.Errorf(
				"the target %s %s, and had no working link for %v (master_link_status:%s): check that the target can reach it (set Replication.SourceAddr if it sees the source at another address), that masterauth/masteruser are right (they are the source's Password and Username), and the source's and the target's logs (the source's requirepass or ACL may refuse the target)",
				what, s.addr, s.r.linkTimeout(), st.link))
		case now.After(syncBy):
			return s.j.Target.Err("wait for the initial sync from "+s.addr, "", fmt.Errorf(
				"not done within %v (master_link_status:%s, master_sync_in_progress:%v, loading:%v); raise Replication.SyncTimeout",
				s.r.syncTimeout(), st.link, st.transfer, st.loading))
		}
		if err := sleepCtx(ctx, replPoll); err != nil {
			return s.j.Target.Err("wait for the initial sync from "+s.addr, "", err)
		}
	}
	s.j.Logger.Info("migrate: replication: initial sync done", "target", s.j.Target.Addr, "elapsed", time.Since(start))
	return s.catchUp(ctx, "after the initial sync", syncBy)
}

// catchUp waits until the target's replication offset reaches the source's, read now.
func (s *replicaSync) catchUp(ctx context.Context, when string, by time.Time) error {
	op := "catch up with the source " + when
	srcInfo, err := s.src.Do(ctx, s.src.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return s.j.Source.Err("read the replication offset "+when, "", fmt.Errorf(
			"%w; keep the source running until Migrate returns", ctxErr(ctx, err)))
	}
	want, err := strconv.ParseInt(parseInfo(srcInfo).Fields["master_repl_offset"], 10, 64)
	if err != nil {
		return s.j.Source.Err("read the replication offset "+when, "", fmt.Errorf("INFO replication has no master_repl_offset"))
	}
	for {
		info, err := readInfo(ctx, s.dst)
		if err != nil {
			return s.j.Target.Err(op, "", ctxErr(ctx, err))
		}
		st := s.observe(info)
		if st.offset >= want {
			return nil
		}
		if time.Now().After(by) {
			return s.j.Target.Err(op, "", fmt.Errorf(
				"its replication offset is %d, the source's %d, after %v (master_link_status:%s); raise Replication.SyncTimeout, or check the link",
				st.offset, want, s.r.syncTimeout(), st.link))
		}
		if err := sleepCtx(ctx, replPoll); err != nil {
			return s.j.Target.Err(op, "", err)
		}
	}
}

// sourceServesTarget reports whether the source lists a replica on the target's port in
// INFO replication: the target then has authenticated and asked for the sync, even before
// a diskless source starts sending.
func (s *replicaSync) sourceServesTarget(ctx context.Context, target *ServerInfo) bool {
	port := target.Fields["tcp_port"]
	if port == "" {
		return false
	}
	text, err := s.src.Do(ctx, s.src.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return false
	}
	for k, v := range parseInfo(text).Fields {
		if !strings.HasPrefix(k, "slave") {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if kv == "port="+port {
				return true
			}
		}
	}
	return false
}

// observe notes what the target's INFO says of its sync, and counts its progress.
func (s *replicaSync) observe(info *ServerInfo) replStatus {
	st := replState(info)
	if st.transfer || st.loading || st.up {
		s.started = true
	}
	s.count(info, false)
	return st
}

// count adds to the job's counters what the target gained since the last call. Keys are
// counted only once the target holds the source's data (loading it, or in sync), since
// before that its keyspace shows its earlier data. With final set, counts move from Keys
// to Expired for keys that vanished, so Keys ends as the number of keys the target holds
// (none if it never held the source's data).
func (s *replicaSync) count(info *ServerInfo, final bool) {
	st := replState(info)
	holds := (st.loading && info.Fields["async_loading"] != "1") || (st.up && !st.transfer)
	s.loaded = s.loaded || holds
	if holds || (final && s.loaded) {
		dbs := map[int]bool{}
		for db := range info.Keyspace {
			dbs[db] = true
		}
		for db := range s.counted {
			dbs[db] = true
		}
		for db := range dbs {
			n, had := info.Keyspace[db], s.counted[db]
			switch {
			case n > had:
				s.j.Count(db, Counts{Scanned: n - had, Keys: n - had})
				s.counted[db] = n
			case n < had && final:
				s.j.Count(db, Counts{Keys: n - had, Expired: had - n})
				s.counted[db] = n
			}
		}
	}
	var b int64
	if s.bytesBase >= 0 {
		if n, err := strconv.ParseInt(info.Fields["total_net_repl_input_bytes"], 10, 64); err == nil {
			b = n - s.bytesBase
		}
	} else {
		b, _ = strconv.ParseInt(info.Fields["master_sync_read_bytes"], 10, 64)
		if l, _ := strconv.ParseInt(info.Fields["loading_loaded_bytes"], 10, 64); l > b {
			b = l
		}
	}
	if b > s.bytes {
		db := 0
		if len(s.j.Databases) > 0 {
			db = s.j.Databases[0]
		}
		s.j.Count(db, Counts{Bytes: b - s.bytes})
		s.bytes = b
	}
}

// abort detaches the target and puts its configuration back, with a fresh context since
// ctx may be done, and returns err with what was left behind.
func (s *replicaSync) abort(ctx context.Context, err error) error {
	cctx := context.WithoutCancel(ctx)
	var notes []string
	if s.attached {
		// The state just before detaching decides what the target may hold.
		ictx, cancel := context.WithTimeout(cctx, cleanupTimeout)
		if info, ierr := readInfo(ictx, s.dst); ierr == nil {
			s.observe(info)
		}
		cancel()
		if derr := s.detach(cctx); derr != nil {
			notes = append(notes, fmt.Sprintf(
				"could not detach the target, which may still replicate from %s: run %s NO ONE on it (%v)", s.addr, s.cmd, derr))
		} else if !s.started {
			notes = append(notes, fmt.Sprintf(
				"the target was detached (%s NO ONE); it was never seen syncing, so its data set is likely unchanged", s.cmd))
		} else if s.synced {
			notes = append(notes, fmt.Sprintf(
				"the target was detached (%s NO ONE) and holds the source's data as it had replicated it, possibly without the latest writes", s.cmd))
		} else {
			notes = append(notes, fmt.Sprintf(
				"the target was detached (%s NO ONE) before the initial sync finished, and may hold a partial or empty data set", s.cmd))
		}
	}
	if rerr := s.restoreConfig(cctx); rerr != nil {
		notes = append(notes, rerr.Error())
	}
	ictx, cancel := context.WithTimeout(cctx, cleanupTimeout)
	defer cancel()
	if info, ierr := readInfo(ictx, s.dst); ierr == nil {
		s.count(info, true)
	}
	s.j.Logger.Warn("migrate: replication: stopped", "target", s.j.Target.Addr, "error", err)
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w; %s", err, strings.Join(notes, "; "))
}

// detach runs REPLICAOF NO ONE, each try bounded by cleanupTimeout. Redis refuses it while
// the target loads the data it received; detach then tries again until the loading ends,
// at most SyncTimeout, rather than leave the target replicating.
func (s *replicaSync) detach(ctx context.Context) error {
	until := time.Now().Add(s.r.syncTimeout())
	logged := false
	for {
		tctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		err := s.dst.Do(tctx, s.dst.B().Arbitrary(s.cmd).Args("NO", "ONE").Build()).Error()
		cancel()
		// LOADING while it loads, which is the one reply of a changing server (replyMoving)
		// that a target outside a cluster gives.
		if classifyReply(err) != replyMoving {
			return err
		}
		s.started = true
		if time.Now().After(until) {
			return fmt.Errorf("the target was still loading the source's data after %v: %w", s.r.syncTimeout(), err)
		}
		if !logged {
			s.j.Logger.Warn("migrate: replication: waiting for the target to finish loading before detaching it", "target", s.j.Target.Addr)
			logged = true
		}
		if err := sleepCtx(ctx, replPoll); err != nil {
			return err
		}
	}
}

// restoreConfig puts back the target's settings that were changed, last first.
func (s *replicaSync) restoreConfig(ctx context.Context) error {
	var failed []string
	for i := len(s.changed) - 1; i >= 0; i-- {
		st := s.changed[i]
		if err := s.setConfig(ctx, st.name, st.old); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", st.name, err))
			continue
		}
		s.changed = s.changed[:i]
	}
	if len(failed) > 0 {
		return s.j.Target.Err("put back its configuration", "", fmt.Errorf(
			"could not put back %s; set them back by hand with CONFIG SET", strings.Join(failed, ", ")))
	}
	return nil
}

func (s *replicaSync) setConfig(ctx context.Context, name, value string) error {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	return s.dst.Do(ctx, s.dst.B().ConfigSet().ParameterValue().ParameterValue(name, value).Build()).Error()
}

// replStatus is what INFO says of a replica's sync.
type replStatus struct {
	link     string // master_link_status: "up" or "down"
	up       bool
	transfer bool  // master_sync_in_progress:1
	loading  bool  // loading:1 or async_loading:1
	offset   int64 // slave_repl_offset, -1 if unknown
}

func replState(info *ServerInfo) replStatus {
	f := info.Fields
	st := replStatus{link: f["master_link_status"], offset: -1}
	if st.link == "" {
		st.link = "none"
	}
	st.up = st.link == "up"
	st.transfer = f["master_sync_in_progress"] == "1"
	st.loading = f["loading"] == "1" || f["async_loading"] == "1"
	off := f["slave_repl_offset"]
	if off == "" {
		off = f["master_repl_offset"]
	}
	if n, err := strconv.ParseInt(off, 10, 64); err == nil && st.up {
		st.offset = n
	}
	return st
}

func (r Replication) linkTimeout() time.Duration {
	if r.LinkTimeout > 0 {
		return r.LinkTimeout
	}
	return defaultLinkTimeout
}

func (r Replication) syncTimeout() time.Duration {
	if r.SyncTimeout > 0 {
		return r.SyncTimeout
	}
	return defaultSyncTimeout
}

// sourceHostPort splits SourceAddr, or the source's address.
func (r Replication) sourceHostPort(j *Job) (host, port string, err error) {
	addr := r.SourceAddr
	if addr == "" {
		addr = j.Source.Addr
	}
	host, port, err = net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", "", fmt.Errorf("replication: source address %q is not host:port (set Replication.SourceAddr to where the target reaches the source)", addr)
	}
	return host, port, nil
}

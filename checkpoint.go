package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrCheckpoint means the checkpoint given with WithCheckpoint cannot be resumed: it is
// damaged, or it belongs to another migration (another source, target, strategy or filters).
// The error says which; remove the checkpoint to start over.
var ErrCheckpoint = errors.New("checkpoint cannot be resumed")

// A CheckpointStore keeps a migration's progress between runs (see WithCheckpoint).
type CheckpointStore interface {
	// Load returns the state last saved, or nil, nil when there is none yet.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the state kept with state, whole: after a crash at any moment, Load
	// returns either the previous state or this one. A migration never calls it twice at
	// once; it saves in the background, and the copy waits for it only at the end of each
	// database.
	Save(ctx context.Context, state []byte) error
}

// CheckpointFile returns a CheckpointStore that keeps the checkpoint in the file at path.
// Each Save writes a temporary file in the same directory, syncs it, renames it over path
// and syncs the directory, so that the file is always a whole checkpoint, the previous one or
// the new one, whenever the process or the machine stops.
func CheckpointFile(path string) CheckpointStore { return checkpointFile(path) }

type checkpointFile string

func (f checkpointFile) Load(ctx context.Context) ([]byte, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (f checkpointFile) Save(ctx context.Context, state []byte) error {
	path := string(f)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(state)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkpointEvery is how often the walk's position is saved while it changes: in the
// background, so that the copy never waits for it.
const checkpointEvery = 250 * time.Millisecond

// checkpointVersion is the version of checkpointState's format.
const checkpointVersion = 1

// checkpointState is what a checkpoint holds, as JSON: which migration it belongs to, and
// how far it went.
type checkpointState struct {
	Version   int            `json:"version"`
	Source    checkpointSide `json:"source"`
	Target    checkpointSide `json:"target"`
	Strategy  string         `json:"strategy"`
	Match     string         `json:"match,omitempty"`
	Types     []string       `json:"types,omitempty"`
	Databases []int          `json:"databases"`
	Prefix    string         `json:"prefix,omitempty"`
	Conflict  string         `json:"conflict"`
	// Saved is when the state was saved.
	Saved time.Time `json:"saved"`
	// Complete says the migration finished.
	Complete bool `json:"complete,omitempty"`
	// DatabasesDone are the source databases copied whole.
	DatabasesDone []int `json:"databases_done,omitempty"`
	// Walk is where the walk of the database under way may continue; nil when it starts
	// from the beginning.
	Walk *walkPosition `json:"walk,omitempty"`
	// Slots are the slots of a cluster source whose keys are all written, as ranges of
	// first and last slot.
	Slots [][2]uint16 `json:"slots,omitempty"`
	// TargetHeld is, for Snapshot and a following DumpRestore, how many keys each database
	// of the target held when the migration first started (INFO keyspace); nil when the
	// target did not tell. A resumed Snapshot deletes what the interrupted run wrote only
	// when it was empty; a resumed following DumpRestore then replaces what it wrote.
	TargetHeld map[int]int64 `json:"target_held"`
	// Follow says that a following Snapshot restored its snapshot and follows the source's
	// stream: the target's offset key (WithOffsetKey) says how far; nil before.
	Follow *followPoint `json:"follow,omitempty"`
	// Masters are, for a following Snapshot of a cluster source, the masters followed and
	// the slots each served, each with its own stream and offset key: a resumed run follows
	// the same, or fails.
	Masters []followMaster `json:"masters,omitempty"`
	// Cutover says that a following Snapshot called the cutover function (WithFollow): the
	// application may write to the target since, so a resumed run never deletes its keys.
	Cutover bool `json:"cutover,omitempty"`
}

// followPoint is where the stream of a following Snapshot stands: the source's replication
// id, the offset of its last byte applied, and the source database the stream's commands
// go to there (a stream continued mid-way gets no SELECT until the database changes).
type followPoint struct {
	ReplID string `json:"replid"`
	Offset int64  `json:"offset"`
	DB     int    `json:"db"`
}

// followMaster is a master of a cluster source followed, and the slots it served, as
// ranges of first and last slot.
type followMaster struct {
	Addr  string      `json:"addr"`
	Slots [][2]uint16 `json:"slots"`
}

// String is what the offset key holds.
func (p followPoint) String() string {
	return p.ReplID + " " + strconv.FormatInt(p.Offset, 10) + " " + strconv.Itoa(p.DB)
}

// parseFollowPoint reads what the offset key holds.
func parseFollowPoint(v string) (followPoint, bool) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return followPoint{}, false
	}
	off, err1 := strconv.ParseInt(f[1], 10, 64)
	db, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || off < 0 || db < 0 {
		return followPoint{}, false
	}
	return followPoint{ReplID: f[0], Offset: off, DB: db}, true
}

// checkpointSide names one side of the migration.
type checkpointSide struct {
	Addr    string `json:"addr"`
	Cluster bool   `json:"cluster,omitempty"`
	RunID   string `json:"run_id,omitempty"` // of a standalone server, when INFO gives it
}

// walkPosition is a SCAN position in a standalone source's database: the keys before it
// (SCAN's guarantee: every key present during the whole walk) are all written on the target.
// Pass is the index of the SCAN ... TYPE pass (WithTypes on Redis 6.0 and newer), else 0.
type walkPosition struct {
	DB     int    `json:"db"`
	Pass   int    `json:"pass,omitempty"`
	Cursor uint64 `json:"cursor"`
}

func (p *walkPosition) String() string {
	s := fmt.Sprintf("database %d from SCAN cursor %d", p.DB, p.Cursor)
	if p.Pass > 0 {
		s += fmt.Sprintf(" (type pass %d)", p.Pass+1)
	}
	return s
}

// checkpointer keeps a migration's checkpoint: it loads it when Migrate starts, tracks which
// walk positions have every batch before them written, and saves the state in the
// background every checkpointEvery while it changes, at the end of each database, and at
// the end.
type checkpointer struct {
	store  CheckpointStore
	j      *Job
	saveMu sync.Mutex // held during a save
	// resumed says a checkpoint of an interrupted run was loaded.
	resumed bool

	mu    sync.Mutex
	st    checkpointState
	dirty bool

	// The batches of the walk under way, numbered in the order the walk gives them.
	next    uint64                  // the number the next batch gets
	written uint64                  // every batch numbered below is written
	ids     map[*string]uint64      // batch number by the batch's first element's address
	tags    map[uint64]walkPosition // where to continue once the batch and all before it are written
	done    map[uint64]bool         // batches written out of order

	// A cluster source's walk: the slots whose keys are all written, and the groups of
	// slots read together whose batches are not all written yet, by batch.
	slots  map[uint16]bool
	groups map[*string]*slotGroup

	stop     chan struct{}
	finished chan struct{}
}

// checkpointIdentity returns the state of a new run of the migration j runs with strategy.
func checkpointIdentity(j *Job, strategy string) checkpointState {
	side := func(e *Endpoint) checkpointSide {
		s := checkpointSide{Addr: e.Addr, Cluster: e.Cluster()}
		if !s.Cluster && e.Info != nil {
			s.RunID = e.Info.Fields["run_id"]
		}
		return s
	}
	// The types in the order given: a saved SCAN ... TYPE pass is an index in them.
	types := slices.Clone(j.Types)
	return checkpointState{Version: checkpointVersion, Source: side(j.Source), Target: side(j.Target), Strategy: strategy,
		Match: j.Match, Types: types, Databases: slices.Clone(j.Databases), Prefix: j.DBPrefix, Conflict: j.Conflict.String()}
}

// loadCheckpoint reads the checkpoint of store for the migration j runs with strategy. It
// returns a checkpointer to resume from (or start with), and an error wrapping ErrCheckpoint
// when the checkpoint is damaged or of another migration.
func loadCheckpoint(ctx context.Context, store CheckpointStore, j *Job, strategy string) (*checkpointer, error) {
	c := &checkpointer{store: store, j: j, st: checkpointIdentity(j, strategy)}
	b, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the checkpoint (WithCheckpoint): %w", err)
	}
	if b == nil {
		if (strategy == (Snapshot{}).Name() || (strategy == (DumpRestore{}).Name() && j.Follow != nil)) && len(j.Target.Info.Fields) > 0 {
			c.st.TargetHeld = maps.Clone(j.Target.Info.Keyspace)
			if c.st.TargetHeld == nil {
				c.st.TargetHeld = map[int]int64{}
			}
		}
		return c, nil
	}
	c.resumed = true
	var saved checkpointState
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("%w: it is damaged (%v); remove it to start the migration over (keys already copied count as skipped)", ErrCheckpoint, err)
	}
	if saved.Version != checkpointVersion {
		return nil, fmt.Errorf("%w: its format is version %d, and this program reads version %d; remove it to start over", ErrCheckpoint, saved.Version, checkpointVersion)
	}
	if diff := c.st.differs(saved); diff != "" {
		return nil, fmt.Errorf("%w: it belongs to another migration (%s); give this migration its own checkpoint, or remove this one to start over", ErrCheckpoint, diff)
	}
	if saved.Walk != nil && (!slices.Contains(saved.Databases, saved.Walk.DB) || slices.Contains(saved.DatabasesDone, saved.Walk.DB) || saved.Walk.Pass < 0 ||
		(saved.Walk.Pass > 0 && saved.Walk.Pass >= max(1, len(saved.Types)))) {
		return nil, fmt.Errorf("%w: it is damaged (its walk position %s does not fit its databases and types); remove it to start over", ErrCheckpoint, saved.Walk)
	}
	for _, db := range saved.DatabasesDone {
		if !slices.Contains(saved.Databases, db) {
			return nil, fmt.Errorf("%w: it is damaged (database %d done is not one it copies); remove it to start over", ErrCheckpoint, db)
		}
	}
	if f := saved.Follow; f != nil && (f.ReplID == "" || f.Offset < 0) {
		return nil, fmt.Errorf("%w: it is damaged (its follow position %q %d); remove it to start over", ErrCheckpoint, f.ReplID, f.Offset)
	}
	c.st.Complete, c.st.DatabasesDone, c.st.Walk, c.st.Saved = saved.Complete, saved.DatabasesDone, saved.Walk, saved.Saved
	c.st.TargetHeld, c.st.Follow, c.st.Masters, c.st.Cutover = saved.TargetHeld, saved.Follow, saved.Masters, saved.Cutover
	c.slots = map[uint16]bool{}
	for _, r := range saved.Slots {
		if r[0] > r[1] || r[1] >= slotCount {
			return nil, fmt.Errorf("%w: it is damaged (slots %d-%d); remove it to start over", ErrCheckpoint, r[0], r[1])
		}
		for s := int(r[0]); s <= int(r[1]); s++ {
			c.slots[uint16(s)] = true
		}
	}
	c.st.Slots = saved.Slots
	return c, nil
}

// differs says how saved belongs to another migration than s, or "" when it is this one's.
// The target's run_id is not compared: a target restarted with its data (appendonly) is
// still the same. The source's is: a restarted source hashes its keys anew, so a SCAN
// cursor saved before means nothing to it.
func (s checkpointState) differs(saved checkpointState) string {
	var d []string
	if s.Strategy != saved.Strategy {
		d = append(d, fmt.Sprintf("strategy %s, not %s", saved.Strategy, s.Strategy))
	}
	if s.Source.Addr != saved.Source.Addr || s.Source.Cluster != saved.Source.Cluster {
		d = append(d, fmt.Sprintf("source %s, not %s", saved.Source.Addr, s.Source.Addr))
	} else if s.Source.RunID != saved.Source.RunID && saved.Walk != nil {
		d = append(d, fmt.Sprintf("the source at %s restarted since (run_id %s, now %s), and the saved SCAN position means nothing to it", s.Source.Addr, saved.Source.RunID, s.Source.RunID))
	}
	if s.Target.Addr != saved.Target.Addr || s.Target.Cluster != saved.Target.Cluster {
		d = append(d, fmt.Sprintf("target %s, not %s", saved.Target.Addr, s.Target.Addr))
	}
	if s.Match != saved.Match {
		d = append(d, fmt.Sprintf("match %q, not %q", saved.Match, s.Match))
	}
	if !slices.Equal(s.Types, saved.Types) {
		d = append(d, fmt.Sprintf("types [%s], not [%s]", strings.Join(saved.Types, " "), strings.Join(s.Types, " ")))
	}
	if !slices.Equal(s.Databases, saved.Databases) {
		d = append(d, fmt.Sprintf("databases [%s], not [%s]", dbList(saved.Databases), dbList(s.Databases)))
	}
	if s.Prefix != saved.Prefix {
		d = append(d, fmt.Sprintf("prefix %q, not %q", saved.Prefix, s.Prefix))
	}
	if s.Conflict != saved.Conflict {
		d = append(d, fmt.Sprintf("conflict policy %s, not %s", saved.Conflict, s.Conflict))
	}
	return strings.Join(d, "; ")
}

// resumedFrom says where the run continues, "" when it starts from the beginning.
func (c *checkpointer) resumedFrom() string {
	st := &c.st
	var parts []string
	if len(st.DatabasesDone) > 0 {
		parts = append(parts, fmt.Sprintf("databases %s done", dbList(st.DatabasesDone)))
	}
	if st.Walk != nil {
		parts = append(parts, st.Walk.String())
	}
	if len(c.slots) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d slots done", len(c.slots), slotCount))
	}
	if st.Strategy == (Snapshot{}).Name() && c.resumed {
		if st.Follow != nil {
			parts = append(parts, "following the source's stream, from the offset the target's offset key holds")
		} else {
			parts = append(parts, "the restore of the snapshot was interrupted: a new snapshot is restored")
		}
	}
	if st.Strategy == (DumpRestore{}).Name() && c.j.Follow != nil && c.resumed {
		if c.walkDone() {
			parts = append(parts, "the walk was done: a compare-and-repair pass over the selected keys, then following again")
		} else {
			parts = append(parts, "after the walk, a compare-and-repair pass over the selected keys, then following again")
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "checkpoint saved " + st.Saved.UTC().Format(time.RFC3339) + ": " + strings.Join(parts, "; ")
}

// start saves the state once (so that the checkpoint names its migration from the first
// moment) and then saves it every checkpointEvery while it changes, until finish.
func (c *checkpointer) start(ctx context.Context) error {
	if err := c.save(ctx); err != nil {
		return err
	}
	c.stop, c.finished = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.finished)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				c.mu.Lock()
				dirty := c.dirty
				c.mu.Unlock()
				if dirty {
					if err := c.save(ctx); err != nil && ctx.Err() == nil {
						c.j.Logger.Warn("migrate: cannot save the checkpoint; trying again soon", "error", err)
					}
				}
			}
		}
	}()
	return nil
}

// finish stops the saving in the background and saves the state a last time, complete when
// the run succeeded, even when ctx was cancelled.
func (c *checkpointer) finish(ctx context.Context, ran error) error {
	if c.stop != nil {
		close(c.stop)
		<-c.finished
	}
	c.mu.Lock()
	if ran == nil {
		c.st.Complete, c.st.Walk, c.st.Slots = true, nil, nil
	}
	c.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return c.save(sctx)
}

// save writes the state to the store, one save at a time, so that an older state never
// replaces a newer one.
func (c *checkpointer) save(ctx context.Context) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	c.st.Saved = time.Now()
	b, err := json.MarshalIndent(c.st, "", "  ")
	c.dirty = false
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.store.Save(ctx, b); err != nil {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("save the checkpoint (WithCheckpoint): %w", err)
	}
	return nil
}

// skipDB reports whether database db was copied whole by an earlier run. A nil checkpointer
// skips nothing.
func (c *checkpointer) skipDB(db int) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.st.DatabasesDone, db)
}

// dbDone records that database db is copied whole, and saves the state.
func (c *checkpointer) dbDone(ctx context.Context, db int) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.st.DatabasesDone = append(c.st.DatabasesDone, db)
	c.st.Walk, c.st.Slots, c.slots = nil, nil, map[uint16]bool{}
	c.mu.Unlock()
	return c.save(ctx)
}

// walkStart returns where the walk of standalone database db begins: the saved position,
// or the beginning. It resets the tracking of batches.
func (c *checkpointer) walkStart(db int) walkPosition {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next, c.written = 0, 0
	c.ids, c.tags, c.done = map[*string]uint64{}, map[uint64]walkPosition{}, map[uint64]bool{}
	if w := c.st.Walk; w != nil && w.DB == db {
		return *w
	}
	return walkPosition{DB: db}
}

// batchID identifies a batch by the address of its backing array's first element: the walk
// allocates each batch anew, and strategies change a batch only in place. A batch always has
// room for one key, even when filtering left it empty.
func batchID(keys []string) *string { return &keys[:1][0] }

// emitted records a batch the walk is about to give, and pos, where the walk may continue
// once this batch and every batch before it are written.
func (c *checkpointer) emitted(keys []string, pos walkPosition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.next
	c.next++
	c.ids[batchID(keys)] = n
	c.tags[n] = pos
}

// batchWritten records that the batch keys (as the walk gave it) is on the target. A nil
// checkpointer, or a batch that was not tracked (a cluster source's), does nothing.
func (c *checkpointer) batchWritten(keys []string) {
	if c == nil || cap(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := batchID(keys)
	if g := c.groups[id]; g != nil {
		delete(c.groups, id)
		g.pending--
		c.slotsWritten(g)
		return
	}
	n, ok := c.ids[id]
	if !ok {
		return
	}
	delete(c.ids, id)
	c.done[n] = true
	var last *walkPosition
	for c.done[c.written] {
		delete(c.done, c.written)
		if pos, ok := c.tags[c.written]; ok {
			last = &pos
			delete(c.tags, c.written)
		}
		c.written++
	}
	if last != nil {
		c.st.Walk = last
		c.dirty = true
	}
}

// slotGroup is slots of a cluster source read together, whose keys the walk gave in
// batches: they are done once every batch is written.
type slotGroup struct {
	slots   []uint16
	pending int  // batches not written yet
	sealed  bool // every batch was given
}

// slotDone reports whether every key of slot was written by an earlier run. A nil
// checkpointer says no.
func (c *checkpointer) slotDone(slot uint16) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[slot]
}

// slotBatch records that the walk of a cluster source gives keys, a batch of group g.
func (c *checkpointer) slotBatch(g *slotGroup, keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups == nil {
		c.groups = map[*string]*slotGroup{}
	}
	g.pending++
	c.groups[batchID(keys)] = g
}

// slotsGiven records that the walk gave every batch of g.
func (c *checkpointer) slotsGiven(g *slotGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.sealed = true
	c.slotsWritten(g)
}

// slotsWritten marks the slots of g done once every batch of g is written. c.mu is held.
func (c *checkpointer) slotsWritten(g *slotGroup) {
	if !g.sealed || g.pending > 0 {
		return
	}
	if c.slots == nil {
		c.slots = map[uint16]bool{}
	}
	for _, s := range g.slots {
		c.slots[s] = true
	}
	g.slots = nil
	var marked [slotCount]bool
	for s := range c.slots {
		marked[s] = true
	}
	c.st.Slots = slotRanges(&marked)
	c.dirty = true
}

// following records that a following Snapshot restored its snapshot and follows the
// stream from at, of masters on a cluster source (at nil: it starts a new snapshot), and
// saves the state.
func (c *checkpointer) following(ctx context.Context, at *followPoint, masters []followMaster) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.st.Follow, c.st.Masters = at, masters
	c.mu.Unlock()
	return c.save(ctx)
}

// mastersChanged says how the masters of a cluster source and their slots (srcs, owned)
// differ from those the interrupted run followed; "" when they are the same.
func (c *checkpointer) mastersChanged(srcs []*Endpoint, owned []*[slotCount]bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	saved := map[string][][2]uint16{}
	for _, m := range c.st.Masters {
		saved[m.Addr] = m.Slots
	}
	if len(saved) != len(srcs) {
		return fmt.Sprintf("%d masters followed, %d now", len(saved), len(srcs))
	}
	for i, e := range srcs {
		was, ok := saved[e.Addr]
		if !ok {
			return fmt.Sprintf("master %s was not followed", e.Addr)
		}
		if now := slotRanges(owned[i]); !slices.Equal(was, now) {
			return fmt.Sprintf("master %s served slots %v, and now %v", e.Addr, was, now)
		}
	}
	return ""
}

// slotRanges returns the slots marked as ranges of first and last slot.
func slotRanges(marked *[slotCount]bool) [][2]uint16 {
	var out [][2]uint16
	for s, in := range marked {
		if !in {
			continue
		}
		if n := len(out); n > 0 && int(out[n-1][1]) == s-1 {
			out[n-1][1] = uint16(s)
		} else {
			out = append(out, [2]uint16{uint16(s), uint16(s)})
		}
	}
	return out
}

// cutover records that the cutover function is about to be called, and saves the state.
func (c *checkpointer) cutover(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.st.Cutover = true
	c.mu.Unlock()
	return c.save(ctx)
}

// cutoverCalled reports whether an earlier run called the cutover function.
func (c *checkpointer) cutoverCalled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Cutover
}

// completed records that the migration finished and saves the state, before what must
// not happen before it (a following Snapshot deletes its offset key after the cutover).
func (c *checkpointer) completed(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.st.Complete, c.st.Walk, c.st.Slots = true, nil, nil
	c.mu.Unlock()
	return c.save(ctx)
}

// snapshotResumed reports whether this run continues an interrupted Snapshot, and where:
// the follow position, nil when the restore of the snapshot was interrupted.
func (c *checkpointer) snapshotResumed() (bool, *followPoint) {
	if c == nil || !c.resumed {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return true, c.st.Follow
}

// isResumed reports whether this run continues an interrupted one. A nil checkpointer
// says no.
func (c *checkpointer) isResumed() bool { return c != nil && c.resumed }

// walkDone reports whether the interrupted run walked every selected database: a following
// DumpRestore then followed.
func (c *checkpointer) walkDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, db := range c.st.Databases {
		if !slices.Contains(c.st.DatabasesDone, db) {
			return false
		}
	}
	return true
}

// targetEmptyAtStart reports whether the target held no key, when the migration first
// started, in the databases j writes to; false when that is not known.
func (c *checkpointer) targetEmptyAtStart(j *Job) bool {
	held, known := c.targetHeld()
	if !known {
		return false
	}
	for _, db := range j.Databases {
		if held[j.TargetDB(db)] > 0 {
			return false
		}
	}
	return true
}

// targetHeld returns the keys per database the target held when the migration first
// started, and whether that is known.
func (c *checkpointer) targetHeld() (map[int]int64, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.TargetHeld, c.st.TargetHeld != nil
}

// resume loads the checkpoint of WithCheckpoint for strategy run, fills the Report's
// Resumed or AlreadyComplete, and, unless the migration is complete, starts saving.
func (m *migrator) resume(ctx context.Context, j *Job, run Strategy, rep *Report) (*checkpointer, error) {
	switch run.(type) {
	case DumpRestore, *DumpRestore, MigrateKeys, *MigrateKeys:
	case Snapshot, *Snapshot:
	default:
		return nil, fmt.Errorf("%w: WithCheckpoint resumes DumpRestore, MigrateKeys and Snapshot, and the strategy is %s; choose one of them with WithStrategy",
			ErrUnsupported, run.Name())
	}
	c, err := loadCheckpoint(ctx, m.cfg.checkpoint, j, run.Name())
	if err != nil {
		return nil, err
	}
	if c.st.Complete {
		rep.AlreadyComplete = true
		rep.Resumed = "checkpoint saved " + c.st.Saved.UTC().Format(time.RFC3339) + ": the migration is complete"
		return nil, nil
	}
	rep.Resumed = c.resumedFrom()
	if rep.Resumed != "" {
		m.cfg.Logger.Info("migrate: resuming from the checkpoint", "from", rep.Resumed)
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

package migrate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// VerifyReport says how the target differs from the source, for the keys the filters
// select.
type VerifyReport struct {
	Compared      int64 // source keys compared with the target
	Missing       int64 // source keys absent from the target
	Extra         int64 // target keys absent from the source
	TypeMismatch  int64 // keys of another type on the target
	ValueMismatch int64 // keys of the same type with another value
	TTLMismatch   int64 // keys whose expiry differs by more than the tolerance
	// Examples are the first differences found, at most WithVerifyExamples of them.
	Examples []Difference
	Duration time.Duration
}

// Equal reports whether no difference was found.
func (r *VerifyReport) Equal() bool {
	return r.Missing+r.Extra+r.TypeMismatch+r.ValueMismatch+r.TTLMismatch == 0
}

func (r *VerifyReport) String() string {
	return fmt.Sprintf("%d keys compared: %d missing, %d extra, %d of another type, %d with another value, %d with another TTL",
		r.Compared, r.Missing, r.Extra, r.TypeMismatch, r.ValueMismatch, r.TTLMismatch)
}

// Difference is one key that differs.
type Difference struct {
	DB     int
	Key    string
	Kind   string // "missing", "extra", "type", "value" or "ttl"
	Detail string
}

func (d Difference) String() string {
	if d.Detail == "" {
		return fmt.Sprintf("db %d %q: %s", d.DB, d.Key, d.Kind)
	}
	return fmt.Sprintf("db %d %q: %s: %s", d.DB, d.Key, d.Kind, d.Detail)
}

// Verify compares the target with the source key by key, for the keys that the filters
// (WithMatch, WithTypes, WithDatabases) select: keys missing on the target, extra keys,
// type mismatches, value mismatches (DUMP payloads when both servers write the same RDB
// version, else a comparison of the values by type), and expiry differences beyond
// WithTTLTolerance. It reads both sides only, pipelined, holding only the batches in
// flight; WithSample compares a fraction of the keys. Differences are not an error: check
// VerifyReport.Equal.
//
// Keys expire while Verify runs, on each side at its own moment: a key absent on one side
// whose counterpart expires within WithTTLTolerance of the moment it was found absent is
// not a difference (it is not counted in VerifyReport.Compared either).
//
// Verify takes the options that say what to compare and how to read: WithMatch, WithTypes,
// WithDatabases, WithDBPrefix (to find each key under its target name), WithScanCount,
// WithBatchSize, WithConcurrency, WithRateLimit, WithReadFromReplicas, WithLogger,
// WithSample, WithTTLTolerance and WithVerifyExamples. It refuses the options that only
// change how Migrate writes (WithStrategy, WithConflict, WithDiscardTarget, WithProgress,
// WithVerify), since they would do nothing here.
func Verify(ctx context.Context, source, target rueidis.ClientOption, opts ...Option) (*VerifyReport, error) {
	mm, err := New(source, target, opts...)
	if err != nil {
		return nil, err
	}
	if given := mm.(*migrator).cfg.migrateOnly; len(given) > 0 {
		mm.Close()
		return nil, fmt.Errorf("migrate: Verify only reads both sides, and %s only change what Migrate does; leave them out",
			strings.Join(given, ", "))
	}
	m := mm.(*migrator)
	defer m.Close()
	j, err := m.job(ctx)
	if err != nil {
		return &VerifyReport{}, err
	}
	return m.verify(ctx, j)
}

// verifier holds the state of one verification.
type verifier struct {
	j         *Job
	sample    float64
	tolerance time.Duration
	examples  int
	samePayl  bool // both sides write the same RDB version: equal DUMPs mean equal values

	mu  sync.Mutex
	rep VerifyReport
}

func (m *migrator) verify(ctx context.Context, j *Job) (*VerifyReport, error) {
	start := time.Now()
	v := &verifier{j: j, sample: m.cfg.sample, tolerance: m.cfg.TTLTolerance, examples: m.cfg.examples}
	v.samePayl = j.Source.Info.RDBVersion() != 0 && j.Source.Info.RDBVersion() == j.Target.Info.RDBVersion()
	err := v.run(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	rep := v.rep
	rep.Duration = time.Since(start)
	sort.SliceStable(rep.Examples, func(a, b int) bool { return rep.Examples[a].DB < rep.Examples[b].DB })
	if err != nil {
		return &rep, fmt.Errorf("verify: %w", err)
	}
	return &rep, nil
}

func (v *verifier) run(ctx context.Context) error {
	for _, db := range v.j.Databases {
		if err := v.walk(ctx, db, v.j.Source, v.j.Match, v.compare); err != nil {
			return err
		}
	}
	// Each target database once: several source databases may go into one (WithDBPrefix,
	// a cluster target).
	seen := map[int]bool{}
	for _, db := range v.j.Databases {
		tdb := v.j.TargetDB(db)
		if seen[tdb] {
			continue
		}
		seen[tdb] = true
		match := v.j.Match
		if v.j.DBPrefix != "" {
			match = "" // target names carry a prefix; extra matches on the source's names
		}
		if err := v.walk(ctx, tdb, v.j.Target, match, v.extra); err != nil {
			return err
		}
	}
	return nil
}

// walk runs check on batches of the keys of one side's database db, concurrently.
func (v *verifier) walk(ctx context.Context, db int, side *Endpoint, match string, check func(context.Context, int, []string) error) error {
	walk := func(ctx context.Context, emit func([]string) error) error {
		return v.j.scanMatch(ctx, side, db, match, false, func(keys []string) error {
			if v.sample < 1 {
				keys = slices.DeleteFunc(keys, func(string) bool { return rand.Float64() >= v.sample })
			}
			return emit(keys)
		})
	}
	return fanOut(ctx, v.j.Concurrency, walk, func(ctx context.Context, keys []string) error { return check(ctx, db, keys) })
}

// keyState is what one side says of a key.
type keyState struct {
	typ     string // "none" when absent
	expire  int64  // absolute Unix ms, -1 for none
	payload string
}

func (v *verifier) read(ctx context.Context, e *Endpoint, db int, keys []string) ([]keyState, error) {
	c, err := e.Client(db)
	if err != nil {
		return nil, err
	}
	absolute := e.Info.AtLeast(7, 0, 0)
	cmds := make(rueidis.Commands, 0, 3*len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.B().Type().Key(k).Build())
		if absolute {
			cmds = append(cmds, c.B().Pexpiretime().Key(k).Build())
		} else {
			cmds = append(cmds, c.B().Pttl().Key(k).Build())
		}
		cmds = append(cmds, c.B().Dump().Key(k).Build())
	}
	now := time.Now().UnixMilli()
	res := c.DoMulti(ctx, cmds...)
	out := make([]keyState, len(keys))
	for i, k := range keys {
		s := &out[i]
		if s.typ, err = res[3*i].ToString(); err != nil {
			return nil, e.Err(fmt.Sprintf("type in db %d", db), k, ctxErr(ctx, err))
		}
		if s.expire, err = res[3*i+1].AsInt64(); err != nil {
			return nil, e.Err(fmt.Sprintf("read expiry in db %d", db), k, ctxErr(ctx, err))
		}
		if !absolute && s.expire >= 0 {
			s.expire += now
		}
		if s.payload, err = res[3*i+2].ToString(); err != nil && !rueidis.IsRedisNil(err) {
			return nil, e.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		if s.expire == -2 || (s.payload == "" && s.typ != "none") {
			// It expired between TYPE and the commands after it: gone.
			s.typ, s.expire = "none", -1
		}
	}
	return out, nil
}

// compare checks source keys against the target.
func (v *verifier) compare(ctx context.Context, db int, keys []string) error {
	src, err := v.read(ctx, v.j.Source, db, keys)
	if err != nil {
		return err
	}
	tkeys := make([]string, len(keys))
	for i, k := range keys {
		tkeys[i] = v.j.TargetKey(db, k)
	}
	dst, err := v.read(ctx, v.j.Target, v.j.TargetDB(db), tkeys)
	if err != nil {
		return err
	}
	read := time.Now().UnixMilli() // the target's keys were read by then
	for i, k := range keys {
		s, d := src[i], dst[i]
		if s.typ == "none" {
			continue // gone from the source meanwhile
		}
		var diff *Difference
		switch {
		case d.typ == "none" && v.expired(s.expire, read):
			// The copy may expire up to the tolerance before the source's key: it had.
			continue
		case d.typ == "none":
			diff = &Difference{DB: db, Key: k, Kind: "missing"}
		case s.typ != d.typ:
			diff = &Difference{DB: db, Key: k, Kind: "type", Detail: fmt.Sprintf("%s on the source, %s on the target", s.typ, d.typ)}
		case !v.ttlEqual(s.expire, d.expire):
			diff = &Difference{DB: db, Key: k, Kind: "ttl", Detail: fmt.Sprintf("expires %s on the source, %s on the target", expiry(s.expire), expiry(d.expire))}
		case s.payload == d.payload && v.samePayl:
		default:
			same, err := v.sameValue(ctx, db, k, tkeys[i], s.typ)
			if err != nil {
				return err
			}
			if !same && v.expired(s.expire, time.Now().UnixMilli()) {
				continue // one side expired between the reads, not a difference
			}
			if !same {
				diff = &Difference{DB: db, Key: k, Kind: "value", Detail: "the " + s.typ + " values differ"}
			}
		}
		v.record(diff)
	}
	return nil
}

// extra counts the keys of target database tdb that no copied source database has.
func (v *verifier) extra(ctx context.Context, tdb int, keys []string) error {
	found := make([]bool, len(keys))
	// The source keys each target key may come from, by source database.
	asked := map[int][]int{} // source db -> indexes into keys
	names := map[int][]string{}
	for i, k := range keys {
		if tdb == 0 && v.j.isOffsetKey(k) {
			found[i] = true // a following Snapshot's own (WithOffsetKey)
			continue
		}
		dbs, sk := v.j.SourceKeys(tdb, k)
		for n, db := range dbs {
			if v.j.Match != "" && !globMatch(v.j.Match, sk[n]) {
				found[i] = true // not selected: not the verification's business
				continue
			}
			asked[db] = append(asked[db], i)
			names[db] = append(names[db], sk[n])
		}
		if len(dbs) == 0 && v.j.DBPrefix != "" {
			found[i] = true // no copied database's prefix: not the migration's
		}
	}
	for db, idx := range asked {
		c, err := v.j.Source.Client(db)
		if err != nil {
			return err
		}
		cmds := make(rueidis.Commands, len(idx))
		for n, k := range names[db] {
			cmds[n] = c.B().Exists().Key(k).Build()
		}
		for n, r := range c.DoMulti(ctx, cmds...) {
			got, err := r.AsInt64()
			if err != nil {
				return v.j.Source.Err(fmt.Sprintf("exists in db %d", db), names[db][n], ctxErr(ctx, err))
			}
			if got > 0 {
				found[idx[n]] = true
			}
		}
	}
	if err := v.expiredOnTarget(ctx, tdb, keys, found); err != nil {
		return err
	}
	for i, k := range keys {
		if !found[i] {
			v.mu.Lock()
			v.rep.Extra++
			v.addExample(Difference{DB: tdb, Key: k, Kind: "extra"})
			v.mu.Unlock()
		}
	}
	return nil
}

// expiredOnTarget marks as found the target keys not found on the source that are gone or
// expire within the tolerance of now: their source keys expired first, as a copy's may, up
// to the tolerance apart. Only the keys already found extra are read again.
func (v *verifier) expiredOnTarget(ctx context.Context, tdb int, keys []string, found []bool) error {
	var idx []int
	for i := range keys {
		if !found[i] {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	e := v.j.Target
	c, err := e.Client(tdb)
	if err != nil {
		return err
	}
	absolute := e.Info.AtLeast(7, 0, 0)
	cmds := make(rueidis.Commands, len(idx))
	for n, i := range idx {
		if absolute {
			cmds[n] = c.B().Pexpiretime().Key(keys[i]).Build()
		} else {
			cmds[n] = c.B().Pttl().Key(keys[i]).Build()
		}
	}
	res := c.DoMulti(ctx, cmds...)
	now := time.Now().UnixMilli()
	for n, i := range idx {
		exp, err := res[n].AsInt64()
		if err != nil {
			return e.Err(fmt.Sprintf("read expiry in db %d", tdb), keys[i], ctxErr(ctx, err))
		}
		if !absolute && exp >= 0 {
			exp += now
		}
		if exp == -2 || v.expired(exp, now) {
			found[i] = true
		}
	}
	return nil
}

// expired reports whether a key expiring at expire (Unix ms, negative for never) may have
// expired on the other side by now: within the tolerance, as a copy's expiry may differ.
func (v *verifier) expired(expire, now int64) bool {
	return expire >= 0 && expire <= now+v.tolerance.Milliseconds()
}

func (v *verifier) record(d *Difference) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rep.Compared++
	if d == nil {
		return
	}
	switch d.Kind {
	case "missing":
		v.rep.Missing++
	case "type":
		v.rep.TypeMismatch++
	case "ttl":
		v.rep.TTLMismatch++
	case "value":
		v.rep.ValueMismatch++
	}
	v.addExample(*d)
}

func (v *verifier) addExample(d Difference) {
	if len(v.rep.Examples) < v.examples {
		v.rep.Examples = append(v.rep.Examples, d)
	}
}

func (v *verifier) ttlEqual(a, b int64) bool {
	if (a < 0) != (b < 0) {
		return false
	}
	diff := time.Duration(a-b) * time.Millisecond
	return diff <= v.tolerance && -diff <= v.tolerance
}

func expiry(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

package migrate

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// Older targets. A server loads DUMP payloads (and RDB files) of its own RDB version and
// older ones only (ServerInfo.ReadsRDB decides it), so the payloads of a newer source are
// refused by an older target even when they hold a value it has a place for. The restorer,
// which DumpRestore and Snapshot share, then rewrites each payload the target cannot read
// into one it does, with the target's RDB version in its footer and a fresh CRC-64, so it
// still goes by RESTORE (ABSTTL, REPLACE, the conflict policy and cluster routing are
// unchanged):
//
//   - a value whose type byte the target knows (a listpack hash from Redis 7.4 into 7.0,
//     anything but a hash with field TTLs into Valkey 8) keeps its bytes: only the footer
//     changes;
//   - other lists, sets, sorted sets and hashes are written in the compact encoding the
//     target would hold them in (a ziplist hash or sorted set, a quicklist of ziplists, an
//     intset: encode.go), so that it copies the blob rather than build and convert it;
//     those too large for it in the plain encodings every version since Redis 2.x loads
//     (RDB_TYPE_LIST, _SET, _ZSET_2 or, before RDB 8, _ZSET, and _HASH);
//   - a stream is written in the newest stream format the target reads: types 27 (Redis
//     8.8) to 26 (8.6) to 21 (7.2) to 19 (7.0) to 15 (5.0) differ by what the older server
//     has no place for: NACKed entries (8.8) and idempotent producers (8.6), see
//     downgradeStream; the IDMP settings and counters (8.6), the consumers' active time
//     (7.2), and the stream's first ID, largest deleted ID, entries added and the groups'
//     entries-read counters (7.0), from which 7.0 computes a group's lag. Entries,
//     groups, their last IDs, pending entries with their owners, delivery times and
//     counts, and consumers are kept.
//
// What the target cannot hold at all stops the migration with an error that names the
// key and wraps ErrIncompatible: on an older target, a hash with field TTLs (Redis 7.4),
// key metadata (Redis 8.6), a stream's idempotent producers (Redis 8.6) or NACKed
// entries (Redis 8.8), a value this package cannot decode (a module value of the Redis
// 4.0 release candidates, an RDB version newer than it knows); on any target, a module
// value when the target runs no module. WithIncompatible may say to skip such keys, or to
// drop only the part the target cannot hold; either way the keys are counted and listed
// in Report.Incompatible.

// IncompatibleReport lists the keys the target could not hold whole and that
// WithIncompatible let the migration leave out or copy in part.
type IncompatibleReport struct {
	// Skipped counts the keys left out; Report.Skipped counts them too.
	Skipped int64
	// Trimmed counts the keys copied without the part the target cannot hold (a hash
	// without its field TTLs); Report.Keys counts them too.
	Trimmed int64
	// Keys are the first incompatibleExamples of them, in the order met.
	Keys []IncompatibleKey
}

// IncompatibleKey is one key the target could not hold whole.
type IncompatibleKey struct {
	DB      int    // the source database
	Key     string // the key's name on the source
	Reason  string // what the target cannot hold, and why
	Trimmed bool   // copied without that part; false when left out
}

// incompatibleExamples bounds IncompatibleReport.Keys, so memory does not grow with them.
const incompatibleExamples = 100

// noteIncompatible records a key the target could not hold whole, for the Report and the log.
func (j *Job) noteIncompatible(db int, key, reason string, trimmed bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := &j.incompatible
	if trimmed {
		r.Trimmed++
	} else {
		r.Skipped++
	}
	if len(r.Keys) < incompatibleExamples {
		r.Keys = append(r.Keys, IncompatibleKey{DB: db, Key: key, Reason: reason, Trimmed: trimmed})
		what := "left out"
		if trimmed {
			what = "copied in part"
		}
		j.Logger.Warn("restore: a key the target cannot hold whole is "+what, "db", db, "key", key, "reason", reason)
	}
}

// downgrader rewrites DUMP payloads that the target cannot read into ones it reads.
type downgrader struct {
	j       *Job
	version int  // the target's RDB version, written into rewritten payloads
	valkey  bool // the target is Valkey, which reads Redis's types up to RDB 11 only
	reads   [rdbMaxValkeyVersion + 1]bool
	streams sync.Once // logs, once, what an older stream format leaves out
	modules sync.Once // reads, once, whether the target runs modules
	// noModules says the target runs no module (MODULE LIST is empty), so it holds no
	// module value.
	noModules bool
	// limits are the target's thresholds for the compact encodings a rewrite writes
	// (encode.go), read once (limitsOnce) before the first rewrite.
	limits     compactLimits
	limitsOnce sync.Once
}

// newDowngrader returns the downgrader of j's target. When the target's RDB version is
// unknown, every payload goes as it is, and the target says whether it reads it.
func newDowngrader(j *Job) *downgrader {
	t := j.Target.Info
	d := &downgrader{j: j, version: t.RDBVersion(), valkey: t.IsValkey(), limits: defaultCompactLimits}
	for v := range d.reads {
		d.reads[v] = t.ReadsRDB(v)
	}
	return d
}

// readable reports whether the target reads payloads of RDB version v.
func (d *downgrader) readable(v int) bool {
	if v < len(d.reads) {
		return d.reads[v]
	}
	return d.j.Target.Info.ReadsRDB(v)
}

// fit makes d's payload one the target reads, rewriting it when the target cannot read
// the version it was written in (see downgrader), and refuses a module value when the
// target runs no module. It returns keep false for a key that is not to be written:
// already expired (counted Expired), or one the target cannot hold, left out under
// WithIncompatible(SkipIncompatible) (counted Skipped); and an error, which stops the
// migration, for such a key under the default policy (counted Failed). Only a payload
// the target cannot read, or a module value, costs more than a look at its first and
// last bytes.
func (r *restorer) fit(ctx context.Context, d *dumped, db int, now int64, counts *Counts) (keep bool, err error) {
	if r.down == nil || len(d.payload) < 1+10 || d.payload[0] == RDBTypeString && r.setStrings {
		return true, nil // a string goes by SET, whatever its payload's version
	}
	if t := d.payload[0]; t == RDBTypeModule2 || t == RDBTypeModule {
		if why := r.down.moduleMissing(ctx, d.payload); why != "" {
			return r.refuse(d, db, why, why, false, counts)
		}
	}
	from := int(binary.LittleEndian.Uint16([]byte(d.payload[len(d.payload)-10:])))
	if r.down.readable(from) {
		return true, nil
	}
	body := d.payload[:len(d.payload)-8]
	if !d.sealed && crc64Jones(0, body) != binary.LittleEndian.Uint64([]byte(d.payload[len(body):])) {
		return true, nil // the target refuses it, and restoreErr says why
	}
	r.down.readLimits(ctx)
	out, res := r.down.rewrite(body, from, now, r.j.Incompatible == TrimIncompatible)
	switch {
	case res.gone:
		counts.Expired++
		return false, nil
	case res.unfit == "":
		d.payload, d.sealed = out, true
		if res.trimmed != "" {
			r.j.noteIncompatible(db, d.key, res.trimmed, true)
		}
		return true, nil
	}
	return r.refuse(d, db, res.unfit, fmt.Sprintf(
		"the target runs %s (RDB %d) and cannot read the source's payload of RDB %d, which cannot be rewritten for it: %s",
		describeVersion(r.j.Target.Info), r.down.version, from, res.unfit), res.trimmable, counts)
}

// refuse handles a key the target cannot hold, for reason (why, at length, for the
// error), as WithIncompatible says: left out (keep false), or an error wrapping
// ErrIncompatible that names the key.
func (r *restorer) refuse(d *dumped, db int, reason, why string, trimmable bool, counts *Counts) (keep bool, err error) {
	if p := r.j.Incompatible; p == SkipIncompatible || p == TrimIncompatible {
		counts.Skipped++
		r.j.noteIncompatible(db, d.key, reason, false)
		return false, nil
	}
	counts.Failed++
	hint := "leave such keys out with migrate.WithIncompatible(migrate.SkipIncompatible)"
	if trimmable {
		hint = "copy them without that part with migrate.WithIncompatible(migrate.TrimIncompatible), or leave them out with migrate.WithIncompatible(migrate.SkipIncompatible)"
	}
	return false, r.j.Target.Err(fmt.Sprintf("restore into db %d", r.j.TargetDB(db)), d.key, fmt.Errorf(
		"%w: %s; upgrade the target, or %s", ErrIncompatible, why, hint))
}

// moduleTypeChars are the characters of a module type's name, as its 64-bit id encodes
// them (Redis src/module.c, moduleTypeEncodeId).
const moduleTypeChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// moduleMissing says why the target cannot hold the module value of payload: it runs no
// module at all (MODULE LIST, read once, is empty). A target that runs modules, or does
// not say, gets the value, and refuses it if its module is not among them; the check
// matters because Redis 5.0 exits, rather than refuse, on a RESTORE of a module value it
// has no module for.
func (d *downgrader) moduleMissing(ctx context.Context, payload string) string {
	d.modules.Do(func() {
		c, err := d.j.Target.Default()
		if err != nil {
			return
		}
		list, err := c.Do(ctx, c.B().ModuleList().Build()).ToArray()
		d.noModules = err == nil && len(list) == 0
	})
	if !d.noModules {
		return ""
	}
	name := "unknown"
	if id, _, ok := rdbLength(payload[1:]); ok && payload[0] == RDBTypeModule2 {
		b := make([]byte, 9)
		for i := range b {
			b[i] = moduleTypeChars[id>>(10+6*(8-i))&63]
		}
		name = string(b)
	}
	return fmt.Sprintf("it is a value of module type %q, and %s runs no module (MODULE LIST is empty)", name, d.j.Target.Info.Name())
}

// rewritten says how a rewrite went.
type rewritten struct {
	gone      bool   // every element had expired: the key is gone
	unfit     string // why the target cannot hold the value; "" when it can
	trimmable bool   // dropping a part (trimmed) would make it fit
	trimmed   string // what was dropped, when trimming was allowed and needed
}

// rewrite returns body (a DUMP payload without its checksum: the type byte, the value and
// the RDB version from) as a payload of the target's RDB version that holds the same value,
// or why it cannot. With trim, a part the target cannot hold, when that is all, is dropped
// and named. now drops hash fields already expired.
func (d *downgrader) rewrite(body string, from int, now int64, trim bool) (string, rewritten) {
	t, v := body[0], body[1:len(body)-2]
	valkey := from >= rdbMinValkeyVersion
	switch {
	case !rdbVersionKnown(from):
		return "", rewritten{unfit: fmt.Sprintf("RDB %d is newer than this package reads", from)}
	case t == rdbOpKeyMeta && !valkey && from >= 13:
		return d.withoutKeyMeta(body, from, now, trim)
	case d.knows(t, valkey):
		return d.seal(t, v), rewritten{}
	}
	var out []byte
	switch t {
	case RDBTypeList, RDBTypeListZiplist, RDBTypeListQuicklist, RDBTypeListQuicklist2:
		elems, ok := listElements(t, v)
		if !ok {
			return "", d.undecodable(t)
		}
		if out = d.compactList(elems); out == nil {
			out = appendRDBStrings(appendRDBLength(newPayload(RDBTypeList, len(v)), uint64(len(elems))), elems)
		}
	case RDBTypeSet, RDBTypeSetIntset, RDBTypeSetListpack:
		members, ok := setMembers(t, v)
		if !ok {
			return "", d.undecodable(t)
		}
		if out = d.compactSet(members); out == nil {
			out = appendRDBStrings(appendRDBLength(newPayload(RDBTypeSet, len(v)), uint64(len(members))), members)
		}
	case RDBTypeZSet, RDBTypeZSet2, RDBTypeZSetZiplist, RDBTypeZSetListpack:
		if t == RDBTypeZSetListpack {
			if out = d.listpackZSetAsZiplist(v); out != nil {
				break
			}
		}
		entries, ok := zsetEntries(t, v)
		if !ok {
			return "", d.undecodable(t)
		}
		if out = d.compactZSet(entries); out == nil {
			out = d.appendZSet(entries, len(v))
		}
	case RDBTypeHash, RDBTypeHashZipmap, RDBTypeHashZiplist, RDBTypeHashListpack,
		RDBTypeHashMetadataPreGA, RDBTypeHashListpackExPreGA, RDBTypeHashMetadata, RDBTypeHashListpackEx:
		if t == RDBTypeValkeyPathHash && valkey {
			return "", d.undecodable(t)
		}
		if t == RDBTypeHashListpack {
			if out = d.listpackHashAsZiplist(v); out != nil {
				break
			}
		}
		fields, ok := hashFields(t, v, valkey)
		if !ok {
			return "", d.undecodable(t)
		}
		return d.rewriteHash(fields, len(v), now, trim)
	case RDBTypeStreamListpacks, RDBTypeStreamListpacks2, RDBTypeStreamListpacks3,
		RDBTypeStreamListpacks4, RDBTypeStreamListpacks5:
		if d.version < 9 {
			return "", rewritten{unfit: fmt.Sprintf("it is a stream, and %s has none (streams need Redis 5.0)", d.j.Target.Info.Name())}
		}
		s, res := d.downgradeStream(t, v, trim)
		if res.unfit == "" {
			d.streams.Do(func() {
				d.j.Logger.Info("restore: streams are rewritten in the stream format of the target's RDB version, without the metadata it has no place for "+
					"(IDMP settings and counters before Redis 8.6; consumers' active time before 7.2; first ID, largest deleted ID, "+
					"entries added and groups' entries-read before 7.0)",
					"target_rdb", d.version)
			})
		}
		return s, res
	default:
		return "", d.undecodable(t)
	}
	return d.sealed(out), rewritten{}
}

// withoutKeyMeta rewrites a payload that starts with a key metadata record (Redis 8.6,
// RDB 13; Redis src/keymeta.c): module data attached to the key, which no older server
// has a place for. With trim the record is dropped and the value rewritten; else the
// key is unfit.
func (d *downgrader) withoutKeyMeta(body string, from int, now int64, trim bool) (string, rewritten) {
	c := rdbCursor{in: body[1 : len(body)-2], ok: true}
	classes := c.length(false)
	for i := uint64(0); i < classes && c.ok; i++ {
		c.bytes(4, false) // the class spec
		c.moduleOps()
	}
	if !c.ok || c.in == "" {
		return "", d.undecodable(rdbOpKeyMeta)
	}
	why := fmt.Sprintf("it carries key metadata (Redis 8.6), which %s has no place for", d.j.Target.Info.Name())
	if !trim {
		return "", rewritten{unfit: why, trimmable: true}
	}
	out, res := d.rewrite(c.in+body[len(body)-2:], from, now, trim)
	if res.unfit == "" && !res.gone {
		res.trimmed = strings.TrimPrefix(res.trimmed+"; "+why+", so it is copied without it", "; ")
	}
	return out, res
}

// undecodable says that a value of type t is one this package cannot rewrite.
func (d *downgrader) undecodable(t byte) rewritten {
	return rewritten{unfit: fmt.Sprintf("its value (RDB type %d) is in a format that %s does not read and that this package cannot rewrite", t, d.j.Target.Info.Name())}
}

// rdbTypeSince returns the RDB version that introduced value type t (Redis src/rdb.h);
// valkey says t is from a Valkey payload (RDB 80 and up), whose 22 and 23 are Valkey's.
func rdbTypeSince(t byte, valkey bool) int {
	switch {
	case valkey && t == RDBTypeValkeyHash2:
		return 80 // Valkey 9.0
	case valkey && t == RDBTypeValkeyPathHash:
		return 81 // Valkey 9.2
	case t <= RDBTypeHash:
		return 1
	case t <= RDBTypeModule2:
		return 8 // Redis 4.0: binary zset scores, modules
	case t <= RDBTypeHashZiplist:
		return 6 // Redis 2.6 at the latest: zipmap, ziplists, intset
	case t == RDBTypeListQuicklist:
		return 7 // Redis 3.2
	case t == RDBTypeStreamListpacks:
		return 9 // Redis 5.0
	case t <= RDBTypeStreamListpacks2:
		return 10 // Redis 7.0: listpacks
	case t <= RDBTypeStreamListpacks3:
		return 11 // Redis 7.2
	case t <= RDBTypeHashListpackEx:
		return 12 // Redis 7.4: hash field expiration
	case t == RDBTypeStreamListpacks4:
		return 13 // Redis 8.6: idempotent producers
	case t == RDBTypeStreamListpacks5:
		return 14 // Redis 8.8: NACKed entries
	}
	return math.MaxInt
}

// knows reports whether the target loads value type t as it is.
func (d *downgrader) knows(t byte, valkey bool) bool {
	since := rdbTypeSince(t, valkey)
	switch {
	case since >= rdbMinValkeyVersion:
		return d.valkey && since <= d.version
	case d.valkey:
		return since <= min(d.version, 11) // Valkey forked Redis 7.2 (RDB 11)
	}
	return since <= d.version
}

// seal returns the payload of type t and value v at the target's RDB version.
func (d *downgrader) seal(t byte, v string) string {
	p := make([]byte, 0, 1+len(v)+10)
	p = append(append(p, t), v...)
	p = binary.LittleEndian.AppendUint16(p, uint16(d.version))
	return string(binary.LittleEndian.AppendUint64(p, crc64Jones(0, p)))
}

// sealed returns p, a type byte and a value, as a payload at the target's RDB version.
func (d *downgrader) sealed(p []byte) string {
	p = binary.LittleEndian.AppendUint16(p, uint16(d.version))
	return string(binary.LittleEndian.AppendUint64(p, crc64Jones(0, p)))
}

// appendZSet writes a sorted set with binary scores (RDB 8, Redis 4.0), or as text before.
func (d *downgrader) appendZSet(entries []zsetEntry, size int) []byte {
	t := RDBTypeZSet2
	if d.version < 8 {
		t = RDBTypeZSet
	}
	out := appendRDBLength(newPayload(t, size+8*len(entries)), uint64(len(entries)))
	for _, e := range entries {
		out = appendRDBString(out, e.member)
		if t == RDBTypeZSet2 {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(e.score))
			continue
		}
		switch {
		case math.IsNaN(e.score):
			out = append(out, 253)
		case math.IsInf(e.score, 1):
			out = append(out, 254)
		case math.IsInf(e.score, -1):
			out = append(out, 255)
		default:
			s := strconv.FormatFloat(e.score, 'g', 17, 64)
			out = append(append(out, byte(len(s))), s...)
		}
	}
	return out
}

// rewriteHash writes a hash in the plain encoding, or, on a target that has field TTLs
// (Redis 7.4, RDB 12; Valkey 9, RDB 80), with them in its format. Fields already expired are left out. Field TTLs on a
// target that has none make the hash unfit, or, with trim, are dropped.
func (d *downgrader) rewriteHash(fields []hashField, size int, now int64, trim bool) (string, rewritten) {
	live, withTTL := fields[:0], 0
	var minExpire int64
	for _, f := range fields {
		if f.expireAt > 0 && f.expireAt <= now {
			continue
		}
		if f.expireAt > 0 {
			if withTTL == 0 || f.expireAt < minExpire {
				minExpire = f.expireAt
			}
			withTTL++
		}
		live = append(live, f)
	}
	if len(live) == 0 {
		return "", rewritten{gone: true}
	}
	var res rewritten
	if withTTL > 0 && !d.valkey && d.version >= 12 {
		// RDB_TYPE_HASH_METADATA: the smallest expiry, then each field's TTL relative to
		// it plus 1 (0 for none), the field and the value (Redis 7.4 src/rdb.c).
		out := binary.LittleEndian.AppendUint64(newPayload(RDBTypeHashMetadata, size), uint64(minExpire))
		out = appendRDBLength(out, uint64(len(live)))
		for _, f := range live {
			var ttl uint64
			if f.expireAt > 0 {
				ttl = uint64(f.expireAt-minExpire) + 1
			}
			out = appendRDBString(appendRDBString(appendRDBLength(out, ttl), f.field), f.value)
		}
		return d.sealed(out), res
	}
	if withTTL > 0 && d.valkey && d.version >= rdbMinValkeyVersion {
		// Valkey's HASH_2 (Valkey 9.0): each field, its value and its expiry as 8 bytes,
		// -1 for none (Valkey src/rdb.c).
		out := appendRDBLength(newPayload(RDBTypeValkeyHash2, size+8*len(live)), uint64(len(live)))
		for _, f := range live {
			at := uint64(math.MaxUint64) // -1
			if f.expireAt > 0 {
				at = uint64(f.expireAt)
			}
			out = binary.LittleEndian.AppendUint64(appendRDBString(appendRDBString(out, f.field), f.value), at)
		}
		return d.sealed(out), res
	}
	if withTTL > 0 {
		why := fmt.Sprintf("%d of its fields have a TTL (hash field expiration, Redis 7.4), and %s has no field TTLs", withTTL, d.j.Target.Info.Name())
		if !trim {
			return "", rewritten{unfit: why, trimmable: true}
		}
		res.trimmed = why + "; copied without them, so those fields do not expire on the target"
	}
	if out := d.compactHash(live); out != nil {
		return d.sealed(out), res
	}
	out := appendRDBLength(newPayload(RDBTypeHash, size), uint64(len(live)))
	for _, f := range live {
		out = appendRDBString(appendRDBString(out, f.field), f.value)
	}
	return d.sealed(out), res
}

// downgradeStream writes a stream of type t (19 to 27) in the newest stream format the
// target reads, dropping the metadata the older format has no place for (see downgrader).
// The listpacks, counts, IDs and names are copied as they are. Two parts of the newest
// formats are more than metadata: the idempotent producers of Redis 8.6 (type 26; XADD
// IDMP, which remembers recent idempotent IDs to refuse duplicates) and the negatively
// acknowledged entries of Redis 8.8 (type 27; XNACK: pending entries no consumer owns,
// which no older format may hold, since older servers require an owner for each). A
// stream with either does not fit, or, with trim, is written without them: no producer
// history, and the NACKed entries no longer pending.
func (d *downgrader) downgradeStream(t byte, v string, trim bool) (string, rewritten) {
	to := RDBTypeStreamListpacks
	for _, newer := range []byte{RDBTypeStreamListpacks4, RDBTypeStreamListpacks3, RDBTypeStreamListpacks2} {
		if t >= newer && d.knows(newer, false) {
			to = newer
			break
		}
	}
	c := rdbCursor{in: v, out: make([]byte, 0, len(v)+1), ok: true}
	c.out = append(c.out, to)
	nodes := c.length(true)
	for i := uint64(0); i < nodes && c.ok; i++ {
		c.str(true) // the node's master ID
		c.str(true) // its listpack
	}
	c.lengths(3, true) // length, last ID
	if t >= RDBTypeStreamListpacks2 {
		c.lengths(5, to >= RDBTypeStreamListpacks2) // first ID, max deleted ID, entries added
	}
	var nacked, producers uint64
	groups := c.length(true)
	for g := uint64(0); g < groups && c.ok; g++ {
		nacked += c.streamGroup(t, to)
	}
	if t >= RDBTypeStreamListpacks4 {
		keep := to >= RDBTypeStreamListpacks4
		c.lengths(2, keep) // IDMP duration and maximum entries
		producers = c.length(keep)
		for p := uint64(0); p < producers && c.ok; p++ {
			c.str(keep) // producer ID
			n := c.length(keep)
			for i := uint64(0); i < n && c.ok; i++ {
				c.str(keep)        // idempotent ID
				c.lengths(2, keep) // its stream ID
			}
		}
		c.lengths(2, keep) // IIDs added, duplicates
		if keep {
			producers = 0
		}
	}
	if !c.ok || c.in != "" {
		return "", d.undecodable(t)
	}
	var res rewritten
	if nacked > 0 || producers > 0 {
		var parts []string
		if producers > 0 {
			parts = append(parts, fmt.Sprintf("the idempotent IDs of %d producers (XADD IDMP, Redis 8.6)", producers))
		}
		if nacked > 0 {
			parts = append(parts, fmt.Sprintf("%d negatively acknowledged pending entries (XNACK, Redis 8.8)", nacked))
		}
		why := fmt.Sprintf("it is a stream that holds %s, which %s has no place for", strings.Join(parts, " and "), d.j.Target.Info.Name())
		if !trim {
			return "", rewritten{unfit: why, trimmable: true}
		}
		res.trimmed = why + "; copied without them (duplicates are no longer refused, and those entries are no longer pending)"
	}
	return d.sealed(c.out), res
}

// streamGroup copies one consumer group of a stream of type t as type to, and returns how
// many NACKed entries (type 27) it left out of the group's PEL.
func (c *rdbCursor) streamGroup(t, to byte) (nacked uint64) {
	c.str(true)        // name
	c.lengths(2, true) // last delivered ID
	if t >= RDBTypeStreamListpacks2 {
		c.lengths(1, to >= RDBTypeStreamListpacks2) // entries read
	}
	pelAt := len(c.out)
	pel := c.length(true)
	var entries []string // the PEL's entries as written, while NACKed ones may be dropped
	for i := uint64(0); i < pel && c.ok; i++ {
		at := len(c.out)
		c.bytes(16+8, true) // ID, delivery time
		c.lengths(1, true)  // delivery count
		if t >= RDBTypeStreamListpacks5 && to < RDBTypeStreamListpacks5 && c.ok {
			entries = append(entries, string(c.out[at:]))
		}
	}
	consumersAt := len(c.out)
	consumers := c.length(true)
	for i := uint64(0); i < consumers && c.ok; i++ {
		c.str(true)      // name
		c.bytes(8, true) // seen time
		if t >= RDBTypeStreamListpacks3 {
			c.bytes(8, to >= RDBTypeStreamListpacks3) // active time (Redis 7.2)
		}
		cpel := c.length(true)
		c.bytes(int(min(cpel, uint64(len(c.in)/16+1)))*16, true)
	}
	if t < RDBTypeStreamListpacks5 || !c.ok {
		return 0
	}
	keep := to >= RDBTypeStreamListpacks5
	n := c.length(keep) // the NACK zone (Redis 8.8): IDs of unowned PEL entries
	if !keep && n > 0 && c.ok {
		drop := make(map[string]bool, min(n, uint64(len(c.in)/16+1)))
		for i := uint64(0); i < n && c.ok; i++ {
			if c.ok = len(c.in) >= 16; c.ok {
				drop[c.in[:16]] = true
				c.in = c.in[16:]
			}
		}
		consumerPart := string(c.out[consumersAt:])
		kept := entries[:0]
		for _, e := range entries {
			if !drop[e[:16]] {
				kept = append(kept, e)
			}
		}
		c.out = appendRDBLength(c.out[:pelAt], uint64(len(kept)))
		for _, e := range kept {
			c.out = append(c.out, e...)
		}
		c.out = append(c.out, consumerPart...)
		return uint64(len(entries) - len(kept))
	}
	c.bytes(int(min(n, uint64(len(c.in)/16+1)))*16, keep)
	return 0
}

// rdbCursor walks an RDB value, copying to out the parts that are kept.
type rdbCursor struct {
	in  string
	out []byte
	ok  bool
}

func (c *rdbCursor) advance(rest string, keep bool) {
	if keep {
		c.out = append(c.out, c.in[:len(c.in)-len(rest)]...)
	}
	c.in = rest
}

func (c *rdbCursor) length(keep bool) uint64 {
	if !c.ok {
		return 0
	}
	n, rest, ok := rdbLength(c.in)
	if c.ok = ok; ok {
		c.advance(rest, keep)
	}
	return n
}

// moduleOps skips module-tagged data up to its EOF opcode (Redis src/module.c).
func (c *rdbCursor) moduleOps() {
	for c.ok {
		switch op := c.length(false); op {
		case 0: // EOF
			return
		case 1, 2: // signed, unsigned integer
			c.length(false)
		case 3: // float
			c.bytes(4, false)
		case 4: // double
			c.bytes(8, false)
		case 5:
			c.str(false)
		default:
			c.ok = false
		}
	}
}

func (c *rdbCursor) lengths(n int, keep bool) {
	for range n {
		c.length(keep)
	}
}

func (c *rdbCursor) str(keep bool) {
	if !c.ok {
		return
	}
	_, rest, ok := nextString(c.in)
	if c.ok = ok; ok {
		c.advance(rest, keep)
	}
}

func (c *rdbCursor) bytes(n int, keep bool) {
	if !c.ok {
		return
	}
	if c.ok = n <= len(c.in); c.ok {
		c.advance(c.in[n:], keep)
	}
}

// newPayload starts a payload of type t for a value of about size bytes (the size of the
// value it rewrites: plain encodings take a few bytes more an element), with room for
// the footer.
func newPayload(t byte, size int) []byte {
	return append(make([]byte, 0, 1+size+size/4+16+10), t)
}

// appendRDBLength appends n in RDB's length encoding.
func appendRDBLength(b []byte, n uint64) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(n>>8)|0x40, byte(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0x80), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0x81), n)
}

// appendRDBString appends s as a plain RDB string, which every version reads.
func appendRDBString(b []byte, s string) []byte {
	return append(appendRDBLength(b, uint64(len(s))), s...)
}

func appendRDBStrings(b []byte, ss []string) []byte {
	for _, s := range ss {
		b = appendRDBString(b, s)
	}
	return b
}

// checkPayloadsAsIs refuses a strategy that sends the source's payloads as they are
// (MigrateKeys: the source's MIGRATE writes them) when the target cannot read them. The
// refusal wraps ErrUnsupported, so that Auto moves on to DumpRestore or Snapshot, which
// rewrite them, and ErrIncompatible.
func checkPayloadsAsIs(j *Job) error {
	src, dst := j.Source.Info.RDBVersion(), j.Target.Info.RDBVersion()
	if j.Target.Info.ReadsRDB(src) {
		return nil
	}
	return j.Target.Err("check versions", "", fmt.Errorf(
		"the target runs %s (RDB %d) and cannot read payloads of the source's %s (RDB %d), which MIGRATE sends as the source writes them; "+
			"use DumpRestore or Snapshot, which rewrite each value in a form the target reads, or upgrade the target: %w (%w)",
		describeVersion(j.Target.Info), dst, describeVersion(j.Source.Info), src, ErrIncompatible, ErrUnsupported))
}

// checkSnapshotVersion refuses a snapshot of RDB version (written by versionOf) that the
// target cannot read when it cannot be rewritten: written to a file as it is (toFile), or
// of a version newer than this package knows.
func checkSnapshotVersion(j *Job, version int, versionOf string, toFile bool) error {
	if version == 0 || j.Target.Info.ReadsRDB(version) {
		return nil
	}
	dst := j.Target.Info.RDBVersion()
	why := "a version newer than this package can rewrite; upgrade the target"
	switch {
	case toFile:
		why = "and ToFile keeps the snapshot as it is, for the target to load; leave ToFile out to restore each key rewritten in a form the target reads, or upgrade the target"
	case rdbVersionKnown(version):
		return nil
	}
	return j.Target.Err("check versions", "", fmt.Errorf(
		"the target runs %s (RDB %d) and cannot read the snapshot of %s (RDB %d), %s: %w (%w)",
		describeVersion(j.Target.Info), dst, versionOf, version, why, ErrIncompatible, ErrUnsupported))
}

// payloadsWarning says, for Plan, when the target cannot read the source's payloads as
// they are, which strategies rewrite them and what becomes of the keys it cannot hold.
func payloadsWarning(j *Job) string {
	src, dst := j.Source.Info, j.Target.Info
	if dst.ReadsRDB(src.RDBVersion()) {
		return ""
	}
	head := fmt.Sprintf("the target runs %s (RDB %d) and cannot read the payloads of the source's %s (RDB %d)",
		dst.Name(), dst.RDBVersion(), src.Name(), src.RDBVersion())
	if !rdbVersionKnown(src.RDBVersion()) {
		return head + ", a version newer than this package can rewrite"
	}
	policy := "stops the migration, unless WithIncompatible says otherwise"
	switch j.Incompatible {
	case SkipIncompatible:
		policy = "is left out and listed in Report.Incompatible"
	case TrimIncompatible:
		policy = "is copied without that part (a hash without its field TTLs), or left out, and listed in Report.Incompatible"
	}
	return head + ": DumpRestore and Snapshot rewrite each value in a form it reads (MigrateKeys and Replication cannot); " +
		"a key it cannot hold whole (a hash with field TTLs before Redis 7.4) " + policy
}

// functionPayload returns the FUNCTION RESTORE payload of a function library (opcode 245,
// its code, an RDB version and a CRC-64) as the target reads it: as it is, or with the
// target's RDB version when the target cannot read the snapshot's, since the library's
// code is the same text in every version. A target before Redis 7.0 has no functions: the
// error wraps ErrIncompatible.
func functionPayload(j *Job, payload []byte) ([]byte, error) {
	t := j.Target.Info
	if len(payload) < 1+10 {
		return payload, nil
	}
	from := int(binary.LittleEndian.Uint16(payload[len(payload)-10:]))
	switch {
	case t.ReadsRDB(from):
		return payload, nil
	case !t.AtLeast(7, 0, 0):
		return nil, fmt.Errorf("%w: the target runs %s, which has no functions (Redis 7.0); load the library's code with FUNCTION LOAD on a newer target, or leave it out",
			ErrIncompatible, describeVersion(t))
	}
	d := downgrader{version: t.RDBVersion()}
	body := payload[:len(payload)-10]
	return []byte(d.sealed(append(make([]byte, 0, len(body)+10), body...))), nil
}

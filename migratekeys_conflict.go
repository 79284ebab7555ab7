package migrate

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
)

// conflict counts the keys the target refused because it holds them, and under Fail returns
// the error that names the first.
func (p *migration) conflict(db int, busy []string, counts *Counts) error {
	if len(busy) == 0 {
		return nil
	}
	if p.j.Conflict == Skip {
		counts.Skipped += int64(len(busy))
		return nil
	}
	counts.Failed += int64(len(busy))
	return p.j.Target.Err(fmt.Sprintf("migrate into db %d", db), busy[0], ErrConflict)
}

// unheld returns the keys the target does not hold, the ones to send. Under Skip it counts
// the others as Skipped. Under Fail it compares those the target holds with the source's
// (sameKeys): one with the source's type, value and expiry (a key the walk returned twice,
// a migration run again) is left alone and counted as Skipped; if any has another value or
// expiry, it returns the error that stops the migration, before anything of the batch is
// sent.
func (p *migration) unheld(ctx context.Context, src, dst rueidis.Client, db int, keys []string, counts *Counts) ([]string, error) {
	onTarget, err := exist(ctx, p.j.Target, dst, db, keys, func(k string) string { return p.j.TargetKey(db, k) })
	if err != nil {
		return nil, err
	}
	var send, held []string
	for i, k := range keys {
		if onTarget[i] {
			held = append(held, k)
		} else {
			send = append(send, k)
		}
	}
	if len(held) == 0 || p.j.Conflict == Skip {
		counts.Skipped += int64(len(held))
		return send, nil
	}
	m, err := compareKeys(ctx, p.j, db, held)
	if err != nil {
		return nil, err
	}
	var conflicts []string
	for i, k := range held {
		switch m[i] {
		case keySame:
			counts.Skipped++
		case keySourceGone:
			counts.Expired++
		case keyTargetGone:
			send = append(send, k) // deleted since: send it
		default:
			conflicts = append(conflicts, k)
		}
	}
	return send, p.conflict(db, conflicts, counts)
}

// settle finds, after a MIGRATE that failed, what became of each of its keys: MIGRATE
// reports only its first error, and the target may hold any part of the batch (the keys
// it stored before a redirection, an OOM or a lost connection). It counts the keys the
// target holds as copied, those gone from both sides as expired, and returns the keys still
// to send. It reads EXISTS of every key on both sides, pipelined: a rare path only.
//
// refused says that the target refused some keys because it holds them (BUSYKEY, which a
// writer on the target causes): settle then compares the values of the keys both sides
// hold, and those that differ are conflicts (see conflict). Otherwise a key the target
// holds is the one MIGRATE stored (unheld found it absent just before), whatever the source
// holds now: a live source may have changed it since.
func (p *migration) settle(ctx context.Context, src, dst rueidis.Client, db int, keys []string, refused bool, counts *Counts) ([]string, error) {
	// The MIGRATE has ended (its reply came): nothing of this program moves these keys
	// between both readings.
	onTarget, err := exist(ctx, p.j.Target, dst, db, keys, func(k string) string { return p.j.TargetKey(db, k) })
	if err != nil {
		return nil, err
	}
	onSource, err := exist(ctx, p.j.Source, src, db, keys, nil)
	if err != nil {
		return nil, err
	}
	var send, compare, busy []string
	for i, k := range keys {
		switch {
		case !onTarget[i] && !onSource[i]:
			counts.Expired++
		case !onTarget[i]:
			send = append(send, k)
		case !p.copy && !onSource[i]:
			counts.Keys++ // moved
		case p.j.Conflict == Replace:
			if p.copy {
				counts.Keys++ // REPLACE stored it
			} else {
				send = append(send, k) // stored, but its reply lost: the source still holds it
			}
		case !p.copy && refused:
			busy = append(busy, k) // refused: a moved key leaves the source once stored
		case !p.copy:
			// Stored, and its reply lost before the source deleted it, or refused.
			compare = append(compare, k)
		case !refused:
			counts.Keys++
		default:
			compare = append(compare, k)
		}
	}
	if len(compare) > 0 {
		m, err := compareKeys(ctx, p.j, db, compare)
		if err != nil {
			return nil, err
		}
		for i, k := range compare {
			switch m[i] {
			case keySame:
				counts.Keys++
			case keySourceGone:
				counts.Keys++ // stored, and expired on the source since
			case keyTargetGone:
				send = append(send, k)
			default:
				busy = append(busy, k)
			}
		}
	}
	return send, p.conflict(db, busy, counts)
}

// busyKeys returns, after a MIGRATE the target refused with BUSYKEY, the keys it refused:
// MIGRATE's error does not name them. A moved key is deleted from the source once the
// target holds it, so the refused ones are those still there. A copied key is the same on
// both sides, so the refused ones are those the target holds with another value.
func (p *migration) busyKeys(ctx context.Context, src, dst rueidis.Client, db int, keys []string) ([]string, error) {
	if p.copy {
		return p.differing(ctx, db, keys)
	}
	onSource, err := exist(ctx, p.j.Source, src, db, keys, nil)
	if err != nil {
		return nil, err
	}
	var busy []string
	for i, k := range keys {
		if onSource[i] {
			busy = append(busy, k)
		}
	}
	return busy, nil
}

// exist reads with EXISTS, in one pipeline, whether each of keys is in database db of side
// e (c its client), under the name name gives it there (nil: its own).
func exist(ctx context.Context, e *Endpoint, c rueidis.Client, db int, keys []string, name func(string) string) ([]bool, error) {
	if name == nil {
		name = func(k string) string { return k }
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Exists().Key(name(k)).Build()
	}
	out := make([]bool, len(keys))
	for i, r := range c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, e.Err(fmt.Sprintf("exists in db %d", db), name(keys[i]), ctxErr(ctx, err))
		}
		out[i] = n > 0
	}
	return out, nil
}

// differing returns the keys both sides hold with another type, value or expiry
// (compareKeys).
func (p *migration) differing(ctx context.Context, db int, keys []string) ([]string, error) {
	m, err := compareKeys(ctx, p.j, db, keys)
	if err != nil {
		return nil, err
	}
	var diff []string
	for i, k := range keys {
		if m[i] == keyDiffers {
			diff = append(diff, k)
		}
	}
	return diff, nil
}

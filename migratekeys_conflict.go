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
// the others as Skipped. Under Fail it leaves alone, uncounted, those the target holds with
// the source's value (a key the walk returned twice, a migration run again), and returns
// the error that stops the migration if it holds any with another value, before anything of
// the batch is sent.
func (p *migration) unheld(ctx context.Context, src, dst rueidis.Client, db int, keys []string, counts *Counts) ([]string, error) {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = dst.B().Exists().Key(k).Build()
	}
	var send, held []string
	for i, r := range dst.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, p.j.Target.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if n > 0 {
			held = append(held, keys[i])
		} else {
			send = append(send, keys[i])
		}
	}
	if len(held) == 0 || p.j.Conflict == Skip {
		counts.Skipped += int64(len(held))
		return send, nil
	}
	conflicts, err := p.differing(ctx, src, dst, db, held)
	if err != nil {
		return nil, err
	}
	return send, p.conflict(db, conflicts, counts)
}

// busyKeys returns, after a MIGRATE the target refused with BUSYKEY, the keys it refused:
// MIGRATE's error does not name them. A moved key is deleted from the source once the
// target holds it, so the refused ones are those still there. A copied key is the same on
// both sides, so the refused ones are those the target holds with another value.
func (p *migration) busyKeys(ctx context.Context, src, dst rueidis.Client, db int, keys []string) ([]string, error) {
	if p.copy {
		return p.differing(ctx, src, dst, db, keys)
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = src.B().Exists().Key(k).Build()
	}
	var busy []string
	for i, r := range src.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, p.j.Source.Err(fmt.Sprintf("exists in db %d", db), keys[i], ctxErr(ctx, err))
		}
		if n > 0 {
			busy = append(busy, keys[i])
		}
	}
	return busy, nil
}

// differing returns the keys both sides hold with different DUMP payloads. Payloads of
// large sets and hashes list their members in each server's own order, so an equal value may
// count as different; never the other way round.
func (p *migration) differing(ctx context.Context, src, dst rueidis.Client, db int, keys []string) ([]string, error) {
	dumps := func(c rueidis.Client) []rueidis.RedisResult {
		cmds := make(rueidis.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = c.B().Dump().Key(k).Build()
		}
		return c.DoMulti(ctx, cmds...)
	}
	mine, theirs := dumps(src), dumps(dst)
	var diff []string
	for i, k := range keys {
		a, err := mine[i].ToString()
		if rueidis.IsRedisNil(err) {
			continue // gone from the source: nothing to send
		}
		if err != nil {
			return nil, p.j.Source.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		b, err := theirs[i].ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, p.j.Target.Err(fmt.Sprintf("dump in db %d", db), k, ctxErr(ctx, err))
		}
		if !sameValue(a, b) {
			diff = append(diff, k)
		}
	}
	return diff, nil
}

// sameValue compares two DUMP payloads without their footers (RDB version and checksum),
// so a newer target's copy of a value still matches the source's.
func sameValue(a, b string) bool {
	const footer = 10
	if len(a) < footer || len(b) < footer {
		return a == b
	}
	return a[:len(a)-footer] == b[:len(b)-footer]
}

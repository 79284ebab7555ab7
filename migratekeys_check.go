package migrate

import (
	"context"
	"strconv"
)

// checkAccess refuses, all at once, every command that MigrateKeys needs and a side refuses
// to its user (see probeCommands): on the source SCAN, MULTI, EXISTS, MIGRATE and EXEC (and
// DUMP, which compares a key that exists on both sides, unless Replace); on the target
// SELECT and RESTORE (RESTORE-ASKING into a cluster), which MIGRATE runs there as the target's user (and EXISTS and DUMP, for
// conflicts, unless Replace). When none is refused, a MIGRATE of a missing key, in a
// MULTI as Run sends it, checks the arguments this migration gives it (the source answers
// NOKEY before connecting anywhere).
func (p *migration) checkAccess(ctx context.Context) error {
	j := p.j
	key := probeKey()
	src := [][]string{{"SCAN", "0"}, {"MULTI"}, {"EXISTS", key},
		{"MIGRATE", p.host, p.port, key, "0", "1", "COPY"}, {"EXEC"}}
	// MIGRATE selects the database on the target, then restores.
	restore := "RESTORE"
	if j.Target.Cluster() {
		restore = "RESTORE-ASKING"
	}
	dst := [][]string{{"SELECT", strconv.Itoa(j.Target.Option.SelectDB)}, {restore, key, "0", "not-a-payload"}}
	if j.Conflict != Replace {
		src = append(src, []string{"DUMP", key})
		dst = append(dst, []string{"EXISTS", key}, []string{"DUMP", key})
	}
	if err := joinRefusals(checkCommands(ctx, j.Source, src...), checkCommands(ctx, j.Target, dst...)); err != nil {
		return err
	}
	return p.probe(ctx)
}

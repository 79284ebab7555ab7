package migrate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/redis/rueidis"
)

// filterName names the option that narrows the copy.
func filterName(j *Job) string {
	switch {
	case j.Match != "":
		return fmt.Sprintf("WithMatch(%q)", j.Match)
	case len(j.Types) > 0:
		return fmt.Sprintf("WithTypes(%q)", j.Types)
	case j.Source.Option.SelectDB != 0:
		return fmt.Sprintf("the source's SelectDB %d (or WithDatabases)", j.Source.Option.SelectDB)
	}
	return fmt.Sprintf("WithDatabases(%v)", j.Databases)
}

// checkReplicaVersion refuses a target older than the source: a replica must read the
// source's RDB and understand its replication stream.
func checkReplicaVersion(j *Job) error {
	src, dst := j.Source.Info, j.Target.Info
	if src == nil || dst == nil || src.Version == "" || dst.Version == "" {
		return nil
	}
	if versionNumber(dst.Version) >= versionNumber(src.Version) {
		return nil
	}
	return j.Target.Err("check versions", "", fmt.Errorf(
		"the target runs %s, older than the source's %s, and a replica must run the same version or a newer one; upgrade the target or use another strategy: %w (%w)",
		describeVersion(dst), describeVersion(src), ErrIncompatible, ErrUnsupported))
}

// checkDatabaseSetting refuses a target whose databases setting is lower than the source's,
// for a copy of everything the source holds (Replication, or, with toFile, Snapshot's
// ToFile): keys of a database the target lacks, in the snapshot, make the target exit as it
// loads it, and a write to one that a replica receives is lost. The databases the source
// uses now are checked by checkDatabaseRange; this is about those it may use by then.
func checkDatabaseSetting(ctx context.Context, j *Job, toFile bool) error {
	dst, dstHow, err := databaseCount(ctx, j.Target)
	if err != nil {
		return err
	}
	src, srcHow, err := databaseCount(ctx, j.Source)
	if err != nil {
		return err
	}
	if src <= dst {
		return nil
	}
	lacks := fmt.Sprintf("databases %d to %d", dst, src-1)
	if src-1 == dst {
		lacks = fmt.Sprintf("database %d", dst)
	}
	why := fmt.Sprintf("a replica loads everything the source holds, and keys in %s would make the target exit as it loads them; "+
		"it then gets every write of the source, and one to %s would be lost", lacks, lacks)
	if toFile {
		why = fmt.Sprintf("the dump of ToFile holds everything the source holds when it is taken, and keys in %s would make the target exit as it loads it", lacks)
	}
	return j.Target.Err("check databases", "", unsupported(
		"the source has %d databases (%s) and the target %d (%s): %s; set databases %d on the target (which needs a restart), "+
			"or copy key by key (DumpRestore, MigrateKeys, or Snapshot without ToFile) the databases the target has",
		src, srcHow, dst, dstHow, why, src))
}

// checkTargetEmpty refuses a target that holds keys, unless the user allows discarding them.
func checkTargetEmpty(j *Job) error {
	if j.DiscardTarget {
		return nil
	}
	var n int64
	var dbs []string
	for _, db := range slices.Sorted(maps.Keys(j.Target.Info.Keyspace)) {
		if k := j.Target.Info.Keyspace[db]; k > 0 {
			n += k
			dbs = append(dbs, fmt.Sprintf("db %d: %d", db, k))
		}
	}
	if n == 0 {
		return nil
	}
	what := fmt.Sprintf("%d keys", n)
	if n == 1 {
		what = "1 key"
	}
	return j.Target.Err("check keys", "", unsupported(
		"the target holds %s (%s), which replication would discard; give migrate.WithDiscardTarget() to allow it, or empty the target",
		what, strings.Join(dbs, ", ")))
}

// replicaOfCommand returns the name under which the target accepts REPLICAOF: "REPLICAOF",
// or "SLAVEOF" on servers older than 5.0 or when only SLAVEOF is allowed. The probe runs
// neither (see probeCommands).
func replicaOfCommand(ctx context.Context, j *Job) (string, error) {
	names := []string{"REPLICAOF", "SLAVEOF"}
	if !j.Target.Info.AtLeast(5, 0, 0) {
		names = names[1:]
	}
	cmds := make([][]string, len(names))
	for i, name := range names {
		cmds[i] = []string{name, "NO", "ONE"}
	}
	vs, err := probeCommands(ctx, j.Target, cmds...)
	if err != nil {
		return "", err
	}
	for i, v := range vs {
		if !v.refused() {
			return names[i], nil
		}
	}
	if err := checkEither(ctx, j.Target, "replication, which makes the target a replica with it,", cmds...); err != nil {
		return "", err
	}
	return names[0], nil
}

// setting is one configuration parameter of the target that the sync needs changed.
type setting struct{ name, old, want string }

// authSettings returns the target's masterauth and masteruser settings that differ from the
// source's Password and Username, with their current values, which are put back at the
// end. A setting the target does not let read is left alone when the source needs none.
func authSettings(ctx context.Context, j *Job) ([]setting, error) {
	c, err := j.Target.Default()
	if err != nil {
		return nil, err
	}
	opt := j.Source.Option
	wants := []setting{{name: "masterauth", want: opt.Password}}
	if j.Target.Info.AtLeast(6, 0, 0) {
		wants = append(wants, setting{name: "masteruser", want: opt.Username})
	} else if opt.Username != "" && opt.Username != "default" {
		return nil, j.Target.Err("check masteruser", "", unsupported(
			"the target runs %s and cannot authenticate to the source as the ACL user %q (masteruser needs Redis 6.0)",
			describeVersion(j.Target.Info), opt.Username))
	}
	var out []setting
	for _, s := range wants {
		old, ok := configGet(ctx, c, s.name)
		if !ok {
			if ctx.Err() != nil {
				return nil, j.Target.Err("config get "+s.name, "", ctx.Err())
			}
			if s.want == "" {
				continue
			}
			// Say why: the command, or the parameter.
			if err := checkCommand(ctx, j.Target, "CONFIG", "GET", s.name); err != nil {
				return nil, fmt.Errorf("the source needs authentication, so the target's %s must be set: %w", s.name, err)
			}
			return nil, j.Target.Err("config get "+s.name, "", unsupported(
				"the source needs authentication, and the target cannot read its %s setting", s.name))
		}
		if old != s.want {
			s.old = old
			out = append(out, s)
		}
	}
	return out, nil
}

// checkTLSReplication refuses a target that cannot reach the source the way the source is
// reached from here. Over TLS (the source's TLSConfig is set), the target needs
// tls-replication yes, which Redis accepts only with its certificates; without TLS,
// tls-replication yes would make it speak TLS to a source that has no tls-port. What the
// target will not tell (CONFIG GET refused) is left to the sync, which then fails within
// LinkTimeout. It never changes the setting: CONFIG SET tls-replication yes kills some
// servers built without TLS.
func checkTLSReplication(ctx context.Context, j *Job) error {
	c, err := j.Target.Default()
	if err != nil {
		return err
	}
	repl, ok := configGet(ctx, c, "tls-replication")
	if j.Source.Option.TLSConfig == nil {
		if !ok || repl != "yes" {
			return nil
		}
		sc, err := j.Source.Default()
		if err != nil {
			return err
		}
		if port, ok := configGet(ctx, sc, "tls-port"); !ok || port != "0" {
			return nil // the source may have a TLS port for SourceAddr to name
		}
		return j.Target.Err("check tls-replication", "", unsupported(
			"the target has tls-replication yes and would speak TLS to the source, which has no tls-port and is reached "+
				"without TLS; set tls-replication no on the target (CONFIG SET tls-replication no), or give the source a "+
				"tls-port and reach it over TLS (TLSConfig)"))
	}
	if ok && repl == "yes" {
		return nil
	}
	if !ok {
		if _, readable := configGet(ctx, c, "port"); !readable {
			return nil // CONFIG GET refused: the sync will tell
		}
		return j.Target.Err("check tls-replication", "", unsupported(
			"the source is reached over TLS, and the target knows no tls-replication setting: its redis-server is built "+
				"without TLS and cannot replicate from a TLS source; use Snapshot or DumpRestore, which connect from here"))
	}
	cert, _ := configGet(ctx, c, "tls-cert-file")
	clientCert, _ := configGet(ctx, c, "tls-client-cert-file")
	if cert == "" && clientCert == "" {
		return j.Target.Err("check tls-replication", "", unsupported(
			"the source is reached over TLS, and the target has no TLS certificates (tls-replication no, tls-cert-file "+
				"empty); give the target tls-cert-file and tls-key-file (a certificate the source accepts, if it asks "+
				"clients for one) and tls-ca-cert-file (the CA that signed the source's certificate), and set "+
				"tls-replication yes (a redis-server built with TLS is needed)"))
	}
	port, _ := configGet(ctx, c, "tls-port")
	return j.Target.Err("check tls-replication", "", unsupported(
		"the source is reached over TLS, and the target has tls-replication no; set it to yes (CONFIG SET "+
			"tls-replication yes, and in its configuration file): the target has its certificates (tls-cert-file, "+
			"tls-port %s), and its tls-ca-cert-file must hold the CA that signed the source's certificate", port))
}

// checkSourceUser refuses a source whose user may not run what a replica runs there: PSYNC
// (or SYNC, which a replica falls back to), REPLCONF and PING, as far as the source tells
// (see probeCommands). The user is the source's Username, which the target is given as
// masteruser.
func checkSourceUser(ctx context.Context, j *Job) error {
	const why = "which the target runs as its replica"
	sync := checkEither(ctx, j.Source, "replication, whose replica asks for the data with them,",
		[]string{"PSYNC", "?", "-1"}, []string{"SYNC"})
	vs, err := probeCommands(ctx, j.Source, []string{"REPLCONF", "capa", "psync2"}, []string{"PING"})
	if err != nil {
		return err
	}
	errs := []error{sync}
	for _, v := range vs {
		if err := v.err(j.Source); err != nil {
			errs = append(errs, fmt.Errorf("%s, %s: %w", commandName(v.args), why, err))
		}
	}
	return joinRefusals(errs...)
}

// aclUser returns the user the endpoint's client is logged in as.
func aclUser(ctx context.Context, c rueidis.Client, e *Endpoint) string {
	if u, err := c.Do(ctx, c.B().AclWhoami().Build()).ToString(); err == nil && u != "" {
		return u
	}
	if e.Option.Username != "" {
		return e.Option.Username
	}
	return "default"
}

// Command redis-migrate copies the data of one Redis server into another with the migrate
// library. It is small on purpose: copy it into your own ops tooling.
//
//	redis-migrate -from redis://user:pass@10.0.0.1:6379 -to rediss://redis.example.com:6380 -plan
//	REDIS_MIGRATE_TO_PASSWORD=... redis-migrate -from redis://10.0.0.1:6379 -to rediss://app@redis.example.com:6380 -verify
//
// Passwords may come from the environment (REDIS_MIGRATE_FROM_PASSWORD,
// REDIS_MIGRATE_TO_PASSWORD) instead of the URLs, so they stay out of shell histories and
// process lists; a password in a URL must percent-encode / ? # @ % and the like. A rediss://
// URL connects over TLS; -tls-ca, -tls-cert/-tls-key, -tls-server-name and -tls-insecure set
// TLS for both sides, -from-tls-* and -to-tls-* for one. The
// command never prints a URL's user name or password. The exit status is 0 only when every key was copied (and verified, with
// -verify). Ctrl-C stops cleanly: a replication target is detached, and the summary says
// what was done.
//
// With -checkpoint FILE, a dump-restore or migrate copy keeps its progress in FILE: after a
// crash, a kill or Ctrl-C, the same command run again continues where the copy stopped, and
// the summary says "resumed from ..."; once the copy is complete, running it again copies
// nothing and says "already complete".
//
// With -follow the target keeps following the source's writes after the copy until the
// operator cuts over (Enter, or SIGUSR1); -cutover-pause pauses the source's writes at the
// cutover so that none slips in between.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	neturl "net/url"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// strategy returns the strategy a -strategy name stands for, given the addresses at which
// the servers reach each other (-target-addr, -source-addr; "" for the URLs' own), or false.
func strategy(name, targetAddr, sourceAddr string) (migrate.Strategy, bool) {
	replication := migrate.Replication{SourceAddr: sourceAddr}
	migrateKeys := migrate.MigrateKeys{TargetAddr: targetAddr}
	switch name {
	case "auto":
		return migrate.Auto{Strategies: []migrate.Strategy{replication, migrate.Snapshot{}, migrateKeys, migrate.DumpRestore{}}}, true
	case "replication":
		return replication, true
	case "snapshot":
		return migrate.Snapshot{}, true
	case "migrate":
		return migrateKeys, true
	case "dump-restore":
		return migrate.DumpRestore{}, true
	}
	return nil, false
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redis-migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: redis-migrate -from URL -to URL [flags]

A URL is redis://[user[:password]@]host:port[/db], or rediss:// for TLS; a password holding
/ ? # @ % or the like must be percent-encoded (# as %23), or left out of the URL and given in
REDIS_MIGRATE_FROM_PASSWORD or REDIS_MIGRATE_TO_PASSWORD.

TLS: a rediss:// URL connects over TLS, verifying the server's certificate against the
system's CAs and the URL's host. -tls-ca, -tls-cert/-tls-key (mutual TLS),
-tls-server-name and -tls-insecure apply to every rediss:// side; -from-tls-* and -to-tls-*
set them for one side, over the -tls-* ones. -tls-insecure turns verification off (a
warning says so on stderr): prefer -tls-ca.

Live migration: with -follow (snapshot or replication; dump-restore, through the source's
keyspace notifications, where the source refuses PSYNC), the target keeps following the
source's writes after the copy; a line on stderr shows the lag and the commands applied (for
dump-restore, the keys waiting to be copied again). -source-notifications lets dump-restore
set the source's notify-keyspace-events for the migration, and put the old value back;
-notification-probe lets it find out what a source that refuses CONFIG GET notifies, with
probe keys it writes and deletes there.
Once it has caught up, Enter (or SIGUSR1, as kill -USR1 PID) cuts over: the command waits
until the target holds every write the source accepted until then, and exits 0. With
-cutover-pause 10s the source's writes are paused for 10s from that moment (CLIENT PAUSE,
Redis 6.2+), so that none slips in before the application points at the target. Ctrl-C
stops following without cutover (exit status 130); the summary gives the source's
replication offset up to which the target holds the writes.

Resuming: with -checkpoint FILE (dump-restore and migrate), the copy keeps its progress in
FILE; after a crash or Ctrl-C, run the same command again and it continues where it stopped.

`)
		fs.PrintDefaults()
	}
	from := fs.String("from", "", "source URL, as redis://[user[:password]@]host:port[/db] (rediss:// for TLS)")
	to := fs.String("to", "", "target URL, same form")
	strategyName := fs.String("strategy", "auto", "auto, replication, snapshot, migrate or dump-restore")
	targetAddr := fs.String("target-addr", "", "the target's host:port as the source reaches it, for -strategy migrate (MIGRATE connects\n"+
		"from the source); default the address of -to")
	sourceAddr := fs.String("source-addr", "", "the source's host:port as the target reaches it, for -strategy replication; default the\n"+
		"address of -from")
	evicting := fs.Bool("evicting-target", false, "allow a target that evicts keys (maxmemory with a policy other than noeviction) although\n"+
		"the data may not fit; a run during which it evicts still fails")
	plan := fs.Bool("plan", false, "print the plan (what can run here and why) and exit; changes nothing")
	verify := fs.Bool("verify", false, "compare the target with the source after copying")
	match := fs.String("match", "", "copy only keys matching this pattern (SCAN MATCH)")
	types := fs.String("types", "", "copy only these types, comma-separated: string,list,set,zset,hash,stream")
	dbs := fs.String("db", "", "copy only these databases, comma-separated")
	conflict := fs.String("conflict", "fail", "when a key exists on the target: fail, skip or replace")
	discard := fs.Bool("discard-target", false, "allow strategies that replace the target's whole data set")
	rate := fs.Float64("rate", 0, "read at most this many keys a second from the source (0: no limit)")
	concurrency := fs.Int("concurrency", 0, "batches in flight (0: the library's default)")
	batch := fs.Int("batch", 0, "keys per batch (0: the library's default)")
	dbPrefix := fs.String("db-prefix", "", "copy every database into database 0 of the target, each key prefixed by this format with %d for\n"+
		"its database, as in 'db%d:' (key k of database 3 becomes db3:k); -db-prefix '' keeps the names")
	replicas := fs.Bool("read-from-replicas", false, "walk a cluster source's keys on replicas rather than on its masters")
	follow := fs.Bool("follow", false, "after the copy, keep the target in sync with the source's writes until the cutover: Enter on\n"+
		"stdin or SIGUSR1 cuts over, Ctrl-C stops without cutover (snapshot, replication and dump-restore can follow)")
	sourceNotifications := fs.Bool("source-notifications", false, "with -follow, let dump-restore set the source's notify-keyspace-events to what it\n"+
		"needs for the migration (CONFIG SET), and put the old value back at the end")
	notificationProbe := fs.Bool("notification-probe", false, "with -follow, let dump-restore find out what a source that refuses CONFIG GET notifies,\n"+
		"with probe keys it writes and deletes on the source (migrate:notify-probe:*)")
	cutoverPause := fs.Duration("cutover-pause", 0, "with -follow, pause the source's writes (CLIENT PAUSE <ms> WRITE, Redis 6.2+) for this long\n"+
		"at the cutover, so that none slips in between; point the application at the target within it")
	checkpoint := fs.String("checkpoint", "", "keep the copy's progress in this file (dump-restore and migrate): run the same command again\n"+
		"after a crash or Ctrl-C and it continues where it stopped")
	spoolDir := fs.String("spool-dir", "", "with -follow, where the source's stream waits to be applied (default the system's temp dir)")
	bothTLS, fromTLS, toTLS := addTLSFlags(fs, ""), addTLSFlags(fs, "from"), addTLSFlags(fs, "to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "redis-migrate: "+format+"\n", a...)
		return 2
	}
	src, err := parseURL("-from", *from, "REDIS_MIGRATE_FROM_PASSWORD")
	if err != nil {
		return fail("%v", err)
	}
	dst, err := parseURL("-to", *to, "REDIS_MIGRATE_TO_PASSWORD")
	if err != nil {
		return fail("%v", err)
	}
	if err := setTLS(&src, "-from", fromTLS, bothTLS, given, stderr); err != nil {
		return fail("%v", err)
	}
	if err := setTLS(&dst, "-to", toTLS, bothTLS, given, stderr); err != nil {
		return fail("%v", err)
	}
	if src.TLSConfig == nil && dst.TLSConfig == nil {
		for _, n := range []string{bothTLS.caF, bothTLS.certF, bothTLS.keyF, bothTLS.nameF, bothTLS.inF} {
			if given[n] {
				return fail("-%s is set, but neither -from nor -to is a rediss:// URL: use rediss:// to connect over TLS", n)
			}
		}
	}
	s, ok := strategy(*strategyName, *targetAddr, *sourceAddr)
	if !ok {
		return fail("-strategy %q: want auto, replication, snapshot, migrate or dump-restore", *strategyName)
	}
	opts := []migrate.Option{migrate.WithStrategy(s)}
	if *match != "" {
		opts = append(opts, migrate.WithMatch(*match))
	}
	if *types != "" {
		opts = append(opts, migrate.WithTypes(strings.Split(*types, ",")...))
	}
	if *dbs != "" {
		var list []int
		for _, d := range strings.Split(*dbs, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(d))
			if err != nil {
				return fail("-db %q: not a database number", d)
			}
			list = append(list, n)
		}
		opts = append(opts, migrate.WithDatabases(list...))
	}
	switch *conflict {
	case "fail":
	case "skip":
		opts = append(opts, migrate.WithConflict(migrate.Skip))
	case "replace":
		opts = append(opts, migrate.WithConflict(migrate.Replace))
	default:
		return fail("-conflict %q: want fail, skip or replace", *conflict)
	}
	if *discard {
		opts = append(opts, migrate.WithDiscardTarget())
	}
	if *rate > 0 {
		opts = append(opts, migrate.WithRateLimit(*rate))
	}
	if *concurrency > 0 {
		opts = append(opts, migrate.WithConcurrency(*concurrency))
	}
	if *batch > 0 {
		opts = append(opts, migrate.WithBatchSize(*batch))
	}
	if *verify {
		opts = append(opts, migrate.WithVerify())
	}
	if given["db-prefix"] {
		opts = append(opts, migrate.WithDBPrefix(*dbPrefix))
	}
	if *replicas {
		opts = append(opts, migrate.WithReadFromReplicas())
	}
	if *evicting {
		opts = append(opts, migrate.WithEvictingTarget())
	}
	if *checkpoint != "" {
		opts = append(opts, migrate.WithCheckpoint(migrate.CheckpointFile(*checkpoint)))
	}
	if !*follow && (given["cutover-pause"] || given["spool-dir"] || given["source-notifications"] || given["notification-probe"]) {
		return fail("-cutover-pause, -spool-dir, -source-notifications and -notification-probe need -follow")
	}
	if *cutoverPause < 0 || given["cutover-pause"] && *cutoverPause < time.Millisecond {
		return fail("-cutover-pause %s: want a duration of at least 1ms, as 10s", *cutoverPause)
	}
	var cut *cutover
	if *follow {
		var pauser rueidis.Client
		if *cutoverPause > 0 {
			opt := src
			opt.DisableCache = true // older sources have no client-side caching
			pauser, err = rueidis.NewClient(opt)
			if err != nil {
				return fail("-cutover-pause: connect to the source: %s", explain(err))
			}
			defer pauser.Close()
			if err := checkPause(ctx, pauser); err != nil {
				return fail("%v", err)
			}
		}
		cut = newCutover(os.Stdin, stderr, *cutoverPause, pauser)
		defer cut.close()
		opts = append(opts, migrate.WithFollow(cut.run))
		if *spoolDir != "" {
			opts = append(opts, migrate.WithSpoolDir(*spoolDir))
		}
		if *sourceNotifications {
			opts = append(opts, migrate.WithSourceNotifications())
		}
		if *notificationProbe {
			opts = append(opts, migrate.WithNotificationProbe())
		}
	}
	bar := newProgress(stderr)
	opts = append(opts, migrate.WithProgress(bar.update))

	m, err := migrate.New(src, dst, opts...)
	if err != nil {
		return fail("%s", explain(err))
	}
	defer m.Close()
	if *plan {
		p, err := m.Plan(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "redis-migrate: plan: %s\n", explain(err))
			return 1
		}
		fmt.Fprint(stdout, tlsNames(flagNames(p.String()), nil))
		if p.Chosen == "" {
			return 1
		}
		return 0
	}
	rep, err := m.Migrate(ctx)
	bar.finish()
	if cut != nil {
		cut.finish(err == nil && rep != nil && rep.Failed == 0)
	}
	summary(stdout, rep)
	switch {
	case errors.Is(err, context.Canceled) && rep != nil && bar.followed() && rep.SourceOffset == 0:
		fmt.Fprintln(stderr, "redis-migrate: interrupted while following, without cutover: the target holds the source's writes "+
			"notified until then and no longer follows it")
		return 130
	case errors.Is(err, context.Canceled) && rep != nil && bar.followed():
		fmt.Fprintf(stderr, "redis-migrate: interrupted while following, without cutover: the target holds the source's writes "+
			"up to its replication offset %d (%d commands followed) and no longer follows it\n", rep.SourceOffset, rep.Followed)
		return 130
	case errors.Is(err, context.Canceled):
		if *checkpoint != "" {
			fmt.Fprintf(stderr, "redis-migrate: interrupted; the summary above says what was done; run the same command again to continue from %s\n", *checkpoint)
			return 130
		}
		fmt.Fprintln(stderr, "redis-migrate: interrupted; the summary above says what was done")
		return 130
	case err != nil && *checkpoint != "" && !errors.Is(err, migrate.ErrCheckpoint):
		fmt.Fprintf(stderr, "redis-migrate: %s\nredis-migrate: once that is fixed, run the same command again to continue from %s\n", explain(err), *checkpoint)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "redis-migrate: %s\n", explain(err))
		return 1
	case rep.Failed > 0:
		return 1
	}
	return 0
}

// parseURL reads a server URL as rueidis does; the environment variable, when set, gives
// the password. Its errors never hold the URL's user name or password: the URL is shown
// with them replaced by ***.
func parseURL(flagName, raw, passwordEnv string) (rueidis.ClientOption, error) {
	const want = "want redis://[user[:password]@]host:port[/db], or rediss:// for TLS"
	if raw == "" {
		return rueidis.ClientOption{}, fmt.Errorf("%s is required (%s)", flagName, want)
	}
	shown, userinfo := hideUserinfo(raw)
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || strings.Contains(scheme, "@") {
		return rueidis.ClientOption{}, fmt.Errorf("%s %s: no scheme: %s", flagName, shown, want)
	}
	switch scheme {
	case "redis", "rediss", "unix", "valkey", "valkeys": // as rueidis.ParseURL
	default:
		return rueidis.ClientOption{}, fmt.Errorf("%s %s: scheme %q: %s", flagName, shown, scheme, want)
	}
	if userinfo != "" && !validUserinfo(userinfo) {
		return rueidis.ClientOption{}, fmt.Errorf("%s %s: the user name or password holds a character a URL cannot carry as it is "+
			"(such as / ? # @ %% \" \\ or a space): percent-encode it (/ as %%2F, ? as %%3F, # as %%23, @ as %%40, %% as %%25), "+
			"or leave the password out of the URL and set %s", flagName, shown, passwordEnv)
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		// net/url quotes the whole URL in its errors: keep only what it says is wrong, and
		// hide the user name and password should they appear there too.
		msg := err.Error()
		var ue *neturl.Error
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		if userinfo != "" {
			msg = strings.ReplaceAll(msg, userinfo, "***")
		}
		return rueidis.ClientOption{}, fmt.Errorf("%s %s: %s (%s)", flagName, shown, msg, want)
	}
	if p, ok := os.LookupEnv(passwordEnv); ok {
		opt.Password = p
	}
	return opt, nil
}

// hideUserinfo returns the URL with its user name and password replaced by ***, and them.
// They end at the last @ of the URL: a password may hold an @ (and, unencoded, / ? or #),
// a host cannot.
func hideUserinfo(raw string) (shown, userinfo string) {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw, ""
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return raw[:start] + "***" + raw[at:], raw[start:at]
}

// validUserinfo reports whether s can be the user name and password of a URL as net/url
// reads it: letters, digits, -._:~!$&'()*+,;=@ and %XX escapes.
func validUserinfo(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._:~!$&'()*+,;=@", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// flags maps the library's options to this command's flags, for flagNames.
var flags = map[string]string{
	"WithStrategy":            "-strategy",
	"WithMatch":               "-match",
	"WithTypes":               "-types",
	"WithDatabases":           "-db",
	"WithConflict":            "-conflict",
	"WithDiscardTarget":       "-discard-target",
	"WithRateLimit":           "-rate",
	"WithConcurrency":         "-concurrency",
	"WithBatchSize":           "-batch",
	"WithVerify":              "-verify",
	"WithDBPrefix":            "-db-prefix",
	"WithReadFromReplicas":    "-read-from-replicas",
	"WithEvictingTarget":      "-evicting-target",
	"WithFollow":              "-follow",
	"WithSpoolDir":            "-spool-dir",
	"WithSourceNotifications": "-source-notifications",
	"WithNotificationProbe":   "-notification-probe",
	"WithCheckpoint":          "-checkpoint",
}

// fields maps the strategies' fields that messages name to this command's flags.
var fields = strings.NewReplacer("MigrateKeys.TargetAddr", "-target-addr", "Replication.SourceAddr", "-source-addr")

var optionName = regexp.MustCompile(`\b(?:migrate\.)?(With[A-Z][A-Za-z]*)(?:\(([^()]*)\))?`)

// flagNames rewrites the library's option names in msg as the flags that set them, so
// that "use WithDBPrefix(\"db%d:\")" reads "use -db-prefix 'db%d:'". Options the command has
// no flag for keep their names.
func flagNames(msg string) string {
	return optionName.ReplaceAllStringFunc(fields.Replace(msg), func(m string) string {
		sub := optionName.FindStringSubmatch(m)
		name, arg := sub[1], sub[2]
		f, ok := flags[name]
		if !ok {
			return m
		}
		switch {
		case arg == "":
			return f
		case name == "WithConflict":
			return f + " " + strings.ToLower(arg)
		case name == "WithDatabases":
			return f + " " + strings.ReplaceAll(arg, " ", "")
		case strings.HasPrefix(arg, `"`):
			if s, err := strconv.Unquote(arg); err == nil {
				return f + " '" + s + "'"
			}
		}
		return f + " " + arg
	})
}

// explain returns err's message with the library's option and TLS setting names replaced
// by this command's flags.
func explain(err error) string { return tlsNames(flagNames(err.Error()), err) }

// summary prints what the migration did, as a table.
func summary(w io.Writer, r *migrate.Report) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "strategy  %s\n", r.Strategy)
	switch {
	case r.AlreadyComplete:
		fmt.Fprintf(w, "already complete (%s); remove the -checkpoint file to copy again\n", r.Resumed)
	case r.Resumed != "":
		fmt.Fprintf(w, "resumed from %s\n", r.Resumed)
	}
	for _, s := range r.Steps {
		if !s.OK {
			fmt.Fprintf(w, "  passed over %s: %s\n", s.Strategy, explain(s.Err))
		}
	}
	fmt.Fprintf(w, "%-8s %10s %12s %8s %8s %8s\n", "db", "copied", "bytes", "skipped", "expired", "failed")
	for _, db := range slices.Sorted(maps.Keys(r.Databases)) {
		c := r.Databases[db]
		fmt.Fprintf(w, "%-8d %10d %12d %8d %8d %8d\n", db, c.Keys, c.Bytes, c.Skipped, c.Expired, c.Failed)
	}
	fmt.Fprintf(w, "%-8s %10d %12d %8d %8d %8d\n", "total", r.Keys, r.Bytes, r.Skipped, r.Expired, r.Failed)
	switch {
	case r.SourceOffset > 0:
		fmt.Fprintf(w, "followed  %d commands, up to the source's replication offset %d\n", r.Followed, r.SourceOffset)
	case r.Followed > 0 || r.Repairs > 0 || r.Rewalks > 0:
		fmt.Fprintf(w, "followed  %d keys copied again after notifications; %d repair passes, %d re-walks\n", r.Followed, r.Repairs, r.Rewalks)
	}
	fmt.Fprintf(w, "duration  %s\n", r.Duration.Round(time.Millisecond))
	if v := r.Verify; v != nil {
		fmt.Fprintf(w, "verify    %s\n", v)
		for _, d := range v.Examples {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
}

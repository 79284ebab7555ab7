// Command redis-migrate copies the data of one Redis server into another with the migrate
// library. It is small on purpose: copy it into your own ops tooling.
//
//	redis-migrate -from redis://user:pass@10.0.0.1:6379 -to rediss://redis.example.com:6380 -plan
//	REDIS_MIGRATE_TO_PASSWORD=... redis-migrate -from redis://10.0.0.1:6379 -to rediss://app@redis.example.com:6380 -verify
//
// Passwords may come from the environment (REDIS_MIGRATE_FROM_PASSWORD,
// REDIS_MIGRATE_TO_PASSWORD) instead of the URLs, so they stay out of shell histories and
// process lists. The exit status is 0 only when every key was copied (and verified, with
// -verify). Ctrl-C stops cleanly: a replication target is detached, and the summary says
// what was done.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// strategies are the -strategy names.
var strategies = map[string]migrate.Strategy{
	"auto":         migrate.Auto{},
	"replication":  migrate.Replication{},
	"snapshot":     migrate.Snapshot{},
	"migrate":      migrate.MigrateKeys{},
	"dump-restore": migrate.DumpRestore{},
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
	from := fs.String("from", "", "source URL, as redis://[user[:password]@]host:port[/db] (rediss:// for TLS)")
	to := fs.String("to", "", "target URL, same form")
	strategy := fs.String("strategy", "auto", "auto, replication, snapshot, migrate or dump-restore")
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
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
	s, ok := strategies[*strategy]
	if !ok {
		return fail("-strategy %q: want auto, replication, snapshot, migrate or dump-restore", *strategy)
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
	bar := newProgress(stderr)
	opts = append(opts, migrate.WithProgress(bar.update))

	m, err := migrate.New(src, dst, opts...)
	if err != nil {
		return fail("%v", err)
	}
	defer m.Close()
	if *plan {
		p, err := m.Plan(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "redis-migrate: plan: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, p)
		if p.Chosen == "" {
			return 1
		}
		return 0
	}
	rep, err := m.Migrate(ctx)
	bar.finish()
	summary(stdout, rep)
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "redis-migrate: interrupted; the summary above says what was done")
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "redis-migrate: %v\n", err)
		return 1
	case rep.Failed > 0:
		return 1
	}
	return 0
}

// parseURL reads a server URL as rueidis does; the environment variable, when set, gives
// the password.
func parseURL(flagName, url, passwordEnv string) (rueidis.ClientOption, error) {
	if url == "" {
		return rueidis.ClientOption{}, fmt.Errorf("%s is required (redis://[user[:password]@]host:port[/db])", flagName)
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		// The message of ParseURL may quote the URL, password and all: say only what is wrong.
		return rueidis.ClientOption{}, fmt.Errorf("%s: not a redis:// or rediss:// URL (want redis://[user[:password]@]host:port[/db]): %v", flagName, redact(err.Error(), url))
	}
	if p, ok := os.LookupEnv(passwordEnv); ok {
		opt.Password = p
	}
	return opt, nil
}

// redact removes the URL from a message, since it may hold a password.
func redact(msg, url string) string {
	if url != "" {
		msg = strings.ReplaceAll(msg, url, "<url>")
	}
	return msg
}

// summary prints what the migration did, as a table.
func summary(w io.Writer, r *migrate.Report) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "strategy  %s\n", r.Strategy)
	for _, s := range r.Steps {
		if !s.OK {
			fmt.Fprintf(w, "  passed over %s: %v\n", s.Strategy, s.Err)
		}
	}
	fmt.Fprintf(w, "%-8s %10s %12s %8s %8s %8s\n", "db", "copied", "bytes", "skipped", "expired", "failed")
	for _, db := range slices.Sorted(maps.Keys(r.Databases)) {
		c := r.Databases[db]
		fmt.Fprintf(w, "%-8d %10d %12d %8d %8d %8d\n", db, c.Keys, c.Bytes, c.Skipped, c.Expired, c.Failed)
	}
	fmt.Fprintf(w, "%-8s %10d %12d %8d %8d %8d\n", "total", r.Keys, r.Bytes, r.Skipped, r.Expired, r.Failed)
	fmt.Fprintf(w, "duration  %s\n", r.Duration.Round(time.Millisecond))
	if v := r.Verify; v != nil {
		fmt.Fprintf(w, "verify    %s\n", v)
		for _, d := range v.Examples {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
}

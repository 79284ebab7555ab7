// Command bench measures the library's strategies beside native replication, in one run on
// the same servers, and prints keys/s, MB/s, the ratio to native replication, the peak
// memory of the migrating process, and the CPU seconds the source (with its fork), the
// target and the migrating process used. Run it with `make bench`; -profile DIR writes each
// strategy's CPU and allocation profiles.
//
// For each data set it starts a source and a target, loads the source, times a full sync
// by REPLICAOF (repl-diskless-sync-delay 0 on the source), then runs each strategy in a
// child process (so its peak RSS is its own), flushing the target before each, and times
// the native sync once more at the end. The ratios are to the mean of the two native
// syncs, which vary most from run to run on a shared machine.
//
// The set strings-cluster copies the strings set from a cluster of three masters into
// another, with every strategy but Replication (which refuses clusters); its "x native"
// column is the ratio of its time to the same strategy's on the standalone strings set of
// the same run (so run it after strings), there being no native cluster-to-cluster copy.
//
// On the strings set, DumpRestore and MigrateKeys also run with WithCheckpoint and without
// it, alternately a few times: the ratios of their median and fastest times, and of the
// migrating process's CPU seconds, are the cost of checkpointing.
//
// The set follow (not run by default: -sets=follow) measures a following Snapshot, and a
// DumpRestore following keyspace notifications, on the strings set under a writer of INCRs,
// beside native replication under the same writer:
// the lag while following, the time from the cutover's return to Migrate's return, and
// the commands applied a second; see follow.go.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// strategies are the ones the benchmark runs, by name.
var strategies = map[string]migrate.Strategy{
	"replication":  migrate.Replication{},
	"snapshot":     migrate.Snapshot{},
	"migrate-keys": migrate.MigrateKeys{},
	"dump-restore": migrate.DumpRestore{},
}

// order is the order strategies are run and printed in.
var order = []string{"replication", "snapshot", "migrate-keys", "dump-restore"}

func main() {
	log.SetFlags(0)
	child := flag.Bool("child", false, "internal: run one migration and print its result as JSON")
	src := flag.String("src", "", "internal: source addresses, comma-separated for a cluster")
	dst := flag.String("dst", "", "internal: target addresses, comma-separated for a cluster")
	strategy := flag.String("strategy", "", "internal: strategy name")
	follow := flag.Bool("follow", false, "internal: with -child, run a following migration of the follow set (-strategy: snapshot or dump-restore)")
	checkpoint := flag.String("checkpoint", "", "internal: with -child, keep a checkpoint in this file (WithCheckpoint)")
	window := flag.Duration("window", 0, "internal: with -follow, how long the cutover function waits")
	sets := flag.String("sets", "strings,mixed,strings-cluster", "data sets to run, comma-separated: strings, mixed, strings-cluster, follow, versions, bigstring")
	flag.StringVar(&serversDir, "servers", defaultServersDir(), "the version matrix's server binaries, for the sets versions and bigstring")
	only := flag.String("strategies", strings.Join(order, ","), "strategies to run, comma-separated")
	scale := flag.Float64("scale", 1, "fraction of each data set's size, for quick runs")
	flag.StringVar(&profileDir, "profile", "", "write each strategy's CPU profile into this folder, as SET-STRATEGY.pprof")
	flag.Parse()
	if *child && *follow {
		if err := runFollowChild(*src, *dst, *window, *strategy); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *child {
		if err := runChild(*src, *dst, *strategy, profileDir, *checkpoint); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *sets != "follow" {
		fmt.Printf("%-8s %-14s %9s %12s %9s %9s %10s  %s\n", "set", "method", "seconds", "keys/s", "MB/s", "x native", "peak RSS", "CPU s: source/target/migrator")
	}
	for _, set := range strings.Split(*sets, ",") {
		run := runSet
		switch set {
		case "strings-cluster":
			run = runClusterSet
		case "follow":
			run = func(string, []string, float64) error { return runFollowSet(*scale) }
		case "versions":
			run = func(_ string, names []string, scale float64) error { return runVersionsSet(names, scale) }
		case "bigstring":
			run = func(_ string, names []string, scale float64) error { return runBigStringSet(names, scale) }
		}
		if err := run(set, strings.Split(*only, ","), *scale); err != nil {
			log.Fatalf("bench %s: %v", set, err)
		}
	}
}

// result is what a child reports.
type result struct {
	Keys    int64
	Bytes   int64
	Seconds float64
	PeakKiB int64   // the child's own peak RSS
	CPU     float64 // the child's CPU seconds, set by the parent
}

// peakRSS returns this process's peak resident memory in KiB, from VmHWM: unlike
// getrusage's maxrss, it does not count what the parent held before exec.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func runChild(src, dst, name, profile, checkpoint string) error {
	s, ok := strategies[name]
	if !ok {
		return fmt.Errorf("unknown strategy %q", name)
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		defer writeHeapProfile(profile + ".heap")
	}
	opts := []migrate.Option{migrate.WithStrategy(s)}
	if checkpoint != "" {
		opts = append(opts, migrate.WithCheckpoint(migrate.CheckpointFile(checkpoint)))
	}
	m, err := migrate.New(optionFor(src), optionFor(dst), opts...)
	if err != nil {
		return err
	}
	defer m.Close()
	start := time.Now()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result{Keys: rep.Keys, Bytes: rep.Bytes, Seconds: time.Since(start).Seconds(), PeakKiB: peakRSS()})
}

// optionFor reaches addrs: one server, or a cluster through the addresses of its masters.
func optionFor(addrs string) rueidis.ClientOption {
	list := strings.Split(addrs, ",")
	if len(list) == 1 {
		return redistest.OptionFor(list[0])
	}
	return rueidis.ClientOption{InitAddress: list, DisableCache: true}
}

// writeHeapProfile writes what the process allocated, for `go tool pprof -sample_index=alloc_space`.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Print(err)
	}
}

// profileDir is where CPU profiles go, "" for none.
var profileDir string

// standalone holds each strategy's seconds on the standalone strings set, for the ratio of
// strings-cluster.
var standalone = map[string]float64{}

// startPair starts the source (diskless sync, no delay, as for native replication) and the
// target of a standalone set, each in a directory of its own; stop stops both and removes
// the directories.
func startPair() (src, dst *redistest.Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "migrate-bench-")
	if err != nil {
		return nil, nil, nil, err
	}
	var servers []*redistest.Server
	stop = func() {
		for _, s := range servers {
			s.Stop()
		}
		os.RemoveAll(dir)
	}
	for i, cfg := range []redistest.Config{
		{Lines: []string{"repl-diskless-sync yes", "repl-diskless-sync-delay 0"}},
		{},
	} {
		cfg.Dir = fmt.Sprintf("%s/%d", dir, i)
		if err := os.Mkdir(cfg.Dir, 0o700); err != nil {
			stop()
			return nil, nil, nil, err
		}
		s, err := redistest.Launch(cfg)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		servers = append(servers, s)
	}
	return servers[0], servers[1], stop, nil
}

func runSet(set string, names []string, scale float64) error {
	ctx := context.Background()
	src, dst, stop, err := startPair()
	if err != nil {
		return err
	}
	defer stop()
	keys, err := load(ctx, src, set, scale)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	// Native replication is timed before and after the strategies, since it varies most
	// from run to run on a shared machine; ratios are to the mean of the two.
	sync := func() (time.Duration, usage, error) {
		if err := flush(ctx, dst); err != nil {
			return 0, usage{}, err
		}
		before := usage{src: cpuSeconds(ctx, src), dst: cpuSeconds(ctx, dst)}
		d, err := replicate(ctx, src, dst)
		if err != nil {
			return 0, usage{}, fmt.Errorf("native replication: %w", err)
		}
		return d, cpuSince(ctx, src, dst, before, 0), nil
	}
	first, firstCPU, err := sync()
	if err != nil {
		return err
	}
	type row struct {
		name string
		r    result
		cpu  usage
	}
	var rows []row
	for _, name := range names {
		if err := flush(ctx, dst); err != nil {
			return err
		}
		before := usage{src: cpuSeconds(ctx, src), dst: cpuSeconds(ctx, dst)}
		r, err := runStrategy(set, name, src.Addr, dst.Addr, keys)
		if err != nil {
			return err
		}
		if set == "strings" {
			standalone[name] = r.Seconds
		}
		rows = append(rows, row{name, r, cpuSince(ctx, src, dst, before, r.CPU)})
	}
	last, lastCPU, err := sync()
	if err != nil {
		return err
	}
	base := (first + last).Seconds() / 2
	for _, n := range []struct {
		name string
		d    time.Duration
		cpu  usage
	}{{"native", first, firstCPU}, {"native again", last, lastCPU}} {
		fmt.Printf("%-8s %-14s %9.2f %12.0f %9s %9.2f %10s  %s\n", set, n.name, n.d.Seconds(), float64(keys)/n.d.Seconds(), "-",
			n.d.Seconds()/base, "-", n.cpu)
	}
	for _, w := range rows {
		fmt.Printf("%-8s %-14s %9.2f %12.0f %9.1f %9.2f %8dMB  %s\n", set, w.name, w.r.Seconds, float64(w.r.Keys)/w.r.Seconds,
			float64(w.r.Bytes)/w.r.Seconds/1e6, w.r.Seconds/base, w.r.PeakKiB/1024, w.cpu)
	}
	if set == "strings" {
		return checkpointCost(ctx, src, dst, names, keys)
	}
	return nil
}

// checkpointRounds is how many times checkpointCost runs each strategy with and without a
// checkpoint, alternately and in turn first.
const checkpointRounds = 5

// checkpointCost runs DumpRestore and MigrateKeys (those of names) on the strings set with
// WithCheckpoint(CheckpointFile) and without, and prints the ratios of their median and
// fastest times, and of the migrating process's median CPU seconds: on a shared machine the
// times vary by tens of percent from run to run, and the CPU the migrating process spends
// is where checkpointing costs.
func checkpointCost(ctx context.Context, src, dst *redistest.Server, names []string, keys int64) error {
	dir, err := os.MkdirTemp("", "migrate-bench-checkpoint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, name := range []string{"dump-restore", "migrate-keys"} {
		if !slices.Contains(names, name) {
			continue
		}
		var seconds, cpu [2][]float64 // without, with
		for round := range checkpointRounds {
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0} // neither always runs second
			}
			for _, i := range order {
				if err := flush(ctx, dst); err != nil {
					return err
				}
				var extra []string
				if i == 1 {
					extra = []string{"-checkpoint", filepath.Join(dir, fmt.Sprintf("%s-%d.json", name, round))}
				}
				r, err := runStrategy("strings", name, src.Addr, dst.Addr, keys, extra...)
				if err != nil {
					return err
				}
				seconds[i] = append(seconds[i], r.Seconds)
				cpu[i] = append(cpu[i], r.CPU)
			}
		}
		ratio := func(v [2][]float64, p float64) float64 { return percentile(v[1], p) / percentile(v[0], p) }
		fmt.Printf("%-8s %-14s %d runs each, with WithCheckpoint / without: time x%.3f (median %.2f s / %.2f s), x%.3f (fastest); "+
			"migrator CPU x%.3f (median %.2f s / %.2f s)\n", "strings", name+" ckpt", checkpointRounds,
			ratio(seconds, 0.5), percentile(seconds[1], 0.5), percentile(seconds[0], 0.5), ratio(seconds, 0),
			ratio(cpu, 0.5), percentile(cpu[1], 0.5), percentile(cpu[0], 0.5))
	}
	return nil
}

// runClusterSet copies the strings set between two clusters of three masters.
func runClusterSet(set string, names []string, scale float64) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "migrate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var clusters [2]*redistest.Cluster
	for i := range clusters {
		c, err := redistest.LaunchCluster(redistest.ClusterConfig{
			Node: redistest.Config{Lines: []string{"repl-diskless-sync yes", "repl-diskless-sync-delay 0"}},
		}, fmt.Sprintf("%s/%d", dir, i))
		if err != nil {
			return err
		}
		defer c.Stop()
		clusters[i] = c
	}
	src, dst := clusters[0], clusters[1]
	addrs := func(c *redistest.Cluster) string {
		var a []string
		for _, m := range c.Masters {
			a = append(a, m.Addr)
		}
		return strings.Join(a, ",")
	}
	sc, err := rueidis.NewClient(src.Option())
	if err != nil {
		return err
	}
	keys := int64(max(1, int(1_000_000*scale)))
	w := &writer{ctx: ctx, c: sc, rnd: rand.New(rand.NewSource(1))}
	w.strings("s:", int(keys), 100)
	err = w.flush()
	sc.Close()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	for _, name := range names {
		if name == "replication" {
			continue // refuses clusters
		}
		for _, m := range dst.Masters {
			if err := flush(ctx, m); err != nil {
				return err
			}
		}
		r, err := runStrategy(set, name, addrs(src), addrs(dst), keys)
		if err != nil {
			return err
		}
		ratio := "-"
		if s, ok := standalone[name]; ok {
			ratio = fmt.Sprintf("%.2f", r.Seconds/s)
		}
		rss := r.PeakKiB
		fmt.Printf("%-8s %-14s %9.2f %12.0f %9.1f %9s %8dMB\n", "cluster", name, r.Seconds, float64(r.Keys)/r.Seconds,
			float64(r.Bytes)/r.Seconds/1e6, ratio, rss/1024)
	}
	return nil
}

// runStrategy runs one strategy in a child process, so that its peak memory is its own,
// and checks that it copied every key.
func runStrategy(set, name, src, dst string, keys int64, extra ...string) (result, error) {
	args := append([]string{"-child", "-src", src, "-dst", dst, "-strategy", name}, extra...)
	if profileDir != "" {
		args = append(args, "-profile", filepath.Join(profileDir, set+"-"+name+".pprof"))
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	r.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	if r.Keys != keys {
		return result{}, fmt.Errorf("%s copied %d keys of %d", name, r.Keys, keys)
	}
	return r, nil
}

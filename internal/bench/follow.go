package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// The set follow measures a following Snapshot (WithFollow), then a following DumpRestore
// (through keyspace notifications, which WithSourceNotifications turns on), on the strings
// set while a writer INCRs 1,000 counters on the source, during the copy and the follow:
//   - paced: the writer sends followRate writes a second. Once the target has caught up,
//     the cutover function lets followWindow pass (the operator's time to switch), during
//     which the lag is sampled at each Progress call (every 250 ms); then it returns, and
//     the time from its return to Migrate's return is measured.
//   - unthrottled: the writer sends as fast as it can for 3 s, over four connections, and
//     stops by itself (it would outrun any replay for ever); what the migration applies a
//     second from the start of the follow (its first Progress call) until it has caught
//     up is the applied rate. The cutover function returns at once.
//   - native: the target as a REPLICAOF replica under the paced writer; its lag is the
//     source's master_repl_offset less the replica's slave_repl_offset, sampled every 10 ms
//     for followWindow.
const (
	followRate   = 20_000
	followWindow = 5 * time.Second
)

// followResult is what a follow child reports.
type followResult struct {
	Seconds     float64 // the whole Migrate
	CatchUp     float64 // seconds from the start of the follow until caught up
	Applied     float64 // commands applied a second until caught up
	AgeP50      float64 // ms, sampled once caught up
	AgeP99      float64
	BytesP50    int64
	BytesP99    int64
	KeysP50     int64 // keys waiting, for a DumpRestore
	KeysP99     int64
	Samples     int
	CutoverToGo float64 // seconds from cutover's return to Migrate's return
	Followed    int64
	PeakKiB     int64
}

// runFollowChild runs one following migration by strategy (snapshot, the default, or
// dump-restore) and prints a followResult as JSON. The cutover function lets window pass
// before it returns.
func runFollowChild(src, dst string, window time.Duration, strategy string) error {
	var (
		mu            sync.Mutex
		cutoverCalled atomic.Bool
		cutoverDone   atomic.Bool
		followStart   time.Time
		startCommands int64
		caughtAt      time.Time
		caughtCmds    int64
		ages          []float64
		lagBytes      []int64
		lagKeys       []int64
		lastCommands  atomic.Int64
	)
	progress := func(p migrate.Progress) {
		mu.Lock()
		defer mu.Unlock()
		lastCommands.Store(p.Commands)
		if !p.Following {
			return
		}
		if followStart.IsZero() {
			followStart, startCommands = time.Now(), p.Commands
		}
		if cutoverCalled.Load() && !cutoverDone.Load() {
			ages = append(ages, float64(p.LagAge)/float64(time.Millisecond))
			lagBytes = append(lagBytes, p.LagBytes)
			lagKeys = append(lagKeys, p.LagKeys)
		}
	}
	var returned time.Time
	cutover := func(ctx context.Context) error {
		mu.Lock()
		caughtAt, caughtCmds = time.Now(), lastCommands.Load()
		mu.Unlock()
		cutoverCalled.Store(true)
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return ctx.Err()
		}
		cutoverDone.Store(true)
		returned = time.Now()
		return nil
	}
	opts := []migrate.Option{migrate.WithStrategy(migrate.Snapshot{}), migrate.WithFollow(cutover), migrate.WithProgress(progress)}
	if strategy == "dump-restore" {
		opts = append(opts, migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithSourceNotifications())
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
	end := time.Now()
	r := followResult{Seconds: end.Sub(start).Seconds(), CutoverToGo: end.Sub(returned).Seconds(), Followed: rep.Followed,
		Samples: len(ages), PeakKiB: peakRSS()}
	if !followStart.IsZero() && caughtAt.After(followStart) {
		r.CatchUp = caughtAt.Sub(followStart).Seconds()
		r.Applied = float64(caughtCmds-startCommands) / r.CatchUp
	}
	r.AgeP50, r.AgeP99 = percentile(ages, 0.5), percentile(ages, 0.99)
	r.BytesP50, r.BytesP99 = percentile(lagBytes, 0.5), percentile(lagBytes, 0.99)
	r.KeysP50, r.KeysP99 = percentile(lagKeys, 0.5), percentile(lagKeys, 0.99)
	return json.NewEncoder(os.Stdout).Encode(r)
}

func percentile[T int64 | float64](v []T, p float64) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// incrWriter INCRs 1,000 counters on s, rate commands a second (0: as fast as it can, over
// four connections), until stop is called or limit has passed; it stops by itself then.
// stop returns how many writes were sent, and for how long.
func incrWriter(s *redistest.Server, rate int, limit time.Duration) (stop func() (int64, time.Duration), err error) {
	c, err := s.Connect(0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	var sent atomic.Int64
	var wg sync.WaitGroup
	batch := func(n int, from int64) rueidis.Commands {
		cmds := make(rueidis.Commands, n)
		for i := range cmds {
			cmds[i] = c.B().Incr().Key("w:" + strconv.FormatInt((from+int64(i))%1000, 10)).Build()
		}
		return cmds
	}
	loop := func(paced bool) {
		defer wg.Done()
		start := time.Now()
		for ctx.Err() == nil {
			n := 100
			if paced {
				due := int64(time.Since(start).Seconds()*float64(rate)) - sent.Load()
				if due <= 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				n = int(min(due, 500))
			}
			from := sent.Add(int64(n)) - int64(n)
			for _, r := range c.DoMulti(ctx, batch(n, from)...) {
				if r.Error() != nil {
					return
				}
			}
		}
	}
	began := time.Now()
	var ended time.Time
	var endOnce sync.Once
	end := func() { endOnce.Do(func() { ended = time.Now() }) }
	go func() { <-ctx.Done(); end() }()
	workers := 1
	if rate == 0 {
		workers = 4
	}
	for range workers {
		wg.Add(1)
		go loop(rate > 0)
	}
	return func() (int64, time.Duration) {
		end()
		cancel()
		wg.Wait()
		c.Close()
		return sent.Load(), ended.Sub(began)
	}, nil
}

// runFollowSet runs the follow set; see followRate.
func runFollowSet(scale float64) error {
	ctx := context.Background()
	src, dst, stop, err := startPair()
	if err != nil {
		return err
	}
	defer stop()
	if _, err := load(ctx, src, "strings", scale); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	fmt.Printf("%-8s %-14s %9s %9s %9s %9s %9s %9s %9s %11s %9s %9s %9s\n", "set", "method", "writes/s", "seconds",
		"catch-up", "applied/s", "age p50", "age p99", "lag p50", "lag p99", "cut->ret", "peak RSS", "followed")
	for _, run := range []struct {
		strategy string
		paced    bool
	}{{"snapshot", true}, {"snapshot", false}, {"dump-restore", true}, {"dump-restore", false}} {
		paced := run.paced
		if err := flush(ctx, dst); err != nil {
			return err
		}
		rate, name := followRate, "paced"
		if !paced {
			rate, name = 0, "unthrottled"
		}
		if run.strategy == "dump-restore" {
			name = "dr-" + name
		}
		// The unthrottled writer would outrun any replay for ever: it stops by itself after
		// a few seconds, and the follow drains what it wrote.
		limit := 10 * time.Minute
		if !paced {
			limit = 3 * time.Second
		}
		stop, err := incrWriter(src, rate, limit)
		if err != nil {
			return err
		}
		// The unthrottled run measures the applied rate, not the lag: it cuts over at once.
		window := followWindow
		if !paced {
			window = 0
		}
		cmd := exec.Command(os.Args[0], "-child", "-follow", "-strategy", run.strategy, "-window", window.String(), "-src", src.Addr, "-dst", dst.Addr)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		written, took := stop()
		if err != nil {
			return fmt.Errorf("follow %s: %w", name, err)
		}
		var r followResult
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("follow %s: %w", name, err)
		}
		writes := fmt.Sprintf("%.0f", float64(written)/took.Seconds())
		catchUp, applied := "<0.25", "-" // caught up before the first Progress call of the follow
		if r.CatchUp > 0 {
			catchUp, applied = fmt.Sprintf("%.2f", r.CatchUp), fmt.Sprintf("%.0f", r.Applied)
		}
		lag50, lag99, note := kb(r.BytesP50), kb(r.BytesP99), ""
		if run.strategy == "dump-restore" {
			// The lag is in keys waiting; each copy again reads a counter's value as it is.
			lag50, lag99 = fmt.Sprintf("%dkeys", r.KeysP50), fmt.Sprintf("%dkeys", r.KeysP99)
			note = fmt.Sprintf(", %.3f copies again a write", float64(r.Followed)/float64(max(written, 1)))
		}
		fmt.Printf("%-8s %-14s %9s %9.2f %9s %9s %7.0fms %7.0fms %9s %11s %8.2fs %7dMB %9d   (%d lag samples%s)\n", "follow", name, writes,
			r.Seconds, catchUp, applied, r.AgeP50, r.AgeP99, lag50, lag99, r.CutoverToGo, r.PeakKiB/1024, r.Followed, r.Samples, note)
	}
	// Native replication under the same paced writer.
	if err := flush(ctx, dst); err != nil {
		return err
	}
	p50, p99, n, err := nativeLag(ctx, src, dst)
	if err != nil {
		return fmt.Errorf("native replication: %w", err)
	}
	fmt.Printf("%-8s %-14s %9d %9s %9s %9s %9s %9s %9s %11s %9s %9s %9s   (%d lag samples)\n", "follow", "native", followRate, "-", "-", "-",
		"-", "-", kb(p50), kb(p99), "-", "-", "-", n)
	return nil
}

// nativeLag makes dst a replica of src, and once it is in sync samples its lag in bytes
// every 10 ms for followWindow under the paced writer.
func nativeLag(ctx context.Context, src, dst *redistest.Server) (p50, p99 int64, n int, err error) {
	if _, err := replicateKeep(ctx, src, dst); err != nil {
		return 0, 0, 0, err
	}
	d, err := dst.Connect(0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer d.Close()
	defer d.Do(ctx, d.B().Replicaof().No().One().Build())
	s, err := src.Connect(0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer s.Close()
	stop, err := incrWriter(src, followRate, 10*time.Minute)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	var lags []int64
	for end := time.Now().Add(followWindow); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		si, err := s.Do(ctx, s.B().Info().Section("replication").Build()).ToString()
		if err != nil {
			return 0, 0, 0, err
		}
		di, err := d.Do(ctx, d.B().Info().Section("replication").Build()).ToString()
		if err != nil {
			return 0, 0, 0, err
		}
		lags = append(lags, max(0, intField(si, "master_repl_offset")-intField(di, "slave_repl_offset")))
	}
	return percentile(lags, 0.5), percentile(lags, 0.99), len(lags), nil
}

// replicateKeep makes dst a replica of src and waits until it is in sync; it stays one.
func replicateKeep(ctx context.Context, src, dst *redistest.Server) (time.Duration, error) {
	d, err := dst.Connect(0)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	start := time.Now()
	if err := d.Do(ctx, d.B().Replicaof().Host(src.Host).Port(int64(src.Port)).Build()).Error(); err != nil {
		return 0, err
	}
	for time.Since(start) < 30*time.Minute {
		info, err := d.Do(ctx, d.B().Info().Section("replication").Build()).ToString()
		if err != nil {
			return 0, err
		}
		if field(info, "master_link_status") == "up" && field(info, "master_sync_in_progress") == "0" {
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("no sync after 30 minutes")
}

func kb(n int64) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1fkB", float64(n)/1e3)
}

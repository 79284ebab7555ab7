package migrate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestCheckpointHelperProcess is the migration that TestCheckpointResumeAfterKill runs in a
// child process and kills; it does nothing in a normal test run.
func TestCheckpointHelperProcess(t *testing.T) {
	if os.Getenv("MIGRATE_CHECKPOINT_HELPER") != "1" {
		t.Skip("run by TestCheckpointResumeAfterKill")
	}
	var started sync.Once
	var s migrate.Strategy = migrate.DumpRestore{}
	var opts []migrate.Option
	switch os.Getenv("MIGRATE_CHECKPOINT_STRATEGY") {
	case "migrate-keys":
		s = migrate.MigrateKeys{}
	case "snapshot":
		s = migrate.Snapshot{}
	case "snapshot-follow", "dump-restore-follow":
		// Follows until the test creates the cutover file.
		if strings.HasPrefix(os.Getenv("MIGRATE_CHECKPOINT_STRATEGY"), "snapshot") {
			s = migrate.Snapshot{}
		}
		cutover := os.Getenv("MIGRATE_CHECKPOINT_FILE") + ".cutover"
		opts = append(opts, migrate.WithSpoolDir(filepath.Dir(cutover)), migrate.WithFollow(func(ctx context.Context) error {
			for {
				if _, err := os.Stat(cutover); err == nil {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		}))
	}
	if dbs := os.Getenv("MIGRATE_CHECKPOINT_DATABASES"); dbs != "" {
		var n []int
		for _, f := range strings.Split(dbs, ",") {
			db, _ := strconv.Atoi(f)
			n = append(n, db)
		}
		opts = append(opts, migrate.WithDatabases(n...))
	}
	m, err := migrate.New(redistest.OptionFor(os.Getenv("MIGRATE_CHECKPOINT_SRC")), redistest.OptionFor(os.Getenv("MIGRATE_CHECKPOINT_DST")),
		append(opts, migrate.WithStrategy(s), migrate.WithCheckpoint(migrate.CheckpointFile(os.Getenv("MIGRATE_CHECKPOINT_FILE"))),
			migrate.WithRateLimit(2000), migrate.WithBatchSize(50), migrate.WithScanCount(100),
			migrate.WithProgress(func(p migrate.Progress) {
				if p.Scanned > 0 || p.Following {
					started.Do(func() { fmt.Fprintln(os.Stderr, "copying") })
				}
			}))...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rep, err := m.Migrate(context.Background())
	m.Close()
	b, _ := json.Marshal(rep)
	fmt.Fprintln(os.Stdout, string(b))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// fillCheckpointSource writes n strings (a tenth with a TTL) and n/10 hashes into each of
// databases 0 and 3 of s, and returns how many keys it wrote.
func fillCheckpointSource(t *testing.T, s *redistest.Server, n int) int {
	t.Helper()
	total := 0
	for _, db := range []int{0, 3} {
		c := s.Client(t, db)
		var cmds rueidis.Commands
		for i := range n {
			k := fmt.Sprintf("db%d:k:%d", db, i)
			if i%10 == 0 {
				cmds = append(cmds, c.B().Set().Key(k).Value(strconv.Itoa(i)).Ex(time.Hour).Build())
			} else {
				cmds = append(cmds, c.B().Set().Key(k).Value(strconv.Itoa(i)).Build())
			}
		}
		for i := range n / 10 {
			cmds = append(cmds, c.B().Hset().Key(fmt.Sprintf("db%d:h:%d", db, i)).FieldValue().FieldValue("f", "v").FieldValue("g", strconv.Itoa(i)).Build())
		}
		for _, r := range c.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
		total += len(cmds)
	}
	return total
}

// TestCheckpointResumeAfterKill runs DumpRestore and MigrateKeys in a child process, kills
// it with SIGKILL at random moments five times, resumes it each time, and checks that the
// target ends up equal to the source, that the last run resumed and counted every key it
// walked, and that a run after the end reports the migration complete.
func TestCheckpointResumeAfterKill(t *testing.T) {
	for _, strategy := range []string{"dump-restore", "migrate-keys"} {
		t.Run(strategy, func(t *testing.T) {
			src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
			total := fillCheckpointSource(t, src, 4000)
			killAndResume(t, strategy, src.Addr, dst.Addr, total)
			redistest.AssertSame(t, src, dst, 0, 3)
		})
	}
}

// TestCheckpointResumeClusterSource is TestCheckpointResumeAfterKill from a cluster source,
// whose walk resumes by slot.
func TestCheckpointResumeClusterSource(t *testing.T) {
	src := redistest.StartCluster(t, redistest.ClusterConfig{})
	dst := redistest.Start(t, redistest.Config{})
	const total = 8000
	src.AddKeys(t, "k:", total, 8)
	killAndResume(t, "dump-restore", src.Masters[0].Addr, dst.Addr, total)
	redistest.AssertSameSides(t, src.Side(t), redistest.Side{Client: dst.Client(t, 0)}, "")
}

// killAndResume runs the migration in a child process, kills it five times at random
// moments once it copies, runs it to the end, and checks the last run resumed, then that a
// run after the end reports the migration complete.
func killAndResume(t *testing.T, strategy, srcAddr, dstAddr string, total int) {
	k := newKilledRun(t, strategy, srcAddr, dstAddr)
	k.killFiveTimes(t, func() time.Duration { return time.Duration(150+rand.Intn(400)) * time.Millisecond }, nil)
	var saved struct {
		Walk  *struct{ DB, Cursor int }
		Slots [][2]int
	}
	if b, err := os.ReadFile(k.file); err != nil || json.Unmarshal(b, &saved) != nil {
		t.Fatalf("no checkpoint after the kills: %v", err)
	}
	rep, err := k.run(0)
	if err != nil {
		t.Fatal(err)
	}
	if w := saved.Walk; w != nil && w.Cursor != 0 && rep.Databases[w.DB].Scanned >= int64(total/2) {
		t.Errorf("the last run walked %d keys of database %d, which holds %d: it did not continue from cursor %d",
			rep.Databases[w.DB].Scanned, w.DB, total/2, w.Cursor)
	}
	if len(saved.Slots) > 0 && rep.Scanned >= int64(total) {
		t.Errorf("the last run walked %d keys of %d: it did not skip the slots done %v", rep.Scanned, total, saved.Slots)
	}
	checkResumed(t, rep)
	if rep.Scanned >= int64(total) {
		t.Errorf("the last run walked %d keys of %d: it started over", rep.Scanned, total)
	}
	t.Logf("resumed from %s: %v", rep.Resumed, rep)
	k.checkComplete(t)
}

// checkResumed checks that rep is the report of a run that resumed and counted every key
// it handled.
func checkResumed(t *testing.T, rep *migrate.Report) {
	t.Helper()
	if rep.Resumed == "" || rep.AlreadyComplete {
		t.Errorf("the last run did not resume: Resumed %q, AlreadyComplete %v", rep.Resumed, rep.AlreadyComplete)
	}
	if rep.Keys+rep.Skipped+rep.Expired != rep.Scanned || rep.Failed != 0 {
		t.Errorf("last run's counts: %d copied + %d skipped + %d expired != %d scanned (%d failed)",
			rep.Keys, rep.Skipped, rep.Expired, rep.Scanned, rep.Failed)
	}
}

// killedRun is a migration run in child processes (TestCheckpointHelperProcess) with one
// checkpoint file, which a test kills and resumes.
type killedRun struct {
	file string
	env  []string
}

// newKilledRun prepares the runs of the migration strategy names (as the helper reads
// MIGRATE_CHECKPOINT_STRATEGY) from srcAddr to dstAddr; env adds to the child's environment.
func newKilledRun(t *testing.T, strategy, srcAddr, dstAddr string, env ...string) *killedRun {
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	return &killedRun{file: file, env: append([]string{"MIGRATE_CHECKPOINT_HELPER=1", "MIGRATE_CHECKPOINT_STRATEGY=" + strategy,
		"MIGRATE_CHECKPOINT_SRC=" + srcAddr, "MIGRATE_CHECKPOINT_DST=" + dstAddr, "MIGRATE_CHECKPOINT_FILE=" + file}, env...)}
}

// killFiveTimes runs the migration five times, each killed with SIGKILL after delay() once
// it started copying, and checks the checkpoint is whole after each kill; between, when not
// nil, runs after each kill.
func (k *killedRun) killFiveTimes(t *testing.T, delay func() time.Duration, between func(kill int)) {
	t.Helper()
	for killed := 1; killed <= 5; killed++ {
		start := time.Now()
		rep, err := k.run(delay())
		t.Logf("run %d killed after %s", killed, time.Since(start))
		if err == nil {
			t.Fatalf("the migration ended before it was killed (%d kills): %v; make it slower", killed-1, rep)
		}
		// The checkpoint is whole whenever the process dies.
		if b, err := os.ReadFile(k.file); err == nil {
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("after kill %d the checkpoint is not whole: %v: %q", killed, err, b)
			}
		}
		if between != nil {
			between(killed)
		}
	}
}

// checkComplete checks that a run after the end reports the migration complete and does
// nothing.
func (k *killedRun) checkComplete(t *testing.T) {
	t.Helper()
	again, err := k.run(0)
	if err != nil {
		t.Fatal(err)
	}
	if !again.AlreadyComplete || again.Scanned != 0 || again.Keys != 0 {
		t.Errorf("a run after the end: AlreadyComplete %v, %d scanned, %d copied; want complete and nothing done",
			again.AlreadyComplete, again.Scanned, again.Keys)
	}
}

// run runs the migration in a child process, killed kill after it started copying (0:
// cutOver ends a following run's kills: the writer w goes on a moment while nothing follows,
// stops, and a last run, told to cut over, resumes and finishes; it returns the writer's
// rounds and the last run's Report.
func (k *killedRun) cutOver(t *testing.T, w interface{ Stop() (int64, error) }) (int64, *migrate.Report) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // writes while nothing follows
	rounds, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.file+".cutover", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := k.run(0)
	if err != nil {
		t.Fatal(err)
	}
	checkResumed(t, rep)
	return rounds, rep
}

// not killed), and returns its Report.
func (k *killedRun) run(kill time.Duration) (*migrate.Report, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointHelperProcess$")
	cmd.Env = append(os.Environ(), k.env...)
	var out strings.Builder
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Killed a random while after it started copying.
	errOut := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if sc.Text() == "copying" && kill > 0 {
				time.AfterFunc(kill, func() { cmd.Process.Signal(syscall.SIGKILL) })
			}
			all.WriteString(sc.Text() + "\n")
		}
		errOut <- all.String()
	}()
	msg := <-errOut
	err = cmd.Wait()
	if err != nil {
		if kill > 0 {
			return nil, err
		}
		return nil, fmt.Errorf("%v: %s", err, msg)
	}
	var rep migrate.Report
	line := strings.TrimSpace(out.String())
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		return nil, fmt.Errorf("report %q: %v", out.String(), err)
	}
	return &rep, nil
}

// TestCheckpointRefused checks that a checkpoint of another migration, a damaged one and a
// strategy that cannot resume are refused with ErrCheckpoint or ErrUnsupported, and that
// the checkpoint is left as it was.
func TestCheckpointRefused(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	src.Do(t, 0, "SET", "a", "1")
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	migrateWith := func(opts ...migrate.Option) (*migrate.Report, error) {
		t.Helper()
		m, err := migrate.New(src.Option(), dst.Option(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return m.Migrate(ctx)
	}
	store := migrate.CheckpointFile(file)
	rep, err := migrateWith(migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithCheckpoint(store))
	if err != nil || rep.Keys != 1 || rep.AlreadyComplete || rep.Resumed != "" {
		t.Fatalf("first run: %v, %v (resumed %q)", rep, err, rep.Resumed)
	}
	rep, err = migrateWith(migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithCheckpoint(store))
	if err != nil || !rep.AlreadyComplete || rep.Keys != 0 || !strings.Contains(rep.Resumed, "complete") {
		t.Fatalf("run again: %v, %v; want complete (resumed %q)", rep, err, rep.Resumed)
	}
	saved, _ := os.ReadFile(file)

	for name, opts := range map[string][]migrate.Option{
		"another strategy": {migrate.WithStrategy(migrate.MigrateKeys{})},
		"another match":    {migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithMatch("x*")},
		"other databases":  {migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithDatabases(0, 1)},
		"other types":      {migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithTypes("string")},
		"another policy":   {migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithConflict(migrate.Skip)},
	} {
		_, err := migrateWith(append(opts, migrate.WithCheckpoint(store))...)
		if !errors.Is(err, migrate.ErrCheckpoint) || !strings.Contains(err.Error(), "another migration") {
			t.Errorf("%s: %v; want ErrCheckpoint naming another migration", name, err)
		}
	}
	if _, err := migrateWith(migrate.WithStrategy(migrate.Replication{}), migrate.WithCheckpoint(store)); !errors.Is(err, migrate.ErrUnsupported) {
		t.Errorf("Replication with a checkpoint: %v; want ErrUnsupported", err)
	}
	if now, _ := os.ReadFile(file); string(now) != string(saved) {
		t.Errorf("a refused run changed the checkpoint: %q, was %q", now, saved)
	}

	for name, damaged := range map[string]string{
		"truncated":   string(saved[:len(saved)/2]),
		"not json":    "\x00\x01garbage",
		"bad version": strings.Replace(string(saved), `"version": 1`, `"version": 99`, 1),
		"bad walk":    strings.Replace(string(saved), `"complete": true`, `"walk": {"db": 7, "cursor": 5}`, 1),
	} {
		if err := os.WriteFile(file, []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := migrateWith(migrate.WithStrategy(migrate.DumpRestore{}), migrate.WithCheckpoint(store))
		if !errors.Is(err, migrate.ErrCheckpoint) {
			t.Errorf("%s checkpoint: %v; want ErrCheckpoint", name, err)
		}
	}
}

// TestCheckpointFileSave checks that CheckpointFile's Save replaces the file whole, leaves
// no temporary file behind, and that Load of a missing file is nil, nil.
func TestCheckpointFileSave(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := migrate.CheckpointFile(filepath.Join(dir, "cp"))
	if b, err := s.Load(ctx); b != nil || err != nil {
		t.Fatalf("Load of no file: %q, %v; want nil, nil", b, err)
	}
	big := strings.Repeat("x", 1<<20)
	for _, state := range []string{big, "small", big[:1000]} {
		if err := s.Save(ctx, []byte(state)); err != nil {
			t.Fatal(err)
		}
		b, err := s.Load(ctx)
		if err != nil || string(b) != state {
			t.Fatalf("Load after Save of %d bytes: %d bytes, %v", len(state), len(b), err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the checkpoint alone", len(entries))
	}
	if err := migrate.CheckpointFile(filepath.Join(dir, "missing", "cp")).Save(ctx, []byte("x")); err == nil {
		t.Error("Save into a missing directory succeeded")
	}
}

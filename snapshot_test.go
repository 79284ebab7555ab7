package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// quickSync makes a source send its snapshot at once: Redis 7.0 otherwise waits 5 s for
// more replicas before a diskless transfer.
var quickSync = []string{"repl-diskless-sync yes", "repl-diskless-sync-delay 0"}

// diskSync makes a source write its snapshot to its disk before sending it ("$<len>").
var diskSync = []string{"repl-diskless-sync no"}

// reloading is Snapshot with ToFile whose Load hook puts the dump in the place of the
// job's target's (in dir) and makes the target load it (DEBUG RELOAD NOSAVE), as stopping and
// starting it would.
type reloading struct {
	migrate.Snapshot
	dir string
}

func (r reloading) Run(ctx context.Context, j *migrate.Job) error {
	s := r.Snapshot
	s.Load = func(ctx context.Context, path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.dir, "dump.rdb"), data, 0o600); err != nil {
			return err
		}
		c, err := j.Target.Default()
		if err != nil {
			return err
		}
		return c.Do(ctx, c.B().Arbitrary("DEBUG", "RELOAD", "NOSAVE").Build()).Error()
	}
	return s.Run(ctx, j)
}

// TestSnapshotSources reads a file the source saved, and refuses one that holds more than
// an RDB (the suite's snapshot rows read the other sources: diskless and disk-based
// transfers, a file saved by BGSave).
func TestSnapshotSources(t *testing.T) {
	t.Parallel()
	t.Run("saved file", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
		src.Do(t, 0, "SAVE")
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{FromFile: filepath.Join(src.Dir, "dump.rdb")})
		if err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, redistest.DatasetDBs...)
		assertCopied(t, rep, counts)
	})
	t.Run("file with more than an RDB", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
		src.Do(t, 0, "SET", "k", "v")
		src.Do(t, 0, "SAVE")
		data, err := os.ReadFile(filepath.Join(src.Dir, "dump.rdb"))
		if err != nil {
			t.Fatal(err)
		}
		// An AOF with an RDB preamble: the commands after it would be lost.
		path := filepath.Join(t.TempDir(), "appendonly.aof")
		if err := os.WriteFile(path, append(data, "*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1\r\nv\r\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{FromFile: path})
		if !errors.Is(err, migrate.ErrCorruptRDB) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "AOF") {
			t.Fatalf("err = %v, want ErrCorruptRDB naming the file and the AOF", err)
		}
	})
}

func TestSnapshotFilters(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: quickSync})
	redistest.Fill(t, src, redistest.Dataset{Small: true})
	src.Do(t, 7, "SET", "db7:str", "v") // a database no filter below selects
	for _, tc := range []struct {
		name string
		opts []migrate.Option
		keep func(db int, key, typ string) bool
	}{
		{"match", []migrate.Option{migrate.WithMatch("*:str:*")},
			func(db int, k, typ string) bool { return strings.Contains(k, ":str:") }},
		{"match with classes", []migrate.Option{migrate.WithMatch("db[^0]*:[hl]*")},
			func(db int, k, typ string) bool {
				return db != 0 && (strings.Contains(k, ":h") || strings.Contains(k, ":l")) && !strings.HasPrefix(k, "db0")
			}},
		{"types", []migrate.Option{migrate.WithTypes("hash", "stream")},
			func(db int, k, typ string) bool { return typ == "hash" || typ == "stream" }},
		{"databases", []migrate.Option{migrate.WithDatabases(3)},
			func(db int, k, typ string) bool { return db == 3 }},
		{"all three", []migrate.Option{migrate.WithDatabases(0, 15), migrate.WithTypes("list"), migrate.WithMatch("db15:*")},
			func(db int, k, typ string) bool { return db == 15 && typ == "list" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := redistest.Start(t, redistest.Config{})
			rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{}, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, db := range append(redistest.DatasetDBs, 7) {
				sc, dc := src.Client(t, db), dst.Client(t, db)
				for _, k := range redistest.Keys(t, sc, "") {
					typ, _ := sc.Do(context.Background(), sc.B().Type().Key(k).Build()).ToString()
					exists, _ := dc.Do(context.Background(), dc.B().Exists().Key(k).Build()).AsInt64()
					if keep := tc.keep(db, k, typ) && db != 7; keep != (exists == 1) {
						t.Errorf("db %d %q (%s): on target = %v, want %v", db, k, typ, exists == 1, keep)
					} else if keep {
						want++
					}
				}
			}
			if want == 0 {
				t.Fatal("the filter selects nothing: a useless case")
			}
			if rep.Keys != want || rep.Scanned != want {
				t.Errorf("report %+v, want %d keys scanned and copied", rep.Counts, want)
			}
		})
	}
	t.Run("every database by default", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		if _, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, append(redistest.DatasetDBs, 7)...)
	})
	t.Run("select db", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		opt := src.Option()
		opt.SelectDB = 15
		if _, err := runMigration(t, opt, dst.Option(), migrate.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, 15)
		if n := dst.DBSize(t, 0) + dst.DBSize(t, 3) + dst.DBSize(t, 7); n != 0 {
			t.Errorf("target databases 0, 3 and 7 got %d keys, want none", n)
		}
	})
}

func TestSnapshotAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  redistest.Config
		user string
		cmd  string // the command that starts the transfer
	}{
		{"password", redistest.Config{Password: "s3cret-source"}, "", "PSYNC"},
		// A user that may only read and replicate.
		{"acl user", redistest.Config{Users: []string{"user syncer on >syncpw ~* +@read +@connection +info +psync +sync +replconf"}}, "syncer", "PSYNC"},
		// Only SYNC: PSYNC is refused, SYNC used.
		{"acl user without psync", redistest.Config{Users: []string{"user syncer on >syncpw ~* +@read +@connection +info +sync +replconf"}}, "syncer", "SYNC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Lines = quickSync
			src, dst := redistest.StartPair(t, tc.cfg, redistest.Config{})
			redistest.SetKeys(t, src, 0, "k", 100, redistest.Same("v"))
			opt := src.Option()
			if tc.user != "" {
				opt.Username, opt.Password = tc.user, "syncpw"
			}
			var log bytes.Buffer
			rep, err := runMigration(t, opt, dst.Option(), migrate.Snapshot{},
				migrate.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Keys != 100 {
				t.Errorf("report %+v, want 100 keys", rep.Counts)
			}
			if !strings.Contains(log.String(), "command="+tc.cmd+" ") {
				t.Errorf("the transfer did not start with %s:\n%s", tc.cmd, log.String())
			}
			for _, p := range []string{"s3cret-source", "syncpw"} {
				if strings.Contains(log.String(), p) {
					t.Errorf("the log shows a password:\n%s", log.String())
				}
			}
			redistest.AssertSame(t, src, dst, 0)
		})
	}
	t.Run("credentials function", func(t *testing.T) {
		t.Parallel()
		src, dst := redistest.StartPair(t, redistest.Config{Users: []string{"user syncer on >syncpw ~* +@all"}, Lines: quickSync}, redistest.Config{})
		src.Do(t, 0, "SET", "k", "v")
		opt := src.Option()
		opt.AuthCredentialsFn = func(rueidis.AuthCredentialsContext) (rueidis.AuthCredentials, error) {
			return rueidis.AuthCredentials{Username: "syncer", Password: "syncpw"}, nil
		}
		if _, err := runMigration(t, opt, dst.Option(), migrate.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		redistest.AssertSame(t, src, dst, 0)
	})
}

// TestSnapshotSyncRenamed runs against a source whose SYNC and PSYNC are disabled: Check
// says so and points to DumpRestore, and nothing changes on either side; Run alone, without
// Check, fails the same way.
func TestSnapshotSyncRenamed(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Rename: map[string]string{"SYNC": "", "PSYNC": ""}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	for _, s := range []migrate.Strategy{migrate.Snapshot{}, runOnly{migrate.Snapshot{}}} {
		_, err := runMigration(t, src.Option(), dst.Option(), s)
		if !errors.Is(err, migrate.ErrUnsupported) {
			t.Fatalf("%T: err = %v, want ErrUnsupported", s, err)
		}
		for _, want := range []string{"PSYNC", "SYNC", "renamed", "DumpRestore", src.Addr} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%T: error does not say %q: %v", s, want, err)
			}
		}
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target got %d keys", n)
	}
	info, _ := src.Do(t, 0, "INFO", "stats").ToString()
	if !strings.Contains(info, "total_forks:0\r\n") {
		t.Errorf("the source forked:\n%s", info)
	}
}

// runOnly runs a strategy without its Check.
type runOnly struct{ migrate.Strategy }

func (runOnly) Check(context.Context, *migrate.Job) error { return nil }

// TestSnapshotSyncNotAllowed runs as an ACL user who may not replicate: Check tells when
// the user may ask ACL DRYRUN, and Run when it may not.
func TestSnapshotSyncNotAllowed(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{Users: []string{
		"user admin on >pw ~* +@all -psync -sync",
		"user reader on >pw ~* +@read +@connection +info",
	}}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	for _, user := range []string{"admin", "reader"} {
		opt := src.Option()
		opt.Username, opt.Password = user, "pw"
		_, err := runMigration(t, opt, dst.Option(), migrate.Snapshot{})
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "ACL user") ||
			!strings.Contains(err.Error(), "DumpRestore") {
			t.Errorf("user %s: err = %v, want ErrUnsupported about the ACL user, pointing to DumpRestore", user, err)
		}
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target got %d keys", n)
	}
}

// TestSnapshotFunctions restores function libraries, with the conflict policy deciding
// about a library of the same name.
func TestSnapshotFunctions(t *testing.T) {
	t.Parallel()
	code := func(ret int) string {
		return fmt.Sprintf("#!lua name=mylib\nredis.register_function('f', function() return %d end)", ret)
	}
	for _, tc := range []struct {
		name     string
		target   string // the target's library, if any
		policy   migrate.Conflict
		wantErr  error
		wantCode string
	}{
		{"new", "", migrate.Fail, nil, code(1)},
		{"same code", code(1), migrate.Fail, nil, code(1)},
		{"fail", code(2), migrate.Fail, migrate.ErrConflict, code(2)},
		{"skip", code(2), migrate.Skip, nil, code(2)},
		{"replace", code(2), migrate.Replace, nil, code(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dst := redistest.StartPair(t, redistest.Config{Lines: quickSync}, redistest.Config{})
			src.Do(t, 0, "FUNCTION", "LOAD", code(1))
			src.Do(t, 0, "SET", "k", "v")
			if tc.target != "" {
				dst.Do(t, 0, "FUNCTION", "LOAD", tc.target)
			}
			rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{}, migrate.WithConflict(tc.policy))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !strings.Contains(err.Error(), `"mylib"`) {
				t.Errorf("error does not name the library: %v", err)
			}
			libs, err := dst.Do(t, 0, "FUNCTION", "LIST", "WITHCODE").ToArray()
			if err != nil || len(libs) != 1 {
				t.Fatalf("target libraries: %v, %v", libs, err)
			}
			m, _ := libs[0].AsMap()
			got := m["library_code"]
			if s, _ := got.ToString(); s != tc.wantCode {
				t.Errorf("target library code %q, want %q", s, tc.wantCode)
			}
			if tc.wantErr == nil && rep.Keys != 1 {
				t.Errorf("report %+v, want the one key (libraries are not keys)", rep.Counts)
			}
		})
	}
}

// TestSnapshotExpired reads a dump whose short-lived keys have expired since it was saved:
// they are counted as Expired, not restored nor written.
func TestSnapshotExpired(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	c := src.Client(t, 0)
	var cmds rueidis.Commands
	for i := range 500 {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("keep%d", i)).Value("v").Build(),
			c.B().Set().Key(fmt.Sprintf("gone%d", i)).Value("v").PxMilliseconds(500).Build(),
			c.B().Set().Key(fmt.Sprintf("later%d", i)).Value("v").ExSeconds(3600).Build())
	}
	cmds = append(cmds, c.B().Save().Build())
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(600 * time.Millisecond)
	// The subtests may wait long for a parallel slot: compare absolute expiries.
	expireAt, err := c.Do(context.Background(), c.B().Pexpiretime().Key("later1").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(src.Dir, "dump.rdb")
	check := func(t *testing.T, rep *migrate.Report, dst *redistest.Server) {
		t.Helper()
		if rep.Expired != 500 || rep.Keys != 1000 || rep.Scanned != 1500 {
			t.Errorf("report %+v, want 1500 scanned, 1000 copied, 500 expired", rep.Counts)
		}
		if n := dst.DBSize(t, 0); n != 1000 {
			t.Errorf("target has %d keys, want 1000", n)
		}
		if at, _ := dst.Do(t, 0, "PEXPIRETIME", "later1").AsInt64(); at != expireAt {
			t.Errorf("target later1 expires at %d, want %d as on the source", at, expireAt)
		}
	}
	t.Run("restore", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{FromFile: dump})
		if err != nil {
			t.Fatal(err)
		}
		check(t, rep, dst)
	})
	t.Run("to file", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		dir := t.TempDir()
		rep, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{FromFile: dump, ToFile: filepath.Join(dir, "copy.rdb")})
		if err != nil {
			t.Fatal(err)
		}
		check(t, rep, redistest.Start(t, redistest.Config{Dir: dir, DBFilename: "copy.rdb"}))
	})
}

func TestSnapshotToFile(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Lines: quickSync})
	counts := redistest.Fill(t, src, redistest.Dataset{Small: true})
	t.Run("load the file", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		dir := t.TempDir()
		path := filepath.Join(dir, "snap.rdb")
		var loaded []string
		s := migrate.Snapshot{ToFile: path, Load: func(ctx context.Context, p string) error {
			if _, err := os.Stat(p); err != nil {
				return err
			}
			loaded = append(loaded, p)
			return nil
		}}
		rep, err := runMigration(t, src.Option(), dst.Option(), s)
		if err != nil {
			t.Fatal(err)
		}
		if len(loaded) != 1 || loaded[0] != path {
			t.Errorf("Load called with %q, want once with %s", loaded, path)
		}
		assertCopied(t, rep, counts)
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("%s holds %d files, want only the dump", dir, len(entries))
		}
		// As the application would: start the target on the file.
		redistest.AssertSame(t, src, redistest.Start(t, redistest.Config{Dir: dir, DBFilename: "snap.rdb"}), redistest.DatasetDBs...)
	})
	t.Run("target with keys", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		dst.Do(t, 0, "SET", "mine", "v")
		path := filepath.Join(t.TempDir(), "snap.rdb")
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{ToFile: path})
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "WithDiscardTarget") || !strings.Contains(err.Error(), dst.Addr) {
			t.Fatalf("err = %v, want ErrUnsupported naming the target and WithDiscardTarget", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dump was written: %v", err)
		}
		if _, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{ToFile: path}, migrate.WithDiscardTarget()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Error(err)
		}
	})
	t.Run("filters", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		path := filepath.Join(t.TempDir(), "snap.rdb")
		_, err := runMigration(t, src.Option(), dst.Option(), migrate.Snapshot{ToFile: path}, migrate.WithMatch("db0:*"))
		if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "WithMatch") {
			t.Fatalf("err = %v, want ErrUnsupported naming the filter", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dump was written: %v", err)
		}
	})
	t.Run("load fails", func(t *testing.T) {
		t.Parallel()
		dst := redistest.Start(t, redistest.Config{})
		boom := errors.New("boom")
		s := migrate.Snapshot{ToFile: filepath.Join(t.TempDir(), "snap.rdb"),
			Load: func(context.Context, string) error { return boom }}
		_, err := runMigration(t, src.Option(), dst.Option(), s)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), dst.Addr) || !strings.Contains(err.Error(), "Load") {
			t.Fatalf("err = %v, want the hook's error, naming the target and the hook", err)
		}
	})
}

// TestSnapshotCheck gives Snapshot what it cannot use: each run fails before anything is
// copied, and says why.
func TestSnapshotCheck(t *testing.T) {
	t.Parallel()
	src, dst := redistest.StartPair(t, redistest.Config{}, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	dir := t.TempDir()
	notRDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notRDB, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An old dump at the path BGSave is told to read, which the source never writes.
	stale := filepath.Join(dir, "stale.rdb")
	src.Do(t, 0, "SAVE")
	data, err := os.ReadFile(filepath.Join(src.Dir, "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, data, 0o600); err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) error { return nil }
	for _, tc := range []struct {
		name string
		s    migrate.Snapshot
		want error
		says string
	}{
		{"bgsave without file", migrate.Snapshot{BGSave: true}, migrate.ErrUnsupported, "FromFile"},
		{"load without file", migrate.Snapshot{Load: load}, migrate.ErrUnsupported, "ToFile"},
		{"missing file", migrate.Snapshot{FromFile: filepath.Join(dir, "missing.rdb")}, os.ErrNotExist, "missing.rdb"},
		{"not an rdb", migrate.Snapshot{FromFile: notRDB}, migrate.ErrCorruptRDB, notRDB},
		{"missing directory", migrate.Snapshot{ToFile: filepath.Join(dir, "no", "snap.rdb")}, os.ErrNotExist, "not writable"},
		{"bgsave of another file", migrate.Snapshot{FromFile: stale, BGSave: true}, migrate.ErrUnsupported, "dbfilename"},
	} {
		_, err := runMigration(t, src.Option(), dst.Option(), tc.s)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err = %v, want %v saying %q", tc.name, err, tc.want, tc.says)
		}
	}
	if n := dst.DBSize(t, 0); n != 0 {
		t.Errorf("target got %d keys", n)
	}
}

// TestSnapshotCancel cancels a migration in the middle of the stream. It is not parallel: it
// counts goroutines.
func TestSnapshotCancel(t *testing.T) {
	src, dst := redistest.StartPair(t, redistest.Config{Lines: quickSync}, redistest.Config{})
	src.Do(t, 0, "DEBUG", "POPULATE", "300000", "key", "20")
	srcInfo := src.Client(t, 0)
	dst.Client(t, 0)
	for _, tc := range []struct {
		name string
		s    migrate.Snapshot
	}{
		{"restore", migrate.Snapshot{}},
		{"to file", migrate.Snapshot{ToFile: filepath.Join(t.TempDir(), "snap.rdb")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cancelled time.Time
			started := make(chan struct{})
			progress := func(p migrate.Progress) {
				if p.Scanned > 0 && cancelled.IsZero() {
					cancelled = time.Now()
					close(started)
					cancel()
				}
			}
			m, err := migrate.New(src.Option(), dst.Option(), migrate.WithStrategy(tc.s),
				migrate.WithRateLimit(50000), migrate.WithProgress(progress), migrate.WithDiscardTarget())
			if err != nil {
				t.Fatal(err)
			}
			rep, err := m.Migrate(ctx)
			returned := time.Now()
			m.Close()
			select {
			case <-started:
			default:
				t.Fatalf("the migration ended (%v, %v) before the stream was seen flowing", rep, err)
			}
			if late := returned.Sub(cancelled); late > time.Second {
				t.Errorf("Migrate returned %v after the cancellation", late)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if rep.Scanned == 0 || rep.Scanned >= 300000 {
				t.Errorf("report %+v, want a partial copy", rep.Counts)
			}
			deadline := time.Now().Add(2 * time.Second)
			for {
				info, _ := srcInfo.Do(context.Background(), srcInfo.B().Info().Section("replication").Build()).ToString()
				if strings.Contains(info, "connected_slaves:0\r\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the source still has a replica 2s after the cancellation:\n%s", info)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.s.ToFile != "" {
				entries, _ := os.ReadDir(filepath.Dir(tc.s.ToFile))
				if len(entries) != 0 {
					t.Errorf("files left after the cancellation: %v", entries)
				}
			}
			redistest.WaitGoroutines(t, before, 3*time.Second)
		})
	}
}

package migrate_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// This is the whole use of the library: describe both servers as for rueidis, choose
// options, migrate, read the report.
func ExampleNew() {
	source := rueidis.ClientOption{InitAddress: []string{"10.0.0.1:6379"}, Password: "secret"}
	target := rueidis.ClientOption{InitAddress: []string{"redis.example.com:6380"}, Username: "app", Password: "secret"}
	m, err := migrate.New(source, target,
		migrate.WithStrategy(migrate.DumpRestore{}),
		migrate.WithConflict(migrate.Skip),
		migrate.WithRateLimit(50_000),
		migrate.WithProgress(func(p migrate.Progress) {
			log.Printf("%d/%d keys copied", p.Keys, p.Total)
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	report, err := m.Migrate(ctx)
	if err != nil {
		log.Fatalf("%v (done so far: %v)", err, report)
	}
	fmt.Println(report)
}

// Several databases of a standalone server go into a Redis Cluster, which has only
// database 0, each key prefixed with its database's number. A cluster is described by the
// address of one or more of its nodes; the strategy walks every master of a cluster source.
func ExampleWithDBPrefix() {
	source := rueidis.ClientOption{InitAddress: []string{"10.0.0.1:6379"}}
	cluster := rueidis.ClientOption{InitAddress: []string{"10.0.1.1:7000", "10.0.1.2:7000"}}
	m, err := migrate.New(source, cluster,
		migrate.WithStrategy(migrate.DumpRestore{}),
		migrate.WithDBPrefix("db%d:"), // key k of database 3 becomes "db3:k"
		migrate.WithVerify(),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	report, err := m.Migrate(context.Background())
	if err != nil {
		log.Fatalf("%v (done so far: %v)", err, report)
	}
	fmt.Println(report, report.Verify)
}

// A Strategy of one's own receives the same Job as the built-in ones: both sides, the
// options, the key walk and the counters. This one copies string keys with GET and SET.
type copyStrings struct{}

func (copyStrings) Name() string { return "copy-strings" }

func (copyStrings) Check(ctx context.Context, job *migrate.Job) error {
	if len(job.Types) > 0 && (len(job.Types) != 1 || job.Types[0] != "string") {
		return fmt.Errorf("copy-strings copies strings only: %w", migrate.ErrUnsupported)
	}
	return nil
}

func (copyStrings) Run(ctx context.Context, job *migrate.Job) error {
	for _, db := range job.Databases {
		src, err := job.Source.Client(db)
		if err != nil {
			return err
		}
		// TargetDB and TargetKey say where the key goes: database 0 of a cluster, a prefix.
		dst, err := job.Target.Client(job.TargetDB(db))
		if err != nil {
			return err
		}
		err = job.ScanKeys(ctx, db, func(keys []string) error {
			var n migrate.Counts
			for _, k := range keys {
				v, err := src.Do(ctx, src.B().Get().Key(k).Build()).ToString()
				if rueidis.IsRedisNil(err) {
					n.Expired++
					continue
				} else if err != nil {
					return job.Source.Err("get", k, err)
				}
				tk := job.TargetKey(db, k)
				if err := dst.Do(ctx, dst.B().Set().Key(tk).Value(v).Build()).Error(); err != nil {
					return job.Target.Err("set", tk, err)
				}
				n.Keys++
				n.Bytes += int64(len(v))
			}
			job.Count(db, n)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func Example_ownStrategy() {
	source, target, stop := throwawayServers() // two redis-server processes on loopback
	defer stop()
	c, _ := rueidis.NewClient(source)
	for _, k := range []string{"a", "b", "c"} {
		c.Do(context.Background(), c.B().Set().Key(k).Value("v").Build())
	}
	c.Do(context.Background(), c.B().Rpush().Key("list").Element("not a string").Build())
	c.Close()

	m, err := migrate.New(source, target, migrate.WithStrategy(copyStrings{}), migrate.WithTypes("string"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	report, err := m.Migrate(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(report.Keys, "strings copied")
	// Output: 3 strings copied
}

// throwawayServers starts two empty redis-server processes for the runnable examples.
func throwawayServers() (source, target rueidis.ClientOption, stop func()) {
	source, stopSource := startRedis("")
	target, stopTarget := startRedis("")
	return source, target, func() { stopSource(); stopTarget() }
}

// startRedis starts a throwaway redis-server (it must be on the PATH) on a free loopback
// port, without persistence, with requirepass when password is not empty, and returns how
// to reach it and the function that stops it and removes its files. It is how the examples
// get servers; in your program, describe your own servers instead.
func startRedis(password string) (rueidis.ClientOption, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir, err := os.MkdirTemp("", "redis-example-")
	if err != nil {
		log.Fatal(err)
	}
	args := []string{"--port", strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		log.Fatalf("start redis-server (apt-get install redis-server): %v", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	opt := rueidis.ClientOption{InitAddress: []string{addr}, Password: password, DisableCache: true}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := rueidis.NewClient(opt)
		if err == nil {
			c.Close()
			return opt, stop
		}
		if time.Now().After(deadline) {
			stop()
			log.Fatalf("redis-server at %s did not answer: %v", addr, err)
		}
	}
}

func ExampleDumpRestore() {
	source, target, stop := throwawayServers()
	defer stop()
	c, _ := rueidis.NewClient(source)
	c.Do(context.Background(), c.B().Set().Key("session:1").Value("alice").Ex(time.Hour).Build())
	c.Do(context.Background(), c.B().Hset().Key("session:2").FieldValue().FieldValue("user", "bob").Build())
	c.Do(context.Background(), c.B().Set().Key("cache:1").Value("not copied").Build())
	c.Close()

	m, err := migrate.New(source, target,
		migrate.WithStrategy(migrate.DumpRestore{}),
		migrate.WithMatch("session:*"),
		migrate.WithConflict(migrate.Replace),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	report, err := m.Migrate(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d keys copied, %d expired meanwhile\n", report.Strategy, report.Keys, report.Expired)
	// Output: dump-restore: 2 keys copied, 0 expired meanwhile
}

// Plan says, without changing anything, which strategy would run and why the better ones
// cannot; fmt.Print(plan) shows it as a table.
func ExampleMigrator_Plan() {
	source, target, stop := throwawayServers()
	defer stop()
	m, err := migrate.New(source, target) // Auto{}: the first rung of the ladder that can run
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	plan, err := m.Plan(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range plan.Steps {
		fmt.Printf("%-12s can run: %v\n", s.Strategy, s.OK)
	}
	fmt.Println("chosen:", plan.Chosen)
	// Output:
	// replication  can run: false
	// snapshot     can run: true
	// migrate-keys can run: true
	// dump-restore can run: true
	// chosen: snapshot
}

// Verify compares two servers key by key and gives examples of what differs.
func ExampleVerify() {
	source, target, stop := throwawayServers()
	defer stop()
	for _, side := range []rueidis.ClientOption{source, target} {
		c, _ := rueidis.NewClient(side)
		c.Do(context.Background(), c.B().Set().Key("same").Value("v").Build())
		c.Close()
	}
	c, _ := rueidis.NewClient(source)
	c.Do(context.Background(), c.B().Set().Key("only-on-source").Value("v").Build())
	c.Close()

	rep, err := migrate.Verify(context.Background(), source, target)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rep.Equal(), rep)
	for _, d := range rep.Examples {
		fmt.Println(d)
	}
	// Output:
	// false 2 keys compared: 1 missing, 0 extra, 0 of another type, 0 with another value, 0 with another TTL
	// db 0 "only-on-source": missing
}

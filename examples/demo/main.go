// Command demo starts two throwaway redis-server processes, loads a sample data set into
// the first (every type, TTLs, three databases), prints the plan, migrates it into the
// second with the strategy Auto chooses, verifies the copy key by key, and prints the
// report.
//
//	go run ./examples/demo
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "migrate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var servers [2]*redistest.Server
	for i, name := range []string{"source", "target"} {
		if err := os.Mkdir(dir+"/"+name, 0o700); err != nil {
			return err
		}
		s, err := redistest.Launch(redistest.Config{Dir: dir + "/" + name})
		if err != nil {
			return err
		}
		defer s.Stop()
		servers[i] = s
		fmt.Printf("%s: redis-server on %s\n", name, s.Addr)
	}
	src, dst := servers[0], servers[1]

	counts, err := redistest.Load(ctx, src, redistest.Dataset{})
	if err != nil {
		return fmt.Errorf("load the sample: %w", err)
	}
	fmt.Printf("loaded the sample into the source: %v keys per database\n", counts)

	m, err := migrate.New(src.Option(), dst.Option(),
		migrate.WithVerify(), // compare both sides key by key once copied
		migrate.WithProgress(func(p migrate.Progress) {
			fmt.Printf("progress: %s %d/%d keys, %d bytes, %s\n", p.Strategy, p.Keys, p.Total, p.Bytes, p.Elapsed.Round(time.Millisecond))
		}))
	if err != nil {
		return err
	}
	defer m.Close()
	plan, err := m.Plan(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nthe plan (what can run here, and why not):\n\n%s\n", plan)
	rep, err := m.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Println("report:", rep)
	for _, db := range redistest.DatasetDBs {
		c := rep.Databases[db]
		fmt.Printf("  db %-2d %6d keys %10d bytes\n", db, c.Keys, c.Bytes)
	}
	fmt.Println("verified:", rep.Verify)
	return nil
}

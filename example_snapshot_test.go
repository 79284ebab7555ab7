package migrate_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/exec"

	"github.com/redis/rueidis"

	"github.com/redismigrate/migrate"
)

// ExampleSnapshot copies a point-in-time snapshot of the source, read over a replication
// connection, into the target with RESTORE; where the source refuses to replicate, it falls
// back to DumpRestore.
func ExampleSnapshot() {
	source := rueidis.ClientOption{InitAddress: []string{"redis-old:6379"}, Password: os.Getenv("SOURCE_PASSWORD")}
	target := rueidis.ClientOption{InitAddress: []string{"redis-new:6379"}}
	ctx := context.Background()

	run := func(s migrate.Strategy) (*migrate.Report, error) {
		m, err := migrate.New(source, target, migrate.WithStrategy(s))
		if err != nil {
			return nil, err
		}
		defer m.Close()
		return m.Migrate(ctx)
	}
	rep, err := run(migrate.Snapshot{})
	if errors.Is(err, migrate.ErrUnsupported) {
		// PSYNC and SYNC renamed or refused (a managed service): copy key by key.
		log.Printf("snapshot: %v; falling back to DUMP/RESTORE", err)
		rep, err = run(migrate.DumpRestore{})
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Print(rep)
}

// ExampleSnapshot_toFile writes the source's snapshot to a dump file and has the target
// load it in place of its data: the Load hook stops the target, puts the file where the
// target reads its dump, and starts it again.
func ExampleSnapshot_toFile() {
	source := rueidis.ClientOption{InitAddress: []string{"redis-old:6379"}}
	target := rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}}

	load := func(ctx context.Context, path string) error {
		if err := exec.CommandContext(ctx, "systemctl", "stop", "redis-server").Run(); err != nil {
			return err
		}
		// CONFIG GET dir dbfilename on the target says where its dump goes. The file is
		// mode 0600: the target's user must own it (os.Chown) if it is not this process's.
		if err := os.Rename(path, "/var/lib/redis/dump.rdb"); err != nil {
			return err
		}
		return exec.CommandContext(ctx, "systemctl", "start", "redis-server").Run()
	}
	m, err := migrate.New(source, target,
		migrate.WithStrategy(migrate.Snapshot{ToFile: "/var/lib/redis/incoming.rdb", Load: load}),
		migrate.WithDiscardTarget(), // the target's own keys are replaced
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	log.Print(rep)
}

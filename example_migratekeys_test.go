package migrate_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// ExampleMigrateKeys has the source push its keys to a target that needs a password and
// already holds one of them, which it keeps.
func ExampleMigrateKeys() {
	// Two servers for the example (see startRedis); in your program, yours.
	source, stopSource := startRedis("")
	defer stopSource()
	target, stopTarget := startRedis("target-secret")
	defer stopTarget()
	seedExample(source, "MSET", "greeting", "hello", "a", "1", "b", "2")
	seedExample(target, "SET", "greeting", "kept")

	m, err := migrate.New(source, target,
		migrate.WithStrategy(migrate.MigrateKeys{
			// The source connects to the target itself. Here it reaches it where this
			// program does; when it sees it under another name, say so:
			// TargetAddr: "redis-target:6379",
			Timeout: 10 * time.Second,
		}),
		migrate.WithConflict(migrate.Skip),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d keys copied, %d skipped\n", rep.Strategy, rep.Keys, rep.Skipped)
	// Output: migrate-keys: 2 keys copied, 1 skipped
}

// seedExample runs one command on a server.
func seedExample(server rueidis.ClientOption, cmd ...string) {
	c, err := rueidis.NewClient(server)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().Arbitrary(cmd[0]).Args(cmd[1:]...).Build()).Error(); err != nil {
		log.Fatal(err)
	}
}

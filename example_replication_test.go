package migrate_test

import (
	"context"
	"log"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// ExampleReplication moves a live server to a new one without losing a write: the new
// server replicates the old one until the application has moved over, then is promoted.
func ExampleReplication() {
	source := rueidis.ClientOption{InitAddress: []string{"old-redis:6379"}, Password: "source password"}
	target := rueidis.ClientOption{InitAddress: []string{"new-redis:6379"}}

	m, err := migrate.New(source, target,
		migrate.WithStrategy(migrate.Replication{}),
		// Called once new-redis is in sync, while it still replicates.
		migrate.WithFollow(func(ctx context.Context) error {
			// Point the application at new-redis and stop its writes to old-redis,
			// for example by switching a DNS name or a proxy's backend.
			return switchClients(ctx, "new-redis:6379")
		}),
		migrate.WithProgress(func(p migrate.Progress) {
			log.Printf("%d of about %d keys, %d bytes", p.Keys, p.Total, p.Bytes)
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	rep, err := m.Migrate(context.Background())
	if err != nil {
		// The target is not left replicating; the error says which step failed.
		log.Fatal(err)
	}
	log.Print(rep)
}

// switchClients stands for the application's own way of moving its clients.
func switchClients(ctx context.Context, addr string) error { return nil }

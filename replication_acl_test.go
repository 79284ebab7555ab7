package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redismigrate/migrate"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestReplicationSourceRefusesReplica runs Replication with a source user that may not
// PSYNC or SYNC and may not ask ACL DRYRUN either, so that Check cannot tell on Redis 7:
// the run fails within seconds, naming the ACL rules the source's user lacks, and the
// target is detached with its keys.
func TestReplicationSourceRefusesReplica(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{Users: []string{
		"user mig on >mig-secret ~* &* +@all -psync -sync -acl",
	}})
	dst := redistest.Start(t, redistest.Config{})
	src.Do(t, 0, "SET", "k", "v")
	dst.Do(t, 0, "SET", "kept", "target")
	so := src.Option()
	so.Username, so.Password = "mig", "mig-secret"
	m, err := migrate.New(so, dst.Option(), migrate.WithStrategy(migrate.Replication{}), migrate.WithDiscardTarget())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = m.Migrate(ctx)
	if !errors.Is(err, migrate.ErrUnsupported) || !strings.Contains(err.Error(), "+psync") || !strings.Contains(err.Error(), `"mig"`) {
		t.Fatalf("err = %v, want a refusal naming the user and +psync", err)
	}
	if strings.Contains(err.Error(), "mig-secret") {
		t.Errorf("the error holds the password: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v: want the refusal told within seconds, not at the link timeout", d)
	}
	if role := dst.Info(t, "role"); role != "master" {
		t.Errorf("target role %q, want master (detached)", role)
	}
	if v, _ := dst.Do(t, 0, "GET", "kept").ToString(); v != "target" {
		t.Errorf("target key kept = %q, want its own value", v)
	}
}

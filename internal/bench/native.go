package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// replicate times a full sync of dst from src by REPLICAOF, then promotes dst again.
func replicate(ctx context.Context, src, dst *redistest.Server) (time.Duration, error) {
	d, err := dst.Connect(0)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	s, err := src.Connect(0)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	start := time.Now()
	if err := d.Do(ctx, d.B().Replicaof().Host(src.Host).Port(int64(src.Port)).Build()).Error(); err != nil {
		return 0, err
	}
	defer d.Do(ctx, d.B().Replicaof().No().One().Build())
	for {
		if time.Since(start) > 30*time.Minute {
			return 0, fmt.Errorf("no sync after 30 minutes")
		}
		info, err := d.Do(ctx, d.B().Info().Section("replication").Build()).ToString()
		if err != nil {
			return 0, err
		}
		if field(info, "master_link_status") == "up" && field(info, "master_sync_in_progress") == "0" {
			srcInfo, err := s.Do(ctx, s.B().Info().Section("replication").Build()).ToString()
			if err != nil {
				return 0, err
			}
			if intField(info, "slave_repl_offset") >= intField(srcInfo, "master_repl_offset") {
				return time.Since(start), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func intField(info, name string) int64 {
	n, _ := strconv.ParseInt(field(info, name), 10, 64)
	return n
}

// flush empties the target between runs.
func flush(ctx context.Context, s *redistest.Server) error {
	c, err := s.Connect(0)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Do(ctx, c.B().Flushall().Sync().Build()).Error()
}

// pipeline sends cmds in chunks and returns the first error.
func pipeline(ctx context.Context, c rueidis.Client, cmds rueidis.Commands) error {
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

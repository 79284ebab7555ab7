package main

import (
	"context"
	"strconv"
	"time"

	"github.com/redismigrate/migrate/internal/redistest"
)

// cpuSeconds returns the CPU time that server s and its children (the fork that writes a
// snapshot) have used, from INFO cpu. A child counts once the server has reaped it, so
// it first waits, up to two seconds, for no child to be running.
func cpuSeconds(ctx context.Context, s *redistest.Server) float64 {
	c, err := s.Connect(0)
	if err != nil {
		return 0
	}
	defer c.Close()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info, err := c.Do(ctx, c.B().Info().Section("persistence").Build()).ToString()
		if err != nil || field(info, "rdb_bgsave_in_progress") == "0" {
			break
		}
	}
	info, err := c.Do(ctx, c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		return 0
	}
	var sum float64
	for _, f := range []string{"used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"} {
		v, _ := strconv.ParseFloat(field(info, f), 64)
		sum += v
	}
	return sum
}

// usage is the CPU time each process used during one run.
type usage struct{ src, dst, own float64 }

// cpuSince returns what src and dst used since before, with own, the migrating process's.
func cpuSince(ctx context.Context, src, dst *redistest.Server, before usage, own float64) usage {
	return usage{src: cpuSeconds(ctx, src) - before.src, dst: cpuSeconds(ctx, dst) - before.dst, own: own}
}

func (u usage) String() string {
	return strconv.FormatFloat(u.src, 'f', 1, 64) + "/" + strconv.FormatFloat(u.dst, 'f', 1, 64) + "/" + strconv.FormatFloat(u.own, 'f', 1, 64)
}

package migrate

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// ServerInfo holds the facts about one server that strategies decide on, read from INFO.
type ServerInfo struct {
	Version    string        // redis_version, as "7.0.15"
	Mode       string        // redis_mode: "standalone", "cluster" or "sentinel"
	Role       string        // "master" or "slave"
	Keyspace   map[int]int64 // keys per database, for databases that have keys
	UsedMemory int64         // used_memory in bytes
	MaxMemory  int64         // maxmemory in bytes, 0 for none
	Policy     string        // maxmemory_policy
	// Masters is the number of masters that serve slots, on a cluster; 0 otherwise. On a
	// cluster Keyspace is summed over them (database 0 only), the rest is one node's.
	Masters int
	Fields  map[string]string
}

// AtLeast reports whether the server's version is major.minor.patch or newer. An unknown
// version counts as new.
func (s *ServerInfo) AtLeast(major, minor, patch int) bool {
	if s == nil || s.Version == "" {
		return true
	}
	return versionNumber(s.Version) >= major*10000+minor*100+patch
}

// RDBVersion returns the RDB format version the server writes, the one in its DUMP
// payloads, derived from its version; 0 when unknown.
func (s *ServerInfo) RDBVersion() int {
	if s == nil || s.Version == "" {
		return 0
	}
	return rdbVersionOf(versionNumber(s.Version))
}

// rdbVersionOf maps a server version (major*10000+minor*100+patch) to its RDB version.
func rdbVersionOf(v int) int {
	switch {
	case v >= 70400:
		return 12
	case v >= 70200:
		return 11
	case v >= 70000:
		return 10
	case v >= 50000:
		return 9
	case v >= 40000:
		return 8
	case v >= 30200:
		return 7
	case v >= 20600:
		return 6
	default:
		return 4
	}
}

func versionNumber(v string) int {
	parts := strings.SplitN(v, ".", 3)
	n := 0
	for i, mul := range []int{10000, 100, 1} {
		if i < len(parts) {
			p, _ := strconv.Atoi(strings.TrimFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' }))
			n += p * mul
		}
	}
	return n
}

// readInfo runs INFO and parses the sections strategies use.
func readInfo(ctx context.Context, c rueidis.Client) (*ServerInfo, error) {
	text, err := c.Do(ctx, c.B().Info().Build()).ToString()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

func parseInfo(text string) *ServerInfo {
	s := &ServerInfo{Keyspace: map[int]int64{}, Fields: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		s.Fields[k] = v
		if db, ok := strings.CutPrefix(k, "db"); ok {
			n, err := strconv.Atoi(db)
			if err != nil {
				continue
			}
			// db0:keys=1,expires=0,avg_ttl=0
			for _, kv := range strings.Split(v, ",") {
				if keys, ok := strings.CutPrefix(kv, "keys="); ok {
					s.Keyspace[n], _ = strconv.ParseInt(keys, 10, 64)
				}
			}
		}
	}
	s.Version = s.Fields["redis_version"]
	s.Mode = s.Fields["redis_mode"]
	if s.Mode == "" {
		s.Mode = "standalone"
	}
	s.Role = s.Fields["role"]
	s.UsedMemory, _ = strconv.ParseInt(s.Fields["used_memory"], 10, 64)
	s.MaxMemory, _ = strconv.ParseInt(s.Fields["maxmemory"], 10, 64)
	s.Policy = s.Fields["maxmemory_policy"]
	return s
}

// configGet reads one configuration parameter; ok is false when CONFIG GET is refused or
// the parameter is unknown.
func configGet(ctx context.Context, c rueidis.Client, name string) (string, bool) {
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter(name).Build()).AsStrMap()
	if err != nil {
		// RESP2 replies a flat array.
		arr, err2 := c.Do(ctx, c.B().ConfigGet().Parameter(name).Build()).AsStrSlice()
		if err2 != nil || len(arr) < 2 {
			return "", false
		}
		return arr[1], true
	}
	v, ok := m[name]
	return v, ok
}

func (s *ServerInfo) String() string {
	if s == nil {
		return "unknown server"
	}
	return fmt.Sprintf("Redis %s (%s, %s)", s.Version, s.Mode, s.Role)
}

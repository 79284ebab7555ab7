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
	// Version is redis_version, as "7.0.15": the Redis version whose commands the server
	// answers, which AtLeast compares. Valkey reports 7.2.4 there, whatever its release.
	Version string
	// Product is "Valkey" when INFO has valkey_version, else "Redis".
	Product string
	// ProductVersion is the release of Product: valkey_version for Valkey ("8.0.1"),
	// redis_version for Redis.
	ProductVersion string
	Mode           string        // redis_mode (server_mode on Valkey 8.1+): "standalone", "cluster" or "sentinel"
	Role           string        // "master" or "slave"
	Keyspace       map[int]int64 // keys per database, for databases that have keys
	UsedMemory     int64         // used_memory in bytes
	MaxMemory      int64         // maxmemory in bytes, 0 for none
	Policy         string        // maxmemory_policy
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

// Name returns the server as it names itself: "Redis 7.4.1", "Valkey 8.0.1", or "an
// unknown server" when INFO gave no version.
func (s *ServerInfo) Name() string {
	if s == nil || s.ProductVersion == "" && s.Version == "" {
		return "an unknown server"
	}
	product, version := s.Product, s.ProductVersion
	if product == "" {
		product = "Redis"
	}
	if version == "" {
		version = s.Version
	}
	return product + " " + version
}

// describeVersion names the server for a message as it names itself (see
// [ServerInfo.Name]): "Redis 7.4.1", "Valkey 8.0.1", not the redis_version 7.2.4 Valkey
// reports for compatibility.
func describeVersion(s *ServerInfo) string { return s.Name() }

// IsValkey reports whether the server is Valkey (its INFO has valkey_version).
func (s *ServerInfo) IsValkey() bool { return s != nil && s.Product == "Valkey" }

// RDBVersion returns the RDB format version the server writes, the one in its DUMP
// payloads, derived from its version; 0 when unknown. Valkey 7.2 to 8.1 write RDB 11,
// as Redis 7.2 does; Valkey 9 writes 80 and 81, numbers far above Redis's.
func (s *ServerInfo) RDBVersion() int {
	switch {
	case s == nil:
		return 0
	case s.IsValkey() && s.ProductVersion != "":
		return valkeyRDBVersionOf(versionNumber(s.ProductVersion))
	case s.Version == "":
		return 0
	}
	return rdbVersionOf(versionNumber(s.Version))
}

// ReadsRDB reports whether the server loads DUMP payloads (and RDB files) of RDB
// version v; true when either is unknown. Redis reads every version up to its own.
// Valkey reads up to its own too, but refuses 12 to 79, the range it leaves to Redis's
// formats since Valkey 9 (and which Valkey 8 does not know either), unless its
// rdb-version-check is relaxed, which is not assumed here (Valkey src/rdb.c,
// rdbIsVersionAccepted).
func (s *ServerInfo) ReadsRDB(v int) bool {
	own := s.RDBVersion()
	if own == 0 || v == 0 {
		return true
	}
	if s.IsValkey() && v > 11 && v < rdbMinValkeyVersion {
		return false
	}
	return v <= own
}

// valkeyRDBVersionOf maps a Valkey version (major*10000+minor*100+patch) to its RDB
// version (Valkey src/rdb.h, RDB_VERSION_MAP).
func valkeyRDBVersionOf(v int) int {
	switch {
	case v >= 90200:
		return 81
	case v >= 90000:
		return 80
	default:
		return 11 // Valkey 7.2 to 8.1, forks of Redis 7.2.4
	}
}

// rdbVersionOf maps a Redis version (major*10000+minor*100+patch) to its RDB version.
// Redis 8.0 to 8.4 kept RDB 12; 8.6 wrote 13 (streams with IDMP, key metadata) and 8.8
// wrote 14 (streams with negative acknowledgements); a later release counts as newer
// than this library knows.
func rdbVersionOf(v int) int {
	switch {
	case v >= 81000:
		return rdbMaxVersion + 1
	case v >= 80800:
		return 14
	case v >= 80600:
		return 13
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
	s.Product, s.ProductVersion = "Redis", s.Version
	if v := s.Fields["valkey_version"]; v != "" {
		s.Product, s.ProductVersion = "Valkey", v
	}
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
	return fmt.Sprintf("%s (%s, %s)", s.Name(), s.Mode, s.Role)
}

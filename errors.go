package migrate

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package that has one of these causes wraps
// it, so callers can test with errors.Is.
var (
	// ErrUnsupported means a strategy cannot run against these servers; the wrapping
	// error says why (a command renamed or refused, a version too old, a filter it cannot
	// honour, ...).
	ErrUnsupported = errors.New("not supported here")

	// ErrConflict means a key already exists on the target with another value or expiry
	// than the source's, and the conflict policy is Fail. The wrapping error names the key
	// and the difference; WithConflict(Skip) or WithConflict(Replace) decide otherwise.
	ErrConflict = errors.New("key exists on the target (use WithConflict(Skip) to keep it or WithConflict(Replace) to overwrite it)")

	// ErrIncompatible means the target cannot take the source's data as it is: a key it
	// cannot hold whole (a hash with field TTLs on a target before Redis 7.4, a module value
	// without the module; see WithIncompatible), or payloads of a newer RDB version that
	// the strategy cannot rewrite (MigrateKeys, Replication: DumpRestore and Snapshot
	// rewrite them). The wrapping error names the key or both versions.
	ErrIncompatible = errors.New("target cannot load the source's data")

	// ErrTooLarge means a value is larger than the target accepts in one command
	// (its proto-max-bulk-len). The wrapping error names the key and its size.
	ErrTooLarge = errors.New("value larger than the target accepts")

	// ErrMismatch means the verification that WithVerify asked for found differences
	// between source and target; Report.Verify holds them.
	ErrMismatch = errors.New("target differs from source")

	// ErrCorruptRDB is wrapped by every error RDBReader returns for input that is not a
	// valid RDB stream, including input that ends before the RDB's EOF opcode.
	ErrCorruptRDB = errors.New("corrupt RDB")

	// ErrEvicted means the target evicted keys while the migration ran (evicted_keys in its
	// INFO stats rose, on any of its masters): copied keys may be gone although every write
	// succeeded. The wrapping error says how many; Migrate still returns its Report. Give the
	// target more memory (maxmemory) or the noeviction policy, and migrate again.
	ErrEvicted = errors.New("target evicted keys")
)

// Side says which server an error or a fact is about.
type Side string

// The two sides of a migration.
const (
	Source Side = "source"
	Target Side = "target"
)

// Error is an error from one server, with the side, its address, what was being done and,
// where there is one, the key. Its message never holds a password.
type Error struct {
	Side Side
	Addr string
	Op   string // what was being done: "connect", "scan db 3", "restore", ...
	Key  string // the key concerned, if any
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", e.Side, e.Addr, e.Op)
	if e.Key != "" {
		fmt.Fprintf(&b, " %q", e.Key)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// unsupported returns an error wrapping ErrUnsupported with the reason.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrUnsupported)
}

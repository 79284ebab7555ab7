package migrate

import "fmt"

// Conflict says what to do when a key being copied already exists on the target.
type Conflict int

const (
	// Fail stops the migration with an error wrapping ErrConflict that names the key.
	// The target's key is never overwritten. A key that already holds the source's value
	// and expiry (within WithTTLTolerance) is no conflict: it counts as skipped. It is the
	// default.
	Fail Conflict = iota
	// Skip keeps the target's key and counts it in Report.Skipped.
	Skip
	// Replace overwrites the target's key with the source's.
	Replace
)

func (c Conflict) String() string {
	switch c {
	case Fail:
		return "fail"
	case Skip:
		return "skip"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("Conflict(%d)", int(c))
}

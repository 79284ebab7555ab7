package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// probeKey returns a key name no one uses, for commands that probe a permission.
func probeKey() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "migrate:probe:" + hex.EncodeToString(b)
}

// checkCommand runs a harmless command (one that reads a missing key) and explains, as an
// error wrapping ErrUnsupported, why the server refuses it.
func checkCommand(ctx context.Context, e *Endpoint, args ...string) error {
	c, err := e.Default()
	if err != nil {
		return err
	}
	err = c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
	if err == nil || rueidis.IsRedisNil(err) {
		return nil
	}
	return refusal(ctx, e, args[0], err)
}

// refusal turns a server's refusal of a command into a reason; errors that are not about
// the command (a wrong argument, an empty key) mean the command is allowed, and give nil.
func refusal(ctx context.Context, e *Endpoint, cmd string, err error) error {
	if ctx.Err() != nil {
		return e.Err("check "+cmd, "", ctx.Err())
	}
	msg := err.Error()
	var why string
	switch {
	case strings.Contains(msg, "unknown command"):
		why = fmt.Sprintf("%s is renamed or disabled (rename-command) on the %s", cmd, e.Side)
	case strings.HasPrefix(msg, "NOPERM"):
		why = fmt.Sprintf("the %s's ACL user may not run %s", e.Side, cmd)
	case strings.HasPrefix(msg, "READONLY"):
		why = fmt.Sprintf("the %s is a read-only replica", e.Side)
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"):
		return e.Err("check "+cmd, "", explainConnect(err))
	default:
		if _, ok := rueidis.IsRedisErr(err); ok {
			return nil
		}
		return e.Err("check "+cmd, "", err)
	}
	return e.Err("check "+cmd, "", fmt.Errorf("%s: %w: %v", why, ErrUnsupported, err))
}

// checkRestore verifies that the target accepts RESTORE: a payload with a bad checksum
// must be refused for that reason, which changes nothing.
func checkRestore(ctx context.Context, e *Endpoint) error {
	return checkCommand(ctx, e, "RESTORE", probeKey(), "0", "not-a-payload")
}

// checkRDBVersions refuses a target that cannot read the source's DUMP payloads.
func checkRDBVersions(j *Job) error {
	src, dst := j.Source.Info.RDBVersion(), j.Target.Info.RDBVersion()
	if src == 0 || dst == 0 || src <= dst {
		return nil
	}
	return j.Target.Err("check versions", "", fmt.Errorf(
		"the target runs %s (RDB %d) and cannot read payloads of the source's %s (RDB %d); upgrade the target: %w (%w)",
		describeVersion(j.Target.Info), dst, describeVersion(j.Source.Info), src, ErrIncompatible, ErrUnsupported))
}

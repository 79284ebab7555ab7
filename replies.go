package migrate

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/rueidis"
)

// replyKind is what the outcome of one command says: the server's answer, and which kind of
// answer, or no answer at all. Every decision that depends on an error reply (send again,
// count a conflict, fall back to another command) asks classifyReply, so that one list of
// prefixes says what each reply means.
type replyKind int

const (
	// replyOK is a reply that is not an error.
	replyOK replyKind = iota
	// replyNil is a nil reply: an answer (SET ... NX that did not set, a key that is gone),
	// not a failure.
	replyNil
	// replyMoving is a cluster that is changing: a slot moving (MOVED, ASK), a failover
	// (CLUSTERDOWN, MASTERDOWN, TRYAGAIN) or a node loading its data (LOADING). Sending the
	// command again a little later may succeed.
	replyMoving
	// replyBusyKey is RESTORE's refusal of a key that exists (BUSYKEY).
	replyBusyKey
	// replyRefused is a refusal of the command itself: renamed, disabled, unknown, or not
	// permitted to the user (NOPERM).
	replyRefused
	// replyOOM is a target at its maxmemory with a policy that does not evict (OOM).
	replyOOM
	// replyError is any other error reply: the server answered, and said no.
	replyError
	// replyLost is no reply: the connection failed, timed out or was closed, or the context
	// ended. Whether the command ran is unknown.
	replyLost
)

// movingPrefixes start the error replies of a cluster that is changing.
var movingPrefixes = []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN"}

// classifyReply says what err, the error of one command's result (nil for success), is.
// It sees through wrapping, [Error] included.
func classifyReply(err error) replyKind {
	if err == nil {
		return replyOK
	}
	var re *rueidis.RedisError
	if !errors.As(err, &re) || re == nil {
		return replyLost
	}
	if re.IsNil() {
		return replyNil
	}
	msg := re.Error()
	for _, p := range movingPrefixes {
		if strings.HasPrefix(msg, p) {
			return replyMoving
		}
	}
	switch {
	case strings.HasPrefix(msg, "BUSYKEY"):
		return replyBusyKey
	case strings.HasPrefix(msg, "NOPERM"), strings.Contains(msg, "unknown command"):
		return replyRefused
	case strings.HasPrefix(msg, "OOM"):
		return replyOOM
	}
	return replyError
}

// retryable reports whether err comes from a cluster that is changing (a node failing, a
// slot moving) rather than from the command, so that sending it again may succeed: a reply
// of a changing cluster, or no reply at all (a node that died). An answer, a nil reply
// included, is never retried, nor anything once ctx has ended.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	k := classifyReply(err)
	return k == replyMoving || k == replyLost
}

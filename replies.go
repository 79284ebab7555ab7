package migrate

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// replyKind is what the outcome of one command says: the server's answer, and which kind of
// answer, or no answer at all. Every decision that depends on an error reply (send again,
// count a conflict, fall back to another command, explain a refusal) asks classifyReply or
// classifyRelayed, so that one list of prefixes says what each reply means.
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
	// replyNoAuth is a server that needs a login the client did not give (NOAUTH).
	replyNoAuth
	// replyWrongPass is a server that refused the login given: a wrong username or password,
	// a disabled user, or a password sent to a server that has none (WRONGPASS, and the
	// ERR replies of servers before Redis 6.0).
	replyWrongPass
	// replyIncompatible is a RESTORE of a payload the server cannot read: written by a newer
	// RDB version, or damaged ("DUMP payload version or checksum are wrong", "Bad data
	// format").
	replyIncompatible
	// replyReadOnly is a write sent to a read-only replica (READONLY).
	replyReadOnly
	// replyUnreachable is MIGRATE's IOERR: the source could not reach its target, or the
	// target did not answer within MIGRATE's timeout.
	replyUnreachable
	// replyExists is the refusal to create what exists already under that name (FUNCTION
	// RESTORE of a library the server has: "Library ... already exists").
	replyExists
	// replyInProgress is the refusal to start work that is already under way (BGSAVE while
	// a save runs: "Background save already in progress").
	replyInProgress
	// replyNoDB is a database number the server does not have (SELECT: "DB index is out of
	// range").
	replyNoDB
)

// movingPrefixes start the error replies of a cluster that is changing.
var movingPrefixes = []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN"}

// replyPatterns classify the other error replies, in order: a reply that starts with prefix
// (or holds part, where the code word is a generic ERR) is of kind.
var replyPatterns = []struct {
	prefix, part string
	kind         replyKind
}{
	{prefix: "BUSYKEY", kind: replyBusyKey},
	{prefix: "NOPERM", kind: replyRefused},
	{part: "unknown command", kind: replyRefused},
	{prefix: "OOM", kind: replyOOM},
	{prefix: "NOAUTH", kind: replyNoAuth},
	{prefix: "WRONGPASS", kind: replyWrongPass},
	{part: "invalid password", kind: replyWrongPass},
	{part: "invalid username-password", kind: replyWrongPass},
	{part: "without any password configured", kind: replyWrongPass},
	{part: "no password is set", kind: replyWrongPass},
	{prefix: "READONLY", kind: replyReadOnly},
	{prefix: "IOERR", kind: replyUnreachable},
	{part: "payload version or checksum are wrong", kind: replyIncompatible},
	{part: "Bad data format", kind: replyIncompatible},
	{part: "already exists", kind: replyExists},
	{part: "already in progress", kind: replyInProgress},
	{part: "DB index is out of range", kind: replyNoDB},
}

// relayedPrefix starts the error MIGRATE replies when its target refused a command; the
// target's own reply follows it.
const relayedPrefix = "Target instance replied with error: "

// abortedPrefix starts the reply of an EXEC refused for a reason that its own reply follows
// (a slot that moved since the commands were queued, OOM, READONLY).
const abortedPrefix = "EXECABORT Transaction discarded because of: "

// classifyReply says what err, the error of one command's result (nil for success), is.
// It sees through wrapping, [Error] included, and through EXECABORT to the reason EXEC was
// refused. A reply MIGRATE relays from its target is the source's error, replyError:
// classifyRelayed reads the target's reply in it.
func classifyReply(err error) replyKind {
	text, relayed, ok := errorReply(err)
	switch {
	case err == nil:
		return replyOK
	case !ok:
		return replyLost
	case text == "":
		return replyNil
	case relayed:
		return replyError
	}
	return kindOf(text)
}

// classifyRelayed is classifyReply for the reply of MIGRATE, which relays the error its
// target replied: it says what that reply is, and fromTarget that it came from the target.
func classifyRelayed(err error) (kind replyKind, fromTarget bool) {
	text, relayed, ok := errorReply(err)
	if !relayed || !ok {
		return classifyReply(err), false
	}
	return kindOf(text), true
}

// errorReply returns the error reply that err holds, as the server that made it said it: ""
// for a nil reply, ok false when err holds no reply at all. MIGRATE's relaying prefix is cut
// (relayed says so), and EXECABORT's, where it gives its reason.
func errorReply(err error) (text string, relayed, ok bool) {
	var re *rueidis.RedisError
	if err == nil || !errors.As(err, &re) || re == nil {
		return "", false, false
	}
	if re.IsNil() {
		return "", false, true
	}
	text = re.Error()
	if _, after, cut := strings.Cut(text, relayedPrefix); cut {
		text, relayed = after, true
	}
	if after, cut := strings.CutPrefix(text, abortedPrefix); cut {
		text = strings.TrimPrefix(after, "-")
	}
	return text, relayed, true
}

// kindOf classifies the text of an error reply.
func kindOf(text string) replyKind {
	for _, p := range movingPrefixes {
		if strings.HasPrefix(text, p) {
			return replyMoving
		}
	}
	for _, p := range replyPatterns {
		if p.prefix != "" && strings.HasPrefix(text, p.prefix) || p.part != "" && strings.Contains(text, p.part) {
			return p.kind
		}
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

// redirection reads a MOVED or ASK reply (text, as errorReply gives it): the slot, and the
// node that serves it (MOVED) or imports it (ASK, which sets ask).
func redirection(text string) (slot uint16, addr string, ask, ok bool) {
	kind, rest, _ := strings.Cut(text, " ")
	if kind != "MOVED" && kind != "ASK" {
		return 0, "", false, false
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, "", false, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 || n >= slotCount {
		return 0, "", false, false
	}
	return uint16(n), f[1], kind == "ASK", true
}

package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

// TestClassifyReply classifies the replies of a real server: those it gives by itself, and
// error replies of a changing cluster, which a script returns word for word.
func TestClassifyReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{Users: []string{"user limited on >pw ~* +get"}})
	c := srv.Client(t, 0)
	ctx := context.Background()
	srv.Do(t, 0, "SET", "k", "v")
	payload, err := srv.Do(t, 0, "DUMP", "k").ToString()
	if err != nil {
		t.Fatal(err)
	}
	limitedOpt := srv.Option()
	limitedOpt.Username, limitedOpt.Password = "limited", "pw"
	limited, err := rueidis.NewClient(limitedOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	script := func(reply string) rueidis.Completed {
		return c.B().Eval().Script(fmt.Sprintf("return redis.error_reply(%q)", reply)).Numkeys(0).Build()
	}
	cases := []struct {
		name   string
		client rueidis.Client
		cmd    rueidis.Completed
		want   replyKind
	}{
		{"ok", c, c.B().Set().Key("k").Value("v").Build(), replyOK},
		{"set-nx-nil", c, c.B().Set().Key("k").Value("v").Nx().Build(), replyNil},
		{"busykey", c, c.B().Restore().Key("k").Ttl(0).SerializedValue(payload).Build(), replyBusyKey},
		{"unknown-command", c, c.B().Arbitrary("NOSUCHCOMMAND").Build(), replyRefused},
		{"noperm", limited, limited.B().Set().Key("k").Value("v").Build(), replyRefused},
		{"wrongtype", c, c.B().Hget().Key("k").Field("f").Build(), replyError},
		{"moved", c, script("MOVED 3999 127.0.0.1:6381"), replyMoving},
		{"ask", c, script("ASK 3999 127.0.0.1:6381"), replyMoving},
		{"tryagain", c, script("TRYAGAIN Multiple keys request during rehashing of slot"), replyMoving},
		{"clusterdown", c, script("CLUSTERDOWN The cluster is down"), replyMoving},
		{"loading", c, script("LOADING Redis is loading the dataset in memory"), replyMoving},
		{"masterdown", c, script("MASTERDOWN Link with MASTER is down"), replyMoving},
		{"oom", c, script("OOM command not allowed when used memory > 'maxmemory'."), replyOOM},
		{"incompatible", c, c.B().Restore().Key("new").Ttl(0).SerializedValue("not-a-payload").Build(), replyIncompatible},
		{"wrongpass", c, c.B().Auth().Username("limited").Password("nope").Build(), replyWrongPass},
		{"no-password-set", c, c.B().Auth().Password("nope").Build(), replyWrongPass},
		{"noauth", c, script("NOAUTH Authentication required."), replyNoAuth},
		{"readonly", c, script("READONLY You can't write against a read only replica."), replyReadOnly},
		{"ioerr", c, script("IOERR error or timeout connecting to the client"), replyUnreachable},
		{"exists", c, script("ERR Library 'lib' already exists"), replyExists},
		{"bgsave-in-progress", c, script("ERR Background save already in progress"), replyInProgress},
		{"no-db", c, c.B().Select().Index(99).Build(), replyNoDB},
		{"execabort-moved", c, script("EXECABORT Transaction discarded because of: MOVED 3999 127.0.0.1:6381"), replyMoving},
		{"execabort", c, script("EXECABORT Transaction discarded because of previous errors."), replyError},
		// MIGRATE relays its target's error: the source's own reply is an error.
		{"relayed", c, script("ERR Target instance replied with error: BUSYKEY Target key name already exists."), replyError},
	}
	for _, tc := range cases {
		err := tc.client.Do(ctx, tc.cmd).Error()
		if got := classifyReply(err); got != tc.want {
			t.Errorf("%s: %v classified %d, want %d", tc.name, err, got, tc.want)
		}
		wrapped := &Error{Side: Target, Addr: srv.Addr, Op: "restore", Err: fmt.Errorf("wrapped: %w", err)}
		if err != nil && classifyReply(wrapped) != tc.want {
			t.Errorf("%s: the wrapped error is classified %d, want %d", tc.name, classifyReply(wrapped), tc.want)
		}
		if retryable(ctx, err) != (tc.want == replyMoving) {
			t.Errorf("%s: retryable = %v", tc.name, !(tc.want == replyMoving))
		}
	}

	// No reply: the server is gone.
	gone := redistest.Start(t, redistest.Config{})
	gc := gone.Client(t, 0)
	gone.Stop()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = gc.Do(tctx, gc.B().Get().Key("k").Build()).Error()
	if got := classifyReply(err); got != replyLost || !retryable(ctx, err) {
		t.Errorf("a stopped server: %v classified %d, want %d (lost) and retryable", err, got, replyLost)
	}
	cancelled, stop := context.WithCancel(ctx)
	stop()
	if retryable(cancelled, err) {
		t.Error("retryable once the context ended")
	}
}

// TestClassifyRelayed classifies what MIGRATE replies: its target's errors, which it relays,
// and its own.
func TestClassifyRelayed(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Config{})
	dst := redistest.Start(t, redistest.Config{Lines: []string{"requirepass secret"}})
	src.Do(t, 0, "SET", "k", "v")
	host, port, _ := strings.Cut(dst.Addr, ":")
	c := src.Client(t, 0)
	do := func(args ...string) error {
		return c.Do(context.Background(), c.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error()
	}
	migrate := func(args ...string) error {
		return do(append([]string{"MIGRATE", host, port, "k", "0", "5000", "COPY"}, args...)...)
	}
	cases := []struct {
		name       string
		err        error
		want       replyKind
		fromTarget bool
	}{
		{"noauth", migrate(), replyNoAuth, true},
		{"wrongpass", migrate("AUTH", "nope"), replyWrongPass, true},
		{"ok", migrate("AUTH", "secret"), replyOK, false},
		{"busykey", migrate("AUTH", "secret"), replyBusyKey, true},
		{"ioerr", do("MIGRATE", "127.0.0.1", "1", "k", "0", "200", "COPY"), replyUnreachable, false},
	}
	for _, tc := range cases {
		kind, fromTarget := classifyRelayed(tc.err)
		if kind != tc.want || fromTarget != tc.fromTarget {
			t.Errorf("%s: %v classified %d (from the target: %v), want %d (%v)", tc.name, tc.err, kind, fromTarget, tc.want, tc.fromTarget)
		}
		if want := tc.want; tc.fromTarget {
			if got := classifyReply(tc.err); got != replyError {
				t.Errorf("%s: classifyReply of a relayed reply = %d, want %d (the source's error)", tc.name, got, replyError)
			}
		} else if got := classifyReply(tc.err); got != want {
			t.Errorf("%s: classifyReply = %d, want %d", tc.name, got, want)
		}
	}
	if slot, addr, ask, ok := redirection("ASK 3999 127.0.0.1:6381"); !ok || !ask || slot != 3999 || addr != "127.0.0.1:6381" {
		t.Errorf("redirection(ASK) = %d %q %v %v", slot, addr, ask, ok)
	}
	if _, _, _, ok := redirection("CLUSTERDOWN The cluster is down"); ok {
		t.Error("redirection(CLUSTERDOWN) is a redirection")
	}
}

package migrate

import (
	"context"
	"fmt"
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

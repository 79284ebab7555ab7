package migrate

import (
	"context"
	"math/rand"
	"slices"
	"testing"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate/internal/redistest"
)

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"*", "", true}, // as SCAN MATCH *, which does not match at all
		{"**", "", false},
		{"*a", "", false},
		{"", "", true},
		{"a*", "a/b/c", true}, // '*' matches '/', unlike path.Match
		{"a?c", "a/c", true},
		{"h*llo", "hllo", true},
		{"h*llo", "heeeello", true},
		{"h*llo", "heeeell", false},
		{"a**", "a", true},
		{"*:str:*", "db0:str:int", true},
		{"[^a]bc", "xbc", true},
		{"[^a]bc", "abc", false},
		{"[a-c]x", "bx", true},
		{"[c-a]x", "bx", true}, // a reversed range
		{"[a-c]x", "dx", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`[\]]`, "]", true},
		{`[\-]`, "-", true},
		{"[abc", "a", true}, // an unclosed class runs to the end
		{"[abc", "d", false},
		{"[", "x", false},
		{"[^", "x", true},
		{`a\`, `a\`, true}, // a trailing backslash is itself
		{"[]", "]", false},
		{"a[b-]", "a-", false},
		{"\xe9*", "\xe9t\xe9", true},
		{"[a-\xff]", "b", false}, // 0xff is -1 as a C char on x86
		{"[\x80-\xff]", "\x90", true},
	} {
		if got := globMatch(tc.pattern, tc.key); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}

// TestGlobMatchLikeRedis compares globMatch with KEYS on a real server, for patterns made of
// every special character against short keys of the same alphabet.
func TestGlobMatchLikeRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{})
	c := srv.Client(t, 0)
	ctx := context.Background()
	alphabet := []string{"a", "b", "/", "-", "]", `\`, "\xe9", "^"}
	keys := []string{""}
	for n, last := 0, []string{""}; n < 3; n++ {
		var next []string
		for _, k := range last {
			for _, a := range alphabet {
				next = append(next, k+a)
			}
		}
		keys, last = append(keys, next...), next
	}
	cmds := make(rueidis.Commands, 0, len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.B().Set().Key(k).Value("v").Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewSource(1))
	special := []string{"a", "b", "/", "-", "]", `\`, "\xe9", "^", "*", "?", "[", "[", "\xff"}
	patterns := []string{"*", "**", "", "[", "[^", `\`, "[a-", "[]]", "[^]]", "*/*", `[\`}
	for range 400 {
		var p string
		for range rnd.Intn(7) {
			p += special[rnd.Intn(len(special))]
		}
		patterns = append(patterns, p)
	}
	cmds = cmds[:0]
	for _, p := range patterns {
		cmds = append(cmds, c.B().Keys().Pattern(p).Build())
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		got, err := r.AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		var want []string
		for _, k := range keys {
			if globMatch(patterns[i], k) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("pattern %q: Redis matches %q, globMatch %q", patterns[i], got, want)
		}
	}
}

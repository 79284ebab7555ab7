package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Plan is what Migrator.Plan found: the facts of both sides, and for each strategy in
// order of preference whether it can run here and, if not, why.
type Plan struct {
	Source, Target *Facts
	Steps          []Step
	// Chosen is the name of the first strategy that can run, "" when none can.
	Chosen string
	// Warnings are facts that do not stop a strategy but deserve attention: a target too
	// small for the data, an eviction policy that may drop keys, keys already on the target.
	Warnings []string
}

// Step is one strategy's verdict in a Plan.
type Step struct {
	Strategy string
	OK       bool
	Err      error // why it cannot run (wraps ErrUnsupported unless its check failed), nil when OK
}

// Facts describes one server as Plan found it: what INFO said (the embedded ServerInfo,
// whose Keyspace counts every database), and what Plan found besides.
type Facts struct {
	Side       Side
	Addr       string
	ServerInfo        // what INFO said: version, mode, role, memory, keys per database
	Server     string // the server as it names itself: "Redis 7.4.1", "Valkey 8.0.1" (ServerInfo.Name)
	Keys       int64  // keys in the databases the migration selects
	Auth       string // "none", "password" or "ACL user NAME"
	// TLS says how this side is reached: "off", or "on:" with the server name checked,
	// whether its certificate is verified and whether a client certificate is given; then
	// the server's own TLS connections (tls-replication, tls-cluster) where it shows them.
	TLS string
	// Notifications is notify-keyspace-events ("" when off or unreadable).
	Notifications string
	// Commands says, for each command that a built-in strategy or Plan uses on this side
	// ("DUMP", "CONFIG SET"), "ok", "renamed or disabled", "refused by ACL", "refused:
	// read-only replica", or "unknown" when the server would not say. Each is probed
	// without being run.
	Commands map[string]string
}

// String says which side and server the facts are about, as "source 10.0.0.1:6379: Redis
// 7.4.1 (standalone, master)".
func (f *Facts) String() string {
	return fmt.Sprintf("%s %s: %s", f.Side, f.Addr, f.ServerInfo.String())
}

// commandsOf are, per side, the commands that any built-in strategy or Plan runs there,
// with arguments that make a valid call ("KEY" stands for a probe key); Facts.Commands
// gives the probe's answer for each (see probeCommands), which runs none of them.
var commandsOf = map[Side][][]string{
	Source: {{"SCAN", "0"}, {"DUMP", "KEY"}, {"PEXPIRETIME", "KEY"}, {"PTTL", "KEY"}, {"TYPE", "KEY"}, {"MGET", "KEY"},
		{"EXISTS", "KEY"}, {"MULTI"}, {"EXEC"}, {"MIGRATE", "127.0.0.1", "1", "KEY", "0", "1", "COPY"},
		{"PSYNC", "?", "-1"}, {"SYNC"}, {"REPLCONF", "capa", "psync2"}, {"PING"}, {"BGSAVE", "SCHEDULE"},
		{"INFO"}, {"CONFIG", "GET", "databases"}},
	Target: {{"RESTORE", "KEY", "0", "v"}, {"RESTORE-ASKING", "KEY", "0", "v"}, {"SET", "KEY", "v", "XX"}, {"MSETNX", "KEY", "v"},
		{"MSET", "KEY", "v"}, {"EXISTS", "KEY"}, {"DUMP", "KEY"}, {"TYPE", "KEY"}, {"PEXPIRETIME", "KEY"}, {"PTTL", "KEY"},
		{"REPLICAOF", "NO", "ONE"}, {"SLAVEOF", "NO", "ONE"}, {"CONFIG", "GET", "masterauth"},
		{"CONFIG", "SET", "masterauth", "x"}, {"FUNCTION", "RESTORE", "x"}, {"FUNCTION", "LIST"}, {"SELECT", "0"}, {"INFO"}},
}

// commandsSince are the versions that brought commands of commandsOf; Plan leaves out those
// a server is too old for.
var commandsSince = map[string]int{"PEXPIRETIME": 7, "FUNCTION": 7, "REPLICAOF": 5}

// planCommands returns e's commands of commandsOf that its version has, with a probe key.
func planCommands(e *Endpoint) [][]string {
	key := probeKey()
	var out [][]string
	for _, args := range commandsOf[e.Side] {
		if v, ok := commandsSince[args[0]]; ok && !e.Info.AtLeast(v, 0, 0) {
			continue
		}
		args = slices.Clone(args)
		for i := range args {
			if args[i] == "KEY" {
				args[i] = key
			}
		}
		out = append(out, args)
	}
	return out
}

// Plan probes both sides without changing anything and says which strategy would run.
func (m *migrator) Plan(ctx context.Context) (*Plan, error) {
	j, err := m.job(ctx)
	if err != nil {
		return nil, err
	}
	return m.plan(ctx, j, m.cfg.strategy)
}

func (m *migrator) plan(ctx context.Context, j *Job, s Strategy) (*Plan, error) {
	p := &Plan{Source: facts(ctx, j, j.Source), Target: facts(ctx, j, j.Target)}
	// What every strategy needs, refused once for all.
	sides := checkSides(ctx, j, m.cfg.evicting)
	switch {
	case sides == nil:
		steps, run, err := choose(ctx, j, s, true)
		if err != nil && !errors.Is(err, ErrUnsupported) {
			return nil, err
		}
		p.Steps = steps
		if run != nil {
			p.Chosen = run.Name()
		}
	case errors.Is(sides, ErrUnsupported):
		for _, c := range rungs(s) {
			p.Steps = append(p.Steps, Step{Strategy: c.Name(), Err: sides})
		}
	default:
		return nil, sides
	}
	p.Warnings = warnings(j, p, sides != nil)
	if sides == nil && (p.Chosen == DumpRestore{}.Name() || p.Chosen == Snapshot{}.Name()) {
		if w := bigKeysWarning(ctx, j, p.Chosen); w != "" {
			p.Warnings = append(p.Warnings, w)
		}
	}
	return p, nil
}

// bigKeysWarning says what the users lack to copy a key in pieces (bigkeys.go) with the
// chosen strategy, which only a key too big for the target's proto-max-bulk-len or for
// WithKeyBudget needs; "" when they lack nothing.
func bigKeysWarning(ctx context.Context, j *Job, chosen string) string {
	var lacks []string
	if chosen == (DumpRestore{}).Name() {
		if g := bigKeysRefused(ctx, j.Source); len(g) > 0 {
			lacks = append(lacks, "on the source "+strings.Join(g, " "))
		}
	}
	if g := bigKeysRefused(ctx, j.Target); len(g) > 0 {
		lacks = append(lacks, "on the target "+strings.Join(g, " "))
	}
	if len(lacks) == 0 {
		return ""
	}
	return fmt.Sprintf("a key larger than the target's proto-max-bulk-len or than WithKeyBudget is copied in pieces, and the users lack for that %s: "+
		"such a key would stop the migration with an error naming the command (grant them to copy big keys)", strings.Join(lacks, "; "))
}

func facts(ctx context.Context, j *Job, e *Endpoint) *Facts {
	f := &Facts{Side: e.Side, Addr: e.Addr, Auth: "none", Commands: map[string]string{}, TLS: e.tlsFact(ctx)}
	if e.Info != nil {
		f.ServerInfo = *e.Info
	}
	f.Server = f.Name()
	for _, db := range j.Databases {
		f.Keys += f.Keyspace[db]
	}
	switch {
	case e.Option.Username != "" && e.Option.Username != "default":
		f.Auth = "ACL user " + e.Option.Username
	case e.Option.Password != "":
		f.Auth = "password"
	}
	c, err := e.Default()
	if err != nil {
		return f
	}
	f.Notifications, _ = configGet(ctx, c, "notify-keyspace-events")
	cmds := planCommands(e)
	vs, err := probeCommands(ctx, e, cmds...)
	for i, args := range cmds {
		state := accessUnknown.String()
		if err == nil {
			state = vs[i].access.String()
		}
		f.Commands[commandName(args[:min(len(args), 2)])] = state
	}
	return f
}

// warnings lists what deserves attention; refused says every strategy was refused by
// checkSides, whose reason already tells about the target's memory.
func warnings(j *Job, p *Plan, refused bool) []string {
	var w []string
	if t := p.Target; !refused && t.MaxMemory > 0 && p.Source.UsedMemory > t.MaxMemory {
		w = append(w, fmt.Sprintf("the source uses %s and the target's maxmemory is %s: the data may not fit",
			bytesText(p.Source.UsedMemory), bytesText(t.MaxMemory)))
	}
	if t := p.Target; !refused && t.MaxMemory > 0 && t.Policy != "" && t.Policy != "noeviction" {
		w = append(w, fmt.Sprintf("the target's maxmemory-policy is %s: it may evict copied keys when full, and a migration during which it does fails with ErrEvicted", t.Policy))
	}
	var busy []string
	for _, db := range j.Databases {
		if n := p.Target.Keyspace[db]; n > 0 {
			busy = append(busy, fmt.Sprintf("db %d: %d", db, n))
		}
	}
	if len(busy) > 0 {
		w = append(w, fmt.Sprintf("the target already has keys (%s); conflict policy %s", strings.Join(busy, ", "), j.Conflict))
	}
	if s := payloadsWarning(j); s != "" {
		w = append(w, s)
	}
	return w
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// String prints the plan as a readable table: the facts of both sides, every strategy's
// verdict, the choice and the warnings.
func (p *Plan) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tsource\ttarget")
	row := func(name string, f func(*Facts) string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, f(p.Source), f(p.Target))
	}
	row("address", func(f *Facts) string { return f.Addr })
	row("version", func(f *Facts) string { return fmt.Sprintf("%s (RDB %d)", f.Server, f.RDBVersion()) })
	row("role", func(f *Facts) string {
		if f.Masters > 0 {
			return fmt.Sprintf("cluster of %d masters", f.Masters)
		}
		return f.Mode + " " + f.Role
	})
	row("keys", func(f *Facts) string { return keyspaceText(f.Keyspace) })
	row("memory", func(f *Facts) string {
		if f.MaxMemory == 0 {
			return bytesText(f.UsedMemory) + " used, no maxmemory"
		}
		return fmt.Sprintf("%s used of %s (%s)", bytesText(f.UsedMemory), bytesText(f.MaxMemory), f.Policy)
	})
	row("auth", func(f *Facts) string { return f.Auth })
	row("tls", func(f *Facts) string { return f.TLS })
	row("notifications", func(f *Facts) string {
		if f.Notifications == "" {
			return "off"
		}
		return f.Notifications
	})
	row("commands", func(f *Facts) string { return commandsText(f.Commands) })
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "strategy\tcan run\twhy not")
	common := p.commonRefusal()
	for _, s := range p.Steps {
		switch {
		case s.OK:
			fmt.Fprintf(tw, "%s\tyes\t\n", s.Strategy)
		case common != "":
			fmt.Fprintf(tw, "%s\tno\tsee below\n", s.Strategy)
		default:
			// One reason a line, in the "why not" column.
			lines := reasonLines(s.Err)
			fmt.Fprintf(tw, "%s\tno\t%s\n", s.Strategy, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(tw, "\t\t%s\n", l)
			}
		}
	}
	tw.Flush()
	if common != "" {
		fmt.Fprintf(&b, "\nwhy not, for every strategy: %s\n", strings.ReplaceAll(common, "\n", "\n  "))
	}
	if p.Chosen != "" {
		fmt.Fprintf(&b, "\nchosen: %s\n", p.Chosen)
	} else {
		b.WriteString("\nchosen: none: no strategy can run here\n")
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

// commonRefusal returns the refusal every strategy shares, when there are several and
// they do (what every strategy needs, missing), so that String prints it once; else "".
func (p *Plan) commonRefusal() string {
	if len(p.Steps) < 2 {
		return ""
	}
	var text string
	for i, s := range p.Steps {
		if s.OK || s.Err == nil || i > 0 && s.Err.Error() != text {
			return ""
		}
		text = s.Err.Error()
	}
	return text
}

func keyspaceText(ks map[int]int64) string {
	if len(ks) == 0 {
		return "none"
	}
	var parts []string
	for _, db := range slices.Sorted(maps.Keys(ks)) {
		parts = append(parts, fmt.Sprintf("db%d=%d", db, ks[db]))
	}
	return strings.Join(parts, " ")
}

func commandsText(cmds map[string]string) string {
	var bad []string
	for name, state := range cmds {
		if state != "ok" {
			bad = append(bad, strings.ToLower(name)+": "+state)
		}
	}
	if len(bad) == 0 {
		return "all allowed"
	}
	sort.Strings(bad)
	return strings.Join(bad, ", ")
}

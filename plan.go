package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/redis/rueidis"
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
	Err      error // why it cannot run (wraps ErrUnsupported), nil when OK
}

// Facts describes one server as Plan found it.
type Facts struct {
	Side       Side
	Addr       string
	Version    string
	Server     string // the server as it names itself: "Redis 7.4.1", "Valkey 8.0.1"
	Mode       string // standalone, cluster or sentinel
	Masters    int    // on a cluster, the masters that serve slots; 0 otherwise
	Role       string // master or slave
	RDBVersion int
	Keys       int64         // keys in the databases the migration selects
	Keyspace   map[int]int64 // keys per database, every database
	UsedMemory int64
	MaxMemory  int64
	Policy     string // maxmemory-policy
	Auth       string // "none", "password" or "ACL user NAME"
	// TLS says how this side is reached: "off", or "on:" with the server name checked,
	// whether its certificate is verified and whether a client certificate is given; then
	// the server's own TLS connections (tls-replication, tls-cluster) where it shows them.
	TLS string
	// Notifications is notify-keyspace-events ("" when off or unreadable).
	Notifications string
	// Commands says, for each command the strategies use on this side, "ok", "renamed or
	// disabled", "refused by ACL", or "unknown" when the server would not say.
	Commands map[string]string
}

// commandsOf are the commands each side is asked about, with arguments that make a valid
// call for ACL DRYRUN.
var commandsOf = map[Side][][]string{
	Source: {{"SCAN", "0"}, {"DUMP", "k"}, {"PEXPIRETIME", "k"}, {"PTTL", "k"}, {"SYNC"}, {"PSYNC", "?", "-1"},
		{"MIGRATE", "127.0.0.1", "1", "k", "0", "1"}, {"CONFIG", "GET", "x"}, {"INFO"}},
	Target: {{"RESTORE", "k", "0", "v"}, {"REPLICAOF", "NO", "ONE"}, {"SLAVEOF", "NO", "ONE"},
		{"CONFIG", "SET", "masterauth", "x"}, {"FUNCTION", "RESTORE", "x"}, {"INFO"}},
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
	candidates := []Strategy{s}
	if a, ok := s.(Auto); ok {
		candidates = a.strategies()
	}
	// What every strategy needs, refused once for all.
	sides := checkSides(ctx, j, m.cfg.evicting)
	if sides != nil && !errors.Is(sides, ErrUnsupported) {
		return nil, sides
	}
	for _, c := range candidates {
		err := sides
		if err == nil {
			err = checkFor(ctx, j, c)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.Steps = append(p.Steps, Step{Strategy: c.Name(), OK: err == nil, Err: err})
		if err == nil && p.Chosen == "" {
			p.Chosen = c.Name()
		}
	}
	p.Warnings = warnings(j, p, sides != nil)
	return p, nil
}

// checkFor is a strategy's Check, with what Auto adds: Replication only when the user
// allowed discarding the target's data.
func checkFor(ctx context.Context, j *Job, s Strategy) error {
	if s.Name() == "replication" && !j.DiscardTarget {
		return unsupported("replication replaces the target's whole data set and Auto uses it only when allowed with WithDiscardTarget()")
	}
	return s.Check(ctx, j)
}

func facts(ctx context.Context, j *Job, e *Endpoint) *Facts {
	info := e.Info
	f := &Facts{Side: e.Side, Addr: e.Addr, Version: info.Version, Server: info.Name(), Mode: info.Mode, Masters: info.Masters, Role: info.Role,
		RDBVersion: info.RDBVersion(), Keyspace: info.Keyspace, UsedMemory: info.UsedMemory,
		MaxMemory: info.MaxMemory, Policy: info.Policy, Auth: "none", Commands: map[string]string{}, TLS: e.tlsFact(ctx)}
	for _, db := range j.Databases {
		f.Keys += info.Keyspace[db]
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
	user, _ := c.Do(ctx, c.B().AclWhoami().Build()).ToString()
	for _, args := range commandsOf[e.Side] {
		f.Commands[args[0]] = commandState(ctx, c, e, user, args)
	}
	return f
}

// commandState tells whether this connection may run the command: COMMAND INFO knows no
// renamed or disabled command, and ACL DRYRUN (Redis 7.0) says whether the user may run it.
func commandState(ctx context.Context, c rueidis.Client, e *Endpoint, user string, args []string) string {
	infos, err := c.Do(ctx, c.B().CommandInfo().CommandName(strings.ToLower(args[0])).Build()).ToArray()
	if err != nil {
		return "unknown"
	}
	if len(infos) == 0 || infos[0].IsNil() {
		return "renamed or disabled"
	}
	if user == "" || !e.Info.AtLeast(7, 0, 0) {
		return "ok"
	}
	// DRYRUN replies OK, or a text (not an error) that says why the user may not.
	verdict, err := c.Do(ctx, c.B().AclDryrun().Username(user).Command(args[0]).Arg(args[1:]...).Build()).ToString()
	switch {
	case err != nil:
		return "unknown" // the user may not run ACL DRYRUN
	case verdict == "OK":
		return "ok"
	}
	return "refused by ACL"
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
	row("version", func(f *Facts) string { return fmt.Sprintf("%s (RDB %d)", f.Server, f.RDBVersion) })
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
	for _, s := range p.Steps {
		if s.OK {
			fmt.Fprintf(tw, "%s\tyes\t\n", s.Strategy)
		} else {
			fmt.Fprintf(tw, "%s\tno\t%v\n", s.Strategy, s.Err)
		}
	}
	tw.Flush()
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

func keyspaceText(ks map[int]int64) string {
	if len(ks) == 0 {
		return "none"
	}
	var parts []string
	for _, db := range sortedDBs(ks) {
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

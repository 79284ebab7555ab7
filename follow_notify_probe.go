package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// A managed service refuses CONFIG GET, so what its notify-keyspace-events holds cannot be
// read; it can be seen, though. WithNotificationProbe lets a following DumpRestore write a
// few probe keys on each server of the source and watch the notifications they cause: a
// class whose notification does not arrive is missing. The probe keys are named
// migrate:notify-probe:{<random>}:<class>, in the first selected database, and deleted by
// the probe itself.

// notifyProbe is one write of the probe: the class of notifications it shows, the event it
// causes, and the command (its name, then its arguments after the key) on a probe key whose
// name ends with the class.
type notifyProbe struct {
	class string // as notify-keyspace-events spells it
	event string
	cmd   []string
}

// notifyProbes are the writes of the probe, one class each: those A stands for but "e"
// (eviction, which no write causes) and "d" (module types). The "x" probe's key is read
// past its time, which expires it.
var notifyProbes = []notifyProbe{
	{"$", "set", []string{"SET", "v"}},
	{"l", "lpush", []string{"LPUSH", "v"}},
	{"s", "sadd", []string{"SADD", "v"}},
	{"h", "hset", []string{"HSET", "f", "v"}},
	{"z", "zadd", []string{"ZADD", "1", "v"}},
	{"t", "xadd", []string{"XADD", "*", "f", "v"}},
	{"g", "expire", []string{"SET", "v", "EX", "100"}}, // a generic event beside "set"
	{"x", "expired", []string{"SET", "v", "PX", "1"}},
}

// notifySeen is what the probe of one server saw: the classes notified on keyspace
// channels and on keyevent ones.
type notifySeen struct {
	keyspace, keyevent map[string]bool
}

// missing returns the classes of notifyProbes not seen on either kind of channel that saw
// most, and whether keyspace channels are that kind.
func (s notifySeen) missing(e *Endpoint) (classes string, keyspace bool) {
	var ks, ke strings.Builder
	for _, p := range notifyProbes {
		if p.class == "t" && !e.Info.AtLeast(5, 0, 0) {
			continue
		}
		if !s.keyspace[p.class] {
			ks.WriteString(p.class)
		}
		if !s.keyevent[p.class] {
			ke.WriteString(p.class)
		}
	}
	if ks.Len() <= ke.Len() {
		return ks.String(), true
	}
	return ke.String(), false
}

// probeNotifications writes the probe keys on every server the follow subscribes to and
// returns the flags to subscribe with ("K" or "E") and, when notifications of some class
// did not arrive, an error naming the classes missing.
func probeNotifications(ctx context.Context, j *Job, servers []*Endpoint) (flags string, err error) {
	flags = "K"
	var lacking []string
	for _, e := range servers {
		seen, err := probeServer(ctx, j, e)
		if err != nil {
			return "", err
		}
		missing, keyspace := seen.missing(e)
		if !keyspace {
			flags = "E"
		}
		if missing != "" {
			lacking = append(lacking, fmt.Sprintf("on %s no notification came of the classes %q", e.Addr, missing))
		}
	}
	if len(lacking) > 0 {
		return "", j.Source.Err("probe keyspace notifications", "", unsupported(
			"a following DumpRestore reads the source's keyspace notifications, and %s (WithNotificationProbe wrote a key of each class and watched): "+
				"set notify-keyspace-events to \"KA\" or more (a managed service's console or parameter group)", strings.Join(lacking, "; ")))
	}
	return flags, nil
}

// probeServer subscribes to the probe keys' notifications on e, makes each write of
// notifyProbes, and reads what arrived up to a PING's reply: notifications are published
// while the write runs, so every one the writes caused comes before it.
func probeServer(ctx context.Context, j *Job, e *Endpoint) (notifySeen, error) {
	seen := notifySeen{keyspace: map[string]bool{}, keyevent: map[string]bool{}}
	db := 0
	var c rueidis.Client
	var err error
	if j.Source.Cluster() {
		c, err = j.Source.node(e.Addr) // e is the master's own endpoint, not opened
	} else {
		db = j.Databases[0]
		c, err = j.Source.Client(db)
	}
	if err != nil {
		return seen, err
	}
	base, err := probeKeyBase(ctx, j, e)
	if err != nil {
		return seen, err
	}
	events := map[string]string{} // class by event
	patterns := []string{fmt.Sprintf("__keyspace@%d__:%s*", db, base)}
	for _, p := range notifyProbes {
		events[p.event] = p.class
		patterns = append(patterns, fmt.Sprintf("__keyevent@%d__:%s", db, p.event))
	}
	s := &subscription{j: j, e: e, patterns: patterns}
	rs, err := s.open(ctx)
	if err != nil {
		return seen, err
	}
	defer rs.Close()

	keys := make([]string, 0, len(notifyProbes))
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if len(keys) > 0 {
			_ = c.Do(dctx, c.B().Arbitrary("DEL").Keys(keys...).Build()).Error()
		}
	}()
	for _, p := range notifyProbes {
		if p.class == "t" && !e.Info.AtLeast(5, 0, 0) {
			continue
		}
		key := base + p.class
		keys = append(keys, key)
		if err := c.Do(ctx, c.B().Arbitrary(p.cmd[0]).Keys(key).Args(p.cmd[1:]...).Build()).Error(); err != nil {
			return seen, e.Err(strings.ToLower(p.cmd[0]), key, fmt.Errorf(
				"the probe of keyspace notifications (WithNotificationProbe) writes keys named %s* on the source: grant the user that: %w", base, ctxErr(ctx, err)))
		}
		if p.class == "x" {
			// Read past its time, the key is expired (and notified) then, if not before.
			if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
				return seen, err
			}
			if err := c.Do(ctx, c.B().Exists().Key(key).Build()).Error(); err != nil {
				return seen, e.Err("exists", key, ctxErr(ctx, err))
			}
		}
	}
	if err := rs.send("PING", "migrate-probe"); err != nil {
		return seen, e.Err("ping on the probe's subscription", "", ctxErr(ctx, err))
	}
	for {
		msg, err := readRESP(rs.br)
		if err != nil {
			return seen, e.Err("read the probe's notifications", "", ctxErr(ctx, err))
		}
		switch {
		case len(msg) == 2 && msg[0] == "pong" && msg[1] == "migrate-probe":
			return seen, nil
		case len(msg) == 4 && msg[0] == "pmessage":
			channel, payload := msg[2], msg[3]
			if strings.HasPrefix(channel, "__keyspace@") {
				if class, ok := events[payload]; ok {
					seen.keyspace[class] = true
				}
			} else if strings.HasPrefix(payload, base) {
				_, event, _ := strings.Cut(channel, "__:")
				if class, ok := events[event]; ok {
					seen.keyevent[class] = true
				}
			}
		}
	}
}

// probeKeyBase returns the start of the probe keys' names on e, random, with a hash tag
// whose slot e serves when the source is a cluster.
func probeKeyBase(ctx context.Context, j *Job, e *Endpoint) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	if !j.Source.Cluster() {
		return "migrate:notify-probe:{" + tag + "}:", nil
	}
	t, err := j.Source.topology(ctx)
	if err != nil {
		return "", err
	}
	for i := 0; ; i++ {
		name := tag + strconv.Itoa(i)
		if n := t.nodes[t.owner[keySlot("{"+name+"}")]]; n != nil && n.addr == e.Addr {
			return "migrate:notify-probe:{" + name + "}:", nil
		}
		if i > 1<<20 {
			return "", j.Source.Err("probe keyspace notifications", "", fmt.Errorf("no slot of the cluster is served by %s", e.Addr))
		}
	}
}

// probeWanted reports whether the follow must probe the notifications: some server of the
// source refuses CONFIG GET, so its flags cannot be read.
func probeWanted(nodes []notifyFlags) bool {
	for _, n := range nodes {
		if !n.ok {
			return true
		}
	}
	return false
}

package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/rueidis"
)

// streamKeys finds the keys of the commands of the source's stream, from the source's own
// command table: the first key, last key and step that COMMAND INFO gives for a command
// whose keys are at fixed places, read once per command name; COMMAND GETKEYS for each
// command whose keys move with its arguments (movablekeys: EVAL, ZUNIONSTORE, SORT, ...) or
// are those of a subcommand.
type streamKeys struct {
	e *Endpoint

	mu    sync.Mutex
	specs map[string]keySpec // by lower-case name
}

// keySpec is where a command's keys are: args[first], args[first+step], ... up to last
// (negative: from the end). ask means COMMAND GETKEYS must tell.
type keySpec struct {
	first, last, step int
	ask               bool
	container         bool // its subcommands say where their keys are (XGROUP, FUNCTION, ...)
}

func newStreamKeys(e *Endpoint) *streamKeys {
	return &streamKeys{e: e, specs: map[string]keySpec{}}
}

// lookup returns where the keys of command name are.
func (k *streamKeys) lookup(ctx context.Context, c rueidis.Client, name string) (keySpec, error) {
	name = strings.ToLower(name)
	k.mu.Lock()
	spec, ok := k.specs[name]
	k.mu.Unlock()
	if ok {
		return spec, nil
	}
	spec, err := k.spec(ctx, c, name)
	if err != nil {
		return spec, err
	}
	k.mu.Lock()
	k.specs[name] = spec
	k.mu.Unlock()
	return spec, nil
}

// positions returns the indexes of the keys in args, or movable true when they are not at
// fixed places and COMMAND GETKEYS alone can name them.
func (k *streamKeys) positions(ctx context.Context, args []string) (idx []int, movable bool, err error) {
	c, err := k.e.Default()
	if err != nil {
		return nil, false, err
	}
	spec, err := k.lookup(ctx, c, args[0])
	if err == nil && spec.container && len(args) > 1 {
		// The subcommand's own entry, whose positions count from the command's name.
		spec, err = k.lookup(ctx, c, args[0]+"|"+args[1])
	}
	if err != nil {
		return nil, false, err
	}
	if spec.ask {
		keys, err := k.keys(ctx, args)
		if err != nil || len(keys) > 0 {
			return nil, true, err
		}
		return nil, false, nil // no keys at all
	}
	return spec.indexes(len(args)), false, nil
}

// indexes returns the positions of the keys in a command of n arguments.
func (s keySpec) indexes(n int) []int {
	if s.first <= 0 {
		return nil
	}
	last := s.last
	if last < 0 {
		last += n
	}
	var idx []int
	for i := s.first; i <= last && i < n; i += max(s.step, 1) {
		idx = append(idx, i)
	}
	return idx
}

// keys returns the keys of the command args.
func (k *streamKeys) keys(ctx context.Context, args []string) ([]string, error) {
	c, err := k.e.Default()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(args[0])
	spec, err := k.lookup(ctx, c, name)
	if err != nil {
		return nil, err
	}
	if spec.ask {
		cmd := append([]string{"COMMAND", "GETKEYS"}, args...)
		keys, err := c.Do(ctx, c.B().Arbitrary(cmd...).Build()).AsStrSlice()
		if err != nil {
			if _, ok := rueidis.IsRedisErr(err); ok && !strings.Contains(err.Error(), "unknown") {
				return nil, nil // "the command has no key arguments"
			}
			return nil, k.e.Err("command getkeys", "", fmt.Errorf("find the keys of %s in the stream: %w", strings.ToUpper(name), err))
		}
		return keys, nil
	}
	var keys []string
	for _, i := range spec.indexes(len(args)) {
		keys = append(keys, args[i])
	}
	return keys, nil
}

// spec reads where the keys of command name are, from COMMAND INFO.
func (k *streamKeys) spec(ctx context.Context, c rueidis.Client, name string) (keySpec, error) {
	info, err := c.Do(ctx, c.B().CommandInfo().CommandName(name).Build()).ToArray()
	if err != nil {
		return keySpec{}, k.e.Err("command info", "", fmt.Errorf(
			"find where the keys of %s are, to filter the stream by WithMatch (the source's user needs +command): %w", strings.ToUpper(name), err))
	}
	if len(info) != 1 || info[0].IsNil() {
		return keySpec{}, k.e.Err("command info", "", fmt.Errorf("the source does not know the command %s it replicates", strings.ToUpper(name)))
	}
	fields, err := info[0].ToArray()
	if err != nil || len(fields) < 6 {
		return keySpec{}, k.e.Err("command info", "", fmt.Errorf("unexpected COMMAND INFO reply for %s", strings.ToUpper(name)))
	}
	var s keySpec
	first, _ := fields[3].AsInt64()
	last, _ := fields[4].AsInt64()
	step, _ := fields[5].AsInt64()
	s.first, s.last, s.step = int(first), int(last), int(step)
	flags, _ := fields[2].AsStrSlice()
	for _, f := range flags {
		if f == "movablekeys" {
			s.ask = true
		}
	}
	// A container (XGROUP, OBJECT, ...): its subcommands say where their keys are.
	if s.first == 0 && len(fields) > 9 {
		if subs, _ := fields[9].ToArray(); len(subs) > 0 {
			s.ask, s.container = true, true
		}
	}
	return s, nil
}

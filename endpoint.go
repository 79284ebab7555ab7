package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/rueidis"
)

// Endpoint is one side of a migration: the server as the user described it, the facts
// read from it, and its clients, one per database. A Redis Cluster is one Endpoint too: its
// client sends each command to the node that serves its key, and the library keeps a
// client per node for what must go to one node (walking the keys, replication).
type Endpoint struct {
	Side   Side
	Addr   string               // the first of Option.InitAddress, for messages
	Option rueidis.ClientOption // as given to New, with client-side caching disabled
	Info   *ServerInfo          // read when the migration starts

	mu      sync.Mutex
	clients map[int]rueidis.Client
	nodes   map[string]rueidis.Client // one client per cluster node, by address
	known   []string                  // cluster node addresses, from the last topology
}

func newEndpoint(side Side, opt rueidis.ClientOption) *Endpoint {
	// The library never uses client-side caching, and CLIENT TRACKING may be refused.
	opt.DisableCache = true
	addr := "(no address)"
	if len(opt.InitAddress) > 0 {
		addr = opt.InitAddress[0]
	}
	return &Endpoint{Side: side, Addr: addr, Option: opt, clients: map[int]rueidis.Client{}}
}

// Client returns the client of database db, connecting on first use. The error names the
// side, the address and the database. On a cluster it is a cluster client, which sends each
// command to the node that serves its key's slot and follows MOVED and ASK redirections; a
// cluster has only database 0, and Client refuses any other.
func (e *Endpoint) Client(db int) (rueidis.Client, error) {
	if db != 0 && e.Cluster() {
		return nil, e.Err(fmt.Sprintf("connect to db %d", db), "", fmt.Errorf(
			"a cluster has only database 0: %w", ErrUnsupported))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[db]; ok {
		return c, nil
	}
	if e.clients == nil {
		return nil, e.Err("connect", "", fmt.Errorf("endpoint is closed"))
	}
	opt := e.Option
	opt.SelectDB = db
	c, err := rueidis.NewClient(opt)
	if err != nil {
		op := "connect"
		if db != 0 {
			op = fmt.Sprintf("connect to db %d", db)
		}
		return nil, e.Err(op, "", explainConnect(err))
	}
	e.clients[db] = c
	return c, nil
}

// Default returns the client of the database the user's option selects.
func (e *Endpoint) Default() (rueidis.Client, error) { return e.Client(e.Option.SelectDB) }

// Err wraps err in an *Error that names this side, its address, the operation and the key.
func (e *Endpoint) Err(op, key string, err error) error {
	return &Error{Side: e.Side, Addr: e.Addr, Op: op, Key: key, Err: err}
}

// close closes every client; Client fails afterwards.
func (e *Endpoint) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.clients {
		c.Close()
	}
	for _, c := range e.nodes {
		c.Close()
	}
	e.clients, e.nodes = nil, nil
}

// explainConnect adds what to do to the common connection failures.
func explainConnect(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"),
		strings.Contains(msg, "invalid username-password"):
		return fmt.Errorf("authentication failed; check Username and Password: %w", err)
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "Authentication required"):
		return fmt.Errorf("the server needs a password; set Password (and Username for an ACL user): %w", err)
	case strings.Contains(msg, "connection refused"):
		return fmt.Errorf("nothing listens there; check the address: %w", err)
	}
	return err
}

// probe connects and reads INFO, so wrong addresses and passwords fail before any copying.
func (e *Endpoint) probe(ctx context.Context) error {
	c, err := e.Default()
	if err != nil {
		return err
	}
	info, err := readInfo(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return e.Err("info", "", ctx.Err())
		}
		// INFO may be refused on managed services; decide on defaults then.
		info = &ServerInfo{Keyspace: map[int]int64{}, Fields: map[string]string{}, Mode: "standalone", Role: "master"}
	}
	e.Info = info
	if info.Mode == "cluster" {
		return e.probeCluster(ctx)
	}
	return nil
}

// probeCluster reads the cluster's masters and sums their keys: INFO on the cluster client
// reached one node only.
func (e *Endpoint) probeCluster(ctx context.Context) error {
	t, err := e.topology(ctx)
	if err != nil {
		return err
	}
	ids, _ := t.masters()
	e.Info.Masters = len(ids)
	e.Info.Role = "master"
	var keys int64
	for _, id := range ids {
		n := t.nodes[id]
		if n.failed {
			continue
		}
		c, err := e.node(n.addr)
		if err != nil {
			return err
		}
		text, err := c.Do(ctx, c.B().Info().Section("keyspace").Build()).ToString()
		if err != nil {
			if ctx.Err() != nil {
				return e.Err("info", "", ctx.Err())
			}
			continue
		}
		keys += parseInfo(text).Keyspace[0]
	}
	e.Info.Keyspace = map[int]int64{}
	if keys > 0 {
		e.Info.Keyspace[0] = keys
	}
	return nil
}

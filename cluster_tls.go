package migrate

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// A cluster names its nodes to clients by one port each: the tls-port when it runs with
// tls-cluster yes (and the plain port to plain clients, when the nodes listen on both), the
// plain port otherwise. Its nodes do not tell each other their tls-ports then, so CLUSTER
// SLOTS, SHARDS and NODES give a TLS client the plain ports, which rueidis, and this
// library, would dial over TLS. Nothing can choose the right port for them.

// clusterPlainPorts says why a TLS client cannot reach the nodes of this side, a cluster
// that names them by their plain ports (tls-cluster no), asking the node at the address the
// user gave; nil when that is not the case, or the node will not say. cause is the error
// met on the way.
func (e *Endpoint) clusterPlainPorts(ctx context.Context, cause error) error {
	if e.Option.TLSConfig == nil {
		return nil
	}
	c, err := e.node(e.Addr)
	if err != nil {
		return nil
	}
	text, err := c.Do(ctx, c.B().Info().Section("cluster").Build()).ToString()
	if err != nil || !strings.Contains(text, "cluster_enabled:1") {
		return nil
	}
	_, port, _ := net.SplitHostPort(e.Addr)
	how := ""
	if v, ok := configGet(ctx, c, "tls-cluster"); ok {
		if v == "yes" {
			return nil
		}
		how = "it runs with tls-cluster " + v
	} else if nodes, err := c.Do(ctx, c.B().ClusterNodes().Build()).ToString(); err == nil {
		t, err := parseClusterNodes(nodes, e.Addr, endpointIP)
		if err != nil {
			return nil
		}
		for _, n := range t.nodes {
			if n.myself && n.port != "" && n.port != port {
				how = fmt.Sprintf("it names itself by port %s, not by %s, its TLS port, which this client reached", n.port, port)
			}
		}
		if how == "" {
			return nil
		}
	}
	return unsupported("the cluster's nodes could not be reached (%v): this client speaks TLS (TLSConfig), and the "+
		"cluster names its nodes to clients by their plain ports, which a TLS client cannot use (%s; a cluster "+
		"announces tls-ports only with tls-cluster yes); set tls-cluster yes on every node (the cluster bus then "+
		"speaks TLS too, with the nodes' certificates), or reach the cluster without TLS (redis://, TLSConfig nil) "+
		"at a node's plain port", cause, how)
}

// plainPorts returns, when a TLS client cannot reach this cluster's nodes because they are
// named by their plain ports, the error that says so (wrapping ErrUnsupported), else err.
func (e *Endpoint) plainPorts(ctx context.Context, err error) error {
	if why := e.clusterPlainPorts(ctx, err); why != nil {
		return e.Err("connect to the cluster's nodes", "", why)
	}
	return err
}

// unreachable explains err, a failure to ask this side anything: a TLS client to a cluster
// that names its nodes by their plain ports, or what explainConnect says.
func (e *Endpoint) unreachable(ctx context.Context, err error) error {
	if why := e.clusterPlainPorts(ctx, err); why != nil {
		return why
	}
	return explainConnect(err)
}

package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// CA is a certificate authority made for one test, with one certificate it issued for
// servers and one for clients. Both certificates are valid for 127.0.0.1 and localhost, and
// for both server and client authentication: a server presents its own when it connects to
// another as a replica or a cluster node.
type CA struct {
	// File is the CA's certificate, PEM, for tls-ca-cert-file.
	File string
	// Pool holds the CA's certificate, for tls.Config.RootCAs.
	Pool *x509.CertPool
	// ServerCert and ServerKey are the files of the servers' certificate and key.
	ServerCert, ServerKey string
	// NamedCert and NamedKey are a server certificate valid for localhost only, not for
	// 127.0.0.1: a client that dials 127.0.0.1 must set ServerName "localhost".
	NamedCert, NamedKey string
	// Client is the clients' certificate, for tls.Config.Certificates (mutual TLS).
	Client tls.Certificate
	// ClientCert and ClientKey are the files of Client and its key.
	ClientCert, ClientKey string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// NewCA makes a CA and its certificates (ECDSA P-256) in a temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := newCA(t.TempDir(), "redistest CA")
	if err != nil {
		t.Fatalf("redistest: make a CA: %v", err)
	}
	return ca
}

func newCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{File: filepath.Join(dir, "ca.crt"), Pool: x509.NewCertPool(), cert: cert, key: key, dir: dir}
	ca.Pool.AddCert(cert)
	if err := writePEM(ca.File, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if ca.ServerCert, ca.ServerKey, err = ca.issue("server", 2, true); err != nil {
		return nil, err
	}
	if ca.NamedCert, ca.NamedKey, err = ca.issue("named", 4, false); err != nil {
		return nil, err
	}
	if ca.ClientCert, ca.ClientKey, err = ca.issue("client", 3, true); err != nil {
		return nil, err
	}
	if ca.Client, err = tls.LoadX509KeyPair(ca.ClientCert, ca.ClientKey); err != nil {
		return nil, err
	}
	return ca, nil
}

// issue makes a certificate for localhost, and for 127.0.0.1 when withIP, signed by the CA,
// and writes it and its key as name.crt and name.key.
func (ca *CA) issue(name string, serial int64, withIP bool) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
	}
	if withIP {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writePEM(keyFile, "EC PRIVATE KEY", keyDER)
}

func writePEM(file, typ string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientConfig returns a tls.Config that trusts the CA and presents the client
// certificate, without a ServerName: the client takes it from the address it dials.
func (ca *CA) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Client}, MinVersion: tls.VersionTLS12}
}

// TLS makes a server speak TLS only (port 0, tls-port on the port it gets), with the
// CA's server certificate; Config.TLS takes it. Server.Option then connects over TLS.
type TLS struct {
	CA *CA
	// AuthClients is tls-auth-clients: true asks every client for a certificate signed
	// by the CA (mutual TLS); false asks for none.
	AuthClients bool
	// Replication is tls-replication yes: the server connects to its master over TLS.
	Replication bool
	// Cluster is tls-cluster yes: the cluster bus, and MIGRATE, speak TLS.
	Cluster bool
	// NameOnly makes the server present the CA's NamedCert, valid for localhost only.
	NameOnly bool
	// ListenPlain keeps the server's clients on its plain port: the certificates then only
	// serve the connections it makes itself (Replication, Cluster).
	ListenPlain bool
	// AlsoTLS, with ListenPlain, adds a tls-port on a free port: the server then listens on
	// both, clients choosing by the port (see Server.TLSAddr).
	AlsoTLS bool
}

// TLS returns the settings of a TLS-only server with the CA's certificates.
func (ca *CA) TLS(authClients bool) *TLS { return &TLS{CA: ca, AuthClients: authClients} }

// conf returns the configuration lines that make a server listen with TLS on port only.
func (o *TLS) conf(port int) string {
	var b strings.Builder
	if !o.ListenPlain {
		fmt.Fprintf(&b, "port 0\ntls-port %d\n", port)
	} else if o.AlsoTLS {
		if p, err := FreePort(); err == nil {
			fmt.Fprintf(&b, "tls-port %d\n", p) // else none: TLSAddr fails the test
		}
	}
	cert, key := o.CA.ServerCert, o.CA.ServerKey
	if o.NameOnly {
		cert, key = o.CA.NamedCert, o.CA.NamedKey
	}
	fmt.Fprintf(&b, "tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\n", cert, key, o.CA.File)
	fmt.Fprintf(&b, "tls-auth-clients %s\n", yesNo(o.AuthClients))
	if o.Replication {
		b.WriteString("tls-replication yes\n")
	}
	if o.Cluster {
		b.WriteString("tls-cluster yes\n")
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TLSConfig returns a new tls.Config that reaches this server: the CA's, with the client
// certificate, and no ServerName (ServerName "localhost" with NameOnly); nil for a server
// without TLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.cfg.TLS == nil || s.cfg.TLS.ListenPlain {
		return nil
	}
	cfg := s.cfg.TLS.CA.ClientConfig()
	if s.cfg.TLS.NameOnly {
		cfg.ServerName = "localhost"
	}
	return cfg
}

// dial connects to the server as its clients do: over TLS when it speaks TLS.
func (s *Server) dial(timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if cfg := s.TLSConfig(); cfg != nil {
		return (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", s.Addr)
	}
	return d.Dial("tcp", s.Addr)
}

// StartTLSCluster starts a cluster of three masters that speak TLS only, on clients'
// connections and on the cluster bus (tls-cluster yes), with node's other settings. It
// joins them with CLUSTER MEET and CLUSTER ADDSLOTSRANGE (redis-cli needs certificates of
// its own) and stops them when the test ends.
func StartTLSCluster(t testing.TB, o *TLS, node Config) *TLSCluster {
	t.Helper()
	Binary(t)
	o2 := *o
	o2.Cluster = true
	c := &TLSCluster{Cluster: &Cluster{Password: node.Password}, tls: o.CA.ClientConfig()}
	t.Cleanup(c.Stop)
	ctx := context.Background()
	var buses []int
	for range 3 {
		cfg := node
		cfg.TLS = &o2
		cfg.Dir = t.TempDir()
		bus, err := FreePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		cfg.Lines = append(append([]string(nil), cfg.Lines...), "cluster-enabled yes", "cluster-node-timeout 2000",
			"cluster-require-full-coverage no", fmt.Sprintf("cluster-port %d", bus))
		if cfg.Password != "" {
			cfg.Lines = append(cfg.Lines, "masterauth "+cfg.Password)
		}
		s, err := Launch(cfg)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		c.all = append(c.all, s)
		c.Masters = append(c.Masters, s)
		buses = append(buses, bus)
	}
	for i, s := range c.Masters {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		args := []string{"CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)}
		s.Do(t, 0, args...)
		if i > 0 {
			s.Do(t, 0, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Masters[0].Port), strconv.Itoa(buses[0]))
		}
	}
	if err := c.waitOK(ctx, c.Masters, 0); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// TLSCluster is a Cluster whose nodes speak TLS only. Its Option, Client and Side connect
// over TLS.
type TLSCluster struct {
	*Cluster
	tls *tls.Config
}

// Option returns the rueidis options that reach the cluster over TLS.
func (c *TLSCluster) Option() rueidis.ClientOption {
	opt := c.Cluster.Option()
	opt.TLSConfig = c.tls.Clone()
	return opt
}

// Client returns a cluster client over TLS, closed when the test ends.
func (c *TLSCluster) Client(t testing.TB) rueidis.Client {
	t.Helper()
	return clusterClient(t, c.Option())
}

// Side returns the cluster as a side to compare, over TLS.
func (c *TLSCluster) Side(t testing.TB) Side {
	t.Helper()
	side := Side{Client: c.Client(t)}
	for _, s := range c.Masters {
		side.Nodes = append(side.Nodes, s.Client(t, 0))
	}
	return side
}

// Fill writes the conformance data set of each database of d into database 0 of the
// cluster, as FillCluster does, and returns the number of keys written per database.
func (c *TLSCluster) Fill(t testing.TB, d Dataset) map[int]int {
	t.Helper()
	cl := c.Client(t)
	counts := map[int]int{}
	for _, db := range d.dbs() {
		cmds := datasetCommands(cl, db, d)
		for i, r := range cl.DoMulti(context.Background(), cmds.list...) {
			if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
				t.Fatalf("redistest: fill the TLS cluster with db %d's data set: %v: %v", db, cmds.list[i].Commands()[0], err)
			}
		}
		counts[db] = len(cmds.keys)
	}
	return counts
}

// TLSAddr returns the address of the server's tls-port, as CONFIG GET reads it, and a
// tls.Config that reaches it; it fails the test when the server has no tls-port.
func (s *Server) TLSAddr(t testing.TB) (string, *tls.Config) {
	t.Helper()
	m, err := s.Do(t, 0, "CONFIG", "GET", "tls-port").AsStrMap()
	if err != nil || m["tls-port"] == "" || m["tls-port"] == "0" || s.cfg.TLS == nil {
		t.Fatalf("redistest: %s has no tls-port (%v, %v)", s.Addr, m, err)
	}
	return net.JoinHostPort("127.0.0.1", m["tls-port"]), s.cfg.TLS.CA.ClientConfig()
}

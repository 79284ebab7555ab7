package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis/rueidis"
	"github.com/redismigrate/migrate"
)

// TLS is on for a side whose URL is rediss://. The -tls-* flags set its TLS settings for
// both sides, and the -from-tls-* and -to-tls-* flags for one side, over the -tls-* ones.

// tlsFlags are the TLS flags of one side ("from", "to") or of both ("").
type tlsFlags struct {
	side                         string
	ca, cert, key, name          *string
	insecure                     *bool
	caF, certF, keyF, nameF, inF string // the flags' names, without "-"
}

// addTLSFlags defines the TLS flags of side: "from", "to", or "" for both.
func addTLSFlags(fs *flag.FlagSet, side string) *tlsFlags {
	prefix, whose := "", "both rediss:// sides:"
	switch side {
	case "from":
		prefix, whose = "from-", "the source only, over -tls-*:"
	case "to":
		prefix, whose = "to-", "the target only, over -tls-*:"
	}
	f := &tlsFlags{side: side, caF: prefix + "tls-ca", certF: prefix + "tls-cert", keyF: prefix + "tls-key",
		nameF: prefix + "tls-server-name", inF: prefix + "tls-insecure"}
	f.ca = fs.String(f.caF, "", whose+" PEM file of the CAs that sign the servers' certificates (default: the system's)")
	f.cert = fs.String(f.certF, "", whose+" PEM file of the client certificate, for servers that ask for one (mutual TLS); needs -"+f.keyF)
	f.key = fs.String(f.keyF, "", whose+" PEM file of the client certificate's private key")
	f.name = fs.String(f.nameF, "", whose+" name the server's certificate must hold (default: the URL's host)")
	f.insecure = fs.Bool(f.inF, false, whose+" do NOT verify the server's certificate (anyone on the path can then read and change the data)")
	return f
}

// setTLS applies the TLS flags given (side's over both's) to opt, a side's option, whose
// URL flag is urlFlag, and warns on stderr of an unverified certificate. It refuses a flag
// of this side on a URL that is not rediss://.
func setTLS(opt *rueidis.ClientOption, urlFlag string, own, both *tlsFlags, given map[string]bool, stderr io.Writer) error {
	pick := func(ownName, bothName string) (string, bool) {
		switch {
		case given[ownName]:
			return ownName, true
		case given[bothName]:
			return bothName, true
		}
		return "", false
	}
	if opt.TLSConfig == nil {
		for _, n := range []string{own.caF, own.certF, own.keyF, own.nameF, own.inF} {
			if given[n] {
				return fmt.Errorf("-%s is set, but %s is not a rediss:// URL: use rediss:// to connect over TLS", n, urlFlag)
			}
		}
		return nil
	}
	cfg := opt.TLSConfig
	if n, ok := pick(own.caF, both.caF); ok {
		file := *own.ca
		if n == both.caF {
			file = *both.ca
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("-%s: %w", n, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-%s %s: no PEM certificate in it", n, file)
		}
	}
	certName, hasCert := pick(own.certF, both.certF)
	keyName, hasKey := pick(own.keyF, both.keyF)
	switch {
	case hasCert && !hasKey:
		return fmt.Errorf("-%s needs -%s, the file of its private key", certName, strings.Replace(certName, "cert", "key", 1))
	case hasKey && !hasCert:
		return fmt.Errorf("-%s needs -%s, the file of its certificate", keyName, strings.Replace(keyName, "key", "cert", 1))
	case hasCert:
		certFile, keyFile := *own.cert, *own.key
		if certName == both.certF {
			certFile = *both.cert
		}
		if keyName == both.keyF {
			keyFile = *both.key
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("-%s %s, -%s %s: %w", certName, certFile, keyName, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if n, ok := pick(own.nameF, both.nameF); ok {
		cfg.ServerName = *own.name
		if n == both.nameF {
			cfg.ServerName = *both.name
		}
	}
	if n, ok := pick(own.inF, both.inF); ok {
		cfg.InsecureSkipVerify = *own.insecure
		if n == both.inF {
			cfg.InsecureSkipVerify = *both.insecure
		}
		if cfg.InsecureSkipVerify {
			who := "source"
			if own.side == "to" {
				who = "target"
			}
			fmt.Fprintf(stderr, "redis-migrate: WARNING: -%s: the %s's TLS certificate is NOT verified: anyone on the "+
				"path can pose as the server and read or change the data and the password; give its CA with -%s instead\n",
				n, who, own.caF)
		}
	}
	return nil
}

// tlsNames rewrites the library's TLS settings in msg as this command's flags, for the
// side err is about ("" when it names none or several).
func tlsNames(msg string, err error) string {
	side, url := "", "the URL"
	var e *migrate.Error
	if err != nil && errors.As(err, &e) {
		switch e.Side {
		case migrate.Source:
			side, url = "from-", "-from"
		case migrate.Target:
			side, url = "to-", "-to"
		}
	}
	return strings.NewReplacer(
		"use rediss:// or set TLSConfig", "use rediss:// in "+url,
		"use redis:// or leave TLSConfig nil", "use redis:// in "+url,
		"(rediss://, TLSConfig)", "(rediss:// in "+url+")",
		"(redis://, TLSConfig nil)", "(redis:// in "+url+")",
		"TLSConfig.RootCAs to a pool that holds the CA", "-"+side+"tls-ca to the PEM file of the CA",
		"TLSConfig.RootCAs", "-"+side+"tls-ca",
		"TLSConfig.ServerName", "-"+side+"tls-server-name",
		"TLSConfig.Certificates holds", "-"+side+"tls-cert and -"+side+"tls-key give",
		"TLSConfig.Certificates must hold", "-"+side+"tls-cert and -"+side+"tls-key must give",
		"TLSConfig.Certificates to", "-"+side+"tls-cert and -"+side+"tls-key to",
		"TLSConfig.Certificates", "-"+side+"tls-cert and -"+side+"tls-key",
		"InsecureSkipVerify", "-"+side+"tls-insecure",
		"TLSConfig", "rediss:// in "+url,
	).Replace(msg)
}

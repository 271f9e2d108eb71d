package sdk

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/rafting/rafting/sdk/internal/transport"
)

// tlsEnv is the environment's TLS settings, read by defaults.
type tlsEnv struct{ ca, cert, key, insecure string }

// serverSet is where a Client's requests go and how: resolved from a
// connConfig by validate.
type serverSet struct {
	addrs    []string    // host:port
	tls      *tls.Config // nil: plain HTTP
	insecure bool        // plain HTTP allowed off loopback
}

// resolve works out the servers' addresses and scheme and the TLS
// configuration, reading the CA and client certificate files; it refuses
// a list that mixes schemes, http:// beside a TLS option, and plain HTTP
// to a server that is not loopback unless that was allowed.
func (cc *connConfig) resolve() (serverSet, error) {
	var ep serverSet
	ep.insecure = cc.insecure
	if !ep.insecure && cc.env.insecure != "" {
		on, err := strconv.ParseBool(cc.env.insecure)
		if err != nil {
			return ep, fmt.Errorf("sdk: %s=%q: want 1 or 0", EnvInsecure, cc.env.insecure)
		}
		ep.insecure = on
	}
	var plain, secure string // an address written with http://, with https://
	for _, raw := range cc.servers {
		addr := raw
		if scheme, rest, ok := strings.Cut(raw, "://"); ok {
			switch strings.ToLower(scheme) {
			case "http":
				plain = raw
			case "https":
				secure = raw
			default:
				return ep, fmt.Errorf("sdk: server %q: want host:port, http://host:port or https://host:port", raw)
			}
			addr = rest
		}
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" || strings.ContainsAny(addr, "/?#@") {
			return ep, fmt.Errorf("sdk: server %q: want host:port, http://host:port or https://host:port", raw)
		}
		ep.addrs = append(ep.addrs, addr)
	}
	option := tlsOption(cc)
	switch {
	case plain != "" && secure != "":
		return ep, fmt.Errorf("sdk: servers %s and %s: one scheme for every server, https:// or http://", secure, plain)
	case plain != "" && option != "":
		return ep, fmt.Errorf("sdk: server %s is plain HTTP, but %s asks for TLS: write https://", plain, option)
	case cc.httpClient != nil && option != "":
		return ep, fmt.Errorf("sdk: %s and WithHTTPClient: the http.Client's transport does TLS (set its TLSClientConfig, and write https:// addresses)", option)
	}
	ca, caFrom := cc.caFile, "WithCA"
	cert, key, certFrom := cc.certFile, cc.keyFile, "WithClientCert"
	if cc.tls == nil && cc.httpClient == nil {
		// The environment's settings are defaults: WithTLS replaces them
		// all, and WithHTTPClient's transport has its own.
		if ca == "" {
			ca, caFrom = cc.env.ca, EnvCA
		}
		if cert == "" && key == "" {
			cert, key, certFrom = cc.env.cert, cc.env.key, EnvCert+" and "+EnvKey
		}
	}
	tlsSet := cc.tls != nil || ca != "" || cert != "" || key != ""
	if secure == "" && (plain != "" || !tlsSet) {
		for _, addr := range ep.addrs {
			if !ep.insecure && !transport.Loopback(addr) {
				return ep, fmt.Errorf("sdk: server %s is not loopback, and plain HTTP would send the token in the clear: "+
					"write https://%s (with %s or WithCA for a private CA), or allow plain HTTP with WithInsecure() or %s=1",
					addr, addr, EnvCA, EnvInsecure)
			}
		}
		return ep, nil
	}
	if cc.httpClient != nil {
		ep.tls = &tls.Config{} // the scheme only: the http.Client does the TLS
		return ep, nil
	}
	ep.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if cc.tls != nil {
		ep.tls = cc.tls.Clone()
	}
	if ca != "" {
		pool, err := loadCA(ca)
		if err != nil {
			return ep, fmt.Errorf("sdk: %s: %w", caFrom, err)
		}
		ep.tls.RootCAs = pool
	}
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return ep, fmt.Errorf("sdk: a client certificate needs both files: %s", certFrom)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return ep, fmt.Errorf("sdk: %s: %w", certFrom, err)
		}
		ep.tls.Certificates = append(ep.tls.Certificates, pair)
	}
	return ep, nil
}

// tlsOption names the TLS option given, if any.
func tlsOption(cc *connConfig) string {
	switch {
	case cc.tls != nil:
		return "WithTLS"
	case cc.caFile != "":
		return "WithCA"
	case cc.certFile != "" || cc.keyFile != "":
		return "WithClientCert"
	}
	return ""
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// certHint adds to a failed Connect what to do when the servers'
// certificates could not be verified.
func certHint(err error) error {
	if errors.As(err, new(*tls.CertificateVerificationError)) {
		return fmt.Errorf("%w (the servers' certificate is not one the SDK can verify: set %s or use WithCA to their CA)", err, EnvCA)
	}
	return err
}

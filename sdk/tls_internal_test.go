package sdk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TestResolveServers: the scheme of each address, the environment's TLS
// settings as defaults, and the refusals, each with an error that says
// what to do.
func TestResolveServers(t *testing.T) {
	cert, key := selfSigned(t)
	notPEM := filepath.Join(t.TempDir(), "x")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	type env struct{ ca, cert, key, insecure string }
	tests := []struct {
		name    string
		env     env
		opts    []Option
		https   bool // want TLS
		addrs   []string
		roots   bool   // want RootCAs set
		certs   int    // client certificates
		wantErr string // a part of the error
	}{
		{name: "bare loopback is http", opts: []Option{WithServers("127.0.0.1:1", "localhost:2", "[::1]:3")}, addrs: []string{"127.0.0.1:1", "localhost:2", "[::1]:3"}},
		{name: "https", opts: []Option{WithServers("https://a:1", "HTTPS://b:2")}, https: true, addrs: []string{"a:1", "b:2"}},
		{name: "a bare address follows https://", opts: []Option{WithServers("https://a:1", "b:2")}, https: true, addrs: []string{"a:1", "b:2"}},
		{name: "mixed schemes", opts: []Option{WithServers("https://a:1", "http://127.0.0.1:2")}, wantErr: "one scheme"},
		{name: "http with WithCA", opts: []Option{WithServers("http://127.0.0.1:1"), WithCA(cert)}, wantErr: "write https://"},
		{name: "http with WithTLS", opts: []Option{WithServers("http://127.0.0.1:1"), WithTLS(&tls.Config{})}, wantErr: "WithTLS"},
		{name: "RAFTING_CA makes bare https", env: env{ca: cert}, opts: []Option{WithServers("a:1")}, https: true, roots: true, addrs: []string{"a:1"}},
		{name: "http:// wins over RAFTING_CA", env: env{ca: cert}, opts: []Option{WithServers("http://127.0.0.1:1")}, addrs: []string{"127.0.0.1:1"}},
		{name: "WithCA", opts: []Option{WithServers("a:1"), WithCA(cert)}, https: true, roots: true, addrs: []string{"a:1"}},
		{name: "RAFTING_CA not PEM", env: env{ca: notPEM}, opts: []Option{WithServers("https://a:1")}, wantErr: EnvCA},
		{name: "RAFTING_CA missing", env: env{ca: notPEM + "-gone"}, opts: []Option{WithServers("https://a:1")}, wantErr: EnvCA},
		{name: "client cert from env", env: env{cert: cert, key: key}, opts: []Option{WithServers("a:1")}, https: true, certs: 1, addrs: []string{"a:1"}},
		{name: "client cert without key", env: env{cert: cert}, opts: []Option{WithServers("https://a:1")}, wantErr: EnvKey},
		{name: "WithClientCert", opts: []Option{WithServers("a:1"), WithClientCert(cert, key)}, https: true, certs: 1, addrs: []string{"a:1"}},
		{name: "WithTLS replaces the environment", env: env{ca: cert, cert: cert, key: key}, opts: []Option{WithServers("a:1"), WithTLS(&tls.Config{ServerName: "x"})},
			https: true, addrs: []string{"a:1"}},
		{name: "WithCA adds to WithTLS", opts: []Option{WithServers("a:1"), WithTLS(&tls.Config{ServerName: "x"}), WithCA(cert)}, https: true, roots: true, addrs: []string{"a:1"}},
		{name: "plaintext off loopback", opts: []Option{WithServers("10.0.0.1:1")}, wantErr: "WithInsecure() or RAFTING_INSECURE=1"},
		{name: "plaintext off loopback, a name", opts: []Option{WithServers("http://rafting-1:1")}, wantErr: "write https://rafting-1:1"},
		{name: "WithInsecure", opts: []Option{WithServers("10.0.0.1:1"), WithInsecure()}, addrs: []string{"10.0.0.1:1"}},
		{name: "RAFTING_INSECURE=1", env: env{insecure: "1"}, opts: []Option{WithServers("10.0.0.1:1")}, addrs: []string{"10.0.0.1:1"}},
		{name: "RAFTING_INSECURE=0", env: env{insecure: "0"}, opts: []Option{WithServers("10.0.0.1:1")}, wantErr: "WithInsecure"},
		{name: "RAFTING_INSECURE=yes", env: env{insecure: "yes"}, opts: []Option{WithServers("127.0.0.1:1")}, wantErr: EnvInsecure},
		{name: "another scheme", opts: []Option{WithServers("ftp://a:1")}, wantErr: "want host:port"},
		{name: "no port", opts: []Option{WithServers("a")}, wantErr: "want host:port"},
		{name: "a path", opts: []Option{WithServers("https://a:1/v1")}, wantErr: "want host:port"},
		{name: "WithHTTPClient keeps the scheme", opts: []Option{WithServers("https://a:1"), WithHTTPClient(http.DefaultClient)}, https: true, addrs: []string{"a:1"}},
		{name: "WithHTTPClient and WithCA", opts: []Option{WithServers("https://a:1"), WithHTTPClient(http.DefaultClient), WithCA(cert)}, wantErr: "TLSClientConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvCA, tt.env.ca)
			t.Setenv(EnvCert, tt.env.cert)
			t.Setenv(EnvKey, tt.env.key)
			t.Setenv(EnvInsecure, tt.env.insecure)
			c := defaults()
			for _, o := range append(tt.opts, WithTenant("t"), WithToken("tok")) {
				o(&c)
			}
			err := c.validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validate() = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate() = %v", err)
			}
			ep := c.conn.ep
			if got := ep.tls != nil; got != tt.https || !slices.Equal(ep.addrs, tt.addrs) {
				t.Fatalf("validate() = https %v, %v; want https %v, %v", got, ep.addrs, tt.https, tt.addrs)
			}
			if ep.tls == nil {
				return
			}
			if (ep.tls.RootCAs != nil) != tt.roots || len(ep.tls.Certificates) != tt.certs {
				t.Fatalf("TLS config: roots %v, %d certificates; want roots %v, %d", ep.tls.RootCAs != nil, len(ep.tls.Certificates), tt.roots, tt.certs)
			}
		})
	}
}

package sdk_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
)

// nonLoopbackIP is an address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return nil
}

// TestAttackSDKFollowsRedirectToCleartext: the SDK's HTTP clients keep
// Go's default CheckRedirect, which follows a 3xx with the method and,
// to the same host (any port, any scheme), the Authorization header. An
// https:// server — or anything answering on that address, such as a
// load balancer's redirect rule — that answers 307 to
// http://<same host>:<port> gets the tenant token sent again in the
// clear, off loopback, though the SDK refuses plain HTTP there unless
// WithInsecure. The CLI refuses redirects (noRedirects); the SDK does
// not, and "paths are never redirected" / "a token never crosses the
// network in the clear by accident" (SECURITY.md) do not hold for it.
func TestAttackSDKFollowsRedirectToCleartext(t *testing.T) {
	ip := nonLoopbackIP(t)

	// A plain listener on the same host: what arrives there crossed the
	// network in the clear.
	plain, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Skip(err)
	}
	defer plain.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := plain.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		got <- req.Header.Get("Authorization")
		conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	}()

	// The TLS server, with a certificate the client trusts, that answers
	// every request with a redirect to the plain listener.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "rafting"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{ip}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+plain.Addr().String()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	srv.Listener.Close()
	srv.Listener, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Skip(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()

	token := "rft_acme_" + strings.Repeat("Ab1-", 11)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := sdk.Connect(ctx, sdk.WithServers("https://"+srv.Listener.Addr().String()), sdk.WithTenant("acme"),
		sdk.WithToken(token), sdk.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err == nil {
		c.Close()
	}
	select {
	case auth := <-got:
		if auth != "" {
			t.Fatalf("the SDK (https:// only, no WithInsecure) followed a redirect to http://%s and sent %q in the clear", plain.Addr(), auth)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

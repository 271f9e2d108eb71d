package sdk_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
	"github.com/rafting/rafting/server/servertest"
)

// TestHTTPSNeverCleartext (issue 16, finding 1): a raw TCP listener behind
// an https:// address must never receive the token in the clear; what
// arrives is a TLS handshake. The SDK used to strip the scheme and send
// `Authorization: Bearer rft_...` as plain HTTP.
func TestHTTPSNeverCleartext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got [][]byte
		wg  sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				// Whatever the client sends first, then nothing back: a
				// TLS client waits for a ServerHello, a plain HTTP
				// client has sent its request whole by then.
				conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				b, _ := io.ReadAll(io.LimitReader(conn, 64<<10))
				mu.Lock()
				got = append(got, b)
				mu.Unlock()
			}()
		}
	}()
	clearTLSEnv(t)
	const token = "rft_acme_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
	_, err = sdk.Connect(ctxT(t, 1500*time.Millisecond), sdk.WithServers("https://"+ln.Addr().String()),
		sdk.WithTenant("acme"), sdk.WithToken(token), sdk.WithServerSync(0))
	ln.Close()
	wg.Wait()
	if err == nil {
		t.Fatal("Connect to a listener that never answers succeeded")
	}
	if len(got) == 0 {
		t.Fatal("the SDK never connected to the listener")
	}
	for _, b := range got {
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte("Authorization")) {
			t.Fatalf("an https:// server received the token in the clear:\n%q", b)
		}
		if len(b) > 0 && b[0] != 0x16 { // a TLS handshake record
			t.Fatalf("an https:// server received %q, not a TLS handshake", b[:min(len(b), 32)])
		}
	}
}

// TestPlaintextRefusedOffLoopback: plaintext HTTP to an address that is
// not loopback is refused before anything is sent, with an error that
// says how to fix it, unless WithInsecure or RAFTING_INSECURE allows it.
func TestPlaintextRefusedOffLoopback(t *testing.T) {
	clearTLSEnv(t)
	// 192.0.2.0/24 is TEST-NET-1: nothing answers there, and the refusal
	// must come before any dial.
	for _, servers := range [][]string{{"192.0.2.1:7070"}, {"http://192.0.2.1:7070"}, {"127.0.0.1:7070", "rafting-2.internal:7070"}} {
		start := time.Now()
		_, err := sdk.Connect(ctxT(t, 5*time.Second), sdk.WithServers(servers...), sdk.WithTenant("acme"), sdk.WithToken("rft_acme_x"))
		if err == nil || !strings.Contains(err.Error(), "https://") || !strings.Contains(err.Error(), "WithInsecure") ||
			!strings.Contains(err.Error(), sdk.EnvInsecure) {
			t.Errorf("Connect(%v) = %v, want a refusal that names https://, WithInsecure and %s", servers, err, sdk.EnvInsecure)
		}
		if time.Since(start) > time.Second {
			t.Errorf("Connect(%v) took %v: the refusal must come before any request", servers, time.Since(start))
		}
	}
	// Allowed explicitly, the SDK tries (and here finds nobody).
	for _, allow := range []func() sdk.Option{sdk.WithInsecure, func() sdk.Option { t.Setenv(sdk.EnvInsecure, "1"); return sdk.WithTenant("acme") }} {
		_, err := sdk.Connect(ctxT(t, 300*time.Millisecond), sdk.WithServers("192.0.2.1:7070"), sdk.WithTenant("acme"), sdk.WithToken("rft_acme_x"), allow())
		if err == nil || strings.Contains(err.Error(), "WithInsecure") || !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("Connect with plaintext allowed = %v, want it to try (unavailable)", err)
		}
	}
}

// TestRaftingCA: against a cluster serving its API with certificates of a
// private CA, RAFTING_CA alone lets Join and Connect verify the servers,
// over https:// or bare host:port addresses (forwarded keepalives and the
// session stream included: a master is elected and seen); without it the
// SDK refuses the certificate and says which variable to set.
func TestRaftingCA(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{TLS: true})
	clearTLSEnv(t)
	t.Setenv(sdk.EnvCA, c.CA)
	var https []string
	for _, a := range c.Servers.Addrs() {
		https = append(https, "https://"+a)
	}
	m, err := sdk.Join(ctxT(t, 30*time.Second), sdk.Instance{Service: "billing", ID: "b1", Address: "10.0.0.5:80", Mode: sdk.MasterStandby},
		sdk.WithServers(https...), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token))
	if err != nil {
		t.Fatalf("Join over https with RAFTING_CA: %v", err)
	}
	defer m.Leave(ctxT(t, 10*time.Second))
	eventually(t, 10*time.Second, "the member to be master", m.IsMaster)

	cl, err := sdk.Connect(ctxT(t, 30*time.Second), sdk.WithServers(c.Servers.Addrs()...), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token))
	if err != nil {
		t.Fatalf("Connect to bare addresses with RAFTING_CA: %v", err)
	}
	defer cl.Close()
	svc, err := cl.Service(ctxT(t, 10*time.Second), "billing")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.RoundRobin())
	eventually(t, 10*time.Second, "the member in the caller's balancer", func() bool {
		ep, err := b.Pick()
		return err == nil && ep.ID == "b1"
	})

	t.Setenv(sdk.EnvCA, "")
	_, err = sdk.Connect(ctxT(t, time.Second), sdk.WithServers(https...), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token))
	if err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) || !strings.Contains(err.Error(), sdk.EnvCA) {
		t.Fatalf("Connect without the CA = %v, want a certificate error naming %s", err, sdk.EnvCA)
	}
}

// TestClientCertificate: RAFTING_CERT and RAFTING_KEY are presented to a
// server that requires a client certificate (a TLS-terminating proxy in
// front of the cluster, say).
func TestClientCertificate(t *testing.T) {
	clearTLSEnv(t)
	dir := t.TempDir()
	ca := servertest.NewCA(t, dir, "proxy")
	serverCert, serverKey := ca.Issue(t, "server")
	clientCert, clientKey := ca.Issue(t, "client")
	pair, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(ca.File)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var seen sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].Subject.CommonName, true)
		w.Write([]byte(`{"index":1,"services":[]}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	opts := []sdk.Option{sdk.WithServers(srv.Listener.Addr().String()), sdk.WithTenant("t"), sdk.WithToken("rft_t_x"), sdk.WithServerSync(0)}

	t.Setenv(sdk.EnvCA, ca.File)
	if _, err := sdk.Connect(ctxT(t, time.Second), opts...); err == nil {
		t.Fatal("Connect without a client certificate succeeded")
	}
	t.Setenv(sdk.EnvCert, clientCert)
	t.Setenv(sdk.EnvKey, clientKey)
	cl, err := sdk.Connect(ctxT(t, 5*time.Second), opts...)
	if err != nil {
		t.Fatalf("Connect with RAFTING_CERT and RAFTING_KEY: %v", err)
	}
	cl.Close()
	if _, ok := seen.Load("client"); !ok {
		t.Fatal("the server never saw the client certificate")
	}
	// An option overrides the environment: the server's own certificate
	// is a client certificate of the CA too.
	cl, err = sdk.Connect(ctxT(t, 5*time.Second), append(opts, sdk.WithClientCert(serverCert, serverKey))...)
	if err != nil {
		t.Fatalf("Connect with WithClientCert: %v", err)
	}
	cl.Close()
	if _, ok := seen.Load("server"); !ok {
		t.Fatal("WithClientCert did not override RAFTING_CERT")
	}
}

func clearTLSEnv(t *testing.T) {
	for _, v := range []string{sdk.EnvCA, sdk.EnvCert, sdk.EnvKey, sdk.EnvInsecure} {
		t.Setenv(v, "")
	}
}

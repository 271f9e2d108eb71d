package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestAttackOneTenantTakesEveryConnection: DESIGN.md promises a budget per
// tenant for connections ("Every shared resource has a budget per tenant
// ...: requests, write and answer bytes, streams, connections, held
// refusals"), and DECISIONS.md says authenticated connections "are bounded
// by the total and by what tenants may hold open (sessions, streams,
// watchers)". An idle keep-alive connection is held by nothing of the
// sort: a connection is marked authenticated by its first request with a
// valid token (even one that is then refused 429), and from then on only
// MaxConnections bounds it. One tenant that opens MaxConnections
// connections and makes one request on each holds them for IdleTimeout
// (2 min, renewed by any request), and every other tenant's new
// connection — /healthz too — is closed as it is accepted.
//
// Small scale: MaxConnections 40 (the default is three quarters of the
// descriptor limit; the attack is the same with more sockets).
func TestAttackOneTenantTakesEveryConnection(t *testing.T) {
	const maxConns = 40
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) {
		cfg.MaxConnections = maxConns
	}})
	flood := c.CreateTenant("flood", api.Quotas{RequestsPerSecond: 1, Burst: 1}) // a tenant far over a tiny rate
	quiet := c.CreateTenant("quiet", api.Quotas{})
	c.Client.CloseIdleConnections()

	var held []net.Conn
	defer func() {
		for _, conn := range held {
			conn.Close()
		}
	}()
	// The attacker: one request on each connection, then silence.
	for i := 0; i < maxConns+5; i++ {
		conn, err := net.Dial("tcp", c.Addr(1))
		if err != nil {
			break
		}
		fmt.Fprintf(conn, "GET /v1/tenants/flood/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", flood)
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close() // over the limit: closed at accept
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		held = append(held, conn)
	}
	t.Logf("the attacker tenant holds %d idle authenticated connections (limit %d)", len(held), maxConns)
	time.Sleep(6 * time.Second) // past AuthTimeout (5 s): authenticated connections are not closed

	// The victim, another tenant, opens a new connection.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/quiet/services", nil)
	req.Header.Set("Authorization", "Bearer "+quiet)
	resp, err := client.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	hresp, herr := client.Get("http://" + c.Addr(1) + "/healthz")
	if herr == nil {
		io.Copy(io.Discard, hresp.Body)
		hresp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("tenant quiet's new connection while tenant flood holds %d idle connections: %v (healthz: %v); "+
			"one tenant must not be able to take every connection of the node", len(held), err, herr)
	}
}

// TestAttackDefaultMaxConnectionsLeavesNoDescriptors: DefaultMaxConnections
// is documented as three quarters of the process's descriptor limit, "the
// rest kept for the Raft transport, the LogDB and the peers", but it is
// max(1024, limit*3/4): with a limit of 1024 (a common hard limit) the API
// may take every descriptor the process has, and a connection flood
// starves Raft and the LogDB.
func TestAttackDefaultMaxConnectionsLeavesNoDescriptors(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	for _, limit := range []uint64{1024, 1200} {
		if limit > orig.Max {
			continue
		}
		lowered := syscall.Rlimit{Cur: limit, Max: orig.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
			t.Skip(err)
		}
		got := httpapi.DefaultMaxConnections()
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Fatal(err)
		}
		if uint64(got) > limit*3/4 {
			t.Errorf("descriptor limit %d: DefaultMaxConnections = %d, %d%% of every descriptor the process has; "+
				"three quarters is %d", limit, got, uint64(got)*100/limit, limit*3/4)
		}
	}
}

// TestAttackUnauthenticatedAttackerShutsTheDoor: every new connection
// starts unauthenticated, and while MaxUnauthenticated (default 4,096)
// connections are unauthenticated, a new one is closed as it is accepted
// — before it can present a token. The per-address cap (256) only means
// the attacker needs 16 source addresses (one IPv6 /60; a home user is
// often given a /56), each holding 256 connections that say nothing and
// are replaced every AuthTimeout (5 s): about 820 connects a second, no
// token at all. Meanwhile no tenant's new connection is accepted, nor
// /healthz's. Issue 22 asked for the victim within 2x under this pattern.
//
// Small scale: MaxUnauthenticated 40, 10 per address, 4 attacker
// addresses (127.0.0.2-5), AuthTimeout 2 s.
//
// Fails on 48b9090; passes since 22b2233 (the oldest unauthenticated
// connection makes room): kept as a regression test. See
// TestAttackUnauthenticatedChurnEvictsSlowClients for what that fix
// lets through.
func TestAttackUnauthenticatedAttackerShutsTheDoor(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) {
		cfg.MaxUnauthenticated = 40
		cfg.MaxUnauthenticatedPerAddress = 10
		cfg.AuthTimeout = 2 * time.Second
	}})
	quiet := c.CreateTenant("quiet", api.Quotas{})
	c.Client.CloseIdleConnections()

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the attacker: 4 addresses x 10 silent connections, replaced as they are closed
		defer close(done)
		type slot struct {
			conn net.Conn
			src  string
		}
		var slots []*slot
		for a := 2; a <= 5; a++ {
			for range 10 {
				slots = append(slots, &slot{src: fmt.Sprintf("127.0.0.%d", a)})
			}
		}
		defer func() {
			for _, s := range slots {
				if s.conn != nil {
					s.conn.Close()
				}
			}
		}()
		buf := make([]byte, 1)
		for {
			for _, s := range slots {
				if s.conn != nil {
					s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
					if _, err := s.conn.Read(buf); err != nil {
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							continue // still open
						}
					}
					s.conn.Close()
					s.conn = nil
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.src)}}
				if conn, err := d.Dial("tcp", c.Addr(1)); err == nil {
					s.conn = conn
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	ok, failed := 0, 0
	var last error
	for range 10 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/quiet/services", nil)
		req.Header.Set("Authorization", "Bearer "+quiet)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			failed++
			last = err
		} else {
			ok++
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	<-done
	client.CloseIdleConnections()
	if failed > 0 {
		t.Fatalf("a tenant with a valid token, from its own address, while an unauthenticated attacker keeps 4 addresses x 10 "+
			"silent connections open: %d of 10 new connections refused (last: %v), %d served", failed, last, ok)
	}
}

// TestAttackUnauthenticatedChurnEvictsSlowClients: since 22b2233, when the
// unauthenticated connections are all taken "the oldest of them makes
// room: a client authenticates with its first request, within
// milliseconds". Not over a network: with TLS a client's first request
// arrives a TCP round trip and a TLS handshake after the server accepted
// it — 100 ms and more across regions. An attacker that opens
// connections faster than MaxUnauthenticated per 100 ms (and never sends a
// byte) makes every connection younger than 100 ms the oldest in turn:
// each one of its own evicts a waiting one, and a legitimate client that
// takes 100 ms to say something is closed before it does. Five source
// addresses suffice; nothing is rate limited before a request.
//
// Small scale: MaxUnauthenticated 40, 10 per address, 5 attacker
// addresses; the victim waits 100 ms between connecting and sending its
// request (a TLS client over a 30–50 ms RTT).
func TestAttackUnauthenticatedChurnEvictsSlowClients(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) {
		cfg.MaxUnauthenticated = 40
		cfg.MaxUnauthenticatedPerAddress = 10
	}})
	quiet := c.CreateTenant("quiet", api.Quotas{})
	c.Client.CloseIdleConnections()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var dials atomic.Int64
	for a := 2; a <= 6; a++ { // the attacker: dial, say nothing, dial again
		wg.Go(func() {
			var mine []net.Conn
			defer func() {
				for _, conn := range mine {
					conn.Close()
				}
			}()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", a))}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := d.Dial("tcp", c.Addr(1))
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				dials.Add(1)
				mine = append(mine, conn)
				if len(mine) > 20 { // ours were evicted long ago: let them go
					mine[0].Close()
					mine = mine[1:]
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	ok, failed := 0, 0
	var last error
	start := time.Now()
	for range 10 {
		err := func() error {
			conn, err := net.Dial("tcp", c.Addr(1))
			if err != nil {
				return err
			}
			defer conn.Close()
			time.Sleep(100 * time.Millisecond) // the TLS handshake of a client a few tens of ms away
			fmt.Fprintf(conn, "GET /v1/tenants/quiet/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", quiet)
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}()
		if err != nil {
			failed++
			last = err
		} else {
			ok++
		}
	}
	rate := float64(dials.Load()) / time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	t.Logf("attacker: %.0f silent connections a second from 5 addresses; victim: %d served, %d closed before its request (last: %v)", rate, ok, failed, last)
	if failed > 0 {
		t.Fatalf("a client that sends its first request 100 ms after connecting (TLS over a WAN): %d of 10 connections closed "+
			"by an unauthenticated attacker's churn of silent connections (last: %v)", failed, last)
	}
}

// TestAttackParkedOverTLSReconnects: attack pattern 5 over TLS. A refusal
// past a tenant's holds is parked on its connection and answered in turn
// (server/httpapi/conns_park.go); with the TLS listener wrapped around the
// limited one, a parked TLS connection could not go back to the server
// below TLS, so its answer ended it, and the client paid a new TCP and
// TLS handshake for every parked refusal. Served by the limited listener
// itself, TLS connections go back as they are.
//
// Small scale: 96 HTTP/1.1 connections over TLS of a tenant at 10
// requests a second, past its 64 holds, for 3 s.
func TestAttackParkedOverTLSReconnects(t *testing.T) {
	dir := t.TempDir()
	ca := servertest.NewCA(t, dir, "cluster")
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { ca.Secure(t, cfg) }})
	pool, err := server.LoadCA(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig := &tls.Config{RootCAs: pool}
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer admin.CloseIdleConnections()
	body, _ := json.Marshal(api.CreateTenantRequest{Name: "mallory", Secret: tenants.NewSecret(), Quotas: api.Quotas{RequestsPerSecond: 10, Burst: 10}})
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.Addr(1)+"/v1/tenants", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ten api.Tenant
	_ = json.NewDecoder(resp.Body).Decode(&ten)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || ten.Token == "" {
		t.Fatalf("create tenant = %d", resp.StatusCode)
	}

	const conns = 96
	var dials atomic.Int64
	counts := map[string]int{}
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range conns {
		tr := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 1,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.Addr(1)+"/v1/tenants/mallory/services", nil)
				req.Header.Set("Authorization", "Bearer "+ten.Token)
				resp, err := client.Do(req)
				k := "error"
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					k = fmt.Sprint(resp.StatusCode)
				} else if ctx.Err() != nil {
					return
				}
				mu.Lock()
				counts[k]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d TLS connections over the rate: %v, %d connections opened", conns, counts, dials.Load())
	if counts["429"] == 0 {
		t.Fatalf("no refusal: %v", counts)
	}
	for k, n := range counts {
		if k != "200" && k != "429" {
			t.Errorf("%d answers %s: want only 200 and 429", n, k)
		}
	}
	if n := dials.Load(); n > conns+conns/4 {
		t.Errorf("%d TLS connections over the rate of a tenant opened %d connections in 3 s: parked refusals ended their "+
			"connections (want them answered on the same connection, at most %d opened)", conns, n, conns+conns/4)
	}
}

package httpapi_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c countingConn) CloseWrite() error {
	return c.Conn.(*net.TCPConn).CloseWrite()
}

// serveCounted serves node 1's API as server.Server does (the connection
// limits below, the same timeouts) on a listener that counts what the
// server reads; it returns the address and the counter.
func serveCounted(t *testing.T, c *servertest.Cluster) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read := &atomic.Int64{}
	lim := httpapi.Limit(countingListener{Listener: ln, read: read},
		httpapi.ConnLimits{MaxTotal: 256, MaxUnauthenticated: 64, MaxUnauthenticatedPerAddress: 64, AuthTimeout: 5 * time.Second})
	srv := &http.Server{Handler: c.Server(1).API(), ConnContext: httpapi.ConnContext,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lim)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		time.Sleep(time.Second) // the half-closed connections' closes (lingerClose)
	})
	return ln.Addr().String(), read
}

// rawPut sends a PUT whose body is size bytes of body (repeated), with a
// Content-Length, or chunked when chunked is set; the body is written
// while the answer is read, as a client that does not wait for an answer
// before its body does. It returns the answer and whether the server then
// ended the connection (EOF or reset within 2 s).
func rawPut(t *testing.T, addr, token, path string, body []byte, chunked bool) (*http.Response, []byte, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var head strings.Builder
	fmt.Fprintf(&head, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", path, addr, token)
	if chunked {
		head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", len(body))
	}
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	go func() { // ends with a write error once the server closes
		if chunked {
			for off := 0; off < len(body); off += 8 << 10 {
				end := min(off+8<<10, len(body))
				if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", end-off, body[off:end]); err != nil {
					return
				}
			}
			_, _ = io.WriteString(conn, "0\r\n\r\n")
			return
		}
		_, _ = conn.Write(body)
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("PUT %s: no answer: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("PUT %s: answer cut: %v", path, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	var ne net.Error
	ended := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return resp, b, ended
}

// TestRefusedBodiesAreNotRead: a body larger than its route's cap for the
// tenant's own quotas is refused 413, naming the quota, before the server
// reads it, and its connection is ended rather than drained; a refusal of
// the token leaves a large body unread alike. A body at the cap (meta at
// max_meta_bytes, every byte escaped as encoding/json does '<') passes.
func TestRefusedBodiesAreNotRead(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{MaxMetaBytes: 1024})
	addr, read := serveCounted(t, c)
	const path = "/v1/tenants/acme/services/web/instances/w1"
	meta := func(n int) []byte {
		return []byte(`{"address":"a:1","meta":{"k":"` + strings.Repeat("x", n) + `"}}`)
	}
	tests := []struct {
		name    string
		token   string
		body    []byte
		chunked bool
		status  int
		quota   string
		maxRead int64
	}{
		// net/http leaves a body of 256 KiB or more unread by itself;
		// below that it reads it to reach the next request.
		{"1 MB by its length", tok, meta(1_000_000), false, http.StatusRequestEntityTooLarge, tenants.QuotaMaxMetaBytes, 16 << 10},
		{"200 KB by its length", tok, meta(200_000), false, http.StatusRequestEntityTooLarge, tenants.QuotaMaxMetaBytes, 16 << 10},
		{"1 MB chunked, cut at the cap", tok, meta(1_000_000), true, http.StatusRequestEntityTooLarge, tenants.QuotaMaxMetaBytes, 64 << 10},
		{"200 KB with a made-up token", "rft_acme_" + strings.Repeat("A", 43), meta(200_000), false, http.StatusUnauthorized, "", 16 << 10},
		{"200 KB with no token", "", meta(200_000), false, http.StatusUnauthorized, "", 16 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := read.Load()
			resp, b, ended := rawPut(t, addr, tt.token, path, tt.body, tt.chunked)
			got := read.Load() - before
			t.Logf("%d %s; the server read %d of %d bytes; connection ended: %v", resp.StatusCode, b, got, len(tt.body), ended)
			if resp.StatusCode != tt.status {
				t.Fatalf("PUT of %d bytes = %d %s, want %d", len(tt.body), resp.StatusCode, b, tt.status)
			}
			if e := api.Decode(resp.StatusCode, b, ""); e.Quota != tt.quota {
				t.Errorf("the refusal names quota %q, want %q: %s", e.Quota, tt.quota, b)
			}
			if got > tt.maxRead {
				t.Errorf("the server read %d bytes of a refused body of %d, want at most %d", got, len(tt.body), tt.maxRead)
			}
			if !ended {
				t.Errorf("the connection of a refused body was kept: what is left of the body would be read")
			}
		})
	}

	t.Run("at the cap", func(t *testing.T) {
		// 1024 - 32 (the entry's cost) - 1 (its key) bytes of '<', each
		// escaped to six by encoding/json: a body over five times the quota.
		req := api.RegisterRequest{Address: "a:1", Meta: map[string]string{"k": strings.Repeat("<", 1024-32-1)}}
		b, _ := json.Marshal(req)
		r := c.Do(1, tok, http.MethodPut, path, b)
		if r.Status != http.StatusCreated {
			t.Fatalf("a registration at max_meta_bytes (a %d-byte body) = %d %s, want 201", len(b), r.Status, r.Body)
		}
	})
	t.Run("a small refusal keeps its connection", func(t *testing.T) {
		resp, b, ended := rawPut(t, addr, tok, path, []byte(`{"address":"a:1","weight":-5}`), false)
		if resp.StatusCode != http.StatusBadRequest || ended {
			t.Fatalf("a small invalid registration = %d %s, connection ended %v; want 400 on a kept connection", resp.StatusCode, b, ended)
		}
	})
}

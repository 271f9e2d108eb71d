package fence_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk/fence"
)

// TestRedTeamWireHeaderTricks sends hand-written HTTP/1.1 requests to a
// real server behind Middleware (highest 100): none with a stale, absent
// or malformed token may be served.
func TestRedTeamWireHeaderTricks(t *testing.T) {
	g := fence.NewGuard(100)
	var served atomic.Int64
	srv := httptest.NewServer(fence.Middleware(g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	send := func(headers string) int {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n%s\r\n", headers)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return -1
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	h := fence.Header
	bad := []string{
		h + ": 99\r\n",
		h + ": 099\r\n",
		h + ": 0100\r\n",
		h + ": +101\r\n",
		h + ": 101 \r\n" + h + ": 99\r\n",
		h + ": 99\r\n" + h + ": 101\r\n",
		h + ": 101, 99\r\n",
		h + ": 99,101\r\n",
		strings.ToLower(h) + ": 99\r\n" + strings.ToUpper(h) + ": 101\r\n",
		h + ": 1\u0660\u0661\r\n",
		h + ": \uff11\uff10\uff11\r\n",
		h + ": 101\x00\r\n",
		h + ": 1e3\r\n",
		h + ": 0x65\r\n",
		h + ": 18446744073709551616\r\n",
		h + ": 36893488147419103332\r\n",
		h + ": 000000000000000000101\r\n",
		h + ": 99\r\n 101\r\n",
		h + ":\r\n",
		h + " : 101\r\n",
		"Rafting_Fencing_Token: 101\r\n",
		h + ": -1\r\n",
		h + ": 101\t99\r\n",
	}
	for _, hdr := range bad {
		before := served.Load()
		st := send(hdr)
		if served.Load() != before {
			t.Errorf("%q: served (status %d), highest now %d", hdr, st, g.Highest())
		}
	}
	if g.Highest() != 100 {
		t.Errorf("highest moved to %d", g.Highest())
	}
	// Whitespace around a value is trimmed by net/http: " 101 " is 101.
	if st := send(h + ":   101   \r\n"); st != 204 {
		t.Errorf("padded 101: %d", st)
	}
}

// TestRedTeamMiddlewareOrder: many writers with random tokens through
// Middleware; the store records the token of every write it applies, and
// no write may carry a token lower than one applied before it.
func TestRedTeamMiddlewareOrder(t *testing.T) {
	g := new(fence.Guard)
	var mu sync.Mutex
	var applied []uint64
	srv := httptest.NewServer(fence.Middleware(g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := fence.FromRequest(r)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		mu.Lock()
		applied = append(applied, tok)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				tok := uint64(1 + (w*7+i*13)%50)
				req, _ := http.NewRequest(http.MethodPut, srv.URL, nil)
				fence.SetHeader(req.Header, tok)
				resp, err := srv.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	var max uint64
	for i, tok := range applied {
		if tok < max {
			t.Fatalf("write %d applied token %d after %d", i, tok, max)
		}
		max = tok
	}
	t.Logf("%d writes applied", len(applied))
}

package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/rafting/rafting/server/httpapi"
)

// TestAttackIdleConnectionsHoldServerMemory: attack pattern 4b (issue
// 22): connections that never send a byte, from many source addresses,
// up to the node's unauthenticated cap (4,096). net/http gives each one
// a goroutine and 8 KiB of buffers as it is accepted — ≈ 14.5 KB of heap
// and stack, 27 KB of RSS with the GC's headroom: 4,096 of them took
// 110 MB a node. Held by the listener until they have bytes to read,
// they cost their descriptor and bookkeeping (about 1.2 KB), and a
// client that then sends its request is served as before.
//
// Small scale: 1,024 idle connections from 16 addresses.
func TestAttackIdleConnectionsHoldServerMemory(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := inner.Addr().String()
	ln := httpapi.Limit(inner, httpapi.ConnLimits{MaxTotal: 4096, MaxUnauthenticated: 2048,
		MaxUnauthenticatedPerAddress: 128, AuthTimeout: time.Minute})
	protos := &http.Protocols{}
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnContext: httpapi.ConnContext, ReadHeaderTimeout: 10 * time.Second, Protocols: protos}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	defer func() {
		srv.Close()
		<-done
	}()
	get := func(conn net.Conn) error {
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// The server accepts in order: once a request on a connection opened
	// after them is answered, every earlier connection was accepted.
	synced := func() {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := get(conn); err != nil {
			t.Fatalf("a request on a new connection: %v", err)
		}
	}
	measure := func() (int, uint64) {
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return runtime.NumGoroutine(), m.HeapInuse + m.StackInuse
	}
	synced()
	g0, mem0 := measure()

	const n = 1024
	idle := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 9, byte(1+i%16))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	synced()
	g1, mem1 := measure()
	perConn := (int64(mem1) - int64(mem0)) / n
	t.Logf("%d idle connections: goroutines %d → %d, heap and stacks +%d KB (%d B a connection)", n, g0, g1, (int64(mem1)-int64(mem0))>>10, perConn)
	if g1-g0 > n/16 {
		t.Errorf("%d idle connections that sent nothing hold %d goroutines: want none until a request arrives", n, g1-g0)
	}
	if perConn > 4096 {
		t.Errorf("an idle connection that sent nothing costs the server %d bytes of heap and stack: want at most 4,096 (net/http's buffers and goroutine are for requests)", perConn)
	}
	// They are served when they speak.
	for _, i := range []int{0, n / 2, n - 1} {
		if err := get(idle[i]); err != nil {
			t.Errorf("a request on idle connection %d: %v", i, err)
		}
	}
}

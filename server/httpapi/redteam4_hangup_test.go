package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam4HungUpPacedConnectionsHeld: red team 4, finding 4. A paced
// connection waits for its turn in neither the waiter's epoll set nor
// net/http: nothing watches it. When its client hangs up, the node keeps
// its descriptor (and its place in the unauthenticated and total counts)
// until its turn comes — then hands it to net/http, which reads and
// serves the request of a client long gone — or until its auth timeout.
// A marked address can so fire requests and close them at once, paying
// no socket of its own, and hold up to MaxUnauthenticatedPerAddress (256)
// of the node's descriptors for 5 s each; before pacing, such a
// connection was read and closed within milliseconds, and one that hung
// up unread was closed by the waiter (EPOLLRDHUP).
//
// Measured: the node's sockets from the address in CLOSE_WAIT (the client
// closed, the node did not) 1 s after 200 connections each sent a request
// and closed, from the tenant's marked address and, for comparison, from
// an address not marked (another tenant's requests, within its rate).
func TestRedTeam4HungUpPacedConnectionsHeld(t *testing.T) {
	t.Skip("red team 4 finding 4: fails until fixed")
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	const rate = 10
	mallory := c.CreateTenant("mallory", api.Quotas{RequestsPerSecond: rate, Burst: rate})
	bob := c.CreateTenant("bob", api.Quotas{})
	c.Client.CloseIdleConnections()
	marked, other := net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 6)

	// The address marked: its tenant over its rate for a second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	var wg sync.WaitGroup
	for range 32 {
		client, tr := rt4Client(marked, true, 0)
		defer tr.CloseIdleConnections()
		wg.Go(func() {
			for ctx.Err() == nil {
				rt4Do(ctx, client, http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/mallory/services", mallory)
			}
		})
	}
	wg.Wait()
	cancel()
	time.Sleep(6 * time.Second) // the attack's own connections gone

	_, port, _ := net.SplitHostPort(c.Addr(1))
	fire := func(ip net.IP, tenant, token string) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		req := "GET /v1/tenants/" + tenant + "/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nConnection: close\r\n\r\n"
		for range 200 {
			conn, err := d.Dial("tcp", c.Addr(1))
			if err != nil {
				continue
			}
			conn.Write([]byte(req))
			conn.Close()
		}
	}
	fire(other, "bob", bob) // another tenant's, not refused: not marked
	fire(marked, "mallory", mallory)
	time.Sleep(time.Second)
	heldMarked, heldOther := rt4CloseWait(t, port, marked), rt4CloseWait(t, port, other)
	t.Logf("1 s after 200 connections each sent a request and hung up: the node holds %d of the marked address's, %d of the other's",
		heldMarked, heldOther)
	if heldMarked > 10 {
		t.Errorf("the node holds %d connections whose client hung up 1 s ago, from the paced address (%d from an address not paced)",
			heldMarked, heldOther)
	}
}

// rt4CloseWait counts the sockets of the listener on port whose peer is
// ip and has closed its end (CLOSE_WAIT), from /proc/net/tcp.
func rt4CloseWait(t *testing.T, port string, ip net.IP) int {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp")
	}
	defer f.Close()
	var p int
	fmt.Sscan(port, &p)
	ip4 := ip.To4()
	local := fmt.Sprintf("0100007F:%04X", p)
	remote := fmt.Sprintf("%02X%02X%02X%02X:", ip4[3], ip4[2], ip4[1], ip4[0])
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && fs[1] == local && strings.HasPrefix(fs[2], remote) && fs[3] == "08" {
			n++
		}
	}
	return n
}

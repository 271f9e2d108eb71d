package httpapi

import (
	"container/list"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
)

// ConnLimits bounds the API's connections (config.Config's MaxConnections,
// MaxUnauthenticated, MaxUnauthenticatedPerAddress, AuthTimeout). A
// connection over a limit is closed as it is accepted; one that has not
// made a request with a valid token within AuthTimeout is closed then.
// Authenticated connections are bounded by the total (and by the tenants'
// quotas on what they hold open: sessions, streams, watchers): 20,000 idle
// connections that never authenticated reached the process's descriptor
// limit, and every tenant's new requests timed out, /healthz too.
type ConnLimits struct {
	MaxTotal, MaxUnauthenticated, MaxUnauthenticatedPerAddress int
	AuthTimeout                                                time.Duration
}

// DefaultMaxConnections is three quarters of the process's file
// descriptor limit (at least 1024).
func DefaultMaxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 1024
	}
	return max(1024, int(min(lim.Cur, 1<<24))*3/4)
}

// connCounts is the listener's bookkeeping.
type connCounts struct {
	lim ConnLimits

	mu      sync.Mutex
	total   int
	unauth  int
	perAddr map[string]int // unauthenticated connections by source address
	waiting list.List      // unauthenticated connections, oldest first (*limitedConn)
}

// Limit wraps a listener (below TLS, so a refused connection costs no
// handshake) with the limits. Use ConnContext as the http.Server's, so the
// API learns which connection a request came on.
func Limit(ln net.Listener, lim ConnLimits) net.Listener {
	return &limitedListener{Listener: ln, c: &connCounts{lim: lim, perAddr: map[string]int{}}}
}

type limitedListener struct {
	net.Listener
	c *connCounts
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := addrKey(c.RemoteAddr())
		lc := &limitedConn{Conn: c, counts: l.c, host: host}
		ok, evict := l.c.admit(lc)
		if evict != nil {
			evict.Close()
		}
		if !ok {
			c.Close()
			continue
		}
		if d := l.c.lim.AuthTimeout; d > 0 {
			lc.timer = time.AfterFunc(d, lc.authTimeout)
		}
		return lc, nil
	}
}

// admit counts a new connection in, or refuses it. When the
// unauthenticated connections are all taken, the oldest of them makes room
// (evict, for the caller to close): a client authenticates with its first
// request, within milliseconds, so what waits longest is what never will —
// many addresses' idle connections cannot keep new clients out.
func (c *connCounts) admit(lc *limitedConn) (ok bool, evict *limitedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lim
	if (l.MaxTotal > 0 && c.total >= l.MaxTotal) ||
		(l.MaxUnauthenticatedPerAddress > 0 && c.perAddr[lc.host] >= l.MaxUnauthenticatedPerAddress) {
		return false, nil
	}
	if l.MaxUnauthenticated > 0 && c.unauth >= l.MaxUnauthenticated {
		front := c.waiting.Front()
		if front == nil {
			return false, nil
		}
		evict = front.Value.(*limitedConn)
		c.closeLocked(evict) // counted out now; the caller closes it
	}
	c.total++
	c.unauth++
	c.perAddr[lc.host]++
	lc.elem = c.waiting.PushBack(lc)
	return true, evict
}

// unauthDoneLocked takes a connection out of the unauthenticated counts.
func (c *connCounts) unauthDoneLocked(lc *limitedConn) {
	c.unauth--
	if c.perAddr[lc.host]--; c.perAddr[lc.host] <= 0 {
		delete(c.perAddr, lc.host)
	}
	if lc.elem != nil {
		c.waiting.Remove(lc.elem)
		lc.elem = nil
	}
}

// closeLocked counts a connection out (once).
func (c *connCounts) closeLocked(lc *limitedConn) {
	if lc.closed {
		return
	}
	lc.closed = true
	c.total--
	if !lc.authed {
		c.unauthDoneLocked(lc)
	}
	if lc.timer != nil {
		lc.timer.Stop()
	}
}

// limitedConn is a connection the limits count.
type limitedConn struct {
	net.Conn
	counts *connCounts
	host   string
	timer  *time.Timer

	// guarded by counts.mu
	authed, closed bool
	elem           *list.Element // in counts.waiting while unauthenticated
}

// authenticated marks the connection as having made a request with a
// valid token: it no longer counts as unauthenticated, and is not closed
// for it.
func (c *limitedConn) authenticated() {
	c.counts.mu.Lock()
	defer c.counts.mu.Unlock()
	if c.authed || c.closed {
		return
	}
	c.counts.unauthDoneLocked(c)
	c.authed = true
	if c.timer != nil {
		c.timer.Stop()
	}
}

func (c *limitedConn) authTimeout() {
	c.counts.mu.Lock()
	authed := c.authed
	c.counts.mu.Unlock()
	if !authed {
		c.Close()
	}
}

func (c *limitedConn) Close() error {
	c.counts.mu.Lock()
	c.counts.closeLocked(c)
	c.counts.mu.Unlock()
	return c.Conn.Close()
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext for a listener made by
// Limit: it lets the API mark a connection authenticated.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// markAuthenticated marks the request's connection authenticated.
func markAuthenticated(ctx context.Context) {
	if lc, ok := ctx.Value(connKey{}).(*limitedConn); ok {
		lc.authenticated()
	}
}

// addrKey is a remote address's host (an IPv6 address by its /64).
func addrKey(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return host
}

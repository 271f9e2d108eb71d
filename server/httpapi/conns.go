package httpapi

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
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
	// TLS, when set, is the listener's to serve: connections are handed
	// on as TLS connections over the limited ones, so a refused or idle
	// connection costs no handshake, and a parked one goes back to the
	// server as it was (conns_park.go). nil: plain TCP.
	TLS *tls.Config
	// MaxPerTenant caps the connections one tenant holds (those whose
	// first authenticated request was its): 0 is nine tenths of MaxTotal,
	// so one tenant can never take every connection of a node.
	MaxPerTenant int
}

// DefaultMaxConnections is three quarters of the process's file
// descriptor limit: the rest is for the Raft transport, the LogDB and the
// peers, whatever the limit (at least 64 connections).
func DefaultMaxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 768 // three quarters of the usual 1024
	}
	return defaultMaxConnections(lim.Cur)
}

func defaultMaxConnections(limit uint64) int {
	return max(64, int(min(limit, 1<<24))*3/4)
}

// connCounts is the listener's bookkeeping.
type connCounts struct {
	lim     ConnLimits
	w       *waiter        // nil: none
	hand    func(net.Conn) // gives a parked connection back after its answer (rest)
	parking parking        // refusals waiting for their turn (conns_park.go)
	pacing  pacing         // new connections of tenants refused for their rate (conns_pace.go)

	mu        sync.Mutex
	total     int
	unauth    int
	perAddr   map[string]*list.List     // unauthenticated connections by source address, oldest first
	perTenant map[string]int            // authenticated connections by tenant
	byAddr    map[string]map[string]int // authenticated connections by source address, then identity (a tenant, "" the admin tokens)
}

// Limit wraps a listener with the limits, below TLS (ConnLimits.TLS, or
// a TLS listener over it), so a refused connection costs no handshake.
// Use ConnContext as the http.Server's, so the API learns which
// connection a request came on.
//
// On Linux a connection admitted is handed on (Accept) only once it has
// bytes to read (waiter): until then it has no goroutine and no buffers.
// It counts in the limits from its accept all the same.
func Limit(ln net.Listener, lim ConnLimits) net.Listener {
	if lim.MaxPerTenant == 0 && lim.MaxTotal > 0 {
		lim.MaxPerTenant = max(1, lim.MaxTotal*9/10)
	}
	l := &limitedListener{Listener: ln, c: &connCounts{lim: lim, perAddr: map[string]*list.List{}, perTenant: map[string]int{},
		byAddr: map[string]map[string]int{},
		parking: parking{byConn: map[*limitedConn]*parked{}, next: map[string]time.Time{}, count: map[string]int{},
			waiting: map[string]int{}},
		pacing: pacing{marks: map[string]paceMark{}, next: map[string]time.Time{}}},
		ready: make(chan net.Conn, 64), closing: make(chan struct{}), ended: make(chan struct{})}
	l.c.hand = l.rest
	if w, err := newWaiter(l.handOn); err == nil {
		l.w = w
		l.c.w = w
	}
	go l.acceptLoop()
	return l
}

type limitedListener struct {
	net.Listener
	c *connCounts
	w *waiter // nil: connections are handed on as they are accepted

	ready   chan net.Conn // admitted, with bytes to read
	closing chan struct{} // Close was called
	ended   chan struct{} // acceptLoop returned, err is set
	err     error
	once    sync.Once
}

// acceptLoop accepts, admits and hands on (or holds) connections until
// the listener fails for good.
func (l *limitedListener) acceptLoop() {
	defer close(l.ended)
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOBUFS) ||
				errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) ||
				errors.Is(err, syscall.EPROTO) || errors.Is(err, syscall.EPERM) {
				// As net/http does on a temporary error: wait, up to a second.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-l.closing:
				}
			}
			l.err = err
			return
		}
		backoff = 0
		host := addrKey(c.RemoteAddr())
		lc := &limitedConn{Conn: c, counts: l.c, host: host, accepted: time.Now()}
		ok, evict := l.c.admit(lc)
		if evict != nil {
			evict.Close()
		}
		if !ok {
			c.Close()
			continue
		}
		if d := l.c.lim.AuthTimeout; d > 0 {
			lc.setTimer(time.AfterFunc(d, lc.authTimeout))
		}
		if l.w == nil || !l.w.add(lc) {
			l.handOn(lc)
			continue
		}
		if d := l.c.lim.AuthTimeout; d == 0 || d > silentTimeout {
			w := l.w
			time.AfterFunc(silentTimeout, func() {
				if !lc.rested.Load() && w.take(lc) { // a rested one has its own (rest)
					lc.Close()
				}
			})
		}
	}
}

// silentTimeout closes a held connection that has sent nothing, when the
// auth timeout does not first: net/http's ReadHeaderTimeout (server.Server's,
// 10 s) did so when it read from the connection as it was accepted.
var silentTimeout = 10 * time.Second

// handOn gives an admitted connection to Accept (TLS over it, with
// ConnLimits.TLS), in its turn when its source address is paced
// (conns_pace.go); a connection back from a parked answer (rest), at once
// and as it is.
func (l *limitedListener) handOn(lc *limitedConn) {
	if lc.rested.Load() {
		if t := lc.restTimer.Swap(nil); t != nil {
			t.Stop()
		}
		l.handBack(lc)
		return
	}
	now := time.Now()
	deadline := lc.accepted.Add(silentTimeout)
	if d := l.c.lim.AuthTimeout; d > 0 {
		deadline = lc.accepted.Add(d)
	}
	at, paced := l.c.pacing.turn(lc.host, now, deadline)
	switch {
	case paced && at.IsZero():
		// Its turn would come after its auth timeout: it waits for that
		// (never read), then is closed. Closed at once, its client would
		// dial again at once, as fast as the node can close them.
		time.AfterFunc(deadline.Sub(now), func() { lc.Close() })
	case !at.After(now):
		l.handOnNow(lc)
	default:
		time.AfterFunc(at.Sub(now), func() {
			if !lc.isClosed() {
				l.handOnNow(lc)
			}
		})
	}
}

// handOnNow is handOn, at once.
func (l *limitedListener) handOnNow(lc *limitedConn) {
	if cfg := l.c.lim.TLS; cfg != nil {
		l.handBack(tls.Server(lc, cfg))
		return
	}
	l.handBack(lc)
}

// rest gives back a parked connection once its answer is written: held
// by the waiter until its next request's bytes arrive, with no goroutine
// and no buffer, as a new connection is (net/http's idle connection holds
// both: ≈ 15 KB each, a few thousand of them under attack pattern 5), and
// closed if none come within restIdle (the server's IdleTimeout). Handed
// to Accept at once when it cannot be held: TLS over it, bytes of its next
// request already read, no waiter.
func (l *limitedListener) rest(c net.Conn) {
	lc, ok := c.(*limitedConn)
	if !ok || l.w == nil || len(lc.ahead) > 0 {
		l.handBack(c)
		return
	}
	lc.rested.Store(true)
	if !l.w.add(lc) {
		l.handBack(c)
		return
	}
	w := l.w
	t := time.AfterFunc(restIdle, func() {
		if w.take(lc) {
			lc.Close()
		}
	})
	if old := lc.restTimer.Swap(t); old != nil {
		old.Stop()
	}
}

// restIdle closes a rested connection that sent nothing: the API server's
// IdleTimeout (server.Server's) did so while net/http held it.
var restIdle = 2 * time.Minute

// handBack gives a connection to Accept as it is; once the listener is
// closing, it closes it (a paced or parked connection's turn may come
// after Close drained ready: nothing would Accept it).
func (l *limitedListener) handBack(c net.Conn) {
	select {
	case <-l.closing:
		c.Close()
		return
	default:
	}
	select {
	case l.ready <- c:
		select {
		case <-l.closing: // closed meanwhile, perhaps drained before c came
			l.drain()
		default:
		}
	case <-l.closing:
		c.Close()
	}
}

// drain closes the connections in ready (the listener is closing).
func (l *limitedListener) drain() {
	for {
		select {
		case c := <-l.ready:
			c.Close()
		default:
			return
		}
	}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closing:
		return nil, net.ErrClosed
	case <-l.ended:
		select {
		case c := <-l.ready:
			return c, nil
		default:
		}
		return nil, l.err
	}
}

// Close closes the listener and the connections it holds that were
// never handed on.
func (l *limitedListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closing)
		err = l.Listener.Close()
		<-l.ended
		if l.w != nil {
			l.w.close()
		}
		l.c.parking.close()
		l.drain()
	})
	return err
}

// admit counts a new connection in, or refuses it. When the
// unauthenticated connections are all taken, the source address holding
// the most of them gives up its oldest (evict, for the caller to close),
// unless the new connection's own address holds as many: a client that
// has one connection waiting (a slow TLS handshake) keeps it, and idle or
// churned connections from a few addresses cannot keep new clients out.
func (c *connCounts) admit(lc *limitedConn) (ok bool, evict *limitedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lim
	mine := c.perAddr[lc.host]
	if (l.MaxTotal > 0 && c.total >= l.MaxTotal) ||
		(l.MaxUnauthenticatedPerAddress > 0 && mine != nil && mine.Len() >= l.MaxUnauthenticatedPerAddress) {
		return false, nil
	}
	if l.MaxUnauthenticated > 0 && c.unauth >= l.MaxUnauthenticated {
		var heaviest *list.List
		for _, q := range c.perAddr {
			if heaviest == nil || q.Len() > heaviest.Len() {
				heaviest = q
			}
		}
		if heaviest == nil || (mine != nil && mine.Len() >= heaviest.Len()) {
			return false, nil
		}
		evict = heaviest.Front().Value.(*limitedConn)
		c.closeLocked(evict) // counted out now; the caller closes it
	}
	c.total++
	c.unauth++
	if mine = c.perAddr[lc.host]; mine == nil {
		mine = list.New()
		c.perAddr[lc.host] = mine
	}
	lc.elem = mine.PushBack(lc)
	return true, evict
}

// unauthDoneLocked takes a connection out of the unauthenticated counts.
func (c *connCounts) unauthDoneLocked(lc *limitedConn) {
	c.unauth--
	if q := c.perAddr[lc.host]; q != nil && lc.elem != nil {
		q.Remove(lc.elem)
		if q.Len() == 0 {
			delete(c.perAddr, lc.host)
		}
	}
	lc.elem = nil
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
	} else if ids := c.byAddr[lc.host]; ids != nil {
		if ids[lc.tenant]--; ids[lc.tenant] <= 0 {
			delete(ids, lc.tenant)
		}
		if len(ids) == 0 {
			delete(c.byAddr, lc.host)
		}
	}
	if lc.tenant != "" {
		if c.perTenant[lc.tenant]--; c.perTenant[lc.tenant] <= 0 {
			delete(c.perTenant, lc.tenant)
		}
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

	accepted time.Time

	noReads, halfClosed, lingering atomic.Bool // endReads, CloseWrite, Close
	rested                         atomic.Bool // came back from a parked answer (rest): never paced
	restTimer                      atomic.Pointer[time.Timer]

	waitID uint32 // in its waiter's held connections (guarded by the waiter's mu); 0: not
	ahead  []byte // read before it was parked (a pipelined request's start): Read returns it first

	// guarded by counts.mu
	authed, closed bool
	elem           *list.Element // in its address's list while unauthenticated
	tenant         string        // whose it is, once authenticated ("" for the admin tokens)
}

// authenticated marks the connection as having made a request with a
// valid token (tenant's; "" for an admin token): it no longer counts as
// unauthenticated, and is not closed for it. It reports false when the
// tenant holds all the connections it may: the request is refused and the
// connection closed.
func (c *limitedConn) authenticated(tenant string) bool {
	c.counts.mu.Lock()
	defer c.counts.mu.Unlock()
	if c.closed {
		return true
	}
	if c.authed {
		return true // counted once, for the tenant it first authenticated as
	}
	if tenant != "" {
		if max := c.counts.lim.MaxPerTenant; max > 0 && c.counts.perTenant[tenant] >= max {
			return false
		}
		c.counts.perTenant[tenant]++
		c.tenant = tenant
	}
	c.counts.unauthDoneLocked(c)
	c.authed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	ids := c.counts.byAddr[c.host]
	if ids == nil {
		ids = map[string]int{}
		c.counts.byAddr[c.host] = ids
	}
	ids[tenant]++
	c.counts.pacing.seen(c.host, tenant)
	return true
}

// setTimer sets the connection's auth timer (stopped when it is closed
// or authenticated).
func (c *limitedConn) setTimer(t *time.Timer) {
	c.counts.mu.Lock()
	defer c.counts.mu.Unlock()
	if c.closed {
		t.Stop()
		return
	}
	c.timer = t
}

// isClosed reports whether the connection was closed (or counted out).
func (c *limitedConn) isClosed() bool {
	c.counts.mu.Lock()
	defer c.counts.mu.Unlock()
	return c.closed
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
	if c.noReads.Load() && !c.halfClosed.Load() && c.lingering.CompareAndSwap(false, true) {
		if cw, ok := c.Conn.(closeWriter); ok && cw.CloseWrite() == nil {
			// The client reads the answer, then our end (FIN), while
			// the rest of its body may still be coming: closing at once
			// would answer that with a reset, which some clients' stacks
			// take as leave to drop the answer unread.
			time.AfterFunc(lingerClose, func() { c.closeNow() })
			return nil
		}
	}
	return c.closeNow()
}

func (c *limitedConn) closeNow() error {
	if t := c.restTimer.Swap(nil); t != nil {
		t.Stop() // it would keep the connection reachable for restIdle
	}
	if w := c.counts.w; w != nil {
		w.forget(c)
	}
	c.counts.parking.forget(c)
	c.counts.mu.Lock()
	c.counts.closeLocked(c)
	c.counts.mu.Unlock()
	return c.Conn.Close()
}

// closeWriter is a connection that can be half-closed (*net.TCPConn).
type closeWriter interface{ CloseWrite() error }

// lingerClose is how long a connection whose reads were ended (endReads)
// stays half-closed before it is closed: net/http's own delay for a body
// it left unread (rstAvoidanceDelay). The connection counts until then.
const lingerClose = 500 * time.Millisecond

// errReadsEnded is what a connection whose reads were ended reads.
var errReadsEnded = errors.New("httpapi: the connection ends after its answer; nothing more is read from it")

// endReads ends the reading of the connection: its answer is the last,
// and what is left of a refused body is not read (net/http would read up
// to 256 KiB of it before closing). Close then half-closes it first.
func (c *limitedConn) endReads() { c.noReads.Store(true) }

func (c *limitedConn) Read(b []byte) (int, error) {
	if c.noReads.Load() {
		return 0, errReadsEnded
	}
	if len(c.ahead) > 0 {
		n := copy(b, c.ahead)
		if c.ahead = c.ahead[n:]; len(c.ahead) == 0 {
			c.ahead = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the connection (net/http does, before it closes
// one whose body it did not read to the end).
func (c *limitedConn) CloseWrite() error {
	cw, ok := c.Conn.(closeWriter)
	if !ok {
		return errors.ErrUnsupported
	}
	c.halfClosed.Store(true)
	return cw.CloseWrite()
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

// markAuthenticated marks the request's connection authenticated by
// tenant ("" for an admin token); false means the tenant holds all the
// connections it may.
func markAuthenticated(ctx context.Context, tenant string) bool {
	if lc, ok := ctx.Value(connKey{}).(*limitedConn); ok {
		return lc.authenticated(tenant)
	}
	return true
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

package httpapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pacing: the new connections of a tenant refused for its rate.
//
// A request refused 429 for its tenant (its request or write rate, its
// connection cap: tarpitOn) marks its source address as that tenant's for
// PaceMark. A new connection from a marked address — whose tenant is not
// known until its first request has been read, and is most likely the
// marking tenant's — is handed to net/http at that tenant's rate on this
// node (its requests_per_second, a second's worth at once), waiting for
// its turn in the listener with no goroutine and no buffer. One whose turn
// would come after its auth timeout is never read, and closed at that
// timeout (at once, its client would dial again at once).
//
// Why: a tenant over its rate that opens a connection per request, or
// whose connections are ended and dialed again (attack pattern 5: 6,000
// connections, reconnecting at once), made the node set up, read,
// authenticate and refuse about a thousand new connections a second, each
// a goroutine and its buffers in the server's own process, where the
// other tenants' requests wait in the same run queue (nice does not apply
// in-process): their p99 9.6× against 2.1× for the same CPU burned outside
// Rafting. Paced, that tenant's new connections cost the node what its
// rate allows, whatever it opens; the rest wait in the kernel.
//
// Never marked: an address from which a connection is open as another
// identity (another tenant, an admin token) — a NAT's or a proxy's, the
// cluster's own nodes' (they forward every tenant's keepalives and proxied
// requests) — and a mark goes when such a connection authenticates; nor
// by a refusal of a request a node forwarded or proxied (its source is
// that node). A client behind a marked address with no connection open
// yet waits with the tenant's connections, and fails when the tenant's
// turns run past its auth timeout: docs/DECISIONS.md. Not covered: a
// flood with no token (the per-address bucket's, as before pacing).

// PaceMark is how long a refusal marks its source address.
const PaceMark = 10 * time.Second

// maxPaceMarks bounds the marked addresses (a client mints addresses):
// past it, once the marks that ran out are gone, any mark makes room.
const maxPaceMarks = maxAddressBuckets

// pacing is a listener's marked addresses and its tenants' turns.
type pacing struct {
	mu    sync.Mutex
	marks map[string]paceMark  // by source address
	next  map[string]time.Time // by tenant: when its next paced connection may go on
	swept time.Time            // the last sweepLocked
	held  atomic.Int64         // len(marks), read without mu
}

type paceMark struct {
	tenant string
	rate   float64 // connections a second
	until  time.Time
}

// mark marks host as tenant's, whose connections go on at rate a second.
func (p *pacing) mark(host, tenant string, rate float64, now time.Time) {
	if rate <= 0 {
		return // unlimited: nothing to pace at
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.count()
	if _, ok := p.marks[host]; !ok && len(p.marks) >= maxPaceMarks {
		if now.Sub(p.swept) >= time.Second {
			p.sweepLocked(now)
		}
		for h := range p.marks { // all live: one goes, whichever the map gives
			if len(p.marks) < maxPaceMarks {
				break
			}
			delete(p.marks, h)
		}
	}
	p.marks[host] = paceMark{tenant: tenant, rate: rate, until: now.Add(PaceMark)}
}

// turn is when a new connection from host may go on: now, when host is
// not marked (paced false); else its tenant's next turn, a second's worth
// of them at once. A turn after deadline is not taken: at is zero, and
// the caller closes the connection.
func (p *pacing) turn(host string, now, deadline time.Time) (at time.Time, paced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.marks[host]
	if !ok {
		return now, false
	}
	if now.After(m.until) {
		delete(p.marks, host)
		p.count()
		return now, false
	}
	gap := time.Duration(float64(time.Second) / m.rate)
	at = now.Add(-time.Second) // a second's worth banked at most
	if next := p.next[m.tenant]; next.After(at) {
		at = next
	}
	if at.After(deadline) {
		return time.Time{}, true
	}
	p.next[m.tenant] = at.Add(gap)
	if len(p.next) > maxPaceMarks && now.Sub(p.swept) >= time.Second {
		p.sweepLocked(now)
		p.count()
	}
	if at.Before(now) {
		at = now
	}
	return at, true
}

// sweepLocked drops the marks that ran out, and the tenants' turns that
// bank a full second.
func (p *pacing) sweepLocked(now time.Time) {
	p.swept = now
	for h, m := range p.marks {
		if now.After(m.until) {
			delete(p.marks, h)
		}
	}
	for t, next := range p.next {
		if next.Before(now.Add(-time.Second)) {
			delete(p.next, t)
		}
	}
}

// seen unmarks host when a connection from it authenticates as another
// identity than the mark's (a tenant, or "" for the admin tokens): the
// address is shared.
func (p *pacing) seen(host, identity string) {
	if p.held.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.marks[host]; ok && m.tenant != identity {
		delete(p.marks, host)
		p.count()
	}
}

// count publishes len(marks) (mu held).
func (p *pacing) count() { p.held.Store(int64(len(p.marks))) }

// markPaced marks the source address of the connection ctx is of as
// tenant's, paced at rate (tarpitOn, for a refusal of tenant's), unless a
// connection from that address is open as another identity's: a shared
// address (a NAT, a proxy) is never paced.
func markPaced(ctx context.Context, tenant string, rate float64, now time.Time) {
	lc, ok := ctx.Value(connKey{}).(*limitedConn)
	if !ok {
		return
	}
	c := lc.counts
	c.mu.Lock()
	shared := false
	for id := range c.byAddr[lc.host] {
		if id != tenant {
			shared = true
			break
		}
	}
	c.mu.Unlock()
	if !shared {
		c.pacing.mark(lc.host, tenant, rate, now)
	}
}

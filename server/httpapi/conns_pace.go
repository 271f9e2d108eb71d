package httpapi

import (
	"context"
	"maps"
	"net"
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
// Never marked: the addresses of the cluster's own nodes (forwarded
// keepalives and proxied requests come from them, for every tenant). A
// client behind the same address as a refused tenant (a NAT) has its new
// connections paced with that tenant's, as it shares its per-address
// bucket when it has no token: docs/DECISIONS.md.

// PaceMark is how long a refusal marks its source address.
const PaceMark = 10 * time.Second

// maxPaceMarks bounds the marked addresses (a client mints addresses):
// past it, once the marks that ran out are gone, any mark makes room.
const maxPaceMarks = maxAddressBuckets

// pacing is a listener's marked addresses and its tenants' turns.
type pacing struct {
	mu    sync.Mutex
	marks map[string]paceMark   // by source address
	next  map[string]time.Time  // by tenant: when its next paced connection may go on
	swept time.Time             // the last sweepLocked
	peers atomic.Pointer[peers] // never marked
}

type paceMark struct {
	tenant string
	rate   float64 // connections a second
	until  time.Time
}

// peers is the set of the cluster's nodes' hosts, as source addresses
// (addrKey) are written.
type peers struct {
	hosts map[string]bool
	at    time.Time
}

// mark marks host as tenant's, whose connections go on at rate a second.
func (p *pacing) mark(host, tenant string, rate float64, now time.Time) {
	if rate <= 0 {
		return // unlimited: nothing to pace at
	}
	if ps := p.peers.Load(); ps != nil && ps.hosts[host] {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
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

// markPaced marks the source address of the connection ctx is of as
// tenant's, paced at rate (tarpitOn, for a refusal of tenant's).
func markPaced(ctx context.Context, tenant string, rate float64, now time.Time) {
	if lc, ok := ctx.Value(connKey{}).(*limitedConn); ok {
		lc.counts.pacing.mark(lc.host, tenant, rate, now)
	}
}

// setPeers gives the listener of ctx's connection the cluster's nodes'
// hosts, never marked, at most once every peersTTL: addresses at once, as
// addrKey writes them, host names as they resolve.
func setPeers(ctx context.Context, now time.Time, addrs func() []string) {
	lc, ok := ctx.Value(connKey{}).(*limitedConn)
	if !ok {
		return
	}
	p := &lc.counts.pacing
	old := p.peers.Load()
	if old != nil && now.Sub(old.at) < peersTTL {
		return
	}
	literal := map[string]bool{}
	var names []string
	for _, a := range addrs() {
		host, _, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			literal[addrKey(&net.TCPAddr{IP: ip})] = true
		} else {
			names = append(names, host)
		}
	}
	hosts := maps.Clone(literal)
	if old != nil && len(names) > 0 { // the names as resolved before, until they resolve again
		maps.Copy(hosts, old.hosts)
	}
	fresh := &peers{hosts: hosts, at: now}
	if !p.peers.CompareAndSwap(old, fresh) || len(names) == 0 {
		return // another caller refreshes
	}
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resolved := literal
		for _, name := range names {
			ips, _ := net.DefaultResolver.LookupIPAddr(rctx, name)
			for _, ip := range ips {
				resolved[addrKey(&net.TCPAddr{IP: ip.IP})] = true
			}
		}
		p.peers.CompareAndSwap(fresh, &peers{hosts: resolved, at: now})
	}()
}

// peersTTL is how long the cluster's nodes' hosts are taken as resolved.
const peersTTL = 10 * time.Second

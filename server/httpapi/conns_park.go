package httpapi

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Parking: a refusal that finds no hold free (tarpit: its tenant, or
// unauthenticated address, holds its share of the hold pool) on an
// HTTP/1 connection is not answered at once, nor is its connection ended:
// the connection is taken from net/http (hijacked) and parked — no
// goroutine, no buffer, nothing read — until its key's turn, then the
// refusal is written and the connection handed back to the server for
// its next request.
//
// Ending it was what the holds did before: a client that reconnects at
// once (attack pattern 5: 6,000 connections over a tenant's rate) then
// made the node accept, set up, read and end 665 connections a second
// on top of 1,558 held refusals, and moved another tenant's p99 23×
// against 4.5× for the same CPU burned outside Rafting. Parked, a key's
// refusals past its holds are answered one per ParkGap a node, however
// many connections it has: the connections wait their turn in the
// kernel's buffers, and each costs its descriptor.
//
// An HTTP/2 connection is not parked: its other streams go on. A refused
// stream past the holds waits in its handler for its key's turn instead,
// on the same schedule (waitTurn), so that a key's refusals are answered
// at the same rate over HTTP/1 and HTTP/2 together. Resetting the stream,
// as before, let one connection's client open the next at once: 21,000
// refusals a second for a tenant limited to 10 requests a second. A
// waiting stream costs its goroutine and its stream's buffers: at most
// MaxWaitingPerKey of a key's wait on a node, MaxWaiting in all; past
// them the refusal ends its connection (the client pays a new handshake
// for its next, as it did over HTTP/1 before parking).
//
// Not parked, and ended as before: requests with a body left to read
// beyond leftUnread. Over TLS a parked connection goes back only when the
// listener serves TLS (ConnLimits.TLS); otherwise its answer ends it.

// ParkGap is the time between two answers to one key's parked refusals
// on a node: at most 1/ParkGap of them a second (250), on top of the
// holds' MaxHeldPerKey/RateLimitHold (256). A parked refusal waits at
// least RateLimitHold.
const ParkGap = 4 * time.Millisecond

// MaxWaitingPerKey and MaxWaiting bound the HTTP/2 refusals that wait
// for their turn on a node (waitTurn), per key and in all: 256 of a key's
// wait about a second at most (RateLimitHold, then one per ParkGap).
const (
	MaxWaitingPerKey = 256
	MaxWaiting       = 4096
)

// parked is a connection waiting for its refusal to be answered.
type parked struct {
	lc     *limitedConn
	conn   net.Conn // what net/http served: lc, or TLS over it
	key    string
	answer []byte // the whole HTTP/1 response
	ends   bool   // the answer ends the connection
	timer  *time.Timer
}

// parking is the listener's parked connections.
type parking struct {
	mu     sync.Mutex
	byConn map[*limitedConn]*parked
	next   map[string]time.Time // per key: the earliest its next answer may go
	count  map[string]int       // per key: parked or waiting now (next is kept while any)
	closed bool

	waiting  map[string]int // per key: HTTP/2 refusals waiting now (waitTurn)
	nWaiting int
}

// park parks the connection of r, a request refused with refusal (a 429)
// that found no hold free; false when it cannot (see above), and the
// caller ends the connection. After a true, the handler must not write:
// the connection is no longer net/http's (tarpit panics with
// http.ErrAbortHandler, which net/http lets go without a word).
func (s *Server) park(w http.ResponseWriter, r *http.Request, key string, refusal error) bool {
	lc, ok := r.Context().Value(connKey{}).(*limitedConn)
	if !ok || lc.counts.hand == nil || r.ProtoMajor != 1 || len(r.TransferEncoding) > 0 ||
		r.ContentLength < 0 || r.ContentLength > leftUnread || lc.noReads.Load() {
		return false
	}
	if r.ContentLength > 0 {
		if n, err := io.Copy(io.Discard, io.LimitReader(r.Body, leftUnread+1)); err != nil || n != r.ContentLength {
			return false
		}
	}
	ends := r.Close || r.ProtoMinor == 0
	answer := encodeAnswer(w.Header(), refusal, ends)
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	var ahead []byte // a pipelined request's bytes net/http had read
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		ahead = bytes.Clone(b)
	}
	switch tc, isTLS := conn.(*tls.Conn); {
	case conn == net.Conn(lc):
		lc.ahead = ahead
	case isTLS && lc.counts.lim.TLS != nil && tc.NetConn() == net.Conn(lc) && len(ahead) == 0:
		// Handed back as it is: the listener serves TLS itself
		// (ConnLimits.TLS). Under another TLS listener it would be
		// wrapped in TLS again.
	default: // bytes read above TLS, or a wrapper not ours: answered, then closed
		ends = true
		answer = encodeAnswer(w.Header(), refusal, true)
	}
	lc.counts.parking.add(&parked{lc: lc, conn: conn, key: key, answer: answer, ends: ends}, lc.counts.hand)
	return true
}

// waitTurn holds r, an HTTP/2 request refused past its key's holds, in
// its handler until the key's turn (as a parked HTTP/1 connection waits
// for it), or until the client gives up on it; the caller then answers.
// When it cannot — not one of a Limit listener's connections, or
// MaxWaitingPerKey or MaxWaiting reached — it ends r's connection and
// reports false: the caller ends the stream.
func (s *Server) waitTurn(r *http.Request, key string) bool {
	lc, ok := r.Context().Value(connKey{}).(*limitedConn)
	if !ok || r.ProtoMajor != 2 {
		return false
	}
	turn, ok := lc.counts.parking.wait(key, time.Now())
	if !ok {
		lc.Close()
		return false
	}
	select {
	case <-turn:
	case <-r.Context().Done():
		// Its turn stays taken: a client that resets its waiting
		// streams gets no more of them answered than one that waits.
	}
	return true
}

// wait takes key's next turn for an HTTP/2 refusal: the channel is
// closed at that turn, which stays counted until then. False when the
// key, or the node, has as many waiting as it may.
func (pk *parking) wait(key string, now time.Time) (<-chan struct{}, bool) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed || pk.waiting[key] >= MaxWaitingPerKey || pk.nWaiting >= MaxWaiting {
		return nil, false
	}
	at := pk.turnLocked(key, now)
	pk.waiting[key]++
	pk.nWaiting++
	turn := make(chan struct{})
	time.AfterFunc(at.Sub(now), func() {
		pk.mu.Lock()
		if pk.waiting[key]--; pk.waiting[key] <= 0 {
			delete(pk.waiting, key)
		}
		pk.nWaiting--
		pk.doneLocked(key)
		pk.mu.Unlock()
		close(turn)
	})
	return turn, true
}

// turnLocked takes key's next turn (at least RateLimitHold from now,
// ParkGap after the key's last) and counts it until doneLocked.
func (pk *parking) turnLocked(key string, now time.Time) time.Time {
	at := now.Add(RateLimitHold)
	if next := pk.next[key]; next.After(at) {
		at = next
	}
	pk.next[key] = at.Add(ParkGap)
	pk.count[key]++
	return at
}

// doneLocked uncounts a turn of key's.
func (pk *parking) doneLocked(key string) {
	if pk.count[key]--; pk.count[key] <= 0 {
		delete(pk.count, key)
		delete(pk.next, key)
	}
}

// add parks p until its key's turn.
func (pk *parking) add(p *parked, hand func(net.Conn)) {
	now := time.Now()
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		p.conn.Close()
		return
	}
	at := pk.turnLocked(p.key, now)
	pk.byConn[p.lc] = p
	p.timer = time.AfterFunc(at.Sub(now), func() { pk.release(p, hand) })
}

// release answers a parked refusal and hands its connection back (or
// closes it, when the answer ends it or cannot be written).
func (pk *parking) release(p *parked, hand func(net.Conn)) {
	pk.mu.Lock()
	if pk.byConn[p.lc] != p {
		pk.mu.Unlock()
		return // closed meanwhile
	}
	pk.forgetLocked(p)
	pk.mu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(p.answer); err != nil || p.ends {
		p.conn.Close()
		return
	}
	_ = p.conn.SetDeadline(time.Time{})
	hand(p.conn)
}

func (pk *parking) forgetLocked(p *parked) {
	delete(pk.byConn, p.lc)
	pk.doneLocked(p.key)
}

// forget takes lc out of the parked connections (it is being closed).
func (pk *parking) forget(lc *limitedConn) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if p := pk.byConn[lc]; p != nil {
		p.timer.Stop()
		pk.forgetLocked(p)
	}
}

// close closes every parked connection (the listener is closing).
func (pk *parking) close() {
	pk.mu.Lock()
	pk.closed = true
	all := make([]*parked, 0, len(pk.byConn))
	for _, p := range pk.byConn {
		p.timer.Stop()
		all = append(all, p)
	}
	pk.mu.Unlock()
	for _, p := range all {
		p.conn.Close()
	}
}

// encodeAnswer is the HTTP/1.1 response a refusal gets: the headers set
// so far (the request's ID), then writeError's. Written by hand, not by
// http.Response.Write (which sorts and copies the headers): a parked
// refusal's answer is encoded at up to 1/ParkGap a second per key.
func encodeAnswer(h http.Header, refusal error, ends bool) []byte {
	rec := &recorder{h: h.Clone(), log: func(string) {}}
	writeError(rec, refusal)
	if ends {
		rec.h.Set("Connection", "close")
	}
	rec.h.Del("Content-Length")
	b := make([]byte, 0, 256+len(rec.body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(rec.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(rec.status)...)
	b = append(b, "\r\n"...)
	for k, vs := range rec.h {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(k, "\r\n: ") {
				continue // never ours; never sent
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(rec.body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, rec.body...)
}

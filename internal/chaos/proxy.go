package chaos

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rule is what a link does, in one direction, to what crosses it.
type Rule struct {
	// Cut: nothing crosses (a partition). A byte stream is held, as TCP
	// holds what it cannot deliver, and flows again when the cut heals;
	// a Raft message is dropped.
	Cut bool
	// Loss is the probability that a Raft message is dropped, or that a
	// chunk of a byte stream is held back one retransmission timeout (what
	// a lost packet costs a TCP connection).
	Loss float64
	// Delay is added to everything that crosses.
	Delay time.Duration
}

// rto is the retransmission timeout a lost packet costs (Linux's minimum).
const rto = 200 * time.Millisecond

// Proxy is a TCP proxy in front of one address, with a Rule per
// direction: Up (from whoever dials the proxy to the target) and Down.
// Dialing it always succeeds while it runs, as a middlebox answers; a cut
// then holds the bytes.
type Proxy struct {
	ln   net.Listener
	addr string

	mu     sync.Mutex
	target string
	up     Rule
	down   Rule
	conns  map[net.Conn]struct{}
	rng    *rand.Rand
	closed bool
	// changed is closed, and replaced, when a rule changes or the proxy
	// closes: what a cut holds waits on it.
	changed chan struct{}
	wg      sync.WaitGroup
}

// NewProxy listens on a free loopback port; target may be set later.
func NewProxy(target string, seed uint64) (*Proxy, error) {
	p, err := newProxy(target, seed, 0x70726f7879)
	if err != nil {
		return nil, err
	}
	p.serve(
		func(in, out net.Conn) { p.pump(in, out, true) },
		func(in, out net.Conn) { p.pump(out, in, false) })
	return p, nil
}

// newProxy listens on a free loopback port; serve starts it. stream
// tells the random streams of proxies with the same seed apart.
func newProxy(target string, seed, stream uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Proxy{ln: ln, addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{},
		rng: rand.New(rand.NewPCG(seed, stream)), changed: make(chan struct{})}, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.addr }

// SetTarget sets where the proxy forwards new connections.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Set sets the rules of both directions.
func (p *Proxy) Set(up, down Rule) {
	p.mu.Lock()
	p.up, p.down = up, down
	p.notifyLocked()
	p.mu.Unlock()
}

// notifyLocked wakes whatever waits for a rule to change. p.mu is held.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// notify is notifyLocked for a caller that does not hold p.mu.
func (p *Proxy) notify() {
	p.mu.Lock()
	p.notifyLocked()
	p.mu.Unlock()
}

// wake is what closes the next time a rule changes or the proxy closes,
// and whether it has closed already.
func (p *Proxy) wake() (<-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed, p.closed
}

// Heal clears both rules.
func (p *Proxy) Heal() { p.Set(Rule{}, Rule{}) }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) rule(up bool) Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up {
		return p.up
	}
	return p.down
}

func (p *Proxy) chance(prob float64) bool {
	if prob <= 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64() < prob
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serve accepts connections until the proxy closes: each is dialed
// through to the target (refused, as it would be, while the target is
// down), and up and down run on their own goroutines, one per direction.
func (p *Proxy) serve(up, down func(in, out net.Conn)) {
	p.wg.Go(func() {
		for {
			in, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			out, err := net.DialTimeout("tcp", target, 3*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !p.track(in) || !p.track(out) {
				in.Close()
				out.Close()
				continue
			}
			p.wg.Go(func() { up(in, out) })
			p.wg.Go(func() { down(in, out) })
		}
	})
}

// chunk is what one read returned, and when.
type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst under the direction's rule: a reader queues
// chunks (bounded, so a held stream pushes back on its sender) and a
// writer sends each once its delay passed and no cut holds it.
func (p *Proxy) pump(src, dst net.Conn, up bool) {
	q := make(chan chunk, 64)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b: b[:n], at: time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	defer p.untrack(src)
	defer p.untrack(dst)
	for c := range q {
		extra := time.Duration(0)
		for lost := rto; p.chance(p.rule(up).Loss); lost = min(2*lost, 8*rto) {
			extra += lost
		}
		if !p.hold(c.at, extra, up) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// hold waits until what arrived at at may cross: its delay (and extra)
// passed and the direction is not cut. It reports false once the proxy
// is closed.
func (p *Proxy) hold(at time.Time, extra time.Duration, up bool) bool {
	for {
		changed, closed := p.wake()
		if closed {
			return false
		}
		r := p.rule(up)
		wait := time.Until(at.Add(r.Delay + extra))
		if !r.Cut && wait <= 0 {
			return true
		}
		if r.Cut {
			<-changed
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
		}
		t.Stop()
	}
}

// RaftProxy is a proxy in front of one server's Raft address that reads
// Dragonboat's frames: each message batch names its sender (Rafting's
// NodeHost IDs are made of node IDs), so one proxy per server gives a
// Rule per link, sender → this server. A cut or a loss drops whole
// messages, as a network drops packets, so Raft sees loss, not a broken
// stream.
type RaftProxy struct {
	*Proxy
	mu    sync.Mutex
	rules map[int]Rule // by sender node; 0: senders not identified (snapshot streams)
}

// NewRaftProxy listens on a free loopback port in front of target.
func NewRaftProxy(target string, seed uint64) (*RaftProxy, error) {
	p, err := newProxy(target, seed, 0x72616674)
	if err != nil {
		return nil, err
	}
	r := &RaftProxy{Proxy: p, rules: map[int]Rule{}}
	p.serve(r.frames, func(in, out net.Conn) {
		// The receiver answers only a closing poison.
		defer p.untrack(in)
		defer p.untrack(out)
		_, _ = io.Copy(in, out)
	})
	return r, nil
}

// SetFrom sets the rule of the link from node to this server.
func (r *RaftProxy) SetFrom(node int, rule Rule) {
	r.mu.Lock()
	r.rules[node] = rule
	r.mu.Unlock()
	r.notify()
}

// Heal clears every link's rule.
func (r *RaftProxy) Heal() {
	r.mu.Lock()
	r.rules = map[int]Rule{}
	r.mu.Unlock()
	r.notify()
}

func (r *RaftProxy) ruleFrom(node int) Rule {
	r.mu.Lock()
	defer r.mu.Unlock()
	if node != 0 {
		return r.rules[node]
	}
	// A stream whose sender is unknown is held only while every link
	// into this server is cut.
	var cut = len(r.rules) > 0
	for _, x := range r.rules {
		cut = cut && x.Cut
	}
	return Rule{Cut: cut}
}

var (
	raftMagic  = [2]byte{0xAE, 0x7D}
	raftPoison = [2]byte{0, 0}
)

const (
	raftHeaderSize = 18
	raftBatch      = 100 // Dragonboat's method of a message batch (200: snapshot chunk)
)

// frame is one Dragonboat frame: magic, header, payload.
type frame struct {
	b      []byte
	method uint16
	at     time.Time
}

// frames forwards in's Dragonboat frames to out under the rule of their
// sender's link; what it cannot parse it copies unchanged.
func (r *RaftProxy) frames(in, out net.Conn) {
	p := r.Proxy
	q := make(chan frame, 256)
	rd := bufio.NewReaderSize(in, 64<<10)
	go func() {
		defer close(q)
		for {
			f, err := readFrame(rd)
			if len(f.b) > 0 {
				q <- f
			}
			if err != nil {
				return
			}
		}
	}()
	defer p.untrack(in)
	defer p.untrack(out)
	sender := 0
	for f := range q {
		if sender == 0 && f.method == raftBatch {
			if src, ok := batchSource(f.b[2+raftHeaderSize:]); ok {
				sender = nodeOf(src)
			}
		}
		rule := r.ruleFrom(sender)
		if f.method != 0 && !(sender == 0 && f.method != raftBatch) {
			// A message: dropped by a cut or a loss, else delayed.
			if rule.Cut || p.chance(rule.Loss) {
				continue
			}
			if d := time.Until(f.at.Add(rule.Delay)); d > 0 {
				time.Sleep(d)
			}
			// A cut that began while it waited drops it too.
			if r.ruleFrom(sender).Cut {
				continue
			}
		} else {
			// A snapshot stream or bytes we do not understand: held.
			for {
				changed, closed := p.wake()
				if closed {
					return
				}
				if !r.ruleFrom(sender).Cut {
					break
				}
				<-changed
			}
		}
		if _, err := out.Write(f.b); err != nil {
			return
		}
	}
}

// readFrame reads one frame; on anything it does not recognise it returns
// what it read as an opaque frame (method 0) and the rest of the stream
// passes as opaque chunks.
func readFrame(rd *bufio.Reader) (frame, error) {
	var magic [2]byte
	if _, err := io.ReadFull(rd, magic[:]); err != nil {
		return frame{}, err
	}
	now := time.Now()
	if magic != raftMagic {
		// A poison (the sender closing) or something else: pass it on,
		// and everything after it, as it comes.
		b := append([]byte(nil), magic[:]...)
		n := rd.Buffered()
		if n > 0 {
			rest, _ := rd.Peek(n)
			b = append(b, rest...)
			_, _ = rd.Discard(n)
		}
		return frame{b: b, at: now}, nil
	}
	head := make([]byte, 2+raftHeaderSize)
	copy(head, magic[:])
	if _, err := io.ReadFull(rd, head[2:]); err != nil {
		return frame{b: head, at: now}, err
	}
	method := binary.BigEndian.Uint16(head[2:])
	size := binary.BigEndian.Uint64(head[4:])
	if size > 64<<20 {
		return frame{b: head, at: now}, errors.New("chaos: raft frame too large")
	}
	b := make([]byte, len(head)+int(size))
	copy(b, head)
	if _, err := io.ReadFull(rd, b[len(head):]); err != nil {
		return frame{b: b, at: now}, err
	}
	return frame{b: b, method: method, at: now}, nil
}

// nodeOf is the node a NodeHost ID names (server/cluster's nodeHostID),
// or 0.
func nodeOf(nodeHostID string) int {
	const prefix = "00000000-0000-4000-8000-"
	if !strings.HasPrefix(nodeHostID, prefix) {
		return 0
	}
	n, err := strconv.ParseUint(nodeHostID[len(prefix):], 16, 32)
	if err != nil {
		return 0
	}
	return int(n)
}

// batchSource finds a MessageBatch's SourceAddress (protobuf field 3).
func batchSource(b []byte) (string, bool) {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return "", false
		}
		b = b[n:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			_, n := binary.Uvarint(b)
			if n <= 0 {
				return "", false
			}
			b = b[n:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return "", false
			}
			if field == 3 {
				return string(b[n : n+int(l)]), true
			}
			b = b[n+int(l):]
		default:
			return "", false
		}
	}
	return "", false
}

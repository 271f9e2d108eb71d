package attacks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rafting/rafting/api"
)

// attackEnv, when set in the environment (an attackConfig in JSON), makes
// this test binary an attacker process: it prepares (pattern 3 opens its
// sessions), prints "ready" and waits, attacks while resumed (SIGUSR2),
// pauses on SIGUSR1, and on SIGTERM prints its tally as JSON and exits.
const attackEnv = "RAFTING_ATTACK"

// attackConfig is what an attacker is told.
type attackConfig struct {
	Pattern   string   `json:"pattern"`
	Addrs     []string `json:"addrs"`     // the servers' API addresses
	Token     string   `json:"token"`     // the attacking tenant's (mallory's) token
	Tenant    string   `json:"tenant"`    // mallory
	Victim    string   `json:"victim"`    // the victim tenant's name (pattern 7 names it in made-up tokens)
	Conns     int      `json:"conns"`     // connections or workers
	Rate      int      `json:"rate"`      // requests a second over the cluster (open-loop patterns)
	Sessions  int      `json:"sessions"`  // pattern 3: sessions to open (its max_sessions)
	Addresses int      `json:"addresses"` // source addresses to spread over (patterns 4b, 5, 7)
	Service   string   `json:"service"`   // pattern 6: the large service
	MetaBytes int      `json:"meta"`      // pattern 6: meta bytes of an instance it rewrites
	// The connection control's dialer (pattern "conns", conncontrol_test.go):
	// the pattern whose connections it opens (4, 4b, 5; Conns and Addresses
	// are that pattern's), and at what pace: how many by each paceSlot
	// since its phase began.
	Of   string    `json:"of,omitempty"`
	Pace []float64 `json:"pace,omitempty"`
}

// runAttackerProcess is the attacker process's main.
func runAttackerProcess(v string) int {
	var cfg attackConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	g := newGate(ctx)
	sw := make(chan os.Signal, 1)
	signal.Notify(sw, syscall.SIGUSR1, syscall.SIGUSR2)
	t := &tally{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		attack(ctx, cfg, g, t, func() { fmt.Println("ready") })
	}()
	for running := true; running; {
		select {
		case sig := <-sw:
			if g.set(sig == syscall.SIGUSR2) {
				// The phase's connections by when they were opened, for
				// the connection control's pace.
				b, _ := json.Marshal(g.phaseOpens())
				fmt.Println(opensLine + string(b))
			}
		case <-ctx.Done():
			running = false
		case <-done:
			running = false
		}
	}
	g.set(false)
	select { // the workers end with ctx; the tally is read either way
	case <-done:
	case <-time.After(5 * time.Second):
	}
	b, _ := json.Marshal(attackResult{Counts: t.snapshot(), Secs: g.openTime().Seconds(), Opens: g.allOpens(), Phases: g.phases})
	fmt.Println(string(b))
	return 0
}

// attackResult is what an attacker process prints when it ends.
type attackResult struct {
	Counts map[string]int64 `json:"counts"`
	Secs   float64          `json:"secs"` // time spent attacking (resumed)
	// Opens is the connections it opened (patterns 4, 4b, 5 and the
	// connection control's dialer) by paceSlot since their phase began,
	// over its Phases phases.
	Opens  []int64 `json:"opens,omitempty"`
	Phases int     `json:"phases"`
}

// opensLine prefixes the line an attacker process prints when it pauses:
// the JSON of the phase's opens (gate.phaseOpens).
const opensLine = "opens "

// paceSlot is the resolution of the connections a gate counts by when
// they were opened in their phase; paceSlots of them cover 30 s.
const (
	paceSlot  = 50 * time.Millisecond
	paceSlots = 600
)

// gate holds the attacker's workers while it is paused. Each phase of
// attack has a context that ends when the phase does: requests in flight
// are abandoned, streams and idle connections closed. It counts the
// connections the phase opened by when (opened).
type gate struct {
	root    context.Context
	mu      sync.Mutex
	open    chan struct{} // closed while the attack runs
	ctx     context.Context
	cancel  context.CancelFunc
	since   time.Time
	openFor time.Duration
	opens   [paceSlots]int64 // the phase's connections opened, by paceSlot since since
	last    []int64          // the last phase's opens
	total   [paceSlots]int64 // every phase's
	phases  int
}

// newGate returns a closed gate.
func newGate(root context.Context) *gate {
	ctx, cancel := context.WithCancel(root)
	cancel()
	return &gate{root: root, open: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// set opens or closes the gate; setting it as it is changes nothing. It
// reports whether it closed a phase.
func (g *gate) set(open bool) (closed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		if !open {
			g.cancel()
			g.open = make(chan struct{})
			g.openFor += time.Since(g.since)
			g.last = trimmed(g.opens[:])
			for i, n := range g.opens {
				g.total[i] += n
			}
			g.opens = [paceSlots]int64{}
			g.phases++
			return true
		}
	default:
		if open {
			g.ctx, g.cancel = context.WithCancel(g.root)
			close(g.open)
			g.since = time.Now()
		}
	}
	return false
}

// opened counts a connection opened now, in the phase under way.
func (g *gate) opened() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		if i := int(time.Since(g.since) / paceSlot); i < paceSlots {
			g.opens[i]++
		}
	default: // opened as its phase ended: not the phase's
	}
}

// phaseOpens is the last phase's connections by when they were opened.
func (g *gate) phaseOpens() []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

// allOpens is every phase's connections by when they were opened.
func (g *gate) allOpens() []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return trimmed(g.total[:])
}

// trimmed is a copy of v without its trailing zeros.
func trimmed(v []int64) []int64 {
	n := len(v)
	for n > 0 && v[n-1] == 0 {
		n--
	}
	return slices.Clone(v[:n])
}

// phase waits for the gate to open and returns the context of the phase;
// false when the root context ended.
func (g *gate) phase() (context.Context, bool) {
	for {
		g.mu.Lock()
		open, ctx := g.open, g.ctx
		g.mu.Unlock()
		select {
		case <-g.root.Done():
			return nil, false
		case <-open:
			if ctx.Err() == nil {
				return ctx, true
			}
		}
	}
}

func (g *gate) openTime() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.openFor
	select {
	case <-g.open:
		d += time.Since(g.since)
	default:
	}
	return d
}

// tally counts an attacker's outcomes by name ("PUT 409", "cut", ...) and
// keeps maxima ("max held").
type tally struct{ m sync.Map }

func (t *tally) counter(k string) *atomic.Int64 {
	if c, ok := t.m.Load(k); ok {
		return c.(*atomic.Int64)
	}
	c, _ := t.m.LoadOrStore(k, &atomic.Int64{})
	return c.(*atomic.Int64)
}

func (t *tally) add(k string, n int64) { t.counter(k).Add(n) }

func (t *tally) max(k string, v int64) {
	c := t.counter(k)
	for {
		old := c.Load()
		if v <= old || c.CompareAndSwap(old, v) {
			return
		}
	}
}

func (t *tally) snapshot() map[string]int64 {
	out := map[string]int64{}
	t.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// gauge is a count of things held at once whose maximum a tally keeps.
type gauge struct {
	n   atomic.Int64
	t   *tally
	key string
}

func (g *gauge) inc() { g.t.max(g.key, g.n.Add(1)) }
func (g *gauge) dec() { g.n.Add(-1) }

// record counts one request's outcome: its method and status, or how its
// connection failed. A read abandoned because its phase ended is not
// counted.
//
// A write whose answer did not come (abandoned, cut, timed out) may have
// been applied: its outcome is unknown, and is counted by method.
func (t *tally) record(ctx context.Context, method string, status int, err error) {
	write := method == http.MethodPut || method == http.MethodDelete
	switch {
	case err != nil && ctx.Err() != nil && write:
		t.add(method+" abandoned", 1)
	case err != nil && ctx.Err() != nil:
	case err != nil && write:
		t.add(method+" "+errClass(err), 1)
	case err != nil:
		t.add(errClass(err), 1)
	default:
		t.add(method+" "+strconv.Itoa(status), 1)
	}
}

// errClass names a failed request: "dial" when no connection was made,
// "timeout", or "cut" when the server ended the connection.
func errClass(err error) string {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return "dial error"
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		return "timeout"
	}
	return "cut"
}

// sleep waits d or until ctx ends; false when it ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// floodSource is the source address of worker w of the connection floods
// (pattern 4, 4b or 5) over addresses of them: 127.2.0.0 alone for 4,
// 127.4.x.y for 4b, 127.5.x.y for 5 (8 workers an address).
func floodSource(pattern string, w, addresses int) net.IP {
	switch {
	case pattern == "5":
		return sourceAddr(5, w%max(addresses, 1))
	case addresses > 1:
		return sourceAddr(4, w%addresses)
	}
	return sourceAddr(2, 0)
}

// sourceAddr is the i-th of n source addresses of an attacker: 127.<base>.x.y
// (never 127.0.0.1, the victim's).
func sourceAddr(base, i int) net.IP {
	return net.IPv4(127, byte(base), byte(i>>8), byte(i))
}

// client is an HTTP client of its own connections, from source address
// src (nil: the default).
func client(src net.IP, keepAlive bool) (*http.Client, *http.Transport) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableKeepAlives: !keepAlive,
		DisableCompression: true, ResponseHeaderTimeout: 10 * time.Second}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, tr
}

// do sends one request and reads its answer to the end; it returns the
// status and the bytes of the answer.
func do(ctx context.Context, c *http.Client, method, url, token string, body []byte) (int, int64, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, n, err
}

// randomID is a session ID no server knows: 22 characters of base64url.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// registerBody is a registration's JSON, written by hand so that meta
// goes out as given (json.Marshal would escape '<' to six bytes).
func registerBody(metaValue string, extra string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"address":"10.7.0.1:80"`)
	if metaValue != "" {
		b.WriteString(`,"meta":{"k":"`)
		b.WriteString(metaValue)
		b.WriteString(`"}`)
	}
	b.WriteString(extra)
	b.WriteString(`}`)
	return b.Bytes()
}

// attack runs the pattern until ctx ends, calling ready once it is
// prepared; it attacks only while g is open.
func attack(ctx context.Context, cfg attackConfig, g *gate, t *tally, ready func()) {
	var wg sync.WaitGroup
	workers := func(n int, fn func(w int)) {
		for w := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn(w)
			}()
		}
	}
	base := func(path string, w, i int) string {
		return "http://" + cfg.Addrs[(w+i)%len(cfg.Addrs)] + path
	}
	tenantPath := "/v1/tenants/" + cfg.Tenant
	switch cfg.Pattern {
	case "1": // refused writes: 1 MB of '<' in meta, and invalid weights
		huge := registerBody(strings.Repeat("<", 1_000_000), "")
		badWeight := registerBody("", `,"weight":-5`)
		ready()
		workers(cfg.Conns, func(w int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				body := huge
				if i%2 == 1 {
					body = badWeight
				}
				st, _, err := do(pctx, c, http.MethodPut, base(fmt.Sprintf("%s/services/spam/instances/x-%d", tenantPath, (w*7+i)%100), w, i), cfg.Token, body)
				t.record(pctx, http.MethodPut, st, err)
				if pctx.Err() != nil {
					tr.CloseIdleConnections()
				}
			}
		})

	case "2": // keepalives and stream attaches for random session IDs, through every node (followers forward)
		oversized := bytes.Repeat([]byte(" "), 1<<20)
		held := &gauge{t: t, key: "max streams held"}
		ready()
		workers(cfg.Conns, func(w int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				path := tenantPath + "/sessions/" + randomID()
				var st int
				var err error
				switch {
				case i%20 == 19: // a keepalive with a 1 MiB body
					st, _, err = do(pctx, c, http.MethodPut, base(path+"/keepalive", w, i), cfg.Token, oversized)
				case i%2 == 0:
					st, _, err = do(pctx, c, http.MethodPut, base(path+"/keepalive", w, i), cfg.Token, nil)
				default: // a stream attach: a follower answers a stream of one `moved` line
					attach(pctx, c, base(path+"/stream", w, i), cfg.Token, t, held)
					if pctx.Err() != nil {
						tr.CloseIdleConnections()
					}
					continue
				}
				t.record(pctx, "KEEPALIVE", st, err)
				if pctx.Err() != nil {
					tr.CloseIdleConnections()
				}
			}
		})

	case "3": // many streams for each of max_sessions sessions
		ids := make([]string, cfg.Sessions)
		c, _ := client(nil, true)
		for i := range ids {
			ids[i] = randomID()
			for {
				st, _, err := do(ctx, c, http.MethodPut, base(tenantPath+"/sessions/"+ids[i], 0, i), cfg.Token, []byte(`{"ttl_ms":10000}`))
				if err == nil && st < 300 {
					break
				}
				if !sleep(ctx, 100*time.Millisecond) {
					return
				}
			}
		}
		// The sessions stay alive throughout, paused or not: they are
		// what the tenant may hold.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; sleep(ctx, time.Second); i++ {
				for j, id := range ids {
					st, _, err := do(ctx, c, http.MethodPut, base(tenantPath+"/sessions/"+id+"/keepalive", j, i), cfg.Token, nil)
					t.record(ctx, "KEEPALIVE", st, err)
				}
			}
		}()
		ready()
		held := &gauge{t: t, key: "max streams held"}
		var leader atomic.Value // the API address that serves streams
		leader.Store(cfg.Addrs[0])
		workers(cfg.Conns, func(w int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				if moved := attach(pctx, c, "http://"+leader.Load().(string)+tenantPath+"/sessions/"+ids[w%len(ids)]+"/stream", cfg.Token, t, held); moved != "" {
					leader.Store(moved)
					continue
				}
				if !sleep(pctx, 200*time.Millisecond) {
					tr.CloseIdleConnections()
				}
			}
		})

	case "4", "4b": // idle connections that never send a request
		ready()
		workers(cfg.Conns, func(w int) {
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: floodSource(cfg.Pattern, w, cfg.Addresses)}}
			for {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				idle(pctx, g, d, cfg.Addrs[w%len(cfg.Addrs)], t)
			}
		})

	case "5": // over-rate requests from thousands of connections
		ready()
		workers(cfg.Conns, func(w int) {
			c, tr := client(floodSource(cfg.Pattern, w, cfg.Addresses), true)
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				t.add("opened", 1) // a connection ended is opened again at once
				conn, err := dial(ctx, network, addr)
				if err == nil {
					g.opened()
				}
				return conn, err
			}
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				st, _, err := do(pctx, c, http.MethodGet, base(tenantPath+"/services/spam", w, i), cfg.Token, nil)
				t.record(pctx, http.MethodGet, st, err)
				if pctx.Err() != nil {
					tr.CloseIdleConnections()
				}
			}
		})

	case "6": // one large service read again and again, changed ten times a second
		ready()
		workers(cfg.Conns, func(w int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				st, n, err := do(pctx, c, http.MethodGet, base(tenantPath+"/services/"+cfg.Service, w, i), cfg.Token, nil)
				t.record(pctx, http.MethodGet, st, err)
				if err == nil && st == http.StatusOK {
					t.add("answer bytes", n)
				}
				if pctx.Err() != nil {
					tr.CloseIdleConnections()
				}
			}
		})
		workers(1, func(int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				if sleep(pctx, 100*time.Millisecond) {
					body := registerBody(strings.Repeat(strconv.Itoa(i%10), cfg.MetaBytes-1), "")
					st, _, err := do(pctx, c, http.MethodPut, base(tenantPath+"/services/"+cfg.Service+"/instances/i-0", 0, i), cfg.Token, body)
					t.record(pctx, http.MethodPut, st, err)
				} else {
					tr.CloseIdleConnections()
				}
			}
		})

	case "7": // made-up tokens naming the victim, each request from a new source address
		ready()
		var next atomic.Int64
		workers(cfg.Conns, func(w int) {
			for {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				n := next.Add(1) % int64(cfg.Addresses)
				src := net.IPv4(127, byte(16+n>>16), byte(n>>8), byte(n))
				c, _ := client(src, false)
				tok := "rft_" + cfg.Victim + "_" + randomID() + randomID()
				st, _, err := do(pctx, c, http.MethodGet, base("/v1/tenants/"+cfg.Victim+"/services/orders", w, int(n)), tok, nil)
				t.record(pctx, http.MethodGet, st, err)
			}
		})

	case "8", "8b": // writes refused at the default write rate, 4 KB of meta each
		ready()
		per := time.Second * time.Duration(cfg.Conns) / time.Duration(cfg.Rate)
		workers(cfg.Conns, func(w int) {
			c, tr := client(nil, true)
			for i := 0; ; i++ {
				pctx, ok := g.phase()
				if !ok {
					return
				}
				// Each worker starts at its own offset within a period,
				// so the workers together send an even stream.
				if !sleep(pctx, per*time.Duration(w)/time.Duration(cfg.Conns)) {
					tr.CloseIdleConnections()
					continue
				}
				tick := time.NewTicker(per)
				for j := 0; ; j++ {
					var body []byte
					if cfg.Pattern == "8" { // 4,097 bytes: over max_meta_bytes, refused by fields
						body = registerBody(strings.Repeat("m", 4096), "")
					} else { // 4,000 bytes under a session that does not exist: refused by the state
						body = registerBody(strings.Repeat("m", 3999), `,"session":"`+randomID()+`"`)
					}
					st, _, err := do(pctx, c, http.MethodPut, base(fmt.Sprintf("%s/services/spam/instances/r-%d", tenantPath, (w*31+j)%1000), w, j), cfg.Token, body)
					t.record(pctx, http.MethodPut, st, err)
					select {
					case <-pctx.Done():
					case <-tick.C:
						continue
					}
					break
				}
				tick.Stop()
				tr.CloseIdleConnections()
			}
		})
	case "conns": // the connection control's dialer (conncontrol_test.go)
		ready()
		connect(cfg, g, t)
	default:
		panic("attacks: no pattern " + cfg.Pattern)
	}
	wg.Wait()
}

// attach attaches one stream and holds it until the phase ends or the
// server ends it; it returns the leader a `moved` answer names.
func attach(ctx context.Context, c *http.Client, url, token string, t *tally, held *gauge) (moved string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.record(ctx, "ATTACH", 0, err)
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		t.record(ctx, "ATTACH", resp.StatusCode, nil)
		return ""
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.record(ctx, "ATTACH", 0, errors.New("stream ended"))
		return ""
	}
	var ev api.StreamEvent
	_ = json.Unmarshal(sc.Bytes(), &ev)
	if ev.Type == api.EventMoved {
		t.add("ATTACH moved", 1)
		return ev.Leader
	}
	t.record(ctx, "ATTACH", http.StatusOK, nil)
	held.inc()
	defer held.dec()
	for sc.Scan() {
	}
	return ""
}

// idle opens one connection (counted in g's phase) and sends nothing on
// it until the server closes it or the phase ends; a connection closed within a second was
// refused as it was accepted, and is opened again only a second later.
func idle(ctx context.Context, g *gate, d *net.Dialer, addr string, t *tally) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			t.add("dial error", 1)
			sleep(ctx, time.Second)
		}
		return
	}
	g.opened()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	start := time.Now()
	var b [1]byte
	_, _ = conn.Read(b[:]) // until the server closes it, or the phase ends
	conn.Close()
	if ctx.Err() != nil {
		return
	}
	lived := time.Since(start)
	switch {
	case lived < time.Second:
		t.add("closed at accept", 1)
		sleep(ctx, time.Second)
	default:
		t.add("closed after "+strconv.Itoa(int(lived.Round(time.Second)/time.Second))+" s", 1)
	}
	t.add("opened", 1)
}

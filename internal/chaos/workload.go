package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
)

// linService is the service the workload writes and reads.
const linService = "lin"

// absent is the value of an instance that is not registered.
const absent = -1

// sessionTTL is the TTL of the workload's sessions (the servers' minimum).
const sessionTTL = 3 * time.Second

// Op is one operation of a tenant's history, as porcupine checks it
// (times are nanoseconds since the scenario began; Return is MaxInt64
// when the outcome is unknown).
type Op struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"` // write, read, expire (a session that may expire)
	Key    string `json:"key,omitempty"`
	Value  int    `json:"value"` // write: the weight, or absent
	// Read is what a read returned: every instance's weight.
	Read   map[string]int `json:"read,omitempty"`
	Call   int64          `json:"call"`
	Return int64          `json:"return"`
	Index  uint64         `json:"index,omitempty"` // where an acknowledged write applied, or a read was served
	Server int            `json:"server,omitempty"`
	Status string         `json:"status,omitempty"` // the answer, for the record
	// Lost marks a write the AckLostWrites control acknowledged without
	// sending it.
	Lost bool `json:"lost,omitempty"`
	// A KV compare-and-set (Kind cas): the value it expected, and
	// whether it was refused (409: the key did not hold it).
	Expect int  `json:"expect,omitempty"`
	Failed bool `json:"failed,omitempty"`
}

// Unknown reports whether the operation's outcome is unknown.
func (o Op) Unknown() bool { return o.Return == unknownReturn }

// workload is one tenant's harness-side clients: one writes and deletes
// permanent instances, one registers instances under sessions it opens,
// keeps alive, then ends or abandons; both read consistently in between.
// A third writes, deletes, compare-and-sets and reads keys of the
// tenant's configuration store (kv.go).
type workload struct {
	s      *scenario
	tenant string
	token  string
	seq    atomic.Int64 // values: unique per tenant

	mu    sync.Mutex
	ops   []Op
	kvOps []Op // the configuration store's (kv.go)

	stop atomic.Bool
	wg   sync.WaitGroup
}

// client is one workload client: an HTTP client whose every connection
// crosses its own proxy to each server.
type client struct {
	id     int
	name   string
	hc     *http.Client
	routes map[string]string
}

func (w *workload) newClient(id int) *client {
	name := fmt.Sprintf("%s/w%d", w.tenant, id)
	routes := w.s.net.routes(name)
	d := &net.Dialer{Timeout: 2 * time.Second}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if p, ok := routes[addr]; ok {
				addr = p
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 8,
	}}
	return &client{id: id, name: name, hc: hc, routes: routes}
}

func (w *workload) start() {
	for id := range 3 {
		c := w.newClient(id)
		r := mrand.New(mrand.NewPCG(w.s.plan.Seed, uint64(id)+uint64(len(w.tenant))<<8))
		w.wg.Go(func() {
			defer c.hc.CloseIdleConnections()
			switch id {
			case 0:
				w.permanent(c, r)
			case 1:
				w.sessions(c, r)
			default:
				w.kvClient(c, r)
			}
		})
	}
}

// halt stops the clients and waits for them.
func (w *workload) halt() {
	w.stop.Store(true)
	w.wg.Wait()
}

func (w *workload) now() int64 { return int64(time.Since(w.s.start)) }

func (w *workload) record(o Op) {
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
}

// settled is when every session the workload abandoned may have expired
// (ns since the scenario began): from then on nothing of its own changes
// the state.
func (w *workload) settled() int64 {
	var at int64
	for _, o := range w.history() {
		if o.Kind == "expire" {
			at = max(at, o.Call)
		}
	}
	return at
}

// history is every operation so far.
func (w *workload) history() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Op(nil), w.ops...)
}

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	body   []byte
	index  uint64
	err    error
}

// outcome classifies an answer to a write: applied, not applied, or
// unknown.
type outcome int

const (
	applied outcome = iota + 1
	notApplied
	unknownOutcome
)

func (a answer) outcome() outcome {
	switch {
	case a.err != nil:
		return unknownOutcome // through a proxy a connection always opens: it may have been sent
	case a.status < 300:
		return applied
	case a.status == http.StatusServiceUnavailable || a.status == http.StatusTooManyRequests ||
		(a.status >= 400 && a.status < 500):
		return notApplied // 503 and 429 are "not applied, retry"; a 4xx was refused
	default:
		return unknownOutcome // 504 timeout, or anything else
	}
}

// answered fills in o, a write, from a: when it returned, the answer,
// and where it applied, or an open end (unknownReturn) when its outcome
// is unknown. It reports whether o may have applied: a write that surely
// did not is no part of the history.
func (w *workload) answered(o *Op, a answer) bool {
	o.Return, o.Status = w.now(), a.String()
	switch a.outcome() {
	case applied:
		o.Index = a.index
		return true
	case unknownOutcome:
		o.Return = unknownReturn
		return true
	}
	return false
}

func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return strconv.Itoa(a.status)
}

// do sends one request to server id through the client's proxy.
func (w *workload) do(c *client, id int, method, path string, body any) answer {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+w.s.net.api[id].Addr()+path, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: b, err: err}
	a.index, _ = strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	return a
}

func (w *workload) path(rest string) string { return "/v1/tenants/" + w.tenant + rest }

// server picks the server for the next request: any that the scenario
// has not removed (a dead one is part of the test).
func (w *workload) server(r *mrand.Rand) int {
	ids := w.s.serverIDs()
	return ids[r.IntN(len(ids))]
}

// write registers key with value (or deregisters it: absent) and records
// the operation unless it surely did not apply.
func (w *workload) write(c *client, r *mrand.Rand, key string, value int, session string) outcome {
	id := w.server(r)
	o := Op{Client: c.id, Kind: "write", Key: key, Value: value, Call: w.now(), Server: id}
	var a answer
	if value == absent {
		a = w.do(c, id, http.MethodDelete, w.path("/services/"+linService+"/instances/"+key), nil)
	} else {
		weight := value
		a = w.do(c, id, http.MethodPut, w.path("/services/"+linService+"/instances/"+key),
			api.RegisterRequest{Address: "127.0.0.1:3", Weight: &weight, Session: session})
	}
	if w.answered(&o, a) {
		w.record(o)
	}
	return a.outcome()
}

// read is a consistent read of the service, recorded when it answered.
func (w *workload) read(c *client, r *mrand.Rand) {
	id := w.server(r)
	o := Op{Client: c.id, Kind: "read", Call: w.now(), Server: id}
	q := "?consistent=true"
	if w.s.opts.Control == StaleReads {
		q = "" // the control: a read from the node's own replica, without a ReadIndex
	}
	a := w.do(c, id, http.MethodGet, w.path("/services/"+linService+q), nil)
	o.Return, o.Status = w.now(), a.String()
	if a.err != nil || a.status != http.StatusOK {
		return
	}
	var sr api.ServiceResponse
	if json.Unmarshal(a.body, &sr) != nil {
		return
	}
	o.Read, o.Index = map[string]int{}, sr.Index
	for _, in := range sr.Instances {
		o.Read[in.ID] = in.Weight
	}
	w.record(o)
}

func (w *workload) pause(r *mrand.Rand) {
	time.Sleep(time.Duration(10+r.IntN(30)) * time.Millisecond)
}

// permanent writes and deletes three permanent instances, and reads.
func (w *workload) permanent(c *client, r *mrand.Rand) {
	for !w.stop.Load() {
		key := fmt.Sprintf("p%d", r.IntN(3))
		switch x := r.IntN(20); {
		case x < 9:
			w.write(c, r, key, int(w.seq.Add(1)), "")
		case x < 11:
			w.write(c, r, key, absent, "")
		default:
			w.read(c, r)
		}
		w.pause(r)
	}
	if w.s.opts.Control == AckLostWrites {
		// The control: a write acknowledged to the checkers that was
		// never sent, as a server that loses an acknowledged write.
		for k := range 3 {
			now := w.now()
			w.record(Op{Client: c.id, Kind: "write", Key: fmt.Sprintf("p%d", k), Value: int(w.seq.Add(1)),
				Call: now, Return: now, Status: "200 (not sent)", Lost: true})
		}
	}
}

// sessions registers an instance under a session of its own, keeps the
// session alive a while, then ends it or lets it expire; and reads.
func (w *workload) sessions(c *client, r *mrand.Rand) {
	for n := 0; !w.stop.Load(); n++ {
		var b [16]byte
		_, _ = rand.Read(b[:])
		sid := hex.EncodeToString(b[:])
		key := fmt.Sprintf("e%d", n)
		call := w.now()
		a := w.do(c, w.server(r), http.MethodPut, w.path("/sessions/"+sid), api.SessionRequest{TTLMs: sessionTTL.Milliseconds()})
		if a.outcome() != applied {
			w.pause(r)
			continue
		}
		acked := call // the send of the latest keepalive answered: no expiry before it + TTL
		registered := w.write(c, r, key, int(w.seq.Add(1)), sid)
		until := time.Now().Add(time.Duration(500+r.IntN(3000)) * time.Millisecond)
		for time.Now().Before(until) && !w.stop.Load() {
			if r.IntN(3) == 0 {
				call := w.now()
				if w.do(c, w.server(r), http.MethodPut, w.path("/sessions/"+sid+"/keepalive"), nil).outcome() == applied {
					acked = call
				}
			} else {
				w.read(c, r)
			}
			w.pause(r)
		}
		if registered == notApplied {
			continue
		}
		if r.IntN(2) == 0 || w.stop.Load() { // at the end, end it: the state settles sooner
			// End the session: its instance goes with it.
			id := w.server(r)
			o := Op{Client: c.id, Kind: "write", Key: key, Value: absent, Call: w.now(), Server: id}
			if w.answered(&o, w.do(c, id, http.MethodDelete, w.path("/sessions/"+sid), nil)) {
				w.record(o)
			}
		}
		// Whatever happened, the session may expire from its last
		// answered keepalive + TTL on (its instance with it).
		w.record(Op{Client: 100 + c.id, Kind: "expire", Key: key, Value: absent,
			Call: acked + int64(sessionTTL) - int64(50*time.Millisecond), Return: unknownReturn})
	}
}

// Command chaosmember is a process of the fault campaign (package
// internal/chaos): a member of a master-standby service that writes to the
// campaign's fenced ledger while it holds a Term, a farm member, or a
// watcher. It reports what it sees as JSON lines on stdout (chaos.Event)
// and reaches the servers only through the campaign's fault proxies
// (-route), whatever address the SDK picks. SIGTERM leaves gracefully.
//
//	chaosmember -mode master -id ms-1 -ledger http://127.0.0.1:9000/write -route 127.0.0.1:7070=127.0.0.1:9100,...
//
// It reads RAFTING_SERVERS, RAFTING_TENANT and RAFTING_TOKEN as the SDK does.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rafting/rafting/internal/chaos"
	"github.com/rafting/rafting/sdk"
)

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(e chaos.Event) {
	if e.At == 0 {
		e.At = time.Now().UnixNano()
	}
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(e)
}

type config struct {
	mode       string
	id         string
	service    string
	priority   int
	lease, ttl time.Duration
	ledger     string
	every      time.Duration
	ignoreCtx  bool
	staleAfter int
	routes     map[string]string
	stream     bool
}

func main() {
	var c config
	var route string
	flag.StringVar(&c.mode, "mode", "master", "master, farm or watch")
	flag.StringVar(&c.id, "id", "", "instance ID (master, farm); the name in events")
	flag.StringVar(&c.service, "service", "", "service to join, or services to watch (comma-separated)")
	flag.IntVar(&c.priority, "priority", 0, "election priority (master)")
	flag.DurationVar(&c.lease, "lease", time.Second, "lease (master)")
	flag.DurationVar(&c.ttl, "ttl", 3*time.Second, "session TTL")
	flag.StringVar(&c.ledger, "ledger", "", "URL of the fenced ledger's write endpoint (master)")
	flag.DurationVar(&c.every, "every", 20*time.Millisecond, "how often the master writes to the ledger")
	flag.BoolVar(&c.ignoreCtx, "ignore-ctx", false, "negative control: act on the first Term for ever, ignoring its Ctx")
	flag.IntVar(&c.staleAfter, "stale-after", 0, "negative control (watch): after this many snapshots of a service, keep its instances and report only new indexes")
	flag.StringVar(&route, "route", "", "addr=proxy,...: dial proxy instead of addr")
	flag.BoolVar(&c.stream, "stream", false, "use the client stream (sdk.WithClientStream) for sessions and watches")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	c.routes = map[string]string{}
	for _, kv := range strings.Split(route, ",") {
		if a, p, ok := strings.Cut(kv, "="); ok {
			c.routes[a] = p
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch c.mode {
	case "master":
		err = master(ctx, c)
	case "farm":
		err = farm(ctx, c)
	case "watch":
		err = watch(ctx, c)
	default:
		err = fmt.Errorf("unknown -mode %q", c.mode)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		emit(chaos.Event{Ev: "error", ID: c.id, Err: err.Error()})
		log.Fatal(err)
	}
}

// httpClient dials the route of every address it is asked for: every
// request of the SDK crosses the campaign's proxy of this link. With
// -stream it speaks HTTP/2 with prior knowledge (h2c), as the client
// stream needs.
func (c config) httpClient() *http.Client {
	d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if p, ok := c.routes[addr]; ok {
				addr = p
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	if c.stream {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return &http.Client{Transport: t}
}

// sdkOptions are the options of every Client the member makes.
func (c config) sdkOptions() []sdk.Option {
	return []sdk.Option{sdk.WithHTTPClient(c.httpClient()), sdk.WithClientStream(c.stream)}
}

// join joins until it succeeds or ctx ends: under faults a Join can fail.
func join(ctx context.Context, c config, inst sdk.Instance, opts ...sdk.Option) (*sdk.Member, error) {
	opts = append(append(opts, c.sdkOptions()...), sdk.WithTTL(c.ttl))
	for {
		jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := sdk.Join(jctx, inst, opts...)
		cancel()
		if err == nil {
			emit(chaos.Event{Ev: "joined", ID: c.id})
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		emit(chaos.Event{Ev: "error", ID: c.id, Err: "join: " + err.Error()})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func leave(m *sdk.Member) {
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.Leave(lctx)
}

// master joins the service as a master-standby candidate, samples its
// Term every millisecond or so and writes to the ledger under it. SIGUSR1
// makes it resign.
func master(ctx context.Context, c config) error {
	m, err := join(ctx, c, sdk.Instance{Service: c.service, ID: c.id, Address: "127.0.0.1:1", Mode: sdk.MasterStandby, Priority: c.priority},
		sdk.WithLease(c.lease), sdk.WithColdStart(1, 0),
		sdk.WithRoleChange(func(rc sdk.RoleChange) {
			emit(chaos.Event{Ev: "role", ID: c.id, Role: rc.Role.String(), Token: rc.Token, At: rc.At.UnixNano()})
		}))
	if err != nil {
		return err
	}
	defer leave(m)
	resign := make(chan os.Signal, 1)
	signal.Notify(resign, syscall.SIGUSR1)
	defer signal.Stop(resign)
	go func() {
		for range resign {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.Resign(rctx); err != nil {
				emit(chaos.Event{Ev: "error", ID: c.id, Err: "resign: " + err.Error()})
			}
			cancel()
		}
	}()
	ledger := &http.Client{Timeout: 2 * time.Second}
	var (
		cur       sdk.Term // the Term being sampled
		from      int64    // its first live sample
		last      int64    // its latest live sample
		reported  time.Time
		lastWrite time.Time
		kept      *sdk.Term // -ignore-ctx: the first Term, acted on for ever
	)
	end := func() {
		if cur.Token != 0 {
			emit(chaos.Event{Ev: "term", ID: c.id, Token: cur.Token, From: from, To: last})
		}
		cur = sdk.Term{}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			end()
			return nil
		case <-m.Done():
			end()
			return fmt.Errorf("member ended: %w", m.Err())
		case <-tick.C:
		}
		// The Term first, then the instant, then the check: a Ctx live
		// after the instant was live at it (a Ctx never comes back).
		t, ok := m.Mastership()
		if c.ignoreCtx {
			if kept == nil && ok {
				kept = &t
			}
			if kept != nil {
				t, ok = sdk.Term{Token: kept.Token, Ctx: context.Background()}, true
			}
		}
		now := time.Now()
		live := ok && t.Ctx.Err() == nil
		if !live || t.Token != cur.Token {
			end()
		}
		if !live {
			continue
		}
		if cur.Token == 0 {
			cur, from = t, now.UnixNano()
		}
		last = now.UnixNano()
		if now.Sub(reported) >= 50*time.Millisecond {
			emit(chaos.Event{Ev: "live", ID: c.id, Token: cur.Token, From: from, To: last})
			reported = now
		}
		if now.Sub(lastWrite) >= c.every && c.ledger != "" {
			lastWrite = now
			write(t, ledger, c)
		}
	}
}

// write sends one write to the ledger under t, bounded by t.Ctx.
func write(t sdk.Term, hc *http.Client, c config) {
	b, _ := json.Marshal(chaos.LedgerWrite{Tenant: os.Getenv(sdk.EnvTenant), Member: c.id, Token: t.Token})
	req, err := http.NewRequestWithContext(t.Ctx, http.MethodPost, c.ledger, bytes.NewReader(b))
	if err != nil {
		return
	}
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

// farm joins the service as a farm member and stays.
func farm(ctx context.Context, c config) error {
	m, err := join(ctx, c, sdk.Instance{Service: c.service, ID: c.id, Address: "127.0.0.1:2"},
		sdk.WithRoleChange(func(rc sdk.RoleChange) {
			emit(chaos.Event{Ev: "role", ID: c.id, Role: rc.Role.String(), At: rc.At.UnixNano()})
		}))
	if err != nil {
		return err
	}
	defer leave(m)
	select {
	case <-ctx.Done():
		return nil
	case <-m.Done():
		return fmt.Errorf("member ended: %w", m.Err())
	}
}

// watch watches every service named and reports each snapshot.
func watch(ctx context.Context, c config) error {
	var cl *sdk.Client
	for {
		var err error
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		cl, err = sdk.Connect(cctx, c.sdkOptions()...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		emit(chaos.Event{Ev: "error", ID: c.id, Err: "connect: " + err.Error()})
		time.Sleep(200 * time.Millisecond)
	}
	defer cl.Close()
	var wg sync.WaitGroup
	for _, name := range strings.Split(c.service, ",") {
		wg.Go(func() {
			var svc *sdk.Service
			for svc == nil {
				var err error
				sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				svc, err = cl.Service(sctx, name)
				cancel()
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					emit(chaos.Event{Ev: "error", ID: c.id, Err: "service: " + err.Error()})
				}
			}
			n := 0
			var kept []chaos.Instance
			for s := range svc.Watch(ctx) {
				n++
				ins := make([]chaos.Instance, 0, len(s.Instances))
				for _, in := range s.Instances {
					ins = append(ins, chaos.Instance{ID: in.ID, Weight: in.Weight, State: string(in.State)})
				}
				if c.staleAfter > 0 && n > c.staleAfter {
					ins = kept // the control: a cache that stopped applying changes
				} else {
					kept = ins
				}
				var tok uint64
				if s.Master != nil {
					tok = s.Master.FencingToken
				}
				emit(chaos.Event{Ev: "snap", ID: c.id, Service: name, Index: s.Index, Instances: ins, Master: tok})
			}
		})
	}
	emit(chaos.Event{Ev: "joined", ID: c.id})
	wg.Wait()
	return nil
}

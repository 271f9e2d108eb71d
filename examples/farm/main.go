// Command farm shows Rafting's farm mode and client-side load balancing:
// three instances of a tiny HTTP service join the "farm-demo" service, and
// a caller sends requests through each balancer (round robin, Monte
// Carlo, least loaded, and a custom one) and prints where they went. Then
// one instance is killed with SIGKILL and another stopped gracefully, and
// the caller stops picking each of them.
//
// With a cluster running (make run) and its settings exported:
//
//	export RAFTING_SERVERS=127.0.0.1:7070,127.0.0.1:7170,127.0.0.1:7270 RAFTING_TOKEN=...
//	go run ./examples/farm
//
// runs the whole demo: it starts the instances as child processes of its
// own. The parts also run alone, in separate terminals:
//
//	go run ./examples/farm -role instance -id farm-1 -port 8081
//	go run ./examples/farm -role caller
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
)

const service = "farm-demo"

func main() {
	role := flag.String("role", "demo", "demo (everything), instance or caller")
	id := flag.String("id", "", "instance: its ID (default: generated)")
	port := flag.Int("port", 0, "instance: HTTP port on 127.0.0.1 (0: any free port)")
	weight := flag.Int("weight", 100, "instance: its weight")
	zone := flag.String("zone", "", "instance: its zone")
	requests := flag.Int("requests", 300, "caller: requests per balancer")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if os.Getenv(sdk.EnvServers) == "" {
		log.Fatalf("set %s, %s and %s (make run prints them)", sdk.EnvServers, sdk.EnvTenant, sdk.EnvToken)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "instance":
		err = instance(ctx, *id, *port, *weight, *zone)
	case "caller":
		err = caller(ctx, *requests)
	case "demo":
		err = demo(ctx, *requests)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// instance serves "GET /" with its ID, joined as a farm member until told
// to stop (SIGTERM, Ctrl-C): then it leaves gracefully.
func instance(ctx context.Context, id string, port, weight int, zone string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	m, err := sdk.Join(ctx, sdk.Instance{Service: service, ID: id, Address: ln.Addr().String(), Weight: weight, Zone: zone})
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // some work
		io.WriteString(w, m.ID())
	})}
	go srv.Serve(ln)
	log.Printf("instance %s serving on %s (weight %d, zone %q)", m.ID(), ln.Addr(), weight, zone)
	<-ctx.Done()
	start := time.Now()
	err = m.Leave(context.Background()) // draining first: callers stop picking it, then it deregisters
	log.Printf("instance %s left in %v", m.ID(), time.Since(start).Round(time.Millisecond))
	srv.Shutdown(context.Background())
	return err
}

// policies are the balancers the caller compares.
func policies() []struct {
	name string
	p    balancer.Policy
} {
	return []struct {
		name string
		p    balancer.Policy
	}{
		{"round robin", balancer.RoundRobin()},
		{"monte carlo (by weight)", balancer.MonteCarlo()},
		{"least loaded", balancer.LeastLoaded()},
		{"custom: zone a first", balancer.Func(zoneFirst("a"))},
	}
}

// zoneFirst is a custom policy: a random endpoint of the zone, else any.
func zoneFirst(zone string) func([]balancer.Endpoint) (balancer.Endpoint, error) {
	return func(eps []balancer.Endpoint) (balancer.Endpoint, error) {
		n := 0
		for _, e := range eps {
			if e.Zone == zone {
				n++
			}
		}
		if n == 0 {
			return eps[rand.IntN(len(eps))], nil
		}
		k := rand.IntN(n)
		for _, e := range eps {
			if e.Zone == zone {
				if k == 0 {
					return e, nil
				}
				k--
			}
		}
		return balancer.Endpoint{}, balancer.ErrNoEndpoints
	}
}

type callerState struct {
	svc       *sdk.Service
	balancers []*balancer.Balancer
	http      *http.Client
}

func newCaller(ctx context.Context) (*sdk.Client, *callerState, error) {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	svc, err := c.Service(ctx, service)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	cs := &callerState{svc: svc, http: &http.Client{Timeout: time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for _, p := range policies() {
		cs.balancers = append(cs.balancers, svc.Balancer(p.p)) // once per policy; kept current by the SDK
	}
	return c, cs, nil
}

// round sends n requests through each balancer, 8 at a time, and prints
// where they went.
func (cs *callerState) round(ctx context.Context, n int) {
	for i, p := range policies() {
		b := cs.balancers[i]
		counts := map[string]int{}
		failed := 0
		results := make(chan string, n)
		sem := make(chan struct{}, 8)
		for range n {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				// Do picks, reports the outcome, and on a failure
				// (the killed instance refusing) tries another one.
				var who string
				err := balancer.Do(ctx, b, 3, func(ctx context.Context, ep balancer.Endpoint) error {
					var err error
					who, err = cs.get(ctx, ep.Address)
					return err
				})
				if errors.Is(err, balancer.ErrNoEndpoints) {
					who = "(no endpoint)"
				} else if err != nil {
					who = "(failed)"
				}
				results <- who
			}()
		}
		for range n {
			r := <-results
			if strings.HasPrefix(r, "(") {
				failed++
			}
			counts[r]++
		}
		fmt.Printf("  %-24s %s\n", p.name, histogram(counts, n))
	}
}

func (cs *callerState) get(ctx context.Context, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := cs.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", balancer.StatusError(resp.StatusCode) // a 5xx: tried on another
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func histogram(counts map[string]int, n int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s %3d%%  ", k, (100*counts[k]+n/2)/n)
	}
	return sb.String()
}

func (cs *callerState) ready() []string {
	var ids []string
	for _, in := range cs.svc.Snapshot().Ready() {
		ids = append(ids, in.ID)
	}
	return ids
}

// caller prints the distribution every few seconds until stopped.
func caller(ctx context.Context, n int) error {
	c, cs, err := newCaller(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for ctx.Err() == nil {
		fmt.Printf("ready: %v\n", cs.ready())
		cs.round(ctx, n)
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
	}
	return ctx.Err()
}

// demo runs three instances as child processes and a caller, then kills
// one (SIGKILL) and stops another (SIGTERM: a graceful Leave).
func demo(ctx context.Context, n int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	specs := []struct {
		id, zone string
		weight   int
	}{{"farm-1", "a", 100}, {"farm-2", "a", 200}, {"farm-3", "b", 100}}
	children := map[string]*exec.Cmd{}
	defer func() {
		for _, cmd := range children {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, cmd := range children {
			cmd.Wait()
		}
	}()
	for _, s := range specs {
		cmd := exec.Command(self, "-role", "instance", "-id", s.id, "-zone", s.zone, "-weight", strconv.Itoa(s.weight))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		children[s.id] = cmd
	}
	c, cs, err := newCaller(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := waitFor(ctx, cs, "three instances", func(ids []string) bool { return len(ids) == 3 }); err != nil {
		return err
	}
	fmt.Printf("\n== three instances (farm-2 has weight 200; farm-3 is in zone b), %d requests per balancer:\n", n)
	cs.round(ctx, n)

	fmt.Println("\n== kill -9 farm-3: its session stream drops, the servers end its session after drop_grace")
	start := time.Now()
	children["farm-3"].Process.Kill()
	children["farm-3"].Wait()
	delete(children, "farm-3")
	if err := waitFor(ctx, cs, "farm-3 to go", func(ids []string) bool { return !slices.Contains(ids, "farm-3") }); err != nil {
		return err
	}
	fmt.Printf("   the caller stopped picking farm-3 %v after the kill\n", time.Since(start).Round(time.Millisecond))
	cs.round(ctx, n)

	fmt.Println("\n== SIGTERM farm-2: it leaves gracefully (draining, then deregistered)")
	start = time.Now()
	children["farm-2"].Process.Signal(syscall.SIGTERM)
	if err := waitFor(ctx, cs, "farm-2 to go", func(ids []string) bool { return !slices.Contains(ids, "farm-2") }); err != nil {
		return err
	}
	fmt.Printf("   the caller stopped picking farm-2 %v after SIGTERM (while it still served)\n", time.Since(start).Round(time.Millisecond))
	cs.round(ctx, n)
	children["farm-2"].Wait()
	delete(children, "farm-2")
	fmt.Println("\n== done; farm-1 leaves on exit")
	return nil
}

// waitFor waits until every balancer's endpoints satisfy cond. Balancers
// follow the cache's snapshot a debounce time (2 ms) after it changes.
func waitFor(ctx context.Context, cs *callerState, what string, cond func([]string) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for snap := range cs.svc.Watch(ctx) {
		_ = snap // woken by each change; the balancers follow shortly
		for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if all(cs.balancers, cond) {
				return nil
			}
		}
	}
	return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
}

func all(bs []*balancer.Balancer, cond func([]string) bool) bool {
	for _, b := range bs {
		var ids []string
		for _, e := range b.Endpoints() {
			ids = append(ids, e.ID)
		}
		if !cond(ids) {
			return false
		}
	}
	return true
}

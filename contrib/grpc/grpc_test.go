package raftinggrpc_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	raftinggrpc "github.com/rafting/rafting/contrib/grpc"
	"github.com/rafting/rafting/contrib/grpc/internal/echo"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestGRPC runs real gRPC servers, registered as members of a real
// three-node Rafting cluster, behind a real gRPC client that resolves
// rafting:///service: a service per behaviour.
func TestGRPC(t *testing.T) {
	c := sdktest.Start(t)
	cl := c.Connect(t)
	t.Run("RoundRobin", func(t *testing.T) { testRoundRobin(t, c, cl) })
	t.Run("MonteCarloByWeight", func(t *testing.T) { testMonteCarlo(t, c, cl) })
	t.Run("LeastLoadedTracksInFlight", func(t *testing.T) { testLeastLoaded(t, c, cl) })
	t.Run("CustomPolicy", func(t *testing.T) { testCustomPolicy(t, c, cl) })
	t.Run("Membership", func(t *testing.T) { testMembership(t, c, cl) })
	t.Run("Leave", func(t *testing.T) { testLeave(t, c, cl) })
	t.Run("Crash", func(t *testing.T) { testCrash(t, c, cl) })
	t.Run("NoInstance", func(t *testing.T) { testNoInstance(t, cl) })
}

// instance is a real gRPC server and its member.
type instance struct {
	id      string
	addr    string
	srv     *grpc.Server
	m       *sdk.Member
	served  atomic.Int64
	entered chan struct{} // a "hold" call reached the handler
	release chan struct{} // closed: "hold" calls return
}

func (in *instance) Echo(ctx context.Context, msg string) (string, error) {
	in.served.Add(1)
	if msg == "hold" {
		select {
		case in.entered <- struct{}{}:
		default:
		}
		select {
		case <-in.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return in.id, nil
}

// serve starts a gRPC server for an instance of service, and joins it.
func serve(t *testing.T, c *sdktest.Cluster, service, id string) *instance {
	t.Helper()
	in := start(t, id)
	in.m = c.Join(t, sdk.Instance{Service: service, ID: id, Address: in.addr})
	return in
}

// start starts a gRPC server, stopped in the test's cleanup.
func start(t *testing.T, id string) *instance {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{id: id, addr: l.Addr().String(), srv: grpc.NewServer(),
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	echo.Register(in.srv, in)
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.srv.Serve(l)
	}()
	t.Cleanup(func() {
		in.srv.Stop()
		<-done
	})
	return in
}

// dial makes a ClientConn to rafting:///service balanced by p.
func dial(t *testing.T, cl *sdk.Client, service string, p balancer.Policy) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("rafting:///"+service,
		grpc.WithResolvers(raftinggrpc.NewBuilder(cl, p)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func call(t *testing.T, conn grpc.ClientConnInterface, msg string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return echo.Call(ctx, conn, msg)
}

// connected waits until every one of ids has answered a call: gRPC has
// a ready connection to each.
func connected(t *testing.T, conn grpc.ClientConnInterface, ids ...string) {
	t.Helper()
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(left) > 0 {
		got, err := call(t, conn, "hi")
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		delete(left, got)
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, no answer yet from %v", left)
		}
	}
}

// testRoundRobin: with every connection ready, calls go to the
// instances in turn.
func testRoundRobin(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	ins := []*instance{serve(t, c, "rr", "a"), serve(t, c, "rr", "b"), serve(t, c, "rr", "c")}
	conn := dial(t, cl, "rr", balancer.RoundRobin())
	connected(t, conn, "a", "b", "c")
	got := map[string]int{}
	for range 30 {
		id, err := call(t, conn, "hi")
		if err != nil {
			t.Fatal(err)
		}
		got[id]++
	}
	for _, in := range ins {
		if got[in.id] != 10 {
			t.Errorf("instance %s answered %d of 30 calls, want 10 (all: %v)", in.id, got[in.id], got)
		}
	}
}

// testMonteCarlo: calls go to the instances in proportion to the
// weights they joined with (100 and 300), which the resolver carries to
// the balancer.
func testMonteCarlo(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	for id, weight := range map[string]int{"light": 100, "heavy": 300} {
		in := start(t, id)
		in.m = c.Join(t, sdk.Instance{Service: "mc", ID: id, Address: in.addr, Weight: weight})
	}
	conn := dial(t, cl, "mc", balancer.MonteCarloSeed(7))
	connected(t, conn, "light", "heavy")
	const calls = 1000
	got := map[string]int{}
	for range calls {
		id, err := call(t, conn, "hi")
		if err != nil {
			t.Fatal(err)
		}
		got[id]++
	}
	// 750 expected; ±100 is over seven standard deviations.
	if got["heavy"] < 650 || got["heavy"] > 850 {
		t.Errorf("heavy (weight 300) answered %d of %d calls, light (100) %d; want about 3/4", got["heavy"], calls, got["light"])
	}
}

// testLeastLoaded: an RPC counts as in flight until it ends, so
// LeastLoaded sends the next ones to the other instance meanwhile; the
// same through a service config that names the policy, on gRPC's manual
// resolver.
func testLeastLoaded(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	x, y := serve(t, c, "ll", "x"), serve(t, c, "ll", "y")
	viaRafting := dial(t, cl, "ll", balancer.LeastLoaded())

	r := manual.NewBuilderWithScheme("manual")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: x.addr}, {Addr: y.addr}}})
	viaConfig, err := grpc.NewClient("manual:///ll", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"rafting":{"policy":"least_loaded"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer viaConfig.Close()

	ids := map[string]*instance{x.id: x, y.id: y, x.addr: x, y.addr: y}
	for _, tt := range []struct {
		name string
		conn *grpc.ClientConn
	}{{"Builder", viaRafting}, {"ServiceConfig", viaConfig}} {
		t.Run(tt.name, func(t *testing.T) {
			connected(t, tt.conn, "x", "y")
			x.release, y.release = make(chan struct{}), make(chan struct{})
			held := make(chan error, 1)
			go func() {
				_, err := call(t, tt.conn, "hold")
				held <- err
			}()
			var holder *instance
			select {
			case <-x.entered:
				holder = x
			case <-y.entered:
				holder = y
			case err := <-held:
				t.Fatalf("held call: %v", err)
			}
			for i := range 10 {
				id, err := call(t, tt.conn, "hi")
				if err != nil {
					t.Fatal(err)
				}
				if ids[id] == holder {
					t.Errorf("call %d went to %s, which holds a call in flight; want the other", i, id)
				}
			}
			close(holder.release)
			if err := <-held; err != nil {
				t.Errorf("held call: %v", err)
			}
		})
	}
	if _, err := grpc.NewClient("manual:///ll", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"rafting":{"policy":"fastest"}}]}`)); err == nil {
		t.Error(`NewClient with policy "fastest": no error, want one naming the policies`)
	}
}

// testCustomPolicy: a balancer.Func picks.
func testCustomPolicy(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	serve(t, c, "custom", "p1")
	serve(t, c, "custom", "p2")
	last := balancer.Func(func(eps []balancer.Endpoint) (balancer.Endpoint, error) {
		return eps[len(eps)-1], nil // the highest ID: the list is sorted
	})
	conn := dial(t, cl, "custom", last)
	deadline := time.Now().Add(10 * time.Second)
	for { // until p2's connection is ready, calls may go to p1
		id, err := call(t, conn, "hi")
		if err != nil {
			t.Fatal(err)
		}
		if id == "p2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("p2 never picked in 10s")
		}
	}
	for range 10 {
		if id, err := call(t, conn, "hi"); err != nil || id != "p2" {
			t.Fatalf("call = %q, %v; want p2, picked by the custom policy", id, err)
		}
	}
}

// testMembership: an instance that joins is called; one that drains is
// not.
func testMembership(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	serve(t, c, "members", "m1")
	conn := dial(t, cl, "members", nil)
	connected(t, conn, "m1")
	m2 := serve(t, c, "members", "m2")
	connected(t, conn, "m1", "m2") // the join reached the ClientConn

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m2.m.Update(ctx, sdk.SetState(api.StateDraining)); err != nil {
		t.Fatal(err)
	}
	svc, err := cl.Service(ctx, "members")
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEndpoints(t, svc, 1) // the cache has it drained
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 20; { // 20 calls in a row that avoid the drained instance
		id, err := call(t, conn, "hi")
		if err != nil {
			t.Fatal(err)
		}
		n++
		if id == "m2" {
			n = 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the drained instance still called after 10s")
		}
	}
}

// load calls conn from n goroutines until stop is closed, and records
// each failure with its start.
type load struct {
	ok       atomic.Int64
	mu       sync.Mutex
	failures []failure
	wg       sync.WaitGroup
	stop     chan struct{}
}

type failure struct {
	start time.Time
	err   error
}

func run(conn grpc.ClientConnInterface, n int) *load {
	l := &load{stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := echo.Call(ctx, conn, "hi")
				cancel()
				if err != nil {
					l.mu.Lock()
					l.failures = append(l.failures, failure{start, err})
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) end() []failure {
	close(l.stop)
	l.wg.Wait()
	return l.failures
}

// testLeave: an instance that leaves gracefully (drained, deregistered,
// then its server stopped gracefully) costs no call, under four
// concurrent callers.
func testLeave(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	serve(t, c, "leave", "l1")
	l2 := serve(t, c, "leave", "l2")
	serve(t, c, "leave", "l3")
	conn := dial(t, cl, "leave", balancer.LeastLoaded())
	connected(t, conn, "l1", "l2", "l3")

	ld := run(conn, 4)
	for ld.ok.Load() < 200 {
		time.Sleep(time.Millisecond) // let the load run first
	}
	start := time.Now()
	served := l2.served.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l2.m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	l2.srv.GracefulStop()
	took := time.Since(start)
	before := ld.ok.Load()
	for ld.ok.Load() < before+200 {
		time.Sleep(time.Millisecond)
	}
	failures := ld.end()
	t.Logf("graceful leave under 4 callers: %d calls ok, %d failed; l2 served %d calls during its Leave+GracefulStop (%v)",
		ld.ok.Load(), len(failures), l2.served.Load()-served, took.Round(time.Millisecond))
	for _, f := range failures {
		t.Errorf("a call failed across a graceful leave: %v", f.err)
	}
}

// testCrash: an instance crashes (its server stops at once, connections
// closed, as kill -9 would; its member's session drops) while a call is
// in flight on it and four callers keep calling: only calls in flight on
// it fail, with Unavailable; every call started after the client saw the
// connection drop succeeds, and the resolver drops the instance after
// the session's drop_grace.
func testCrash(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	k1 := serve(t, c, "crash", "k1")
	victim := serve(t, c, "crash", "k2")
	k3 := serve(t, c, "crash", "k3")
	close(k1.release) // only the victim holds "hold" calls
	close(k3.release)
	conn := dial(t, cl, "crash", balancer.RoundRobin())
	connected(t, conn, "k1", "k2", "k3")
	svc, err := cl.Service(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}

	ld := run(conn, 4)
	for ld.ok.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	held := make(chan error, 1)
	var heldEnd atomic.Int64
	go func() {
		for { // until a hold lands on the victim: then it blocks
			_, err := call(t, conn, "hold")
			if err != nil {
				heldEnd.Store(time.Now().UnixNano())
				held <- err
				return
			}
		}
	}()
	<-victim.entered
	crashAt := time.Now()
	victim.srv.Stop() // connections closed at once, the call in flight with them
	c.Crash(t, victim.m)
	err = <-held
	if status.Code(err) != codes.Unavailable {
		t.Errorf("the call in flight on the crashed instance: %v, want Unavailable", err)
	}
	seen := time.Unix(0, heldEnd.Load())
	okAtCrash := ld.ok.Load()
	c.WaitEndpoints(t, svc, 2) // the session ended: the membership follows
	gone := time.Since(crashAt)
	for ld.ok.Load() < okAtCrash+500 {
		time.Sleep(time.Millisecond)
	}
	failures := ld.end()
	late := 0
	for _, f := range failures {
		if !f.start.Before(seen) {
			late++
			t.Errorf("a call started %v after the client saw the crash failed: %v", f.start.Sub(seen), f.err)
		} else if status.Code(f.err) != codes.Unavailable {
			t.Errorf("a call in flight at the crash: %v, want Unavailable", f.err)
		}
	}
	if len(failures) > 4 {
		t.Errorf("%d calls of the load failed, want at most the 4 that may have been in flight", len(failures))
	}
	t.Logf("crash under 4 callers + 1 held call: %d calls ok after the crash, %d of the load failed (all in flight: %v), "+
		"the held call failed %v after the crash; the membership dropped it %v after the crash",
		ld.ok.Load()-okAtCrash, len(failures), late == 0, seen.Sub(crashAt).Round(time.Microsecond), gone.Round(time.Millisecond))
}

// testNoInstance: with no instance, a call fails fast with Unavailable,
// saying why.
func testNoInstance(t *testing.T, cl *sdk.Client) {
	conn := dial(t, cl, "empty", nil)
	_, err := call(t, conn, "hi")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `service "empty": no endpoints to pick`) {
		t.Errorf("call with no instance: %v, want Unavailable naming the service and no endpoints", err)
	}
}

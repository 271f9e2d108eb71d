package raftinggrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	rbalancer "github.com/rafting/rafting/balancer"
)

// Name is the gRPC load-balancing policy's name, for a service config:
// {"loadBalancingConfig": [{"rafting": {"policy": "least_loaded"}}]}.
// The rafting:/// resolver selects it itself.
const Name = "rafting"

// The policies a service config can name; a Builder's policy, which can
// be any balancer.Policy, goes without one.
const (
	RoundRobin  = "round_robin"  // balancer.RoundRobin()
	MonteCarlo  = "monte_carlo"  // balancer.MonteCarlo()
	LeastLoaded = "least_loaded" // balancer.LeastLoaded()
)

func init() { balancer.Register(builder{}) }

type builder struct{}

func (builder) Name() string { return Name }

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return &lb{cc: cc, target: opts.Target.Endpoint(), conns: map[string]*conn{}}
}

// config is the balancer's service config.
type config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	Policy                            string `json:"policy,omitempty"`
}

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c config
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, fmt.Errorf("raftinggrpc: balancer config: %w", err)
	}
	if _, err := namedPolicy(c.Policy); err != nil {
		return nil, err
	}
	return &c, nil
}

func namedPolicy(name string) (rbalancer.Policy, error) {
	switch name {
	case "", RoundRobin:
		return rbalancer.RoundRobin(), nil
	case MonteCarlo:
		return rbalancer.MonteCarlo(), nil
	case LeastLoaded:
		return rbalancer.LeastLoaded(), nil
	}
	return nil, fmt.Errorf("raftinggrpc: balancer config: policy %q: want %s, %s or %s", name, RoundRobin, MonteCarlo, LeastLoaded)
}

// lb is the balancer of one ClientConn: a SubConn per instance, and a
// Rafting Balancer over those whose connection is ready. Its Picker picks
// with the Rafting Balancer (no lock, no allocation of its own beyond the
// Done callback of a tracked pick) and reports each RPC's end to it.
type lb struct {
	cc     balancer.ClientConn
	target string

	mu        sync.Mutex
	policyKey any                 // what chose rb's policy: a *policyHolder or a name
	rb        *rbalancer.Balancer // over the ready SubConns
	conns     map[string]*conn    // by instance ID
	resolvErr error               // the resolver's last error
	connErr   error               // the last SubConn's connection error
	closed    bool
}

// conn is one instance's SubConn.
type conn struct {
	sc    balancer.SubConn
	ep    rbalancer.Endpoint
	state connectivity.State
}

func (b *lb) UpdateClientConnState(s balancer.ClientConnState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.resolvErr = nil
	b.choosePolicy(s)
	eps := endpointsIn(s.ResolverState)
	next := make(map[string]*conn, len(eps))
	for _, e := range eps {
		c := b.conns[e.ID]
		if c != nil && c.ep.Address == e.Address {
			c.ep = e // weight, zone or meta changed
			next[e.ID] = c
			continue
		}
		c = &conn{ep: e, state: connectivity.Idle}
		sc, err := b.cc.NewSubConn([]resolver.Address{{Addr: e.Address}}, balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.changed(c, st) },
		})
		if err != nil {
			continue // the ClientConn is closing
		}
		c.sc = sc
		next[e.ID] = c
		sc.Connect()
	}
	for id, c := range b.conns {
		if next[id] != c {
			c.sc.Shutdown() // RPCs started on it end normally
		}
	}
	b.conns = next
	b.publish()
	if len(eps) == 0 {
		return balancer.ErrBadResolverState
	}
	return nil
}

// choosePolicy makes rb with the policy the resolver carries (a
// Builder's), else the service config's, if it changed.
func (b *lb) choosePolicy(s balancer.ClientConnState) {
	var key any
	var p rbalancer.Policy
	if h, ok := s.ResolverState.Attributes.Value(policyKey{}).(*policyHolder); ok {
		key, p = h, h.p
	} else {
		name := ""
		if c, ok := s.BalancerConfig.(*config); ok {
			name = c.Policy
		}
		key = name
		p, _ = namedPolicy(name) // ParseConfig checked it
	}
	if b.rb != nil && key == b.policyKey {
		return
	}
	b.policyKey = key
	b.rb = rbalancer.New(p, rbalancer.WithName(fmt.Sprintf("raftinggrpc: service %q", b.target)))
}

// endpointsIn returns the instances of a resolver state: the rafting:///
// resolver's carry them; an address from another resolver is an instance
// whose ID is its address.
func endpointsIn(s resolver.State) []rbalancer.Endpoint {
	var eps []rbalancer.Endpoint
	seen := map[string]bool{}
	add := func(e rbalancer.Endpoint) {
		if !seen[e.ID] {
			seen[e.ID] = true
			eps = append(eps, e)
		}
	}
	for _, ge := range s.Endpoints {
		if len(ge.Addresses) == 0 {
			continue
		}
		if a, ok := ge.Attributes.Value(endpointKey{}).(endpointAttr); ok {
			add(a.e)
			continue
		}
		addr := ge.Addresses[0].Addr
		add(rbalancer.Endpoint{ID: addr, Address: addr, Weight: rbalancer.DefaultWeight})
	}
	return eps
}

// changed records a SubConn's new state.
func (b *lb) changed(c *conn, st balancer.SubConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.conns[c.ep.ID] != c || st.ConnectivityState == connectivity.Shutdown {
		return
	}
	c.state = st.ConnectivityState
	switch c.state {
	case connectivity.TransientFailure:
		b.connErr = st.ConnectionError
	case connectivity.Idle:
		c.sc.Connect() // a connection lost: connect again at once, as round_robin does
	}
	b.publish()
}

// publish gives rb the ready SubConns and gRPC a new Picker and state:
// Ready while any SubConn is; else Connecting (RPCs wait) while any is
// connecting; else TransientFailure, with the reason.
func (b *lb) publish() {
	var ready []rbalancer.Endpoint
	scs := map[string]balancer.SubConn{}
	connecting := false
	for id, c := range b.conns {
		switch c.state {
		case connectivity.Ready:
			ready = append(ready, c.ep)
			scs[id] = c.sc
		case connectivity.Idle, connectivity.Connecting:
			connecting = true
		}
	}
	slices.SortFunc(ready, func(x, y rbalancer.Endpoint) int { return strings.Compare(x.ID, y.ID) })
	b.rb.Update(ready)
	switch {
	case len(ready) > 0:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: &picker{rb: b.rb, scs: scs}})
	case connecting:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting, Picker: errPicker{balancer.ErrNoSubConnAvailable}})
	default:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: errPicker{b.failure()}})
	}
}

// failure says why there is no connection to pick.
func (b *lb) failure() error {
	if len(b.conns) == 0 {
		_, _, err := b.rb.PickTracked() // the service's *NoEndpointsError
		if b.resolvErr != nil {
			err = errors.Join(err, b.resolvErr)
		}
		return err
	}
	if b.connErr != nil {
		return fmt.Errorf("raftinggrpc: service %q: no instance reachable: %w", b.target, b.connErr)
	}
	return fmt.Errorf("raftinggrpc: service %q: no instance reachable", b.target)
}

func (b *lb) ResolverError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resolvErr = err
	if b.closed || len(b.conns) > 0 {
		return // keep the instances known
	}
	if b.rb == nil {
		b.rb = rbalancer.New(nil, rbalancer.WithName(fmt.Sprintf("raftinggrpc: service %q", b.target)))
	}
	b.publish()
}

// UpdateSubConnState is not called: every SubConn has a StateListener.
func (b *lb) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *lb) ExitIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		if c.state == connectivity.Idle {
			c.sc.Connect()
		}
	}
}

func (b *lb) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, c := range b.conns {
		c.sc.Shutdown()
	}
	b.conns = nil
}

// picker picks with the Rafting Balancer among the SubConns that were
// ready when it was made.
type picker struct {
	rb  *rbalancer.Balancer
	scs map[string]balancer.SubConn
}

func (p *picker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	e, done, err := p.rb.PickTracked()
	if err != nil {
		return balancer.PickResult{}, err
	}
	sc, ok := p.scs[e.ID]
	if !ok { // rb was updated since: the new Picker is on its way
		done.Release()
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	if done == (rbalancer.Done{}) { // a Func or custom Picker: nothing to report
		return balancer.PickResult{SubConn: sc}, nil
	}
	return balancer.PickResult{SubConn: sc, Done: func(di balancer.DoneInfo) { finish(done, di) }}, nil
}

// finish reports an RPC's end to the Rafting Balancer. Codes that say
// the instance failed (Unavailable, Internal, Unknown, DataLoss) count
// towards its ejection, as a 5xx does for balancer.Do; the caller's own
// end (Canceled, DeadlineExceeded) and a pick gRPC did not use count for
// nothing; any other code is the application's answer, a success.
func finish(done rbalancer.Done, di balancer.DoneInfo) {
	if di.Err == nil {
		if !di.BytesSent && !di.BytesReceived {
			done.Release() // the SubConn was no longer ready: not sent
			return
		}
		done.Finish(nil)
		return
	}
	switch status.Code(di.Err) {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DataLoss:
		done.Finish(di.Err)
	case codes.Canceled, codes.DeadlineExceeded:
		done.Finish(context.Canceled) // counted neither way
	default:
		done.Finish(nil)
	}
}

// errPicker fails every pick with err.
type errPicker struct{ err error }

func (p errPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}

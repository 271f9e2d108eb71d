package raftinggrpc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/rafting/rafting/api"
	rbalancer "github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
)

// Scheme is the resolver's URL scheme: rafting:///service.
const Scheme = "rafting"

// firstWait bounds each wait for a service's first answer, after which
// the resolver reports the error to gRPC (RPCs that do not wait for
// ready fail with it) and waits again.
const firstWait = 5 * time.Second

// Builder is the rafting:/// resolver of one sdk.Client: give it to
// grpc.NewClient with grpc.WithResolvers. See the package doc.
type Builder struct {
	c      *sdk.Client
	policy *policyHolder
}

// NewBuilder returns the rafting:/// resolver over c's membership cache,
// whose ClientConns balance with policy p: RoundRobin (nil), MonteCarlo,
// LeastLoaded or your own. Keep c open while they live.
func NewBuilder(c *sdk.Client, p rbalancer.Policy) *Builder {
	if p == nil {
		p = rbalancer.RoundRobin()
	}
	return &Builder{c: c, policy: &policyHolder{p}}
}

// Scheme returns "rafting".
func (b *Builder) Scheme() string { return Scheme }

// Build starts following the service named by target's path,
// rafting:///orders for "orders". It does not wait for the first answer.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name := target.Endpoint()
	if target.URL.Host != "" {
		return nil, fmt.Errorf("raftinggrpc: target %s: write rafting:///%s: the Client names the tenant, the target only the service", target.URL.String(), name)
	}
	if err := api.ValidateName("service", name); err != nil {
		return nil, fmt.Errorf("raftinggrpc: target %s: %w", target.URL.String(), err)
	}
	sc := cc.ParseServiceConfig(`{"loadBalancingConfig":[{"` + Name + `":{}}]}`)
	if sc.Err != nil {
		return nil, fmt.Errorf("raftinggrpc: %w", sc.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watcher{c: b.c, name: name, cc: cc, sc: sc, policy: b.policy, cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(ctx)
	}()
	return r, nil
}

// watcher is the resolver of one ClientConn: it feeds the service's
// cache to gRPC.
type watcher struct {
	c      *sdk.Client
	name   string
	cc     resolver.ClientConn
	sc     *serviceconfig.ParseResult
	policy *policyHolder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ResolveNow does nothing: the cache follows every change as it happens.
func (r *watcher) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watcher and waits for it.
func (r *watcher) Close() {
	r.cancel()
	r.wg.Wait()
}

// run waits for the service's first answer, then sends gRPC the endpoints
// of each snapshot that changes them, until ctx ends or the Client closes.
func (r *watcher) run(ctx context.Context) {
	var svc *sdk.Service
	for svc == nil {
		wctx, cancel := context.WithTimeout(ctx, firstWait)
		s, err := r.c.Service(wctx, r.name)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.cc.ReportError(fmt.Errorf("raftinggrpc: %w", err))
			if errors.Is(err, sdk.ErrClosed) {
				return
			}
		}
		svc = s
	}
	var (
		known = map[string]rbalancer.Endpoint{} // pickable instances as last seen, for quarantines
		sent  []rbalancer.Endpoint
		first = true
	)
	for snap := range svc.Watch(ctx) {
		eps := endpointsOf(snap, known)
		if !first && slices.EqualFunc(eps, sent, sameEndpoint) {
			continue // the master, the policy or staleness changed
		}
		first, sent = false, eps
		_ = r.cc.UpdateState(r.state(eps)) // an empty list is refused: the balancer says why
	}
}

// state is the resolver.State of eps: one gRPC endpoint per instance,
// carrying the instance as the balancer sees it.
func (r *watcher) state(eps []rbalancer.Endpoint) resolver.State {
	st := resolver.State{ServiceConfig: r.sc}
	for _, e := range eps {
		addr := resolver.Address{Addr: e.Address}
		st.Addresses = append(st.Addresses, addr)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{
			Addresses:  []resolver.Address{addr},
			Attributes: attributes.New(endpointKey{}, endpointAttr{e}),
		})
	}
	st.Attributes = attributes.New(policyKey{}, r.policy)
	return st
}

// endpointsOf returns what the SDK's balancers pick from in snap: the
// ready instances of positive weight, and the ones a quarantine keeps
// (sdk.WithQuarantine), as they were when last seen ready; sorted by ID.
// known is the ready instances last seen, updated.
func endpointsOf(snap sdk.Snapshot, known map[string]rbalancer.Endpoint) []rbalancer.Endpoint {
	var eps []rbalancer.Endpoint
	present := make(map[string]bool, len(snap.Instances))
	for _, in := range snap.Instances {
		present[in.ID] = true
		if in.State != api.StateReady || in.Weight <= 0 {
			delete(known, in.ID)
			continue
		}
		e := rbalancer.Endpoint{ID: in.ID, Address: in.Address, Zone: in.Zone, Weight: in.Weight, Meta: in.Meta}
		known[in.ID] = e
		eps = append(eps, e)
	}
	held := make(map[string]bool, len(snap.Quarantined))
	for _, id := range snap.Quarantined {
		held[id] = true
		if e, ok := known[id]; ok && !present[id] {
			eps = append(eps, e)
		}
	}
	maps.DeleteFunc(known, func(id string, _ rbalancer.Endpoint) bool { return !present[id] && !held[id] })
	slices.SortFunc(eps, func(a, b rbalancer.Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return eps
}

func sameEndpoint(a, b rbalancer.Endpoint) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Zone == b.Zone && a.Weight == b.Weight && maps.Equal(a.Meta, b.Meta)
}

// endpointKey keys an instance in a gRPC endpoint's attributes.
type endpointKey struct{}

// endpointAttr is an instance in a gRPC endpoint's attributes; gRPC
// compares attributes, and an Endpoint's Meta is a map.
type endpointAttr struct{ e rbalancer.Endpoint }

func (a endpointAttr) Equal(o any) bool {
	b, ok := o.(endpointAttr)
	return ok && sameEndpoint(a.e, b.e)
}

// policyKey keys the Builder's policy in a resolver.State's attributes.
type policyKey struct{}

// policyHolder carries a Builder's policy to its ClientConns' balancers;
// it is compared by pointer, as a policy may not be comparable.
type policyHolder struct{ p rbalancer.Policy }

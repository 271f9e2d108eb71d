package watchcache

import (
	"cmp"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
)

// Pos orders what the servers say of a tenant across its incarnations:
// the epoch first, then the Raft index.
type Pos struct {
	Epoch uint64
	Index uint64
}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Pos) Compare(q Pos) int {
	if c := cmp.Compare(p.Epoch, q.Epoch); c != 0 {
		return c
	}
	return cmp.Compare(p.Index, q.Index)
}

// View is one state of the service as the cache published it. It is never
// modified once published: its slices and maps are shared with the cache
// and every reader, who must treat them as read-only.
type View struct {
	Service string
	Pos     // of the answer the view was last confirmed by
	// Instances is every registered instance, whatever its state, sorted
	// by ID.
	Instances []api.Instance
	Master    *api.Master // nil: none
	Policy    api.Policy
	// Stale: the last requests failed (Failed); the view is the last known.
	Stale bool
	// Synced is when an answer last confirmed the view (Config.Now).
	Synced time.Time
	// Quarantined is the IDs of the held endpoints, in the order Endpoints
	// has them.
	Quarantined []string

	modify  uint64              // the answer's modify index: same content when equal
	held    []balancer.Endpoint // quarantined: balancers keep them until holdEnd
	holdEnd time.Time
	changed chan struct{}
}

// Changed is closed when a View that a watcher should see replaces v.
func (v *View) Changed() <-chan struct{} { return v.changed }

// HoldEnd is when the quarantine ends (EndQuarantine); zero when v holds
// nothing in quarantine.
func (v *View) HoldEnd() time.Time { return v.holdEnd }

// Endpoints returns what balancers pick from: v's pickable instances, then
// the endpoints held in quarantine. The slice is new.
func (v *View) Endpoints() []balancer.Endpoint {
	return append(Endpoints(v.Instances), v.held...)
}

// Pickable reports whether balancers may pick in: ready, with a positive
// weight.
func Pickable(in api.Instance) bool { return in.State == api.StateReady && in.Weight > 0 }

// Endpoints turns instances into balancer endpoints: the pickable ones, in
// order.
func Endpoints(ins []api.Instance) []balancer.Endpoint {
	out := make([]balancer.Endpoint, 0, len(ins))
	for _, in := range ins {
		if Pickable(in) {
			out = append(out, endpoint(in))
		}
	}
	return out
}

func endpoint(in api.Instance) balancer.Endpoint {
	return balancer.Endpoint{ID: in.ID, Address: in.Address, Zone: in.Zone, Weight: in.Weight, Meta: in.Meta}
}

// SameEndpoint reports whether a and b are equal in every field, so that a
// balancer holding a need not be given b.
func SameEndpoint(a, b balancer.Endpoint) bool {
	if a.ID != b.ID || a.Address != b.Address || a.Zone != b.Zone || a.Weight != b.Weight || len(a.Meta) != len(b.Meta) {
		return false
	}
	for k, v := range a.Meta {
		if w, ok := b.Meta[k]; !ok || w != v {
			return false
		}
	}
	return true
}

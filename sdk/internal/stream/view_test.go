package stream

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

// TestViewMatchesMap: a view fed random snapshots and changes frames —
// duplicate keys, a key both deleted and upserted, deletes of keys it does
// not hold, unsorted frames — holds what applying each frame's deletes and
// then its upserts, in order, to a map holds; what it handed out before a
// change is unchanged by the change.
func TestViewMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	id := func() string { return fmt.Sprintf("i%02d", rng.IntN(40)) }
	for round := range 200 {
		var v View
		model := map[string]api.Instance{}
		snap := &api.ServerFrame{Type: api.FrameSnapshot, Index: 1}
		for range rng.IntN(30) {
			in := api.Instance{ID: id(), Weight: rng.IntN(100)}
			snap.Instances = append(snap.Instances, in)
			model[in.ID] = in
		}
		v.Snapshot(snap, 1)
		for n := range 20 {
			before := v.Service("s")
			kept := slices.Clone(before.Instances)
			f := &api.ServerFrame{Type: api.FrameChanges, Index: uint64(2 + n)}
			for range rng.IntN(4) {
				f.Delete = append(f.Delete, id())
			}
			for range rng.IntN(4) {
				f.Upsert = append(f.Upsert, api.Instance{ID: id(), Weight: rng.IntN(100)})
			}
			if err := v.Changes(f); err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Delete {
				delete(model, d)
			}
			for _, in := range f.Upsert {
				model[in.ID] = in
			}
			got := v.Service("s").Instances
			want := slices.SortedFunc(maps.Values(model), func(a, b api.Instance) int { return strings.Compare(a.ID, b.ID) })
			if !slices.EqualFunc(got, want, func(a, b api.Instance) bool { return a.ID == b.ID && a.Weight == b.Weight }) {
				t.Fatalf("round %d, frame %d: %+v\nview  %v\nmodel %v", round, n, f, got, want)
			}
			if !slices.EqualFunc(before.Instances, kept, func(a, b api.Instance) bool { return a.ID == b.ID && a.Weight == b.Weight }) {
				t.Fatalf("round %d, frame %d: a change modified what the view handed out before it", round, n)
			}
		}
	}
}

// TestViewKVsMatchesMap: the same for a configuration view's keys.
func TestViewKVsMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() string { return fmt.Sprintf("app/k%02d", rng.IntN(30)) }
	v := View{kv: true}
	model := map[string]api.KV{}
	v.Snapshot(&api.ServerFrame{Type: api.FrameSnapshot, Index: 1}, 1)
	for n := range 2000 {
		f := &api.ServerFrame{Type: api.FrameChanges, Index: uint64(2 + n)}
		for range rng.IntN(3) {
			f.Delete = append(f.Delete, key())
		}
		for range rng.IntN(3) {
			f.Put = append(f.Put, api.KV{Key: key(), ModIndex: uint64(2 + n)})
		}
		if err := v.Changes(f); err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Delete {
			delete(model, d)
		}
		for _, kv := range f.Put {
			model[kv.Key] = kv
		}
		want := slices.SortedFunc(maps.Values(model), func(a, b api.KV) int { return strings.Compare(a.Key, b.Key) })
		if got := v.KVs(); !slices.EqualFunc(got, want, func(a, b api.KV) bool { return a.Key == b.Key && a.ModIndex == b.ModIndex }) {
			t.Fatalf("frame %d: %+v\nview  %v\nmodel %v", n, f, got, want)
		}
	}
}

package stream

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/rafting/rafting/api"
)

// View is one watch's copy of a service: its last snapshot with every
// changes frame since applied, at the index of the last frame, of the
// epoch of the watch's result. The zero View holds nothing (index 0).
// It is not safe for concurrent use: a watch's reader owns it.
type View struct {
	has    bool
	index  uint64 // of the last frame; what a new watch asks from
	modify uint64 // the frame index that last changed the content
	epoch  uint64
	// instances (by ID) and kvs (by key) are sorted, and never modified
	// once made: each change makes new ones, so what Service and KVs
	// handed out stays as it was (see merge).
	instances []api.Instance
	master    *api.Master
	policy    api.Policy
	// kv: the view is of a key or subtree of the configuration store
	// (a watch_kv's), kept in kvs.
	kv  bool
	kvs []api.KV
}

// From is the index and epoch a new watch of the view asks from (0, 0:
// none yet).
func (v *View) From() (index, epoch uint64) {
	if !v.has {
		return 0, 0
	}
	return v.index, v.epoch
}

// Covered records a watch result without a snapshot: the view is the
// service at index (never below its own) of epoch. It reports false when
// the view holds nothing or another epoch, which the server never answers
// without a snapshot.
func (v *View) Covered(index, epoch uint64) bool {
	if !v.has || epoch != v.epoch {
		return false
	}
	v.index = max(v.index, index)
	return true
}

// Snapshot replaces the view with a snapshot frame's service, of epoch.
func (v *View) Snapshot(f *api.ServerFrame, epoch uint64) {
	v.has, v.index, v.modify, v.epoch = true, f.Index, f.Index, epoch
	if v.kv {
		v.kvs = merge(nil, f.KVs, nil, kvKey)
		return
	}
	v.instances = merge(nil, f.Instances, nil, instanceID)
	v.master = f.Master.Master
	v.policy = api.Policy{}
	if f.Policy != nil {
		v.policy = *f.Policy
	}
}

// Changes applies a changes frame. A frame before any snapshot, or one
// that goes back in index, is an error: the server broke its order.
func (v *View) Changes(f *api.ServerFrame) error {
	if !v.has {
		return fmt.Errorf("changes at index %d before a snapshot", f.Index)
	}
	if f.Index < v.index {
		return fmt.Errorf("changes at index %d after index %d", f.Index, v.index)
	}
	v.index, v.modify = f.Index, f.Index
	if v.kv {
		v.kvs = merge(v.kvs, f.Put, f.Delete, kvKey)
		return nil
	}
	v.instances = merge(v.instances, f.Upsert, f.Delete, instanceID)
	if f.Master.Set {
		v.master = f.Master.Master
	}
	if f.Policy != nil {
		v.policy = *f.Policy
	}
	return nil
}

// Service is the view as a REST read at its index would answer it
// (instances sorted by ID). The caller may keep its slices but must not
// modify them: they are the view's until its next change. ModifyIndex is
// the index of the frame that last changed it: equal ones hold the same
// content.
func (v *View) Service(name string) *api.ServiceResponse {
	r := &api.ServiceResponse{Index: v.index, ModifyIndex: v.modify, Service: name,
		Instances: v.instances, Policy: v.policy}
	if r.Instances == nil {
		r.Instances = []api.Instance{}
	}
	if v.master != nil {
		m := *v.master
		r.Master = &m
	}
	return r
}

// KVs is a configuration view's keys, sorted. The caller may keep the
// slice but must not modify it: it is the view's until its next change.
func (v *View) KVs() []api.KV {
	if v.kvs == nil {
		return []api.KV{}
	}
	return v.kvs
}

func instanceID(in *api.Instance) string { return in.ID }
func kvKey(kv *api.KV) string            { return kv.Key }

// merge returns sorted (by key, each key once) with the keys of del
// removed and up put in, an element of up replacing the one of its key
// (up after del, and a later one of up after an earlier one, as a frame's
// changes apply), as a new slice: sorted is left as it was. A change costs
// a copy of the view and a sort of the change, not a sort of the whole
// view (BenchmarkDecodeServiceStream in package sdk).
func merge[T any](sorted, up []T, del []string, key func(*T) string) []T {
	byKey := func(a, b T) int { return strings.Compare(key(&a), key(&b)) }
	if len(up) > 1 && !slices.IsSortedFunc(up, byKey) {
		up = slices.Clone(up)
		slices.SortStableFunc(up, byKey) // stable: the last of a key wins below
	}
	if len(del) > 1 && !slices.IsSorted(del) {
		del = slices.Clone(del)
		slices.Sort(del)
	}
	out := make([]T, 0, len(sorted)+len(up))
	i, j, d := 0, 0, 0
	for i < len(sorted) || j < len(up) {
		if j < len(up) && j+1 < len(up) && key(&up[j]) == key(&up[j+1]) {
			j++ // a later change of the same key replaces this one
			continue
		}
		var c int
		switch {
		case i == len(sorted):
			c = 1
		case j == len(up):
			c = -1
		default:
			c = strings.Compare(key(&sorted[i]), key(&up[j]))
		}
		switch {
		case c > 0:
			out = append(out, up[j])
			j++
		case c == 0:
			out = append(out, up[j])
			i++
			j++
		default:
			k := key(&sorted[i])
			for d < len(del) && del[d] < k {
				d++
			}
			if d == len(del) || del[d] != k {
				out = append(out, sorted[i])
			}
			i++
		}
	}
	return out
}

// decodeWatch decodes a watch result's body.
func decodeWatch(body json.RawMessage) (api.WatchResponse, error) {
	var r api.WatchResponse
	err := json.Unmarshal(body, &r)
	return r, err
}

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
	has       bool
	index     uint64 // of the last frame; what a new watch asks from
	modify    uint64 // the frame index that last changed the content
	epoch     uint64
	instances map[string]api.Instance
	master    *api.Master
	policy    api.Policy
	// kv: the view is of a key or subtree of the configuration store
	// (a watch_kv's), kept in kvs.
	kv  bool
	kvs map[string]api.KV
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
		v.kvs = make(map[string]api.KV, len(f.KVs))
		for _, kv := range f.KVs {
			v.kvs[kv.Key] = kv
		}
		return
	}
	v.instances = make(map[string]api.Instance, len(f.Instances))
	for _, in := range f.Instances {
		v.instances[in.ID] = in
	}
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
		for _, k := range f.Delete {
			delete(v.kvs, k)
		}
		for _, kv := range f.Put {
			v.kvs[kv.Key] = kv
		}
		return nil
	}
	for _, id := range f.Delete {
		delete(v.instances, id)
	}
	for _, in := range f.Upsert {
		v.instances[in.ID] = in
	}
	if f.Master.Set {
		v.master = f.Master.Master
	}
	if f.Policy != nil {
		v.policy = *f.Policy
	}
	return nil
}

// Service is the view as a REST read at its index would answer it
// (instances sorted by ID, fresh slices the caller may keep). ModifyIndex
// is the index of the frame that last changed it: equal ones hold the
// same content.
func (v *View) Service(name string) *api.ServiceResponse {
	r := &api.ServiceResponse{Index: v.index, ModifyIndex: v.modify, Service: name,
		Instances: make([]api.Instance, 0, len(v.instances)), Policy: v.policy}
	for _, in := range v.instances {
		r.Instances = append(r.Instances, in)
	}
	slices.SortFunc(r.Instances, func(a, b api.Instance) int { return strings.Compare(a.ID, b.ID) })
	if v.master != nil {
		m := *v.master
		r.Master = &m
	}
	return r
}

// KVs is a configuration view's keys, sorted (a fresh slice the caller may
// keep).
func (v *View) KVs() []api.KV {
	out := make([]api.KV, 0, len(v.kvs))
	for _, kv := range v.kvs {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b api.KV) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// decodeWatch decodes a watch result's body.
func decodeWatch(body json.RawMessage) (api.WatchResponse, error) {
	var r api.WatchResponse
	err := json.Unmarshal(body, &r)
	return r, err
}

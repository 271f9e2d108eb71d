package httpapi

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
)

// Watches of the configuration store on client streams (watch_kv): one key,
// or a subtree, followed by the same feeds, views, ordering, resync and
// flow control as service watches (clientstream_watch.go). A view holds
// the key or the whole subtree with values; its snapshot is every key, its
// changes the keys put (whole, with their values) and deleted since the
// view the client holds.

// What one watch of the store may hold: a subtree with more keys or more
// bytes of values is refused (413, watch a narrower prefix), so that its
// snapshot fits a frame (values are sent as base64, and as text too when
// they are UTF-8: about 2.4 times their size).
const (
	kvWatchKeys  = 10000
	kvWatchBytes = 256 << 10
)

var errKVTooLarge = errors.New("more than a watch may hold")

// kvContent is a key or subtree as a watch sends it.
type kvContent struct {
	kvs  []api.KV // in key order, each with its text when it is UTF-8
	full bool     // over kvWatchKeys or kvWatchBytes: kvs is cut short
	cost int      // what reading it again costs the tenant's answer bytes (kvReadCost)
}

// kvReadCost is what a feed's read of kvs is charged to its tenant's answer
// bytes: what a REST read of them is charged (chargeKV), the subtree's
// size, whatever little of it changed.
func kvReadCost(kvs []api.KV) int {
	n := 64
	for _, kv := range kvs {
		n += len(kv.Key) + 4*len(kv.Value) + 128
	}
	return n
}

// readKV reads a key (or, with prefix, a subtree) for a feed.
func readKV(t *cluster.Tenant, key string, prefix bool) (modify, applied uint64, body content) {
	kvs, full, modify, applied := t.SM.KVWatchRead(key, prefix, kvWatchKeys, kvWatchBytes)
	for i := range kvs {
		kvs[i].WithText()
	}
	return modify, applied, &kvContent{kvs: kvs, full: full, cost: kvReadCost(kvs)}
}

func (c *kvContent) snapshot() ([]byte, error) {
	if c.full {
		return nil, errKVTooLarge
	}
	b, err := json.Marshal(struct {
		KVs []api.KV `json:"kvs"`
	}{c.kvs})
	if err != nil {
		return nil, err
	}
	return append(b[1:], '\n'), nil
}

func (c *kvContent) deltaFrom(prev content, index uint64) ([]byte, error) {
	if c.full {
		return nil, errKVTooLarge
	}
	a := prev.(*kvContent)
	var d struct {
		Index  uint64   `json:"index"`
		Put    []api.KV `json:"put,omitempty"`
		Delete []string `json:"delete,omitempty"`
	}
	d.Index = index
	i, j := 0, 0
	for i < len(a.kvs) || j < len(c.kvs) {
		switch {
		case j == len(c.kvs) || i < len(a.kvs) && a.kvs[i].Key < c.kvs[j].Key:
			d.Delete = append(d.Delete, a.kvs[i].Key)
			i++
		case i == len(a.kvs) || c.kvs[j].Key < a.kvs[i].Key:
			d.Put = append(d.Put, c.kvs[j])
			j++
		default:
			// A key's mod_index moves with every put of it (and a key
			// deleted and created again has a new create_index).
			if a.kvs[i].ModIndex != c.kvs[j].ModIndex || a.kvs[i].CreateIndex != c.kvs[j].CreateIndex {
				d.Put = append(d.Put, c.kvs[j])
			}
			i++
			j++
		}
	}
	if d.Put == nil && d.Delete == nil {
		return nil, nil
	}
	out, err := json.Marshal(&d)
	if err != nil {
		return nil, err
	}
	if len(out) > api.MaxFrameBytes-64 {
		return nil, errKVTooLarge // the client watches again, and is told why
	}
	return append(out[1:], '\n'), nil
}

// kvWatchable checks that a watch of the store can start from v: its
// snapshot fits a frame, and is charged to the tenant's answer bytes as a
// REST read of the subtree is.
func (cs *clientStream) kvWatchable(v *view) error {
	snap, err := v.snapshot()
	if errors.Is(err, errKVTooLarge) || err == nil && len(snap) > api.MaxFrameBytes-64 {
		return api.Errorf(api.CodeTooLarge, "key: the watched subtree holds more than a watch may (%d keys, %d bytes of values, one frame of %d bytes): watch a narrower prefix",
			kvWatchKeys, kvWatchBytes, api.MaxFrameBytes)
	}
	if err != nil {
		return api.Errorf(api.CodeInternal, "encode the watch's snapshot: %v", err)
	}
	if cs.who.tenant != "" {
		return cs.s.chargeAnswer(cs.who.tenant, len(snap), time.Now())
	}
	return nil
}

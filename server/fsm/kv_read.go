package fsm

import "github.com/rafting/rafting/api"

// Reads of the configuration store. Each takes the read lock; the values
// they return are the state's own (never changed in place): callers must
// not modify them.

// KV returns one key and the applied index it was read at; ok is false
// when the key does not exist.
func (t *Tenant) KV(key string) (kv api.KV, ok bool, applied uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.st.KV[key]
	if e == nil {
		return api.KV{}, false, t.st.Applied
	}
	return *t.kvView(key, e, true), true, t.st.Applied
}

// KVList returns the keys of prefix's subtree (every key for ""), from
// start on, in byte order: at most limit of them, and no more once their
// values reach maxBytes (one at least). next is the first key left out,
// "" when none is.
func (t *Tenant) KVList(prefix, start string, limit, maxBytes int) (kvs []api.KV, next string, applied uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	kvs = []api.KV{}
	size := 0
	t.rangeKV(prefix, start, func(key string) bool {
		if len(kvs) >= limit || len(kvs) > 0 && size >= maxBytes {
			next = key
			return false
		}
		e := t.st.KV[key]
		size += len(e.Value)
		kvs = append(kvs, *t.kvView(key, e, true))
		return true
	})
	return kvs, next, t.st.Applied
}

// KVWatchRead is what a watch of the configuration store sends, in one
// consistent read: the key (prefix false; none when it does not exist) or
// every key of prefix's subtree, with values, in byte order, at most limit
// keys and maxBytes of values (more sets full); the key's or subtree's
// modify index (KVModifyIndex) and the applied index.
func (t *Tenant) KVWatchRead(key string, prefix bool, limit, maxBytes int) (kvs []api.KV, full bool, modify, applied uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	kvs = []api.KV{}
	modify, applied = t.kvModify(key, prefix), t.st.Applied
	if !prefix {
		if e := t.st.KV[key]; e != nil {
			kvs = append(kvs, *t.kvView(key, e, true))
		}
		return kvs, false, modify, applied
	}
	size := 0
	t.rangeKV(key, "", func(k string) bool {
		e := t.st.KV[k]
		if len(kvs) >= limit || size+len(e.Value) > maxBytes {
			full = true
			return false
		}
		size += len(e.Value)
		kvs = append(kvs, *t.kvView(k, e, true))
		return true
	})
	return kvs, full, modify, applied
}

// KVModifyIndex is what a blocking read of a key (prefix false) or of a
// subtree waits on: the index of the last put or delete of the key, or
// under the subtree. For a key or subtree with no record (deleted, or
// never written) it is the nearest ancestor subtree's: an upper bound.
func (t *Tenant) KVModifyIndex(key string, prefix bool) uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.kvModify(key, prefix)
}

func (t *Tenant) kvModify(key string, prefix bool) uint64 {
	if e := t.st.KV[key]; e != nil {
		if _, below := t.st.KVTree[key]; !prefix || !below {
			return e.ModIndex // a key, or a subtree of one key
		}
	}
	for {
		if i, ok := t.st.KVTree[key]; ok || key == "" {
			return i
		}
		key = api.KeyParent(key)
	}
}

// WatchKV is Watch for the configuration store: in one consistent read,
// the key's (or, with prefix, the subtree's) modify index, the applied
// index, and a channel closed at the next change that matters — the next
// applied batch while applied < minApplied, else the next put or delete of
// the key, or of any key in the subtree. A change elsewhere never closes
// it. Call done when no longer waiting.
func (t *Tenant) WatchKV(key string, prefix bool, minApplied uint64) (modify, applied uint64, wake <-chan struct{}, done func()) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	applied = t.st.Applied
	modify = t.kvModify(key, prefix)
	if applied < minApplied {
		return modify, applied, t.watch.appliedChan(), func() {}
	}
	if prefix {
		wake, done = t.watch.chanIn(&t.watch.trees, key)
	} else {
		wake, done = t.watch.chanIn(&t.watch.keys, key)
	}
	return modify, applied, wake, done
}

// DurableKV returns what a backup takes of the store: every permanent key
// (one without a session), sorted, and the applied index it was read at.
func (t *Tenant) DurableKV() ([]api.KV, uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := []api.KV{}
	for _, key := range t.kv.keys {
		if e := t.st.KV[key]; e.Session == "" {
			out = append(out, *t.kvView(key, e, true))
		}
	}
	return out, t.st.Applied
}

// KVVersion reports whether the state holds a configuration store (its
// version is at least 3).
func (t *Tenant) KVVersion() bool {
	return t.Version() >= kvVersion
}

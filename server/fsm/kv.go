package fsm

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

// The configuration store: a key-value store per tenant, in the tenant's
// state (DESIGN.md, "Configuration"; the key rules are api.ValidateKey's).
//
// Every write is a transaction underneath: compares, then puts and
// deletes, applied all together or not at all. A PUT with if_index is a
// compare on the key's mod_index and a put; a DELETE with if_index a
// compare and a delete. Quotas (max_keys, max_kv_bytes) are counted on
// the result, and a write that does not grow what a quota counts is never
// refused by it: a tenant over a lowered quota can still shrink.
//
// A key owned by a session (ephemeral) is deleted by the entry that ends
// the session (a close or an expiry), at that entry's index. A put names
// the session that owns the key, or none to keep the current owner (an
// operator's update of an ephemeral key leaves it ephemeral, as a
// registration leaves an instance's session); a put naming a session on a
// key another live session owns is refused 409, as for instances.
//
// Indexes: each key has create_index, mod_index and version (etcd's). Each
// subtree with keys below it has the index of its last change (kv_tree),
// put or delete, for blocking reads on a prefix; a key that never had keys
// below it is its own subtree, whose index is its mod_index (a key that
// had keys below it keeps its entry while it lives: its mod_index may be
// older than their deletes). A subtree that is no key and has none left
// drops its entry, and a read of it falls back to the nearest ancestor's —
// an upper bound, which can only end a wait early, never miss a change;
// the index a blocking read waits on never goes back.

// KVPut writes one key. IfIndex, when set, is a compare on the key's
// mod_index (0: the key must not exist). Caller and Seq number the write
// under a session (X-Rafting-Sequence) as for registrations.
type KVPut struct {
	Key     string  `json:"key"`
	Value   []byte  `json:"value"`
	IfIndex *uint64 `json:"if_index,omitempty"`
	Session string  `json:"session,omitempty"`
	Caller  string  `json:"caller,omitempty"`
	Seq     uint64  `json:"seq,omitempty"`
	AtMs    int64   `json:"at_ms,omitempty"` // proposer's clock
}

// KVDelete deletes one key, or with Prefix its subtree (never every key:
// the prefix is not empty, and takes no IfIndex).
type KVDelete struct {
	Key     string  `json:"key"`
	Prefix  bool    `json:"prefix,omitempty"`
	IfIndex *uint64 `json:"if_index,omitempty"`
	Caller  string  `json:"caller,omitempty"`
	Seq     uint64  `json:"seq,omitempty"`
	AtMs    int64   `json:"at_ms,omitempty"`
}

// KVTxn is a transaction: when every compare holds, its puts and deletes
// apply; when one fails, nothing does and the outcome names it.
type KVTxn struct {
	Compare []KVCompare `json:"compare,omitempty"`
	Put     []KVTxnPut  `json:"put,omitempty"`
	Delete  []string    `json:"delete,omitempty"`
	Caller  string      `json:"caller,omitempty"`
	Seq     uint64      `json:"seq,omitempty"`
	AtMs    int64       `json:"at_ms,omitempty"`
}

// Compare targets.
const (
	CompareModIndex = "mod_index" // Index equals the key's mod_index (0: absent)
	CompareVersion  = "version"   // Index equals the key's version (0: absent)
	CompareExists   = "exists"    // the key exists iff Exists
	CompareValue    = "value"     // the key exists with Value
)

// KVCompare is one condition of a transaction.
type KVCompare struct {
	Key    string `json:"key"`
	Target string `json:"target"`
	Index  uint64 `json:"index,omitempty"`
	Exists bool   `json:"exists,omitempty"`
	Value  []byte `json:"value,omitempty"`
}

// KVTxnPut is one put of a transaction.
type KVTxnPut struct {
	Key     string `json:"key"`
	Value   []byte `json:"value"`
	Session string `json:"session,omitempty"`
}

// KVChange is one key written (KV set) or deleted (KV nil) by an entry,
// for the node's watchers. KV.Value is the state's: never modify it.
type KVChange struct {
	Index uint64
	Key   string
	KV    *api.KV
}

// kvEntry is one key in the state. Value is never changed in place: a put
// replaces it, so reads may hold it after the lock is released.
type kvEntry struct {
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModIndex    uint64 `json:"mod_index"`
	Version     uint64 `json:"version"`
	Session     string `json:"session,omitempty"`
}

// kvIndex is derived from the state's keys, rebuilt on restore.
type kvIndex struct {
	keys  []string                       // every key, sorted by bytes
	owned map[string]map[string]struct{} // session -> the keys it owns
	under map[string]int                 // subtree -> how many keys are below it
	bytes int64                          // what max_kv_bytes counts
}

// kvVersion is the state version from which the store exists.
const kvVersion = 3

// ancestors calls fn with key, then each parent subtree, ending with "".
func ancestors(key string, fn func(string)) {
	for {
		fn(key)
		if key == "" {
			return
		}
		key = api.KeyParent(key)
	}
}

// parents calls fn with each subtree above key, ending with "".
func parents(key string, fn func(string)) {
	if key != "" {
		ancestors(api.KeyParent(key), fn)
	}
}

func (t *Tenant) rebuildKV() {
	if t.st.KV == nil {
		t.st.KV = map[string]*kvEntry{}
	}
	if t.st.KVTree == nil {
		t.st.KVTree = map[string]uint64{}
	}
	x := kvIndex{keys: make([]string, 0, len(t.st.KV)), owned: map[string]map[string]struct{}{}, under: map[string]int{}}
	for key, e := range t.st.KV {
		x.keys = append(x.keys, key)
		x.bytes += tenants.KVSize(key, len(e.Value))
		if e.Session != "" {
			kvOwn(x.owned, e.Session, key)
		}
		parents(key, func(a string) { x.under[a]++ })
	}
	slices.Sort(x.keys)
	t.kv = x
}

// checkKV makes a decoded snapshot's store whole: missing maps empty, no
// null key, and a subtree index for every subtree with keys below it (and
// the root), only for those and for keys, never below the mod_index of a
// key in it.
func (st *tenantState) checkKV() error {
	if st.KV == nil {
		st.KV = map[string]*kvEntry{}
	}
	if st.KVTree == nil {
		st.KVTree = map[string]uint64{}
	}
	under := map[string]bool{"": true}
	for _, key := range sortedKeys(st.KV) {
		e := st.KV[key]
		if e == nil {
			return fmt.Errorf("key %q is null", key)
		}
		if err := api.ValidateKey("key", key); err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		parents(key, func(a string) {
			under[a] = true
			st.KVTree[a] = max(st.KVTree[a], e.ModIndex)
		})
	}
	for _, p := range sortedKeys(st.KVTree) {
		if e := st.KV[p]; e != nil {
			st.KVTree[p] = max(st.KVTree[p], e.ModIndex) // a key's own entry, kept
		} else if !under[p] {
			delete(st.KVTree, p)
		}
	}
	return nil
}

func kvOwn(owned map[string]map[string]struct{}, sess, key string) {
	m := owned[sess]
	if m == nil {
		m = map[string]struct{}{}
		owned[sess] = m
	}
	m[key] = struct{}{}
}

func (x *kvIndex) disown(sess, key string) {
	if m := x.owned[sess]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(x.owned, sess)
		}
	}
}

// kvTxn is a write of the store in its one form: a PUT, a DELETE and a
// transaction all become one.
type kvTxn struct {
	compare []KVCompare
	puts    []KVTxnPut
	dels    []string
	prefix  *string // a subtree delete: its keys are found when it applies
	cas     bool    // the compare is a PUT's or DELETE's if_index: the conflict names no compare
}

func (c KVPut) txn() kvTxn {
	x := kvTxn{puts: []KVTxnPut{{Key: c.Key, Value: c.Value, Session: c.Session}}}
	if c.IfIndex != nil {
		x.compare, x.cas = []KVCompare{{Key: c.Key, Target: CompareModIndex, Index: *c.IfIndex}}, true
	}
	return x
}

func (c KVDelete) txn() kvTxn {
	if c.Prefix {
		p := c.Key
		return kvTxn{prefix: &p}
	}
	x := kvTxn{dels: []string{c.Key}}
	if c.IfIndex != nil {
		x.compare, x.cas = []KVCompare{{Key: c.Key, Target: CompareModIndex, Index: *c.IfIndex}}, true
	}
	return x
}

func (c KVTxn) txn() kvTxn {
	return kvTxn{compare: c.Compare, puts: c.Put, dels: c.Delete}
}

// The checks that need no state (Check runs them at the edge; Apply
// first).

func checkKVPut(c KVPut, q api.Quotas, tenant string) *api.Error {
	return checkKVTxn(c.txn(), q, tenant, false)
}

func checkKVDelete(c KVDelete) *api.Error {
	if c.Prefix {
		switch {
		case c.Key == "":
			return api.BadField("key", "a prefix delete needs a prefix: every key is not deleted at once")
		case c.IfIndex != nil:
			return api.BadField("if_index", "a prefix delete takes no if_index")
		}
	}
	return apiErr(api.ValidateKey("key", c.Key))
}

func checkKVTxnCmd(c KVTxn, q api.Quotas, tenant string) *api.Error {
	return checkKVTxn(c.txn(), q, tenant, true)
}

// checkKVTxn checks a write's keys, compares, value sizes and sessions.
// named says the fields are a transaction's (compare[0].key, not key).
func checkKVTxn(x kvTxn, q api.Quotas, tenant string, named bool) *api.Error {
	f := kvFields(named)
	if n := len(x.compare) + len(x.puts) + len(x.dels); n > api.MaxTxnOps {
		return api.BadField("compare", "%d compares, puts and deletes; at most %d", n, api.MaxTxnOps)
	}
	if named && len(x.puts)+len(x.dels) == 0 {
		return api.BadField("put", "a transaction puts or deletes at least one key")
	}
	_, maxValue, _ := tenants.KVLimits(q)
	for i, c := range x.compare {
		if err := checkKVCompare(c, f, i, maxValue, tenant); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(x.puts)+len(x.dels))
	for i, p := range x.puts {
		if err := checkKVWritten(p.Key, f.name("put", i, "key"), seen); err != nil {
			return err
		}
		if int64(len(p.Value)) > maxValue {
			return tooLarge(tenant, f.name("put", i, "value"), maxValue, len(p.Value))
		}
		if p.Session != "" {
			if err := api.ValidateSessionID(f.name("put", i, "session"), p.Session); err != nil {
				return apiErr(err)
			}
		}
	}
	for i, key := range x.dels {
		if err := checkKVWritten(key, f.name("delete", i, "key"), seen); err != nil {
			return err
		}
	}
	return nil
}

// kvFields names a write's fields: a transaction's by list and position
// (compare[0].key), a PUT's or DELETE's by name alone (key).
type kvFields bool

func (named kvFields) name(list string, i int, f string) string {
	if !named {
		return f
	}
	return fmt.Sprintf("%s[%d].%s", list, i, f)
}

// checkKVCompare checks the i-th compare of a write.
func checkKVCompare(c KVCompare, f kvFields, i int, maxValue int64, tenant string) *api.Error {
	if err := api.ValidateKey(f.name("compare", i, "key"), c.Key); err != nil {
		return apiErr(err)
	}
	target := func() string { return f.name("compare", i, "target") } // only a refusal formats it
	switch c.Target {
	case CompareModIndex, CompareVersion:
		if c.Exists || c.Value != nil {
			return api.BadField(target(), "a %s compare holds only an index", c.Target)
		}
	case CompareExists:
		if c.Index != 0 || c.Value != nil {
			return api.BadField(target(), "an exists compare holds only exists")
		}
	case CompareValue:
		if c.Index != 0 || c.Exists {
			return api.BadField(target(), "a value compare holds only a value")
		}
		if int64(len(c.Value)) > maxValue {
			return tooLarge(tenant, f.name("compare", i, "value"), maxValue, len(c.Value))
		}
	default:
		return api.BadField(target(), "%q is not mod_index, version, exists or value", c.Target)
	}
	return nil
}

// checkKVWritten checks a key a write puts or deletes (field names it):
// valid, and written once (seen holds the write's keys so far).
func checkKVWritten(key, field string, seen map[string]bool) *api.Error {
	if err := api.ValidateKey(field, key); err != nil {
		return apiErr(err)
	}
	if seen[key] {
		return api.BadField(field, "%s is written twice", key)
	}
	seen[key] = true
	return nil
}

// tooLarge refuses a value over max_value_bytes: 413, naming the field
// and the quota.
func tooLarge(tenant, field string, limit int64, size int) *api.Error {
	return &api.Error{Code: api.CodeTooLarge, Quota: tenants.QuotaMaxValueBytes, Limit: limit, Used: int64(size),
		Message: fmt.Sprintf("%s: %d bytes, over tenant %s's max_value_bytes %d", field, size, tenant, limit)}
}

func apiErr(err error) *api.Error {
	if err == nil {
		return nil
	}
	return err.(*api.Error)
}

// decodeKV decodes and checks a store command: its body, its stateless
// checks, its numbering.
func (t *Tenant) decodeKV(op Op, body []byte) (x kvTxn, caller string, seq uint64, atMs int64, err *api.Error) {
	q, name := t.st.Quotas, t.st.Name
	switch op {
	case OpKVPut:
		var c KVPut
		if e := strictUnmarshal(body, &c); e != nil {
			return x, "", 0, 0, api.Errorf(api.CodeBadRequest, "%s: %v", op, e)
		}
		if err := checkKVPut(c, q, name); err != nil {
			return x, "", 0, 0, err
		}
		caller := c.Caller
		if caller == "" {
			caller = c.Session
		}
		return c.txn(), caller, c.Seq, c.AtMs, nil
	case OpKVDelete:
		var c KVDelete
		if e := strictUnmarshal(body, &c); e != nil {
			return x, "", 0, 0, api.Errorf(api.CodeBadRequest, "%s: %v", op, e)
		}
		if err := checkKVDelete(c); err != nil {
			return x, "", 0, 0, err
		}
		return c.txn(), c.Caller, c.Seq, c.AtMs, nil
	default:
		var c KVTxn
		if e := strictUnmarshal(body, &c); e != nil {
			return x, "", 0, 0, api.Errorf(api.CodeBadRequest, "%s: %v", op, e)
		}
		if err := checkKVTxnCmd(c, q, name); err != nil {
			return x, "", 0, 0, err
		}
		return c.txn(), c.Caller, c.Seq, c.AtMs, nil
	}
}

// applyKV applies a store command (a state before version 3 refuses it,
// changing nothing, as the builds before the store did).
func (t *Tenant) applyKV(index uint64, op Op, body []byte, ch *Changes) Outcome {
	if versionOf(t.st.Version) < kvVersion {
		return reject(errKVVersion(op))
	}
	x, caller, seq, atMs, err := t.decodeKV(op, body)
	if err != nil {
		return reject(err)
	}
	t.proposerClock(atMs)
	return t.sequenced(index, op, caller, seq, func() Outcome {
		if err := t.admitKV(x); err != nil {
			return reject(err)
		}
		return t.writeKV(index, op, x, ch)
	})
}

func errKVVersion(op Op) *api.Error {
	return api.Errorf(api.CodeUnavailable, "%s: the tenant's state version is being raised to %d for the configuration store: send the write again", op, kvVersion)
}

// admitKV checks a write against the state, changing nothing: the
// compares (in order: the first that fails is named), the sessions of
// its puts, the keys' owners, and the count and size quotas on the result.
func (t *Tenant) admitKV(x kvTxn) *api.Error {
	for i, c := range x.compare {
		e := t.st.KV[c.Key]
		if kvHolds(c, e) {
			continue
		}
		conflict := &api.KVConflict{Key: c.Key}
		if e != nil {
			conflict.ModIndex = e.ModIndex
		}
		if !x.cas {
			conflict.Compare = &i
		}
		return &api.Error{Code: api.CodeConflict, Conflict: conflict, Message: kvConflictMessage(c, e, x.cas, i)}
	}
	q := t.st.Quotas
	maxKeys, _, maxBytes := tenants.KVLimits(q)
	keys, size := int64(len(t.st.KV)), t.kv.bytes
	newKeys, newSize := keys, size
	for _, p := range x.puts {
		if p.Session != "" {
			if _, ok := t.st.Sessions[p.Session]; !ok {
				if _, dead := t.st.Tombs[p.Session]; dead {
					return api.Errorf(api.CodeSessionExpired, "session %s has ended", api.SessionTag(p.Session))
				}
				return api.Errorf(api.CodeNotFound, "session %s not found", api.SessionTag(p.Session))
			}
		}
		e := t.st.KV[p.Key]
		if e == nil {
			newKeys++
			newSize += tenants.KVSize(p.Key, len(p.Value))
			continue
		}
		if p.Session != "" && e.Session != "" && e.Session != p.Session {
			return api.Errorf(api.CodeConflict, "key %s is owned by live session %s", p.Key, api.SessionTag(e.Session))
		}
		newSize += int64(len(p.Value)) - int64(len(e.Value))
	}
	for _, key := range x.dels {
		if e := t.st.KV[key]; e != nil {
			newKeys--
			newSize -= tenants.KVSize(key, len(e.Value))
		}
	}
	if newKeys > maxKeys && newKeys > keys {
		return api.QuotaExceeded(t.st.Name, tenants.QuotaMaxKeys, maxKeys, keys)
	}
	if newSize > maxBytes && newSize > size {
		return api.QuotaExceeded(t.st.Name, tenants.QuotaMaxKVBytes, maxBytes, size)
	}
	return nil
}

func kvHolds(c KVCompare, e *kvEntry) bool {
	switch c.Target {
	case CompareModIndex:
		if e == nil {
			return c.Index == 0
		}
		return e.ModIndex == c.Index
	case CompareVersion:
		if e == nil {
			return c.Index == 0
		}
		return e.Version == c.Index
	case CompareExists:
		return (e != nil) == c.Exists
	case CompareValue:
		return e != nil && bytes.Equal(e.Value, c.Value)
	}
	return false
}

func kvConflictMessage(c KVCompare, e *kvEntry, cas bool, i int) string {
	var now string
	if e == nil {
		now = "does not exist"
	} else {
		now = fmt.Sprintf("has mod_index %d, version %d", e.ModIndex, e.Version)
	}
	if cas {
		if c.Index == 0 {
			return fmt.Sprintf("if_index 0: key %s exists (mod_index %d)", c.Key, e.ModIndex)
		}
		return fmt.Sprintf("if_index %d: key %s %s", c.Index, c.Key, now)
	}
	var want string
	switch c.Target {
	case CompareModIndex, CompareVersion:
		want = fmt.Sprintf("%s %d", c.Target, c.Index)
	case CompareExists:
		want = fmt.Sprintf("exists %t", c.Exists)
	default:
		want = fmt.Sprintf("a value of %d bytes", len(c.Value))
	}
	return fmt.Sprintf("compare[%d] failed: want %s; key %s %s", i, want, c.Key, now)
}

// writeKV applies an admitted write at index.
func (t *Tenant) writeKV(index uint64, op Op, x kvTxn, ch *Changes) Outcome {
	var o Outcome
	for _, p := range x.puts {
		e := t.putKey(index, p, ch)
		if op == OpKVPut {
			o.KV = t.kvView(p.Key, e, false)
		}
	}
	dels := x.dels
	if x.prefix != nil {
		dels = t.subtree(*x.prefix)
	}
	for _, key := range dels {
		if t.deleteKey(index, key, ch) {
			o.Deleted++
		}
	}
	return o
}

// subtree lists the keys in prefix's subtree, sorted.
func (t *Tenant) subtree(prefix string) []string {
	var out []string
	t.rangeKV(prefix, "", func(key string) bool {
		out = append(out, key)
		return true
	})
	return out
}

func (t *Tenant) putKey(index uint64, p KVTxnPut, ch *Changes) *kvEntry {
	old := t.st.KV[p.Key]
	value := p.Value
	if value == nil {
		value = []byte{}
	}
	e := &kvEntry{Value: value, CreateIndex: index, ModIndex: index, Version: 1, Session: p.Session}
	if old != nil {
		e.CreateIndex, e.Version = old.CreateIndex, old.Version+1
		if e.Session == "" {
			e.Session = old.Session // an update keeps the owner
		}
		t.kv.bytes += int64(len(value)) - int64(len(old.Value))
		if old.Session != "" && old.Session != e.Session {
			t.kv.disown(old.Session, p.Key)
		}
		parents(p.Key, func(a string) { t.st.KVTree[a] = index })
	} else {
		t.kv.bytes += tenants.KVSize(p.Key, len(value))
		i, _ := slices.BinarySearch(t.kv.keys, p.Key)
		t.kv.keys = slices.Insert(t.kv.keys, i, p.Key)
		parents(p.Key, func(a string) {
			t.st.KVTree[a] = index
			t.kv.under[a]++
		})
	}
	t.touchSubtree(p.Key, index)
	if e.Session != "" {
		kvOwn(t.kv.owned, e.Session, p.Key)
	}
	t.st.KV[p.Key] = e
	ch.KV = append(ch.KV, KVChange{Index: index, Key: p.Key, KV: t.kvView(p.Key, e, true)})
	return e
}

// deleteKey removes a key, if it exists.
func (t *Tenant) deleteKey(index uint64, key string, ch *Changes) bool {
	e := t.st.KV[key]
	if e == nil {
		return false
	}
	delete(t.st.KV, key)
	t.kv.bytes -= tenants.KVSize(key, len(e.Value))
	if i, ok := slices.BinarySearch(t.kv.keys, key); ok {
		t.kv.keys = slices.Delete(t.kv.keys, i, i+1)
	}
	if e.Session != "" {
		t.kv.disown(e.Session, key)
	}
	parents(key, func(a string) {
		if t.kv.under[a]--; t.kv.under[a] <= 0 && a != "" {
			delete(t.kv.under, a)
			if _, isKey := t.st.KV[a]; !isKey {
				delete(t.st.KVTree, a) // the nearest ancestor's index stands for it
				return
			}
			// A key left with nothing below it keeps its subtree's
			// index: its mod_index is older than the delete.
		}
		t.st.KVTree[a] = index
	})
	if t.kv.under[key] > 0 {
		t.st.KVTree[key] = index
	} else {
		delete(t.st.KVTree, key) // the parent's index, just moved, stands for it
	}
	ch.KV = append(ch.KV, KVChange{Index: index, Key: key})
	return true
}

// touchSubtree moves the subtree index of a key written at index, when it
// has one (keys are or were below it): the subtree changed too. A key that
// never had one below it has no entry: its own mod_index stands for its
// subtree, which saves two map entries a key.
func (t *Tenant) touchSubtree(key string, index uint64) {
	if _, ok := t.st.KVTree[key]; ok {
		t.st.KVTree[key] = index
	}
}

// kvEndSession deletes the keys a session owns (its end, at index).
func (t *Tenant) kvEndSession(index uint64, sess string, ch *Changes) {
	for _, key := range sortedKeys(t.kv.owned[sess]) {
		t.deleteKey(index, key, ch)
	}
	delete(t.kv.owned, sess)
}

// kvView is a key as reads show it; withValue false leaves the value out
// (what an outcome carries: the proposer has the value).
func (t *Tenant) kvView(key string, e *kvEntry, withValue bool) *api.KV {
	v := &api.KV{Key: key, CreateIndex: e.CreateIndex, ModIndex: e.ModIndex, Version: e.Version}
	if withValue {
		v.Value = e.Value
	}
	if e.Session != "" {
		v.SessionTag = api.SessionTag(e.Session)
	}
	return v
}

// rangeKV calls fn with each key of prefix's subtree from start on, in
// order, until fn returns false.
func (t *Tenant) rangeKV(prefix, start string, fn func(key string) bool) {
	keys := t.kv.keys
	if prefix == "" {
		i, _ := slices.BinarySearch(keys, start)
		for _, k := range keys[i:] {
			if !fn(k) {
				return
			}
		}
		return
	}
	if _, ok := t.st.KV[prefix]; ok && prefix >= start {
		if !fn(prefix) {
			return
		}
	}
	// The keys under prefix+"/" are the ones in [prefix+"/", prefix+"0"):
	// '0' follows '/'.
	lo, hi := prefix+"/", prefix+"0"
	i, _ := slices.BinarySearch(keys, max(lo, start))
	for _, k := range keys[i:] {
		if k >= hi || !fn(k) {
			return
		}
	}
}

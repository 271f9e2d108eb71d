package httpapi

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// The configuration store's endpoints (DESIGN.md, "Configuration";
// docs/DECISIONS.md, "Configuration store"):
//
//	PUT    /v1/tenants/{t}/kv/{key...}   write (?if_index= CAS, ?session= ephemeral)
//	GET    /v1/tenants/{t}/kv/{key...}   one key; ?prefix=true a subtree; blocking
//	DELETE /v1/tenants/{t}/kv/{key...}   one key (?if_index=) or ?prefix=true a subtree
//	POST   /v1/tenants/{t}/kv:txn        compares, then puts and deletes
//
// Writes go through propose as every write does: validated whole at the
// edge (fsm.Check), checked against this replica's state (fsm.Precheck:
// a failed compare, a quota, a session that ended are answered without a
// proposal once a ReadIndex confirms them), then charged to the write rate
// and proposed.

// kvPageBytes bounds the values one prefix read answers (a page ends at
// the first key that takes it past this, one key at least).
const kvPageBytes = 1 << 20

// maxValueBytes is the tenant's max_value_bytes as the edge takes it: the
// larger of its meta shard's (a raise is taken at once) and its replica's.
func (s *Server) maxValueBytes(t *cluster.Tenant) int64 {
	q, _ := t.SM.Quotas()
	_, limit, _ := tenants.KVLimits(q)
	if brief, ok := s.node.Meta().Brief(t.Name); ok {
		_, meta, _ := tenants.KVLimits(brief.Quotas)
		limit = max(limit, meta)
	}
	return limit
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, id identity) {
	t, ok := s.replica(w, r)
	if !ok {
		return
	}
	cmd, err := parseKVPut(w, r, s.maxValueBytes(t), time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	o, ok := s.propose(w, r, id, fsm.OpKVPut, cmd)
	if !ok {
		return
	}
	kv := *o.KV
	kv.Value = cmd.Value
	status := http.StatusOK
	if kv.Version == 1 {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.KVPutResponse{Index: o.Index, KV: *kv.WithText()})
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseKVDelete(r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if o, ok := s.propose(w, r, id, fsm.OpKVDelete, cmd); ok {
		writeJSON(w, http.StatusOK, api.KVDeleteResponse{Index: o.Index, Deleted: o.Deleted})
	}
}

func (s *Server) kvTxn(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseKVTxn(w, r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if o, ok := s.propose(w, r, id, fsm.OpKVTxn, cmd); ok {
		writeJSON(w, http.StatusOK, api.KVTxnResponse{Succeeded: true, Index: o.Index})
	}
}

// kvGet answers GET .../kv/{key...}: one key (404 when missing, with the
// index to block on in X-Rafting-Index), its raw value (?raw=true), or a
// page of a subtree (?prefix=true). With ?index=N it blocks until the
// key's — or any key in the subtree's — last put or delete is past N,
// or ?wait passes; a change of another key does not end the wait. Like a
// service read, it never answers below N (503 stale_replica instead).
func (s *Server) kvGet(w http.ResponseWriter, r *http.Request, who identity) {
	q, err := parseKVQuery(r, s.node.Config().MaxWait)
	if err != nil {
		writeError(w, err)
		return
	}
	t, ok := s.replica(w, r)
	if !ok || !s.readable(w, r, t) {
		return
	}
	// An index of another epoch says nothing of this log: answer at once.
	if q.index > 0 && (q.epoch == 0 || q.epoch == t.Epoch) {
		watch := func(minApplied uint64) (uint64, uint64, <-chan struct{}, func()) {
			return t.SM.WatchKV(q.key, q.prefix, minApplied)
		}
		if !s.blockOn(w, r, who, t, q.index, q.wait, watch) {
			return
		}
		if _, ok := s.authenticate(r, time.Now()); !ok {
			writeError(w, api.Errorf(api.CodeUnauthorized, "the token is no longer valid"))
			return
		}
	}
	if leader := t.LeaderAPI(); leader != "" {
		w.Header().Set(api.HeaderLeader, leader)
	}
	if !q.prefix {
		kv, found, applied := t.SM.KV(q.key)
		setIndex(w, applied)
		if !found {
			writeError(w, api.Errorf(api.CodeNotFound, "key %s not found", q.key))
			return
		}
		if !s.chargeKV(w, r, who, []api.KV{kv}) {
			return
		}
		if q.raw {
			w.Header().Set(api.HeaderModIndex, strconv.FormatUint(kv.ModIndex, 10))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(kv.Value)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(kv.Value)
			return
		}
		writeJSON(w, http.StatusOK, api.KVResponse{Index: applied, KV: *kv.WithText()})
		return
	}
	kvs, next, applied := t.SM.KVList(q.key, q.start, q.limit, kvPageBytes)
	setIndex(w, applied)
	if !s.chargeKV(w, r, who, kvs) {
		return
	}
	for i := range kvs {
		kvs[i].WithText()
	}
	writeJSON(w, http.StatusOK, api.KVListResponse{Index: applied, KVs: kvs, Next: next})
}

// chargeKV charges an answer of kvs to the tenant's answer bytes before it
// is encoded, at what it will take at most: a reader over its budget
// costs no encoding.
func (s *Server) chargeKV(w http.ResponseWriter, r *http.Request, who identity, kvs []api.KV) bool {
	if who.tenant == "" {
		return true
	}
	size := 64
	for _, kv := range kvs {
		// base64 and, for text, the text again, JSON-escaped at worst
		// twice over; the key and the numbers.
		size += len(kv.Key) + 4*len(kv.Value) + 128
	}
	if err := s.chargeAnswer(who.tenant, size, time.Now()); err != nil {
		s.tarpit(r, who, err)
		writeError(w, err)
		return false
	}
	return true
}

// blockOn waits until watch reports a modify index past index (at an
// applied index at least index), or wait passes; false means it answered.
// Every blocking query (a service's, a key's or a prefix's) waits here:
// one watcher counted against the tenant's quota, the wait jittered, and
// when it ends with nothing new, an answer only once this replica is known
// to be current — or a replica cut off in a minority (frozen at or above
// the asked index) would tell its watcher "nothing changed" for as long as
// the partition lasts. One shared ReadIndex per shard and second confirms it.
func (s *Server) blockOn(w http.ResponseWriter, r *http.Request, who identity, t *cluster.Tenant, index uint64, wait time.Duration,
	watch func(minApplied uint64) (modify, applied uint64, wake <-chan struct{}, done func())) bool {
	rec, ok := s.node.Meta().Brief(t.Name)
	if !ok {
		writeError(w, api.Errorf(api.CodeNotFound, "tenant %s not found", t.Name))
		return false
	}
	release, err := s.takeWatcher(t.Name, who, rec.Quotas)
	if err != nil {
		writeError(w, err)
		return false
	}
	defer release()
	if wait > 0 {
		wait += rand.N(wait/16 + 1)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		modify, applied, wake, done := watch(index)
		if applied >= index && modify > index {
			done()
			return true
		}
		if t.SM.Retired() {
			done()
			writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: 100 * time.Millisecond,
				Message: "blocking query ended: the tenant's replica left this node (its shard moved); ask again"})
			return false
		}
		select {
		case <-wake:
			done()
			continue
		case <-r.Context().Done():
			done()
			writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "blocking query ended: the request was canceled or the server is stopping", RetryAfter: 100 * time.Millisecond})
			return false
		case <-timer.C:
			done()
		}
		err := t.Fresh(r.Context(), time.Second)
		if err == nil && t.SM.Applied() >= index {
			return true
		}
		msg := "this node's replica is behind the asked index and cannot catch up"
		if applied >= index {
			msg = "this node's replica cannot confirm it is current: it may be cut off from the other nodes"
		}
		writeError(w, &api.Error{Code: api.CodeStaleReplica, Message: msg, RetryAfter: 100 * time.Millisecond, Leader: t.LeaderAPI()})
		return false
	}
}

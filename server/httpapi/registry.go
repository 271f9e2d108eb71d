package httpapi

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
)

// replica returns the path's tenant replica on this node: 404 when the
// tenant does not exist, 503 while its shard is starting here.
func (s *Server) replica(w http.ResponseWriter, r *http.Request) (*cluster.Tenant, bool) {
	if err := s.node.RemovedError(); err != nil {
		// Its replicas hear from no leader any more: what they hold is
		// stale, and a write would wait for nothing.
		writeError(w, err)
		return nil, false
	}
	name := r.PathValue("t")
	_, known := s.node.Meta().Brief(name)
	if t, ok := s.node.Serving(name); ok {
		if r.Method == http.MethodGet {
			// A read answers from this replica's state: not before it
			// caught up once (after a restart it recovers in the background).
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			err := t.CaughtUp(ctx)
			cancel()
			if err != nil {
				writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "tenant " + name + ": its replica on this node is catching up",
					RetryAfter: 200 * time.Millisecond, Leader: t.LeaderAPI()})
				return nil, false
			}
		}
		w.Header().Set(api.HeaderEpoch, strconv.FormatUint(t.Epoch, 10))
		return t, true
	}
	if known && !s.node.HostsTenant(name) {
		// A request proxied here by a node whose placement was behind, or
		// this node's own that could not be proxied: never a second hop.
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: 200 * time.Millisecond,
			Message: "tenant " + name + ": no replica of its shard is placed on this node; ask one of " + strings.Join(s.node.TenantNodes(name), ", ")})
		return nil, false
	}
	if known {
		writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "tenant " + name + ": its shard is starting on this node", RetryAfter: 200 * time.Millisecond})
		return nil, false
	}
	writeError(w, api.Errorf(api.CodeNotFound, "tenant %s not found", name))
	return nil, false
}

func pathNames(r *http.Request, fields ...string) error {
	for _, f := range fields {
		field := f
		if f == "s" {
			field = "service"
		}
		if err := api.ValidateName(field, r.PathValue(f)); err != nil {
			return err
		}
	}
	return nil
}

// proposeTo runs a command on a tenant's shard through t; a rejected
// command's outcome is the error.
func proposeTo(ctx context.Context, t *cluster.Tenant, op fsm.Op, cmd any) (fsm.Outcome, error) {
	return proposeEncoded(ctx, t, fsm.Encode(op, cmd))
}

// proposeEncoded is proposeTo for an encoded command.
func proposeEncoded(ctx context.Context, t *cluster.Tenant, cmd []byte) (fsm.Outcome, error) {
	o, err := t.Propose(ctx, cmd)
	if err == nil {
		if e := o.Err(); e != nil {
			err = e
		}
	}
	return o, err
}

// propose runs a command on the path's tenant shard through this node's
// replica; false means it answered (no replica here, or the command's
// error).
func (s *Server) propose(w http.ResponseWriter, r *http.Request, id identity, op fsm.Op, cmd any) (fsm.Outcome, bool) {
	t, ok := s.replica(w, r)
	if !ok {
		return fsm.Outcome{}, false
	}
	// Every check the command can fail without looking at the state (its
	// fields, sizes against the quotas) runs here first: a refused write
	// never reaches the Raft log, and costs no write quota.
	cmd = fsm.Downgrade(cmd, s.node.Meta().Version())
	brief, _ := s.node.Meta().Brief(t.Name)
	if err := t.SM.Check(op, cmd, brief.Quotas); err != nil {
		writeError(w, err)
		return fsm.Outcome{}, false
	}
	// And the checks of the state (fsm.Precheck): a refusal on this
	// replica is confirmed after a ReadIndex that started after the
	// request arrived (the replica may be behind), then answered without
	// anything proposed. When the ReadIndex fails, the log decides.
	if t.SM.Precheck(op, cmd) != nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		err := t.ReadIndex(ctx)
		cancel()
		if err == nil {
			if err := t.SM.Precheck(op, cmd); err != nil {
				writeError(w, err)
				return fsm.Outcome{}, false
			}
		}
	}
	encoded := fsm.Encode(op, cmd)
	if id.tenant != "" {
		if err := s.chargeWrite(id.tenant, time.Now()); err != nil {
			s.tarpit(r, id, err)
			writeError(w, err)
			return fsm.Outcome{}, false
		}
	}
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	o, err := proposeEncoded(ctx, t, encoded)
	if leader := t.LeaderAPI(); leader != "" {
		w.Header().Set(api.HeaderLeader, leader)
	}
	if err != nil {
		writeError(w, err)
		return o, false
	}
	setIndex(w, o.Index)
	return o, true
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseRegister(w, r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	o, ok := s.propose(w, r, id, fsm.OpRegister, cmd)
	if !ok {
		return
	}
	status := http.StatusOK
	if o.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.RegisterResponse{Index: o.Index, Instance: *o.Instance})
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseDeregister(r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if _, ok := s.propose(w, r, id, fsm.OpDeregister, cmd); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parsePolicy(w, r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if o, ok := s.propose(w, r, id, fsm.OpSetPolicy, cmd); ok {
		writeJSON(w, http.StatusOK, api.WriteResponse{Index: o.Index})
	}
}

func (s *Server) resign(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseResign(w, r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	if o, ok := s.propose(w, r, id, fsm.OpResign, cmd); ok {
		writeJSON(w, http.StatusOK, api.WriteResponse{Index: o.Index})
	}
}

// readable makes a read current when asked: ?consistent=true performs a
// ReadIndex first (a linearizable read).
func (s *Server) readable(w http.ResponseWriter, r *http.Request, t *cluster.Tenant) bool {
	consistent, err := parseBool(r, "consistent")
	if err != nil {
		writeError(w, err)
		return false
	}
	if consistent {
		ctx, cancel := context.WithTimeout(r.Context(), s.node.Config().RequestTimeout)
		defer cancel()
		if err := t.ReadIndex(ctx); err != nil {
			writeError(w, err)
			return false
		}
	}
	return true
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request, _ identity) {
	t, ok := s.replica(w, r)
	if !ok || !s.readable(w, r, t) {
		return
	}
	l := t.SM.Services()
	setIndex(w, l.Index)
	if leader := t.LeaderAPI(); leader != "" {
		w.Header().Set(api.HeaderLeader, leader)
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) watcherCount(tenant string) *atomic.Int64 {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	n := s.watchers[tenant]
	if n == nil {
		n = &atomic.Int64{}
		s.watchers[tenant] = n
	}
	return n
}

// takeWatcher counts one more watcher of a tenant on this node (a blocking
// query, or a watch on a client stream) against its max_watchers; release
// counts it out.
func (s *Server) takeWatcher(tenant string, who identity, q api.Quotas) (release func(), err error) {
	// The read-only token's watches are its own, not the tenant's: they
	// cannot take the tenant's max_watchers.
	countKey := tenant
	if who.readOnly {
		countKey = "\x00read-only"
	}
	count := s.watcherCount(countKey)
	if used := count.Add(1); q.MaxWatchers > 0 && used > q.MaxWatchers {
		count.Add(-1)
		return nil, api.QuotaExceeded(tenant, "max_watchers", q.MaxWatchers, used-1)
	}
	return func() { count.Add(-1) }, nil
}

// service answers GET .../services/{s}, blocking while ?index=N is given:
// it returns when the service's modify index exceeds N, or when ?wait
// (default 5 min, plus up to wait/16 of jitter) passes. It never answers
// with an index below N: a replica still behind when the wait ends checks
// with a ReadIndex and answers 503 stale_replica if it cannot catch up.
func (s *Server) service(w http.ResponseWriter, r *http.Request, who identity) {
	q, err := parseServiceQuery(r, s.node.Config().MaxWait)
	if err != nil {
		writeError(w, err)
		return
	}
	t, ok := s.replica(w, r)
	if !ok || !s.readable(w, r, t) {
		return
	}
	name := r.PathValue("s")
	// An index of another epoch says nothing of this log: answer at once.
	if q.index > 0 && (q.epoch == 0 || q.epoch == t.Epoch) {
		if !s.block(w, r, who, t, name, q.index, q.wait) {
			return
		}
		// The wait may have outlived the token (rotated, revoked, the
		// tenant deleted): what is answered now needs it now.
		if _, ok := s.authenticate(r, time.Now()); !ok {
			writeError(w, api.Errorf(api.CodeUnauthorized, "the token is no longer valid"))
			return
		}
	}
	// The answer's bytes are charged before it is encoded, at its last
	// size: a reader over its budget costs no encoding (a 40 MB answer
	// re-encoded for refused readers took a core).
	charged := t.SM.AnswerSize(name)
	if who.tenant != "" && charged > 0 {
		if err := s.chargeAnswer(who.tenant, charged, time.Now()); err != nil {
			s.tarpit(r, who, err)
			writeError(w, err)
			return
		}
	}
	index, a, err := t.SM.ServiceAnswer(name)
	if err != nil {
		writeError(w, api.Errorf(api.CodeInternal, "encode answer: %v", err))
		return
	}
	if who.tenant != "" && a.Len() > charged {
		if err := s.chargeAnswer(who.tenant, a.Len()-charged, time.Now()); err != nil {
			s.tarpit(r, who, err)
			writeError(w, err)
			return
		}
	}
	setIndex(w, index)
	if leader := t.LeaderAPI(); leader != "" {
		w.Header().Set(api.HeaderLeader, leader)
	}
	w.Header().Set("Content-Type", "application/json")
	head := fsm.AppendServiceHead(make([]byte, 0, 32), index)
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+a.Len())) // not chunked: the client reads it in one piece
	w.WriteHeader(http.StatusOK)
	// The answer is shared by every reader of this modify index and written
	// from its parts, not copied into one buffer; a buffer of 64 KiB (one
	// of a pool) gathers them, or a service of 10,000 instances would be
	// written in 10,000 system calls.
	bw := answerWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	_, _ = bw.Write(head)
	if _, err := a.WriteTo(bw); err == nil {
		_ = bw.Flush()
	}
	bw.Reset(nil)
	answerWriters.Put(bw)
}

// answerWriters buffers service answers as they are written (service).
var answerWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// block waits for the service to move past index; false means it answered.
func (s *Server) block(w http.ResponseWriter, r *http.Request, who identity, t *cluster.Tenant, name string, index uint64, wait time.Duration) bool {
	return s.blockOn(w, r, who, t, index, wait, func(minApplied uint64) (uint64, uint64, <-chan struct{}, func()) {
		return t.SM.Watch(name, minApplied)
	})
}

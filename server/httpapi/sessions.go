package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/session"
)

// headerForwarded marks a keepalive a follower forwarded to the leader; a
// forwarded request is never forwarded again.
const headerForwarded = "X-Rafting-Forwarded"

func (s *Server) openSession(w http.ResponseWriter, r *http.Request, id identity) {
	cmd, err := parseOpenSession(w, r, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	o, ok := s.propose(w, r, id, fsm.OpOpenSession, cmd)
	if !ok {
		return
	}
	resp := *o.Session
	resp.Index = o.Index
	status := http.StatusOK
	if o.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, resp)
}

func (s *Server) closeSession(w http.ResponseWriter, r *http.Request, who identity) {
	id := r.PathValue("id")
	if err := api.ValidateSessionID("id", id); err != nil {
		writeError(w, err)
		return
	}
	if _, ok := s.propose(w, r, who, fsm.OpCloseSession, fsm.CloseSession{ID: id, AtMs: time.Now().UnixMilli()}); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

// sessionPageBytes bounds one page of GET .../sessions as kvPageBytes
// bounds a prefix read: a page ends at the first session that would take
// its answer past it (one session at least).
const sessionPageBytes = 1 << 20

// sessionsQuery is a validated GET /v1/tenants/{t}/sessions.
type sessionsQuery struct {
	start string // a session tag: the page's first, inclusive
	limit int
}

// parseSessionsQuery reads GET /v1/tenants/{t}/sessions: ?start= (a
// session tag, a previous page's next), ?limit= sessions a page,
// ?consistent=true. The list is not a blocking read: ?index= and ?wait=
// are refused rather than ignored, so a watcher loop that sends them does
// not spin.
func parseSessionsQuery(r *http.Request) (sessionsQuery, error) {
	q := sessionsQuery{limit: api.DefaultSessionPage}
	if q.start = queryValue(r.URL.RawQuery, "start"); q.start != "" && !isSessionTag(q.start) {
		return sessionsQuery{}, api.BadField("start", "%q is not a session tag (16 lowercase hex digits): pass a previous page's next", q.start)
	}
	if v := queryValue(r.URL.RawQuery, "limit"); v != "" {
		n, err := parseUintParam(r, "limit")
		if err != nil || n == 0 || n > api.MaxSessionPage {
			return sessionsQuery{}, api.BadField("limit", "%q must be within [1, %d]", v, api.MaxSessionPage)
		}
		q.limit = int(n)
	}
	for _, p := range []string{"index", "wait"} {
		if queryValue(r.URL.RawQuery, p) != "" {
			return sessionsQuery{}, api.BadField(p, "the session list is not a blocking read; read it again instead")
		}
	}
	if _, err := parseBool(r, "consistent"); err != nil {
		return sessionsQuery{}, err
	}
	return q, nil
}

// isSessionTag says whether s is what api.SessionTag returns.
func isSessionTag(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// sessionSummary is a session's entry in GET .../sessions: everything the
// state machine knows of it but its ID, a secret, which only its tag names.
func sessionSummary(info fsm.SessionInfo) api.SessionSummary {
	return api.SessionSummary{
		SessionTag: api.SessionTag(info.ID), TTLMs: info.TTLMs, LeaseMs: info.LeaseMs, DropGraceMs: info.DropGraceMs,
		RemainingMs: info.RemainingMs, SeeksMaster: info.SeeksMaster,
		Instances: append([]api.HeldInstance{}, info.Instances...), Masters: append([]api.HeldMastership{}, info.Held...),
	}
}

// summarySize is about how many bytes s takes in an answer (names are of
// [A-Za-z0-9._-]: nothing to escape).
func summarySize(s *api.SessionSummary) int {
	n := 220
	for _, in := range s.Instances {
		n += len(in.Service) + len(in.Instance) + 60
	}
	for _, m := range s.Masters {
		n += len(m.Service) + len(m.Instance) + 100
	}
	return n
}

// taggedSession is a live session with its tag.
type taggedSession struct {
	tag  string
	info *fsm.SessionInfo
}

// sessionOrder is a tenant's live sessions in the order of their tags, as
// its shard's replica read them at one applied index. It holds copies, not
// the replica: a deleted tenant's state is not kept alive by it.
type sessionOrder struct {
	shard    uint64
	applied  uint64
	sessions []taggedSession
}

// byTag returns infos (the state machine's Sessions) in the order of their
// tags.
func byTag(infos []fsm.SessionInfo) []taggedSession {
	all := make([]taggedSession, len(infos))
	for i := range infos {
		all[i] = taggedSession{api.SessionTag(infos[i].ID), &infos[i]}
	}
	slices.SortFunc(all, func(a, b taggedSession) int {
		return cmp.Or(strings.Compare(a.tag, b.tag), strings.Compare(a.info.ID, b.info.ID))
	})
	return all
}

// maxOrderedSessions bounds the sessions the orders keep, all tenants
// together (one order per tenant; past it they are all dropped and made
// again as asked): about 30 MB at most.
const maxOrderedSessions = 100_000

// sessionsByTag returns t's live sessions in the order of their tags and
// the applied index they were read at. The order is kept until the replica
// applies another entry: reads between two entries (a dashboard's every
// second, a script's pages) share one read of every session and one sort,
// which for 10,000 sessions took 15 ms a read (BenchmarkSessionList).
func (s *Server) sessionsByTag(t *cluster.Tenant) ([]taggedSession, uint64) {
	applied := t.SM.Applied()
	s.sessionMu.Lock()
	o := s.sessionOrders[t.Name]
	s.sessionMu.Unlock()
	if o != nil && o.shard == t.ShardID && o.applied == applied {
		return o.sessions, o.applied
	}
	infos := t.SM.Sessions()
	if len(infos) > 0 {
		applied = infos[0].Applied
	}
	o = &sessionOrder{shard: t.ShardID, applied: applied, sessions: byTag(infos)}
	s.sessionMu.Lock()
	defer s.sessionMu.Unlock()
	prev := s.sessionOrders[t.Name]
	if prev != nil && prev.shard == o.shard && prev.applied > applied {
		return o.sessions, o.applied // a later read was kept meanwhile
	}
	if prev != nil {
		s.orderedSessions -= len(prev.sessions)
	}
	if s.orderedSessions+len(o.sessions) > maxOrderedSessions {
		clear(s.sessionOrders)
		s.orderedSessions = 0
	}
	s.sessionOrders[t.Name] = o
	s.orderedSessions += len(o.sessions)
	return o.sessions, o.applied
}

// sessionPage is the page of all (in the order of their tags) that q asks
// for, with the IDs of its sessions and about the bytes it takes encoded.
func sessionPage(all []taggedSession, q sessionsQuery) (l api.SessionList, ids []string, size int) {
	from, _ := slices.BinarySearchFunc(all, q.start, func(x taggedSession, start string) int { return strings.Compare(x.tag, start) })
	l.Sessions = []api.SessionSummary{}
	size = 64
	for _, x := range all[from:] {
		if len(l.Sessions) >= q.limit || len(l.Sessions) > 0 && size >= sessionPageBytes {
			l.Next = x.tag
			break
		}
		sum := sessionSummary(*x.info)
		size += summarySize(&sum)
		l.Sessions = append(l.Sessions, sum)
		ids = append(ids, x.info.ID)
	}
	return l, ids, size
}

// listSessions answers GET /v1/tenants/{t}/sessions: a page of the tenant's
// live sessions from this replica, in the order of their tags, each with
// the instances it owns and the masterships it holds (api.SessionList).
// The leader says which have a stream attached; other nodes cannot.
//
// It reads every session to order them by tag (the state machine keeps
// them by ID, which cannot be shown or used as a cursor), once per applied
// index (sessionsByTag): bounded by max_sessions, and charged to the
// tenant's request rate and answer bytes as any read.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, who identity) {
	q, err := parseSessionsQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	t, ok := s.replica(w, r)
	if !ok || !s.readable(w, r, t) {
		return
	}
	all, applied := s.sessionsByTag(t)
	l, ids, size := sessionPage(all, q)
	l.Index = applied
	if attached, ok := t.Sessions.Attached(ids); ok {
		for i := range l.Sessions {
			l.Sessions[i].Attached = &attached[i]
		}
	}
	if who.tenant != "" {
		if err := s.chargeAnswer(who.tenant, size, time.Now()); err != nil {
			s.tarpit(r, who, err)
			writeError(w, err)
			return
		}
	}
	setIndex(w, applied)
	if leader := t.LeaderAPI(); leader != "" {
		w.Header().Set(api.HeaderLeader, leader)
	}
	writeJSON(w, http.StatusOK, l)
}

// keepalive renews a session on the tenant leader, answering from memory
// with the promise; a follower forwards it to the leader.
func (s *Server) keepalive(w http.ResponseWriter, r *http.Request, who identity) {
	id := r.PathValue("id")
	if err := api.ValidateSessionID("id", id); err != nil {
		writeError(w, err)
		return
	}
	var none struct{}
	if err := decodeUpTo(w, r, &none, true, maxLaneBody); err != nil {
		writeError(w, err)
		return
	}
	t, ok := s.replica(w, r)
	if !ok {
		return
	}
	if err := s.laneAllow(r, who, t, id); err != nil {
		s.tarpit(r, who, err) // held as every refusal of a rate is
		writeError(w, err)
		return
	}
	if !t.Sessions.Leading() {
		s.forward(w, r, t)
		return
	}
	w.Header().Set(api.HeaderLeader, s.selfAPI()) // errors from here name this leader too
	resp, err := t.Sessions.Keepalive(r.Context(), id)
	if errors.Is(err, session.ErrNotLeader) {
		s.forward(w, r, t)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(api.HeaderLeader, s.selfAPI())
	setIndex(w, resp.Index)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) selfAPI() string {
	cfg := s.node.Config()
	if cfg.AdvertiseAPI != "" {
		return cfg.AdvertiseAPI
	}
	return cfg.APIAddress
}

// forward sends a keepalive to the tenant leader and relays its answer.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, t *cluster.Tenant) {
	leader := t.LeaderAPI()
	if r.Header.Get(headerForwarded) != "" || leader == "" || leader == s.selfAPI() {
		writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "the tenant shard has no leader that answers keepalives now",
			RetryAfter: 100 * time.Millisecond, Leader: leader})
		return
	}
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.scheme()+"://"+leader+r.URL.RequestURI(), http.NoBody)
	if err != nil {
		writeError(w, api.Errorf(api.CodeInternal, "forward: %v", err))
		return
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(headerForwarded, "1")
	resp, err := s.peers.Do(req)
	if err != nil {
		// Unreachable from here (crashed, an election under way): do not
		// send the client there.
		writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "the tenant leader did not answer a forwarded keepalive", RetryAfter: 100 * time.Millisecond})
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxBodyBytes))
	if err != nil {
		writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "forward: " + err.Error(), RetryAfter: 100 * time.Millisecond, Leader: leader})
		return
	}
	for _, h := range []string{"Content-Type", "Retry-After", api.HeaderIndex} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set(api.HeaderLeader, leader)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// stream serves the session stream: NDJSON, heartbeats with term and index
// (never a lease), master events, and `moved` before any server-side close.
// Only the tenant leader serves it; elsewhere the stream is one `moved`
// line naming the leader.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, who identity) {
	if r.Method != http.MethodGet {
		// HEAD would attach and never end (no body to end it with).
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, &api.Error{Code: api.CodeBadRequest, Message: "a session stream is a GET"})
		return
	}
	id := r.PathValue("id")
	if err := api.ValidateSessionID("id", id); err != nil {
		writeError(w, err)
		return
	}
	t, ok := s.replica(w, r)
	if !ok {
		return
	}
	if err := s.laneAllow(r, who, t, id); err != nil {
		s.tarpit(r, who, err) // held as every refusal of a rate is
		writeError(w, err)
		return
	}
	st, err := t.Sessions.Attach(id)
	if errors.Is(err, session.ErrNotLeader) {
		leader := t.LeaderAPI()
		startStream(w, leader)
		writeEvent(w, api.StreamEvent{Type: api.EventMoved, Leader: leader})
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	startStream(w, s.selfAPI())
	hb, leading := st.Heartbeat()
	if !leading || !writeEvent(w, hb) {
		st.ClientClosed()
		return
	}
	tick := time.NewTicker(s.node.Config().StreamHeartbeat)
	defer tick.Stop()
	for {
		select {
		case ev, open := <-st.Events():
			if !open {
				// The server ended the stream; its final event (moved or
				// expired) was the last one queued. If the buffer was full,
				// say moved now.
				writeEvent(w, api.StreamEvent{Type: api.EventMoved, Leader: t.LeaderAPI()})
				return
			}
			if !writeEvent(w, ev) {
				st.ClientClosed()
				return
			}
			if ev.Type == api.EventMoved || ev.Type == api.EventExpired {
				return
			}
		case <-tick.C:
			hb, leading := st.Heartbeat()
			if !leading {
				continue // the manager ends the stream with moved
			}
			if !writeEvent(w, hb) {
				st.ClientClosed()
				return
			}
		case <-r.Context().Done():
			st.ClientClosed()
			return
		}
	}
}

func startStream(w http.ResponseWriter, leader string) {
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	if leader != "" {
		h.Set(api.HeaderLeader, leader)
	}
	w.WriteHeader(http.StatusOK)
}

// writeEvent writes one line and flushes; false when the client is gone.
func writeEvent(w http.ResponseWriter, ev api.StreamEvent) bool {
	b, err := json.Marshal(ev)
	if err != nil {
		return false
	}
	var buf bytes.Buffer
	buf.Grow(len(b) + 1)
	buf.Write(b)
	buf.WriteByte('\n')
	if _, err := w.Write(buf.Bytes()); err != nil {
		return false
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		return false
	}
	return true
}

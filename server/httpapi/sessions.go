package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

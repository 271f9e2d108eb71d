package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/session"
)

// The requests of a client stream: writes run the REST handlers, keepalives
// and attaches the session manager, as REST does.

// startOp runs fn in a goroutine, one of at most Ops; past them it waits
// in the stream's pending queue (at most maxPending operations and
// maxPendingBytes of frames), and past that it is answered 503 at once: the
// reader never waits. size is what the operation holds (its frame's line
// length: the body and every string field). False: not started (answered,
// or the stream ends).
func (cs *clientStream) startOp(req uint64, size int, fn func()) bool {
	cs.mu.Lock()
	if cs.ending != nil {
		cs.mu.Unlock()
		return false
	}
	if cs.inflight < cs.lim.Ops {
		cs.inflight++
		cs.ops.Add(1)
		cs.mu.Unlock()
		go cs.runOps(fn)
		return true
	}
	if n := len(cs.pending) - cs.pendingHead; n >= maxPending || cs.pendingBytes+size > maxPendingBytes {
		cs.mu.Unlock()
		cs.sendResultErr(false, req, &api.Error{Code: api.CodeUnavailable, RetryAfter: 10 * time.Millisecond,
			Message: fmt.Sprintf("this stream has %d requests running and %d waiting, the most it may: send more as their results come", cs.lim.Ops, n)})
		return false
	}
	cs.pending = append(cs.pending, pendingOp{fn: fn, size: size})
	cs.pendingBytes += size
	cs.mu.Unlock()
	return true
}

// maxPending and maxPendingBytes bound the operations a stream has waiting
// for a goroutine, and their frames by line length: at most 1 MiB of
// frames, plus about 1.2 MiB of frame structs and closures.
const (
	maxPending      = 4096
	maxPendingBytes = 1 << 20
)

// pendingOp is an operation waiting for one of a stream's Ops goroutines.
type pendingOp struct {
	fn   func()
	size int
}

// runOps runs fn, then whatever is pending, until nothing is.
func (cs *clientStream) runOps(fn func()) {
	defer cs.ops.Done()
	for fn != nil {
		cs.runOp(fn)
		fn = nil
		cs.mu.Lock()
		if cs.pendingHead < len(cs.pending) && (cs.ending == nil || cs.ending.drain) {
			op := cs.pending[cs.pendingHead]
			cs.pending[cs.pendingHead] = pendingOp{}
			cs.pendingHead++
			if cs.pendingHead == len(cs.pending) {
				cs.pending, cs.pendingHead = cs.pending[:0], 0
			}
			cs.pendingBytes -= op.size
			fn = op.fn
		} else {
			cs.inflight--
		}
		cs.mu.Unlock()
	}
}

func (cs *clientStream) runOp(fn func()) {
	defer cs.recoverOp()
	fn()
}

// recoverOp logs a panic of an operation instead of ending the process.
func (cs *clientStream) recoverOp() {
	if v := recover(); v != nil {
		cs.s.log.Error("client stream operation panicked", "request_id", cs.reqID, "panic", fmt.Sprint(v))
	}
}

func (cs *clientStream) isEnding() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.ending != nil && !cs.ending.drain
}

// notLeader is the answer to session work on a node that does not lead
// the tenant shard.
func (cs *clientStream) notLeader() error {
	return &api.Error{Code: api.CodeUnavailable, RetryAfter: 100 * time.Millisecond, Leader: cs.t.LeaderAPI(),
		Message: "this node does not lead the tenant shard: session work goes to its leader (see moved)"}
}

// startWrite runs a write frame; size is its line's length, a bound on
// what the decoded frame holds while it waits (its body and its fields).
//
// A write frame is charged as it is read, as REST's wrap charges a write
// before its handler: one request, and its line's length in write bytes
// (its bulk may be in any field, not only its body). A refusal is held as
// REST holds one (tarpit), in an op goroutine: the reader never waits.
func (cs *clientStream) startWrite(f *api.ClientFrame, size int) bool {
	var run func()
	if err := cs.chargeWrite(size); err != nil {
		req := f.Req
		run = func() { cs.refuseHeld(req, err) }
		size = 0 // the frame is not kept
	} else {
		fr := *f
		run = func() { cs.doWrite(&fr) }
	}
	if !cs.startOp(f.Req, size, run) {
		return !cs.isEnding()
	}
	return true
}

// chargeWrite charges a write frame of size bytes to the stream's tenant.
func (cs *clientStream) chargeWrite(size int) error {
	if cs.who.tenant == "" {
		return nil // the admin token
	}
	now := time.Now()
	if err := cs.s.limit(cs.who.tenant, cs.r, false, now); err != nil {
		return err
	}
	return cs.s.chargeWriteBytes(cs.who.tenant, size, now)
}

// refuseHeld answers req with a rate-limit refusal, held as REST holds it.
func (cs *clientStream) refuseHeld(req uint64, err error) {
	rec := cs.recorder(req)
	runREST(rec, func() {
		cs.s.tarpit(cs.r.WithContext(cs.ctx), cs.who, err)
		writeError(rec, err)
	})
	cs.sendResult(false, req, rec.status, rec.body)
}

// doWrite runs a write frame through its REST handler, on a request built
// from the frame, and answers with what the handler answered.
func (cs *clientStream) doWrite(f *api.ClientFrame) {
	// The writer checks the token every second; a write waiting since
	// before a revocation must not commit under it (one hash and a map
	// read: nothing beside a proposal).
	if !cs.checkToken(time.Now()) {
		cs.sendResultErr(false, f.Req, errTokenGone)
		return
	}
	s := cs.s
	t := cs.t.Name
	var (
		method, path string
		values       []string
		handler      func(http.ResponseWriter, *http.Request, identity)
	)
	switch f.Type {
	case api.FramePutInstance:
		method, path, values, handler = http.MethodPut, "/v1/tenants/"+t+"/services/"+f.Service+"/instances/"+f.ID, []string{"s", f.Service, "id", f.ID}, s.register
	case api.FrameDeleteInstance:
		method, path, values, handler = http.MethodDelete, "/v1/tenants/"+t+"/services/"+f.Service+"/instances/"+f.ID, []string{"s", f.Service, "id", f.ID}, s.deregister
	case api.FrameOpenSession:
		method, path, values, handler = http.MethodPut, "/v1/tenants/"+t+"/sessions/"+f.ID, []string{"id", f.ID}, s.openSession
	case api.FrameCloseSession:
		method, path, values, handler = http.MethodDelete, "/v1/tenants/"+t+"/sessions/"+f.ID, []string{"id", f.ID}, s.closeSession
	case api.FrameResign:
		method, path, values, handler = http.MethodPost, "/v1/tenants/"+t+"/services/"+f.Service+"/master/resign", []string{"s", f.Service}, s.resign
	case api.FrameSetPolicy:
		method, path, values, handler = http.MethodPut, "/v1/tenants/"+t+"/services/"+f.Service+"/policy", []string{"s", f.Service}, s.setPolicy
	case api.FramePutKV:
		method, path, values, handler = http.MethodPut, "/v1/tenants/"+t+"/kv/"+f.Key, []string{"key", f.Key}, s.kvPut
	case api.FrameKVTxn:
		method, path, handler = http.MethodPost, "/v1/tenants/"+t+"/kv:txn", s.kvTxn
	case api.FrameDeleteKV:
		method, path, values, handler = http.MethodDelete, "/v1/tenants/"+t+"/kv/"+f.Key, []string{"key", f.Key}, s.kvDelete
	default:
		cs.sendResultErr(false, f.Req, api.BadField("type", "%q is not a frame type", f.Type))
		return
	}
	ctx, cancel := context.WithCancel(cs.ctx)
	defer cancel()
	if f.Type == api.FrameOpenSession || f.Type == api.FrameCloseSession {
		// Session work is the tenant leader's on the stream; bad input is
		// answered 400 wherever it arrives, as REST does.
		var err error
		if f.Type == api.FrameOpenSession {
			_, err = parseOpenSession(nil, cs.restRequest(ctx, method, path, f, values...), time.Now())
		} else {
			err = api.ValidateSessionID("id", f.ID)
		}
		if err == nil && !cs.t.Sessions.Leading() {
			cs.send(true, cs.movedFrame(""))
			err = cs.notLeader()
		}
		if err != nil {
			cs.sendResultErr(false, f.Req, err)
			return
		}
	}
	// What REST's wrap does for a write before its handler (a request,
	// the write bytes) was done as the frame was read (startWrite).
	req := cs.restRequest(ctx, method, path, f, values...)
	rec := cs.recorder(f.Req)
	runREST(rec, func() { handler(rec, req, cs.who) })
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status == http.StatusBadRequest {
		rec.body = headerFields.Replace(rec.body)
	}
	cs.sendResult(false, f.Req, rec.status, rec.body)
}

// headerFields names a frame's fields where REST's messages name its
// headers.
var headerFields = byteReplacer{
	{[]byte(`"message":"` + api.HeaderSession + `: `), []byte(`"message":"session: `)},
	{[]byte(`"message":"` + api.HeaderSequence + `: `), []byte(`"message":"seq: `)},
}

type byteReplacer [][2][]byte

func (r byteReplacer) Replace(b []byte) []byte {
	for _, p := range r {
		b = bytes.Replace(b, p[0], p[1], 1)
	}
	return b
}

// restRequest is the REST request a write frame stands for: its method,
// path values, X-Rafting-Session and X-Rafting-Sequence, and body.
func (cs *clientStream) restRequest(ctx context.Context, method, path string, f *api.ClientFrame, values ...string) *http.Request {
	h := make(http.Header, 3)
	if f.Session != "" {
		h.Set(api.HeaderSession, f.Session)
	}
	if f.Seq != 0 {
		h.Set(api.HeaderSequence, strconv.FormatUint(f.Seq, 10))
	}
	if f.Body != nil {
		// A frame's body is JSON (a put_kv's is api.KVPutRequest, never
		// the raw value a REST PUT may send).
		h.Set("Content-Type", "application/json")
	}
	req := (&http.Request{
		Method: method, URL: &url.URL{Path: path}, RequestURI: path,
		Proto: cs.r.Proto, ProtoMajor: cs.r.ProtoMajor, ProtoMinor: cs.r.ProtoMinor,
		Header: h, Body: io.NopCloser(bytes.NewReader(f.Body)), ContentLength: int64(len(f.Body)),
		Host: cs.r.Host, RemoteAddr: cs.r.RemoteAddr,
	}).WithContext(ctx)
	if f.Type == api.FrameDeleteKV { // its REST query
		q := url.Values{}
		if f.Prefix {
			q.Set("prefix", "true")
		}
		if f.IfIndex != nil {
			q.Set("if_index", strconv.FormatUint(*f.IfIndex, 10))
		}
		req.URL.RawQuery = q.Encode()
	}
	req.SetPathValue("t", cs.t.Name)
	for i := 0; i+1 < len(values); i += 2 {
		req.SetPathValue(values[i], values[i+1])
	}
	return req
}

// runREST runs a REST handler for a frame. A handler that ends its
// connection (a refusal held past every hold: tarpit) is answered 429 on
// the stream; a panic 500.
func runREST(rec *recorder, fn func()) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		rec.status, rec.body = 0, nil
		if v == http.ErrAbortHandler {
			writeError(rec, &api.Error{Code: api.CodeRateLimited, RetryAfter: RateLimitHold,
				Message: "this tenant holds every refusal this node holds: slow down"})
			return
		}
		writeError(rec, api.Errorf(api.CodeInternal, "panic: %v", v))
	}()
	fn()
}

// startKeepalive answers a keepalive frame in a goroutine of its own.
func (cs *clientStream) startKeepalive(f *api.ClientFrame) bool {
	cs.mu.Lock()
	if cs.ending != nil {
		cs.mu.Unlock()
		return false
	}
	if n := cs.keepalives; n >= cs.lim.Keepalives {
		cs.mu.Unlock()
		return cs.sendResultErr(true, f.Req, &api.Error{Code: api.CodeUnavailable, RetryAfter: 50 * time.Millisecond,
			Message: fmt.Sprintf("this stream has %d keepalive frames being answered, the most it may", n)})
	}
	cs.mu.Unlock()
	// A frame names at most as many sessions as the tenant may hold: more
	// is a bad frame, charged as one.
	if brief, ok := cs.s.node.Meta().Brief(cs.t.Name); ok && brief.Quotas.MaxSessions > 0 && int64(len(f.Sessions)) > brief.Quotas.MaxSessions {
		if cs.who.tenant != "" {
			if err := cs.s.limit(cs.who.tenant, cs.r, false, time.Now()); err != nil {
				return cs.sendResultErr(true, f.Req, err)
			}
		}
		return cs.sendResultErr(true, f.Req, api.BadField("sessions", "at most the tenant's max_sessions (%d) in one frame, got %d",
			brief.Quotas.MaxSessions, len(f.Sessions)))
	}
	cs.mu.Lock()
	if cs.ending != nil {
		cs.mu.Unlock()
		return false
	}
	cs.keepalives++
	cs.ops.Add(1)
	cs.mu.Unlock()
	req, items := f.Req, f.Sessions
	go func() {
		defer cs.ops.Done()
		defer func() {
			cs.mu.Lock()
			cs.keepalives--
			cs.mu.Unlock()
		}()
		defer cs.recoverOp()
		cs.keepalive(req, items)
	}()
	return true
}

// keepalive renews every session of a frame, each as REST's keepalive does
// on the tenant leader (its lane, its promise); the sessions that need a
// promise share one ReadIndex round. Each answer is REST's, in the frame's
// order. On a node that does not lead the shard every session is answered
// 503 naming the leader, after a `moved`.
//
// A session the node does not know is no lane work: it is charged to the
// tenant's requests (laneAllow) and its answer to the tenant's answer
// bytes, as REST charges them. Once one is refused 429 the frame's other
// unknown sessions are refused with it, uncharged and unserved, each
// answered {"status":429} sharing the frame's "limited" body: a frame of
// made-up sessions cannot be answered with more than it asked.
func (cs *clientStream) keepalive(req uint64, items []api.KeepaliveItem) {
	t := cs.t
	status := make([]int, len(items))
	bodies := make([][]byte, len(items))
	unknown := make([]bool, len(items))
	ids := make([]string, 0, len(items))
	at := make([]int, 0, len(items))
	leading := t.Sessions.Leading()
	moved := false
	var limited []byte // the 429 body the frame's unknown sessions share
	for i, it := range items {
		_, state := t.SM.Session(it.ID)
		unknown[i] = state == fsm.SessionUnknown && cs.who.tenant != ""
		if unknown[i] && limited != nil {
			status[i] = http.StatusTooManyRequests
			continue
		}
		if err := cs.s.laneAllow(cs.r, cs.who, t, it.ID); err != nil {
			status[i], bodies[i] = cs.errorAnswer(req, err)
			if unknown[i] && status[i] == http.StatusTooManyRequests {
				limited, bodies[i] = bodies[i], nil
			}
			continue
		}
		if !leading {
			status[i], bodies[i] = cs.errorAnswer(req, cs.notLeader())
			moved = true
			continue
		}
		ids = append(ids, it.ID)
		at = append(at, i)
	}
	if len(ids) > 0 {
		resps := make([]api.KeepaliveResponse, len(ids))
		errs := make([]error, len(ids))
		ctx, cancel := context.WithTimeout(cs.ctx, cs.s.node.Config().RequestTimeout)
		t.Sessions.KeepaliveAll(ctx, ids, resps, errs)
		cancel()
		for k, i := range at {
			switch err := errs[k]; {
			case errors.Is(err, session.ErrNotLeader):
				status[i], bodies[i] = cs.errorAnswer(req, cs.notLeader())
				moved = true
			case err != nil:
				status[i], bodies[i] = cs.errorAnswer(req, err)
			default:
				b, err := json.Marshal(resps[k])
				if err != nil {
					status[i], bodies[i] = cs.errorAnswer(req, api.Errorf(api.CodeInternal, "encode answer: %v", err))
					continue
				}
				status[i], bodies[i] = http.StatusOK, b
			}
		}
	}
	if moved {
		cs.send(true, cs.movedFrame(""))
	}
	n := 32 + len(limited)
	for i, b := range bodies {
		if unknown[i] && b != nil {
			// An unknown session's answer is charged as REST's would be.
			if err := cs.s.chargeAnswer(cs.who.tenant, len(b)+24, time.Now()); err != nil {
				status[i], bodies[i] = cs.errorAnswer(req, err)
				if limited == nil {
					limited = bodies[i]
				}
				bodies[i] = nil
				b = nil
			}
		}
		n += len(b) + 24
	}
	out := make([]byte, 0, n)
	out = append(out, `{"sessions":[`...)
	for i := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"status":`...)
		out = strconv.AppendInt(out, int64(status[i]), 10)
		if bodies[i] != nil {
			out = append(out, `,"body":`...)
			out = append(out, bytes.TrimRight(bodies[i], "\n")...)
		}
		out = append(out, '}')
	}
	out = append(out, ']')
	if limited != nil {
		out = append(out, `,"limited":`...)
		out = append(out, bytes.TrimRight(limited, "\n")...)
	}
	out = append(out, '}')
	cs.sendResult(true, req, http.StatusOK, out)
}

// attachment is a session attached on a stream.
type attachment struct {
	id, tag  string
	st       *session.Stream
	detached bool // by the stream (guarded by cs.mu): the forwarder sends nothing more
}

// attach attaches a session to this stream, as the session stream does:
// its events follow, and when the client ends the stream the session's
// deadline becomes drop_grace. Attaching is quick (no IO): the reader does
// it.
func (cs *clientStream) attach(f *api.ClientFrame) bool {
	id, t := f.Session, cs.t
	cs.mu.Lock()
	_, dup := cs.attached[id]
	n := len(cs.attached)
	cs.mu.Unlock()
	switch {
	case dup:
		return cs.sendResultErr(true, f.Req, api.Errorf(api.CodeConflict, "session: %s is attached on this stream already", api.SessionTag(id)))
	case n >= cs.lim.Attached:
		return cs.sendResultErr(true, f.Req, api.Errorf(api.CodeConflict, "session: this stream has %d sessions attached, the most it may", n))
	}
	if err := cs.s.laneAllow(cs.r, cs.who, t, id); err != nil {
		return cs.sendResultErr(true, f.Req, err)
	}
	tag := api.SessionTag(id)
	st, err := t.Sessions.Attach(id)
	if err == nil {
		if _, leading := st.Heartbeat(); !leading {
			st.Detach()
			err = session.ErrNotLeader
		}
	}
	if errors.Is(err, session.ErrNotLeader) {
		if !cs.send(true, cs.movedFrame(tag)) {
			return false
		}
		return cs.sendResultErr(true, f.Req, cs.notLeader())
	}
	if err != nil {
		return cs.sendResultErr(true, f.Req, err)
	}
	hb, _ := st.Heartbeat()
	a := &attachment{id: id, tag: tag, st: st}
	cs.mu.Lock()
	cs.attached[id] = a
	cs.mu.Unlock()
	ok := cs.sendResultJSON(true, f.Req, http.StatusOK, api.AttachResponse{SessionTag: tag, Term: hb.Term, Index: hb.Index})
	cs.forwarders.Add(1)
	go cs.forward(a)
	return ok
}

// forward sends an attached session's events until its stream ends.
func (cs *clientStream) forward(a *attachment) {
	defer cs.forwarders.Done()
	sending, final := true, false
	for ev := range a.st.Events() {
		if !sending {
			continue // the stream ends: drain until the stream is detached
		}
		var b []byte
		switch ev.Type {
		case api.EventMoved:
			final = true
			cs.forget(a)
			b = cs.movedFrameLeader(a.tag, ev.Leader)
		case api.EventExpired:
			final = true
			cs.forget(a)
			b = eventFrame(a.tag, ev)
		default:
			b = eventFrame(a.tag, ev)
		}
		sending = cs.send(true, b)
	}
	if final || !sending {
		return
	}
	cs.mu.Lock()
	mine := !a.detached
	cs.mu.Unlock()
	if mine {
		// Ended by the server without a last event (its buffer was full):
		// the client attaches it again.
		cs.forget(a)
		cs.send(true, cs.movedFrame(a.tag))
	}
}

func eventFrame(tag string, ev api.StreamEvent) []byte {
	b, _ := json.Marshal(api.SessionEventFrame{SessionTag: tag, StreamEvent: ev})
	return append(b, '\n')
}

// movedFrameLeader is movedFrame with the leader an event named first.
func (cs *clientStream) movedFrameLeader(tag, leader string) []byte {
	cs.t.Wake()
	servers := cs.s.movedServers(cs.t)
	if leader != "" && leader != cs.s.selfAPI() && (len(servers) == 0 || servers[0] != leader) {
		out := []string{leader}
		for _, s := range servers {
			if s != leader {
				out = append(out, s)
			}
		}
		servers = out
	}
	b, _ := json.Marshal(api.MovedFrame{Type: api.FrameMoved, Servers: servers, SessionTag: tag})
	return append(b, '\n')
}

// forget removes an attachment whose stream the server ended.
func (cs *clientStream) forget(a *attachment) {
	cs.mu.Lock()
	a.detached = true
	if cs.attached[a.id] == a {
		delete(cs.attached, a.id)
	}
	cs.mu.Unlock()
}

// detachAll detaches every attached session: as the client's close
// (drop_grace) or the server's (no drop_grace).
func (cs *clientStream) detachAll(client bool) {
	cs.mu.Lock()
	as := make([]*attachment, 0, len(cs.attached))
	for id, a := range cs.attached {
		a.detached = true
		as = append(as, a)
		delete(cs.attached, id)
	}
	cs.mu.Unlock()
	for _, a := range as {
		if client {
			a.st.ClientClosed()
		} else {
			a.st.Detach()
		}
	}
}

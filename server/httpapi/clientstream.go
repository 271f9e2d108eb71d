package httpapi

// The client stream, POST /v1/tenants/{t}/stream (DESIGN.md, "The client
// stream"; the frames are api/stream.go's).
//
// Goroutines of one stream: the handler's own runs the writer (the only
// user of the ResponseWriter); a reader decodes frames and dispatches them
// without waiting for any outcome; each write, watch set-up and keepalive
// frame runs in a goroutine of its own (at most StreamLimits.Ops and
// .Keepalives at once); each attached session has a forwarder of its
// events. Watches share one feed goroutine per service and node
// (clientstream_watch.go). Everything a stream starts ends before its
// handler returns.
//
// What the client is sent waits in two bounded queues (clientstream_out.go):
// keepalive answers, attaches and session events ahead of write results and
// watch traffic. A watch's frames are not queued: a watch queues a marker,
// and the writer encodes the watch's frame from the service's latest state
// when it gets there, so a watch that waits sends one frame with every
// change since its last (and resync when it waited too long).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
)

// StreamLimits bound what one client stream holds and how long it may lag.
// DefaultStreamLimits are a Server's; zero fields take them.
type StreamLimits struct {
	// QueueFrames and QueueBytes bound the frames waiting for the client
	// (results and session events; a watch waits as one marker, outside
	// them). A frame larger than QueueBytes is queued alone.
	QueueFrames int
	QueueBytes  int
	// StallClose: a queue full (not drained below half) this long ends the
	// stream, with `moved` first.
	StallClose time.Duration
	// WriteTimeout: a write the client does not take in this long ends the
	// stream (a client that stopped reading), without drop_grace.
	WriteTimeout time.Duration
	// WatchLag: a watch whose change waited this long to be sent is sent
	// `resync` instead, and ends.
	WatchLag time.Duration
	// Ops bounds the writes and watch set-ups one stream runs at once
	// (4096 more wait their turn), and Keepalives its keepalive frames;
	// past them a frame is answered 503.
	Ops        int
	Keepalives int
	// Watches and Attached bound one stream's open watches and attached
	// sessions (max_watchers and max_sessions count them too).
	Watches  int
	Attached int
	// PingAfter is the quiet time after which the server sends a ping.
	PingAfter time.Duration
	// CatchUp is how long a watch waits for this node's replica to reach
	// the asked index before it answers 503 stale_replica.
	CatchUp time.Duration
	// FreshEvery is how often a stream with watches confirms that its
	// replica is current (a ReadIndex shared by the shard's callers): a
	// replica cut off in a minority shows no change, and its watchers would
	// believe nothing changed for as long as the partition lasts (a
	// blocking query checks when its wait ends: 60 s for the SDK). One that
	// cannot, three tries a second apart, ends the stream with moved.
	FreshEvery time.Duration
}

// DefaultStreamLimits are the limits of a Server's client streams.
func DefaultStreamLimits() StreamLimits {
	return StreamLimits{
		QueueFrames: 256, QueueBytes: 1 << 20,
		StallClose: 5 * time.Second, WriteTimeout: 10 * time.Second, WatchLag: 5 * time.Second,
		Ops: 64, Keepalives: 4, Watches: 1024, Attached: 1024,
		PingAfter: time.Second, CatchUp: 2 * time.Second, FreshEvery: 30 * time.Second,
	}
}

func (l StreamLimits) withDefaults() StreamLimits {
	d := DefaultStreamLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.QueueFrames, d.QueueFrames)
	set(&l.QueueBytes, d.QueueBytes)
	setD(&l.StallClose, d.StallClose)
	setD(&l.WriteTimeout, d.WriteTimeout)
	setD(&l.WatchLag, d.WatchLag)
	set(&l.Ops, d.Ops)
	set(&l.Keepalives, d.Keepalives)
	set(&l.Watches, d.Watches)
	set(&l.Attached, d.Attached)
	setD(&l.PingAfter, d.PingAfter)
	setD(&l.CatchUp, d.CatchUp)
	setD(&l.FreshEvery, d.FreshEvery)
	return l
}

// MaxKeepaliveSessions is how many sessions one keepalive frame may name.
const MaxKeepaliveSessions = 10000

// clientStreams is a Server's client-stream state: the open streams (for
// CloseStreams) and the watch feeds they share.
type clientStreams struct {
	mu       sync.Mutex
	open     map[*clientStream]struct{}
	byTenant map[string]int64 // open streams per tenant: at most its max_sessions
	limits   StreamLimits
	feeds    *feeds
}

func newClientStreams() *clientStreams {
	return &clientStreams{open: map[*clientStream]struct{}{}, byTenant: map[string]int64{}, limits: DefaultStreamLimits(), feeds: newFeeds()}
}

// SetStreamLimits changes the limits of client streams opened from now on.
func (s *Server) SetStreamLimits(l StreamLimits) {
	s.cs.mu.Lock()
	s.cs.limits = l.withDefaults()
	s.cs.mu.Unlock()
}

// OpenStreams is how many client streams are open on this node.
func (s *Server) OpenStreams() int {
	s.cs.mu.Lock()
	defer s.cs.mu.Unlock()
	return len(s.cs.open)
}

// CloseStreams ends every client stream from the server's side, each with
// `moved` as its last frame (so no attached session starts drop_grace), and
// waits up to max for them to end. The server calls it when it stops,
// after it handed its leaderships over.
func (s *Server) CloseStreams(max time.Duration) {
	s.cs.mu.Lock()
	open := make([]*clientStream, 0, len(s.cs.open))
	for cs := range s.cs.open {
		open = append(open, cs)
	}
	s.cs.mu.Unlock()
	for _, cs := range open {
		cs.end(endShutdown, cs.movedFrame(""))
	}
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for _, cs := range open {
		select {
		case <-cs.finished:
		case <-deadline.C:
			return
		}
	}
}

// endReason is why a stream ended; it decides whether attached sessions
// start drop_grace (only when the client ended it).
type endReason int

const (
	endClientGone  endReason = iota + 1 // the client reset the stream or its connection
	endClientEOF                        // the client closed its side: answers already due are flushed first
	endOverload                         // a queue stayed full: moved
	endStalled                          // a write the client did not take
	endShutdown                         // the server stops: moved
	endReplicaGone                      // the tenant's replica left this node: moved
	endStale                            // the replica cannot confirm it is current: moved
	endBadFrame                         // a frame over 1 MiB, or not JSON: error
	endRevoked                          // the token no longer valid: error
)

func (r endReason) clientSide() bool { return r == endClientGone || r == endClientEOF }

// clientStream is one open client stream.
type clientStream struct {
	s     *Server
	r     *http.Request
	w     http.ResponseWriter
	rc    *http.ResponseController
	who   identity
	t     *cluster.Tenant
	lim   StreamLimits
	reqID string

	ctx    context.Context // ends with the stream: its operations' context
	cancel context.CancelFunc

	wake     chan struct{} // the writer has something to do (capacity 1)
	finished chan struct{} // closed when the handler is done

	ops        sync.WaitGroup // writes, watch set-ups, keepalives
	forwarders sync.WaitGroup // attached sessions' event forwarders
	reader     sync.WaitGroup
	bodyDone   atomic.Bool    // the reader met the end of the request's body
	fresh      sync.WaitGroup // the freshness check of the watches' replica
	freshAt    time.Time      // the writer's: when it last started one
	freshBusy  atomic.Bool

	mu           sync.Mutex
	ending       *ending
	hi, lo       fifo
	queued       int // frames in hi and lo (watch markers aside)
	queuedBytes  int
	fullSince    time.Time
	room         chan struct{} // closed when the queues drain below half
	inflight     int           // ops goroutines running
	pending      []pendingOp   // ops waiting for one
	pendingHead  int
	pendingBytes int
	keepalives   int // keepalive frames running
	watches      map[uint64]*watch
	attached     map[string]*attachment
	eof          bool // the client sends nothing more: the stream lives while it has watches

	lastWrite time.Time // the writer's

	// A write the client does not take within WriteTimeout: stall fires,
	// stalled is set and the stream reset (never after the handler is done).
	stall       *time.Timer
	stalled     atomic.Bool
	stallMu     sync.Mutex
	handlerDone bool
}

// ending is how a stream ends: its reason and last frame (nil: none).
type ending struct {
	reason endReason
	final  []byte
	drain  bool // send what is queued first (the client closed its side)
}

// clientStream serves POST /v1/tenants/{t}/stream.
func (s *Server) clientStream(w http.ResponseWriter, r *http.Request, who identity) {
	name := r.PathValue("t")
	if rec, ok := s.node.Meta().Tenant(name); ok {
		if _, here := s.node.Serving(name); !here && !s.placedHere(rec.Replicas) {
			// Not placed on this node: say where it is (its leader's
			// node first when known), and end.
			servers := s.node.TenantNodes(name)
			startStream(w, "")
			b, _ := json.Marshal(api.MovedFrame{Type: api.FrameMoved, Servers: nonNil(servers)})
			_, _ = w.Write(append(b, '\n'))
			return
		}
	}
	t, ok := s.replica(w, r)
	if !ok {
		return
	}
	// A tenant holds at most max_sessions client streams on a node, as it
	// holds at most that many session streams: each is goroutines and
	// buffers here.
	brief, _ := s.node.Meta().Brief(t.Name)
	s.cs.mu.Lock()
	lim := s.cs.limits
	if n := s.cs.byTenant[t.Name]; brief.Quotas.MaxSessions > 0 && n >= brief.Quotas.MaxSessions {
		s.cs.mu.Unlock()
		writeError(w, api.QuotaExceeded(t.Name, "max_sessions", brief.Quotas.MaxSessions, n))
		return
	}
	s.cs.byTenant[t.Name]++
	s.cs.mu.Unlock()
	defer func() {
		s.cs.mu.Lock()
		if s.cs.byTenant[t.Name]--; s.cs.byTenant[t.Name] <= 0 {
			delete(s.cs.byTenant, t.Name)
		}
		s.cs.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(r.Context())
	cs := &clientStream{
		s: s, r: r, w: w, rc: http.NewResponseController(w), who: who, t: t, lim: lim,
		reqID: w.Header().Get(HeaderRequestID), ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), finished: make(chan struct{}),
		room: make(chan struct{}), watches: map[uint64]*watch{}, attached: map[string]*attachment{},
	}
	cs.stall = time.AfterFunc(time.Hour, cs.onStall)
	cs.stall.Stop()
	defer func() {
		cs.stall.Stop()
		cs.stallMu.Lock()
		cs.handlerDone = true // an onStall under way is done; none runs from now on
		cs.stallMu.Unlock()
	}()
	defer close(cs.finished)
	// The stream outlives the server's ReadTimeout, which bounds one REST
	// request's body; an HTTP/1.1 client may stream both ways too.
	_ = cs.rc.SetReadDeadline(time.Time{})
	_ = cs.rc.EnableFullDuplex()
	startStream(w, t.LeaderAPI())
	if err := cs.rc.Flush(); err != nil {
		cancel()
		return
	}
	s.cs.mu.Lock()
	s.cs.open[cs] = struct{}{}
	s.cs.mu.Unlock()
	cs.reader.Add(1)
	go cs.readLoop()
	cs.writeLoop()
	cs.finish()
	s.cs.mu.Lock()
	delete(s.cs.open, cs)
	s.cs.mu.Unlock()
}

// placedHere reports whether one of a tenant's replicas is on this node.
func (s *Server) placedHere(replicas map[uint64]fsm.Replica) bool {
	for _, rep := range replicas {
		if rep.Node == s.node.ID() {
			return true
		}
	}
	return false
}

// finish ends what the stream started, after the writer stopped.
func (cs *clientStream) finish() {
	cs.mu.Lock()
	e := cs.ending
	if e == nil { // the writer stopped on its own (the client went away)
		e = &ending{reason: endClientGone}
		cs.ending = e
	}
	close(cs.room)
	cs.room = nil
	cs.mu.Unlock()
	cs.cancel()
	// Unblock the reader: a read deadline in the past ends a pending Read on
	// HTTP/2 and HTTP/1.1 alike. Not once the body has ended: on HTTP/1.1
	// the deadline is the connection's, and net/http reads on from there
	// for the next request; a deadline in the past fails that read, which
	// cancels the connection's context, and every later request on the
	// connection was answered "context canceled" (TestClientStreamLeavesH1ConnectionUsable).
	if !cs.bodyDone.Load() {
		_ = cs.rc.SetReadDeadline(time.Unix(1, 0))
	}
	cs.reader.Wait()
	cs.detachAll(e.reason.clientSide())
	cs.ops.Wait()
	cs.forwarders.Wait()
	cs.fresh.Wait()
	cs.closeWatches()
}

// end ends the stream for reason with a last frame (nil: none); the first
// reason wins.
func (cs *clientStream) end(reason endReason, final []byte) {
	cs.mu.Lock()
	if cs.ending == nil {
		cs.ending = &ending{reason: reason, final: final, drain: reason == endClientEOF}
	}
	cs.mu.Unlock()
	cs.signal()
}

func (cs *clientStream) signal() {
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// movedFrame is a `moved` naming where the tenant's session work goes.
func (cs *clientStream) movedFrame(sessionTag string) []byte {
	cs.t.Wake() // a shard whose leader is gone elects one (cluster/orphans.go)
	b, _ := json.Marshal(api.MovedFrame{Type: api.FrameMoved, Servers: cs.s.movedServers(cs.t), SessionTag: sessionTag})
	return append(b, '\n')
}

// movedServers are the servers a `moved` names: the other nodes that hold
// the tenant's shard, its leader first when known (cluster.TenantNodes),
// or, when none is known, every other node. Never a node that does not
// hold it: that one could only send the client back (placement).
func (s *Server) movedServers(t *cluster.Tenant) []string {
	self := s.selfAPI()
	out := []string{}
	for _, a := range s.node.TenantNodes(t.Name) {
		if a != self {
			out = append(out, a)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, n := range s.node.Meta().Nodes() {
		if n.APIAddress != "" && n.APIAddress != self {
			out = append(out, n.APIAddress)
		}
	}
	return out
}

func errorFrame(err *api.Error) []byte {
	b, _ := json.Marshal(api.ErrorFrame{Type: api.FrameError, Error: err.Body().Error})
	return append(b, '\n')
}

// readLoop reads frames until the client closes its side, the stream ends,
// or a frame ends it.
func (cs *clientStream) readLoop() {
	defer cs.reader.Done()
	br := bufio.NewReaderSize(cs.r.Body, 4<<10)
	var long []byte // a line longer than the reader's buffer, gathered
	for {
		frag, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) {
			cs.bodyDone.Store(true) // before the stream can end: see finish
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(frag) > api.MaxFrameBytes+2 {
				cs.end(endBadFrame, errorFrame(api.Errorf(api.CodeTooLarge, "frame: larger than %d bytes", api.MaxFrameBytes)))
				return
			}
			long = append(long, frag...)
			continue
		}
		line := frag
		if len(long) > 0 {
			line = append(long, frag...)
			long = long[:0]
			if cap(long) > 64<<10 {
				long = nil // a big frame's buffer is not kept
			}
		}
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			if n := len(bytes.TrimRight(line, "\r\n")); n > api.MaxFrameBytes {
				cs.end(endBadFrame, errorFrame(api.Errorf(api.CodeTooLarge, "frame: larger than %d bytes", api.MaxFrameBytes)))
				return
			}
			if !cs.handle(line) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				cs.clientClosing()
			} else {
				cs.end(cs.goneReason(), nil)
			}
			return
		}
	}
}

// clientClosing: the client closed its side, and sends nothing more. Its
// sessions start drop_grace now (no keepalive can come on this stream);
// what is running is answered; then the stream ends, unless it has
// watches: those go on until the client goes away (so that
// `curl --http2-prior-knowledge -N --data-binary '{"type":"watch",...}'`
// watches a service) or each ends (resync).
func (cs *clientStream) clientClosing() {
	cs.detachAll(true)
	cs.ops.Wait()
	cs.mu.Lock()
	cs.eof = true
	watching := len(cs.watches) > 0
	cs.mu.Unlock()
	if !watching {
		cs.end(endClientEOF, nil)
	}
}

// handle serves one line; false ends the reading.
func (cs *clientStream) handle(line []byte) bool {
	if len(bytes.TrimSpace(line)) == 0 {
		return true // blank lines are allowed between frames
	}
	f, bad, fatal := decodeFrame(line)
	if fatal != nil {
		cs.end(endBadFrame, errorFrame(fatal))
		return false
	}
	// Frames that are neither writes (charged as they start: startWrite)
	// nor session work (its lane) are the tenant's requests, as the
	// stream's opening was: each watch, ping and bad frame, and an unwatch
	// that frees nothing (unwatch).
	if (bad != nil || f.Type == api.FrameWatch || f.Type == api.FrameWatchKV || f.Type == api.FramePing) && cs.who.tenant != "" {
		if err := cs.s.limit(cs.who.tenant, cs.r, false, time.Now()); err != nil {
			if bad == nil && f.Req == 0 {
				return true // a ping without req: nothing to answer
			}
			return cs.sendResultErr(false, f.Req, err)
		}
	}
	if bad != nil {
		return cs.sendResultErr(false, f.Req, bad)
	}
	switch f.Type {
	case api.FramePing:
		if f.Req != 0 {
			return cs.sendResult(false, f.Req, http.StatusNoContent, nil)
		}
		return true
	case api.FrameAttach:
		return cs.attach(&f)
	case api.FrameKeepalive:
		return cs.startKeepalive(&f)
	case api.FrameWatch, api.FrameWatchKV:
		return cs.startWatch(&f)
	case api.FrameUnwatch:
		return cs.unwatch(&f)
	default: // the writes
		return cs.startWrite(&f, len(line))
	}
}

// sendResult queues a result frame; body is JSON (nil: none).
func (cs *clientStream) sendResult(hi bool, req uint64, status int, body []byte) bool {
	b := make([]byte, 0, 48+len(body))
	b = append(b, `{"type":"result","req":`...)
	b = strconv.AppendUint(b, req, 10)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if body = bytes.TrimRight(body, "\n"); len(body) > 0 {
		b = append(b, `,"body":`...)
		b = append(b, body...)
	}
	b = append(b, "}\n"...)
	return cs.send(hi, b)
}

// sendResultErr answers req with an error as REST would.
func (cs *clientStream) sendResultErr(hi bool, req uint64, err error) bool {
	status, body := cs.errorAnswer(req, err)
	return cs.sendResult(hi, req, status, body)
}

// sendResultJSON answers req with v.
func (cs *clientStream) sendResultJSON(hi bool, req uint64, status int, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return cs.sendResultErr(hi, req, api.Errorf(api.CodeInternal, "encode answer: %v", err))
	}
	return cs.sendResult(hi, req, status, b)
}

// errorAnswer is the status and body REST answers err with.
func (cs *clientStream) errorAnswer(req uint64, err error) (int, []byte) {
	rec := cs.recorder(req)
	writeError(rec, err)
	return rec.status, rec.body
}

// recorder runs a REST handler for a frame: it keeps the status and body
// the frame's result carries.
type recorder struct {
	h      http.Header
	status int
	body   []byte
	log    func(detail string)
}

func (cs *clientStream) recorder(req uint64) *recorder {
	rec := &recorder{h: http.Header{}}
	id := cs.reqID + "/" + strconv.FormatUint(req, 10)
	rec.h.Set(HeaderRequestID, id)
	rec.log = func(detail string) {
		cs.s.log.Error("request failed", "request_id", id, "route", "client stream", "err", detail)
	}
	return rec
}

func (r *recorder) Header() http.Header { return r.h }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, b...)
	return len(b), nil
}

func (r *recorder) failed(detail string) { r.log(detail) }

// Frame fields, for the check that a frame has only its type's.
const (
	fReq = 1 << iota
	fSession
	fSeq
	fSessions
	fW
	fIndex
	fEpoch
	fService
	fID
	fBody
	fKey
	fPrefix
	fIfIndex
)

var fieldNames = []string{"req", "session", "seq", "sessions", "w", "index", "epoch", "service", "id", "body", "key", "prefix", "if_index"}

// frameFields are the fields each frame type takes.
var frameFields = map[string]int{
	api.FrameAttach:         fReq | fSession,
	api.FrameKeepalive:      fReq | fSessions,
	api.FrameWatch:          fReq | fW | fService | fIndex | fEpoch,
	api.FrameWatchKV:        fReq | fW | fKey | fPrefix | fIndex | fEpoch,
	api.FrameUnwatch:        fReq | fW,
	api.FramePutInstance:    fReq | fService | fID | fBody | fSession | fSeq,
	api.FrameDeleteInstance: fReq | fService | fID | fSession | fSeq,
	api.FrameOpenSession:    fReq | fID | fBody,
	api.FrameCloseSession:   fReq | fID,
	api.FrameResign:         fReq | fService | fBody | fSession | fSeq,
	api.FrameSetPolicy:      fReq | fService | fBody,
	api.FramePutKV:          fReq | fKey | fBody | fSession | fSeq,
	api.FrameKVTxn:          fReq | fBody | fSession | fSeq,
	api.FrameDeleteKV:       fReq | fKey | fPrefix | fIfIndex | fSession | fSeq,
	api.FramePing:           fReq,
}

func presentFields(f *api.ClientFrame) int {
	var m int
	set := func(ok bool, bit int) {
		if ok {
			m |= bit
		}
	}
	set(f.Req != 0, fReq)
	set(f.Session != "", fSession)
	set(f.Seq != 0, fSeq)
	set(f.Sessions != nil, fSessions)
	set(f.W != 0, fW)
	set(f.Index != 0, fIndex)
	set(f.Epoch != 0, fEpoch)
	set(f.Service != "", fService)
	set(f.ID != "", fID)
	set(f.Body != nil, fBody)
	set(f.Key != "", fKey)
	set(f.Prefix, fPrefix)
	set(f.IfIndex != nil, fIfIndex)
	return m
}

// decodeFrame decodes and checks one line from a client. A line that is
// not one JSON value is fatal (the stream ends); any other fault is bad, a
// 400 naming the field, answered to the frame's req (0 when it cannot be
// read). The checks that need the cluster (a write's body, a session's
// state) are the REST handlers'.
func decodeFrame(line []byte) (f api.ClientFrame, bad, fatal *api.Error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	err := dec.Decode(&f)
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return f, nil, api.BadField("frame", "invalid JSON at offset %d: %v", syn.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return f, nil, api.BadField("frame", "truncated JSON")
	}
	if len(bytes.TrimSpace(line[dec.InputOffset():])) > 0 {
		return f, nil, api.BadField("frame", "data after the JSON value: one frame a line")
	}
	if err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field == "" {
			return f, api.BadField("frame", "must be a JSON object, got JSON %s", typ.Value), nil
		}
		e := jsonError(err).(*api.Error)
		return f, e, nil
	}
	allowed, known := frameFields[f.Type]
	switch {
	case f.Type == "":
		return f, api.BadField("type", "is required"), nil
	case !known:
		return f, api.BadField("type", "%q is not a frame type", f.Type), nil
	}
	if extra := presentFields(&f) &^ allowed; extra != 0 {
		for i, name := range fieldNames {
			if extra&(1<<i) != 0 {
				return f, api.BadField(name, "is not a field of a %s frame", f.Type), nil
			}
		}
	}
	if f.Req == 0 && f.Type != api.FramePing {
		return f, api.BadField("req", "is required: a positive number the result will carry"), nil
	}
	switch f.Type {
	case api.FrameAttach:
		if err := api.ValidateSessionID("session", f.Session); err != nil {
			return f, err.(*api.Error), nil
		}
	case api.FrameKeepalive:
		if len(f.Sessions) == 0 {
			return f, api.BadField("sessions", "at least one session is required"), nil
		}
		if len(f.Sessions) > MaxKeepaliveSessions {
			return f, api.BadField("sessions", "at most %d in one frame, got %d", MaxKeepaliveSessions, len(f.Sessions)), nil
		}
		for i, it := range f.Sessions {
			if err := api.ValidateSessionID(fmt.Sprintf("sessions[%d].id", i), it.ID); err != nil {
				return f, err.(*api.Error), nil
			}
		}
	case api.FrameWatch:
		if f.W == 0 {
			return f, api.BadField("w", "is required: a positive number naming the watch"), nil
		}
		if err := api.ValidateName("service", f.Service); err != nil {
			return f, err.(*api.Error), nil
		}
	case api.FrameWatchKV:
		if f.W == 0 {
			return f, api.BadField("w", "is required: a positive number naming the watch"), nil
		}
		if f.Prefix {
			if err := api.ValidateKeyPrefix("key", f.Key); err != nil {
				return f, err.(*api.Error), nil
			}
		} else if err := api.ValidateKey("key", f.Key); err != nil {
			return f, err.(*api.Error), nil
		}
	case api.FrameUnwatch:
		if f.W == 0 {
			return f, api.BadField("w", "is required: the number of the watch"), nil
		}
	case api.FramePutInstance, api.FrameDeleteInstance, api.FrameOpenSession, api.FrameCloseSession,
		api.FrameResign, api.FrameSetPolicy, api.FramePutKV, api.FrameKVTxn, api.FrameDeleteKV:
		if err := writePathFields(&f); err != nil {
			return f, err.(*api.Error), nil
		}
	}
	return f, nil, nil
}

// writePathFields checks the fields a write frame puts in its REST
// request's path and headers (service, id, session), as the handler would:
// a frame refused for them is answered at once, and never waits for an op
// goroutine holding a field of up to a frame's size.
func writePathFields(f *api.ClientFrame) error {
	switch f.Type {
	case api.FrameOpenSession, api.FrameCloseSession:
		return api.ValidateSessionID("id", f.ID)
	case api.FramePutKV, api.FrameKVTxn, api.FrameDeleteKV:
		if f.Type != api.FrameKVTxn {
			if err := api.ValidateKey("key", f.Key); err != nil {
				return err
			}
		}
		if f.Session != "" {
			return api.ValidateSessionID("session", f.Session)
		}
		return nil
	}
	if err := api.ValidateName("service", f.Service); err != nil {
		return err
	}
	if f.Type == api.FramePutInstance || f.Type == api.FrameDeleteInstance {
		if err := api.ValidateName("id", f.ID); err != nil {
			return err
		}
	}
	if f.Session != "" {
		return api.ValidateSessionID("session", f.Session)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

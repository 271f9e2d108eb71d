// Package httpapi serves Rafting's REST API v1 (DESIGN.md's table) over a
// cluster.Node: authentication, rate limits, authorization, blocking
// queries, writes on any node, keepalives forwarded to the tenant leader,
// session streams, tenant administration and /metrics.
//
// Order on every request: authenticate (401) → rate-limit by the
// authenticated identity (429; requests without a valid token share one
// small bucket per remote address) → authorize (403 for a tenant token on
// an admin endpoint, 404 for a tenant token on another tenant's path).
// Keepalives and stream attaches use their own lane, outside the tenant's
// request and write rates.
//
// Threading: a Server is safe for concurrent use by the http.Server.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/metrics"
	"github.com/rafting/rafting/tenants"
)

// Server is the REST API of one node.
type Server struct {
	node  *cluster.Node
	log   *slog.Logger
	mux   *http.ServeMux
	admin tenants.Hash // zero: no admin token configured
	read  tenants.Hash // zero: no read-only token configured
	peers *http.Client // forwards keepalives to the tenant leader

	proxyTr  http.RoundTripper // proxied tenant requests: a pool of its own, apart from peers' (proxy.go)
	proxyMu  sync.Mutex
	proxying map[string]int // requests proxied now, per tenant

	requests *tenants.Limiters // per tenant: requests_per_second, burst
	writes   *tenants.Limiters // per tenant: writes_per_second
	lane     *tenants.Limiters // per session: keepalives and stream attaches
	unauth   *tenants.Limiters // per remote address: requests without a valid token
	misses   *tenants.Limiters // one bucket: tokens this node checks with the meta shard
	bytes    *tenants.Limiters // per tenant: bytes proposed, bytes answered

	watchMu  sync.Mutex
	watchers map[string]*atomic.Int64 // open blocking queries per tenant

	holds *holdPool // rate-limited answers being held (see tarpit)

	cs *clientStreams // client streams and their watch feeds

	sessionMu       sync.Mutex
	sessionOrders   map[string]*sessionOrder // per tenant: its sessions by tag (sessionsByTag)
	orderedSessions int                      // sessions in sessionOrders, all tenants together

	restoreHook atomic.Pointer[func(tenant string)] // tests: a restore about to write a tenant

	reqCount     *prometheus.CounterVec
	reqTime      *prometheus.HistogramVec
	metricsServe http.Handler // reg's exposition
}

// identity is who a request authenticated as.
type identity struct {
	admin    bool
	readOnly bool   // the read-only admin token: GETs only
	tenant   string // set for a tenant token
}

// New returns the API of a node. reg receives the API's metrics and is
// served on /metrics (admin token required).
func New(node *cluster.Node, reg *prometheus.Registry, peers *http.Client) *Server {
	cfg := node.Config()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if peers == nil {
		peers = &http.Client{Timeout: 5 * time.Second}
	}
	s := &Server{
		node: node, log: log.With("node", cfg.NodeID), mux: http.NewServeMux(), peers: peers,
		requests: tenants.NewLimiters(0), writes: tenants.NewLimiters(0),
		lane: tenants.NewLimiters(0), unauth: tenants.NewCappedLimiters(0, maxAddressBuckets),
		misses: tenants.NewLimiters(0), bytes: tenants.NewLimiters(0),
		watchers: map[string]*atomic.Int64{},
		proxyTr:  proxyTransport(peers), proxying: map[string]int{},
		holds: &holdPool{byKey: map[string]int{}, perKey: MaxHeldPerKey},
		cs:    newClientStreams(),

		sessionOrders: map[string]*sessionOrder{},
	}
	if cfg.AdminToken != "" {
		s.admin = tenants.HashToken(cfg.AdminToken)
	} else {
		s.admin = cfg.AdminTokenHash // remembered in the data dir; zero: none
	}
	if cfg.ReadToken != "" {
		s.read = tenants.HashToken(cfg.ReadToken)
	}
	s.reqCount = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_http_requests_total",
		Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	s.reqTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rafting_http_request_seconds",
		Help: "HTTP request latency by route (blocking queries and streams included).", Buckets: metrics.DefBuckets}, []string{"route"})
	reg.MustRegister(s.reqCount, s.reqTime)
	s.metricsServe = metrics.Handler(reg, s.log)
	metrics.NewGaugeFunc(reg, "rafting_tenant_watchers", "Open blocking queries per tenant on this node.", []string{"tenant"}, func(emit func(float64, ...string)) {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		for t, n := range s.watchers {
			emit(float64(n.Load()), t)
		}
	})
	metrics.NewGaugeFunc(reg, "rafting_client_streams", "Open client streams per tenant on this node.", []string{"tenant"}, func(emit func(float64, ...string)) {
		s.cs.mu.Lock()
		defer s.cs.mu.Unlock()
		for t, n := range s.cs.byTenant {
			emit(float64(n), t)
		}
	})
	s.cs.feeds.charge = s.chargeFeed
	s.routes()
	return s
}

// chargeFeed takes n bytes of tenant's answer bytes for a watch feed's
// read (afford); never more than the budget holds, so that a read larger
// than a second's budget waits a second, not for ever.
func (s *Server) chargeFeed(tenant string, n int, now time.Time) (bool, time.Duration) {
	rate := s.node.Config().AnswerBytesPerSecond
	if rate <= 0 {
		return true, 0
	}
	return s.bytes.AllowN("ab:"+tenant, min(n, rate), float64(rate), rate, now)
}

// kind of endpoint, for the auth middleware.
type access int

const (
	public   access = iota + 1 // no token
	document                   // no token, but one request of the caller's budget (limitAnonymous)
	admin                      // admin token only
	tenant                     // admin, or the token of the path's tenant
	tenantRO                   // GET /v1/tenants/{t}: admin or own tenant
	anyToken                   // any valid token
)

// lane marks requests that are keepalives or stream attaches.
type lane bool

func (s *Server) routes() {
	h := func(pattern string, a access, l lane, write bool, fn func(http.ResponseWriter, *http.Request, identity)) {
		s.mux.Handle(pattern, s.wrap(pattern, a, l, write, fn))
	}
	h("GET /healthz", public, false, false, s.healthz)
	h("GET /readyz", public, false, false, s.readyz)
	h("GET /metrics", admin, false, false, s.metrics)
	h("GET /v1/openapi.yaml", document, false, false, s.openapi)
	h("GET /v1/openapi.json", document, false, false, s.openapiJSON)
	h("GET /v1/cluster", admin, false, false, s.cluster)
	h("GET /v1/servers", anyToken, false, false, s.serverList)
	h("POST /v1/cluster/nodes", admin, false, false, s.joinNode)
	h("DELETE /v1/cluster/nodes/{id}", admin, false, false, s.removeNode)
	h("POST /v1/cluster/leaders", admin, false, false, s.transferLeaders)
	h("GET /v1/cluster/meta-applied", admin, false, false, s.metaApplied)
	h("GET /v1/backup", admin, false, false, s.backup)
	h("POST /v1/restore", admin, false, false, s.restore)
	h("POST /v1/tenants", admin, false, false, s.createTenant)
	h("GET /v1/tenants", admin, false, false, s.listTenants)
	h("GET /v1/tenants/{t}", tenantRO, false, false, s.showTenant)
	h("PATCH /v1/tenants/{t}", admin, false, false, s.updateTenant)
	h("DELETE /v1/tenants/{t}", admin, false, false, s.deleteTenant)
	h("POST /v1/tenants/{t}/token", admin, false, false, s.rotateToken)
	h("DELETE /v1/tenants/{t}/token/previous", admin, false, false, s.revokePrevious)
	h("GET /v1/tenants/{t}/sessions", tenant, false, false, s.listSessions)
	h("PUT /v1/tenants/{t}/sessions/{id}", tenant, false, true, s.openSession)
	h("DELETE /v1/tenants/{t}/sessions/{id}", tenant, false, true, s.closeSession)
	h("PUT /v1/tenants/{t}/sessions/{id}/keepalive", tenant, true, false, s.keepalive)
	h("GET /v1/tenants/{t}/sessions/{id}/stream", tenant, true, false, s.stream)
	h("PUT /v1/tenants/{t}/services/{s}/instances/{id}", tenant, false, true, s.register)
	h("DELETE /v1/tenants/{t}/services/{s}/instances/{id}", tenant, false, true, s.deregister)
	h("GET /v1/tenants/{t}/services", tenant, false, false, s.listServices)
	h("GET /v1/tenants/{t}/services/{s}", tenant, false, false, s.service)
	h("PUT /v1/tenants/{t}/services/{s}/policy", tenant, false, true, s.setPolicy)
	h("POST /v1/tenants/{t}/services/{s}/master/resign", tenant, false, true, s.resign)
	h("PUT /v1/tenants/{t}/kv/{key...}", tenant, false, true, s.kvPut)
	h("GET /v1/tenants/{t}/kv/{key...}", tenant, false, false, s.kvGet)
	h("GET /v1/tenants/{t}/kv", tenant, false, false, s.kvGet)
	h("DELETE /v1/tenants/{t}/kv/{key...}", tenant, false, true, s.kvDelete)
	h("POST /v1/tenants/{t}/kv:txn", tenant, false, true, s.kvTxn)
	h("POST /v1/tenants/{t}/stream", tenant, false, false, s.clientStream)
	s.uiRoutes() // the dashboard: /ui and its live feed (ui.go)
	if s.node.Config().Pprof {
		// Go's profiles, for an operator with the admin token: a CPU
		// profile of a node under load is how its costs are found.
		prof := func(fn http.HandlerFunc) func(http.ResponseWriter, *http.Request, identity) {
			return func(w http.ResponseWriter, r *http.Request, _ identity) { fn(w, r) }
		}
		h("GET /debug/pprof/", admin, false, false, prof(pprof.Index))
		h("GET /debug/pprof/cmdline", admin, false, false, prof(pprof.Cmdline))
		h("GET /debug/pprof/profile", admin, false, false, prof(pprof.Profile))
		h("GET /debug/pprof/symbol", admin, false, false, prof(pprof.Symbol))
		h("POST /debug/pprof/symbol", admin, false, false, prof(pprof.Symbol))
		h("GET /debug/pprof/trace", admin, false, false, prof(pprof.Trace))
	}
}

// ServeHTTP serves the API.
//
// A path that is not clean (".", "..", "//") is refused with 400, never
// redirected: ServeMux answers 307 to the cleaned path, which a client
// follows with its method and credentials — a tenant's DELETE of
// "../cluster/nodes/999" would become the removal of a node.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p != "" && path.Clean(p) != p && path.Clean(p)+"/" != p {
		writeError(w, api.BadField("path", "%q is not a clean path (no ., .. or empty segments)", p))
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// No route (404, 405): a request of the caller's budget as any
		// other, or a client without a token would be answered as fast as
		// the node can (TestRedTeam2PublicRoutesAreUnlimited).
		if id, err := s.limitAnonymous(r, time.Now()); err != nil {
			s.tarpitOn(w, r, id, err)
			leaveBody(w, r)
			writeError(w, err)
			return
		}
		s.mux.ServeHTTP(&jsonErrorWriter{ResponseWriter: w}, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// limitAnonymous charges a request that needs no token (the OpenAPI
// documents, a path no route matches) to its caller's budget: a valid
// tenant token's request rate, nothing for the admin tokens, and for
// anyone else (no token, or one this node does not know: never checked
// with the meta shard here) the per-address bucket of unauthenticated
// requests. The identity names whose holds a refusal takes.
//
// /healthz and /readyz stay outside it: peers, probes and load balancers
// ask them from few addresses, often, and their answers are small.
func (s *Server) limitAnonymous(r *http.Request, now time.Time) (identity, error) {
	if tok := bearer(r); tok != "" {
		if id, ok := s.authToken(tok, tenants.HashToken(tok), now); ok {
			if id.tenant == "" {
				return id, nil
			}
			return id, s.limit(id.tenant, r, false, now)
		}
	}
	if ok, _ := s.unauth.Allow(remoteHost(r), tenants.UnauthenticatedRate, tenants.UnauthenticatedBurst, now); !ok {
		return identity{}, errUnauthenticatedRate
	}
	return identity{}, nil
}

// statusWriter records the status for metrics and passes Flush through.
type statusWriter struct {
	http.ResponseWriter
	status int
	detail string // an internal error's text, for the log
}

func (sw *statusWriter) failed(detail string) { sw.detail = detail }

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 {
		sw.status = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

func (sw *statusWriter) Flush() {
	if f, ok := sw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

func (s *Server) wrap(route string, a access, l lane, write bool, fn func(http.ResponseWriter, *http.Request, identity)) http.Handler {
	count := map[int]prometheus.Counter{}
	var countMu sync.Mutex
	hist := s.reqTime.WithLabelValues(route)
	body := capOf(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		reqID := newRequestID()
		w.Header().Set(HeaderRequestID, reqID)
		w.Header().Set("Cache-Control", "no-store") // answers carry tokens and live state
		// who asked, for the access log, once authenticated
		var who identity
		defer func() {
			endReads(r.Context(), r, w.Header())
			if sw.detail != "" {
				s.log.Error("request failed", "request_id", reqID, "route", route, "err", sw.detail)
			}
			s.accessLog(r, reqID, route, sw.status, who, start)
			hist.Observe(time.Since(start).Seconds())
			countMu.Lock()
			c := count[sw.status]
			if c == nil {
				c = s.reqCount.WithLabelValues(route, statusText(sw.status))
				count[sw.status] = c
			}
			countMu.Unlock()
			c.Inc()
		}()
		id, err := s.authorize(r, a, bool(l), write)
		who = id
		if err == nil {
			err = s.admitBody(sw, r, body, id, write, start)
		}
		if err == errConnections {
			sw.Header().Set("Connection", "close") // not one of this tenant's connections
		}
		if err != nil {
			if e, ok := err.(*api.Error); ok && e.Code == api.CodeRateLimited {
				sw.status = http.StatusTooManyRequests // counted even if the connection is ended
			}
			s.tarpitOn(sw, r, id, err)
			leaveBody(sw, r) // none of it was read
			writeError(sw, err)
			return
		}
		fn(sw, r, id)
	})
}

// accessLog writes a request's line at debug: its ID (the X-Request-Id
// answered), method, route, path, status, time taken and who asked. Never
// a header, the query or the body: nothing a token could be in.
func (s *Server) accessLog(r *http.Request, reqID, route string, status int, who identity, start time.Time) {
	if !s.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	by := "anonymous"
	switch {
	case who.tenant != "":
		by = "tenant " + who.tenant
	case who.readOnly:
		by = "read-only admin"
	case who.admin:
		by = "admin"
	}
	s.log.Debug("request", "request_id", reqID, "method", r.Method, "route", route, "path", loggedPath(r, route),
		"status", statusText(status), "took", time.Since(start).Round(time.Microsecond), "by", by, "remote", r.RemoteAddr)
}

// loggedPath is r's path as the access log writes it: a session's ID,
// a secret (whoever knows it keeps the session alive or ends it), is
// written as its tag, as every other log line names a session.
func loggedPath(r *http.Request, route string) string {
	p := r.URL.EscapedPath()
	id := r.PathValue("id")
	if id == "" || !strings.Contains(route, "/sessions/{id}") {
		return p
	}
	seg := strings.Split(p, "/") // "", v1, tenants, {t}, sessions, {id}, ...
	if len(seg) < 6 || seg[4] != "sessions" {
		return "/v1/tenants/" + r.PathValue("t") + "/sessions/" + api.SessionTag(id) // not as routed: nothing of it
	}
	seg[5] = api.SessionTag(id)
	return strings.Join(seg, "/")
}

func statusText(code int) string {
	if code == 0 {
		code = http.StatusOK
	}
	return strconv.Itoa(code)
}

// authorize authenticates, rate-limits by identity, then authorizes.
func (s *Server) authorize(r *http.Request, a access, isLane, write bool) (identity, error) {
	if a == public {
		return identity{}, nil
	}
	now := time.Now()
	if a == document {
		return s.limitAnonymous(r, now)
	}
	// A token that is not known (attack pattern 7: made-up tokens from
	// many addresses) is refused at as little cost as can be: hashed
	// once, parsed without allocating, answered with a body encoded once
	// (staticError), nothing of the request's body read (leaveBody).
	tok := bearer(r)
	var hash tenants.Hash
	if tok != "" {
		hash = tenants.HashToken(tok)
	}
	id, ok := s.authToken(tok, hash, now)
	if !ok {
		if allowed, _ := s.unauth.Allow(remoteHost(r), tenants.UnauthenticatedRate, tenants.UnauthenticatedBurst, now); !allowed {
			return identity{}, errUnauthenticatedRate
		}
		// A token this node does not know may be new, or this node may be
		// behind (just restarted, cut off): check the meta replica with a
		// quorum before refusing it. When that cannot be done the answer
		// is 503, never 401: a client takes a 401 as final.
		if name, _ := tenants.ParseToken(tok); name != "" {
			// Tokens this node does not know share one budget per node
			// (TokenChecks a second) and one meta ReadIndex per round:
			// made-up tokens from many addresses cost the meta shard
			// nothing more than a round at a time.
			if ok, _ := s.misses.Allow("miss", TokenChecks, TokenChecks, now); !ok {
				return identity{}, errTokenChecks
			}
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			err := s.node.SyncMetaSince(ctx)
			cancel()
			if err != nil {
				return identity{}, &api.Error{Code: api.CodeUnavailable, RetryAfter: 200 * time.Millisecond,
					Message: "this node cannot check the token with the cluster now: " + err.Error()}
			}
			id, ok = s.authToken(tok, hash, now)
		}
		if !ok && strings.HasPrefix(tok, tenants.TokenPrefix) {
			// A node too old for the cluster's state version may lack a
			// token a newer command wrote: it cannot refuse one.
			if name, _ := tenants.ParseToken(tok); name != "" {
				if err := s.node.TooOldError(name); err != nil {
					return identity{}, err
				}
			}
			if s.restoringCluster() {
				return identity{}, errRestoringCluster
			}
		}
		if !ok {
			return identity{}, errUnknownToken
		}
	}
	if !markAuthenticated(r.Context(), id.tenant) {
		return identity{}, errConnections
	}
	if id.tenant != "" {
		if err := s.limit(id.tenant, r, isLane, now); err != nil {
			return id, err // the identity names whose holds the refusal uses
		}
	}
	if id.readOnly {
		if r.Method != http.MethodGet && r.Method != http.MethodHead || r.URL.Path == "/v1/backup" || isLane {
			// A session stream is a GET that changes state: attaching,
			// and the end that starts drop_grace.
			return identity{}, api.Errorf(api.CodeForbidden, "the read-only token reads; it cannot change anything, attach to a session, nor take a backup")
		}
		// Rate limited as a tenant with default quotas is, on a bucket
		// of its own.
		if ok, retry := s.requests.Allow("req:\x00read-only", tenants.DefaultRequestsPerSecond, tenants.DefaultBurst, now); !ok {
			return id, &api.Error{Code: api.CodeRateLimited, Message: "read-only token: requests_per_second exceeded", RetryAfter: retry}
		}
	}
	switch a {
	case admin:
		if !id.admin {
			return identity{}, api.Errorf(api.CodeForbidden, "this endpoint needs the admin token")
		}
	case tenant, tenantRO:
		if !id.admin && id.tenant != r.PathValue("t") {
			return identity{}, api.Errorf(api.CodeNotFound, "tenant %s not found", r.PathValue("t"))
		}
	}
	if a == tenant {
		if err := s.node.TooOldError(r.PathValue("t")); err != nil {
			return id, err
		}
		if err := s.restoring(r.PathValue("t")); err != nil {
			return id, err
		}
	}
	return id, nil
}

// RateLimitHold is how long a node holds a 429 of the request and write
// rates before sending it, on average (each hold is drawn from half of it
// to one and a half), MaxHeld how many it holds at once, and
// MaxHeldPerKey how many of them one tenant or one unauthenticated source
// address may take (past either, an HTTP/1 connection is parked: park; an
// HTTP/2 stream waits its turn: waitTurn). A key's refusals are answered
// at most MaxHeldPerKey/RateLimitHold + 1/ParkGap a second on a node
// (506), over HTTP/1 and HTTP/2 alike: 64
// rather than 256 halved what a tenant over its rate from 1,500
// connections cost the servers (attack pattern 5, quick run: 2,333 → 1,114
// refusals a second, 94 → 77 % of a core; benchmarks/NOTES.md).
//
// An HTTP/1.1 client waits for an answer before it sends the next request
// on a connection, so holding the refusal bounds a flood to
// connections/RateLimitHold requests a second at no CPU cost, instead of
// as many as the node can refuse: refusing costs a node ≈ 35 µs of CPU a
// request (benchmarks/NOTES.md, noisy neighbour), nearly all of it in
// net/http and the kernel, and that CPU is shared with every other tenant.
// A client that honours Retry-After loses at most 1.5·RateLimitHold per
// refusal, and only when its tenant is over its rate.
const (
	RateLimitHold = 250 * time.Millisecond
	MaxHeld       = 4096
	MaxHeldPerKey = 64
)

// holdPool counts the held refusals, in all and per key.
type holdPool struct {
	mu     sync.Mutex
	n      int
	byKey  map[string]int
	perKey int // MaxHeldPerKey; tests lower it
}

func (p *holdPool) take(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= MaxHeld || p.byKey[key] >= p.perKey {
		return false
	}
	p.n++
	p.byKey[key]++
	return true
}

func (p *holdPool) give(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.byKey[key]--; p.byKey[key] <= 0 {
		delete(p.byKey, key)
	}
}

// tarpit holds a rate-limited answer for about RateLimitHold, unless the client
// goes away first or MaxHeld answers are held already.
//
// The holds are shared out: one tenant (or, unauthenticated, one source
// address) holds at most MaxHeldPerKey of them. A refusal that finds no
// hold free is not answered at once — that would let a flood go on at the
// rate the node can refuse — but ends its connection (the client pays a
// new handshake, and the connection limits bound those), unless tarpitOn
// can park it or make it wait.
func (s *Server) tarpit(r *http.Request, who identity, err error) { s.tarpitOn(nil, r, who, err) }

// tarpitOn is tarpit for a request answered on w (nil: unknown): past the
// holds its HTTP/1 connection is parked, when it can be (park), and its
// HTTP/2 stream waits its turn (waitTurn), rather than the connection be
// ended. A client stream's own refusals (w nil) are not: they end the
// operation, never the stream's connection.
func (s *Server) tarpitOn(w http.ResponseWriter, r *http.Request, who identity, err error) {
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeRateLimited {
		return
	}
	key := "ip:" + remoteHost(r)
	if who.tenant != "" {
		key = "t:" + who.tenant
		if r.Header.Get(HeaderProxied) == "" && r.Header.Get(headerForwarded) == "" {
			s.markPaced(r, who.tenant) // not a node's address
		}
	}
	if !s.holds.take(key) {
		if w != nil && r.ProtoMajor == 2 && s.waitTurn(r, key) {
			return // the caller answers, in the key's turn
		}
		if w != nil {
			s.park(w, r, key, err)
		}
		panic(http.ErrAbortHandler) // net/http closes the connection (unless parked) or resets the stream, logging nothing
	}
	defer s.holds.give(key)
	// Held answers spread over [RateLimitHold/2, 3·RateLimitHold/2): the
	// connections refused together would otherwise come back together.
	t := time.NewTimer(RateLimitHold/2 + rand.N(RateLimitHold))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// markPaced marks the source address of r, refused for tenant, so that
// the new connections from it go on at the tenant's rate (conns_pace.go).
func (s *Server) markPaced(r *http.Request, tenant string) {
	if rec, ok := s.node.Meta().Brief(tenant); ok {
		markPaced(r.Context(), tenant, float64(rec.Quotas.RequestsPerSecond), time.Now())
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// The refusals of authentication, answered often (a flood of made-up
// tokens meets them all): static, their bodies encoded once.
var (
	errUnknownToken = staticError(api.Errorf(api.CodeUnauthorized,
		"no token, or one this cluster does not know (wrong, revoked or rotated out): send a current one as Authorization: Bearer <token>"))
	// Its Retry-After: the bucket's refill of one request.
	errUnauthenticatedRate = staticError(&api.Error{Code: api.CodeRateLimited, RetryAfter: time.Second / tenants.UnauthenticatedRate,
		Message: "too many unauthenticated requests from this address"})
	// Its Retry-After: far above the bucket's refill of one check (5 ms).
	errTokenChecks = staticError(&api.Error{Code: api.CodeUnavailable, RetryAfter: 100 * time.Millisecond,
		Message: "this node checks too many unknown tokens with the cluster now; retry"})
)

// authenticate checks the bearer token against the admin token and the
// local meta replica's token hashes, in constant time.
func (s *Server) authenticate(r *http.Request, now time.Time) (identity, bool) {
	tok := bearer(r)
	if tok == "" {
		return identity{}, false
	}
	return s.authToken(tok, tenants.HashToken(tok), now)
}

// authToken is authenticate of a token tok whose hash is h.
func (s *Server) authToken(tok string, h tenants.Hash, now time.Time) (identity, bool) {
	if tok == "" {
		return identity{}, false
	}
	if !s.admin.IsZero() && s.admin.Equal(h) {
		return identity{admin: true}, true
	}
	if !s.read.IsZero() && s.read.Equal(h) {
		return identity{admin: true, readOnly: true}, true
	}
	name, ok := tenants.ParseToken(tok)
	if !ok {
		return identity{}, false
	}
	creds, ok := s.node.Meta().Credentials(name)
	if !ok || !creds.Match(h, now) {
		return identity{}, false
	}
	return identity{tenant: name}, true
}

// limit applies the tenant's request rate, or the per-session lane to
// keepalives and stream attaches. The write rate is charged where a write
// is proposed (chargeWrite), after the checks that can refuse it: a refused
// write costs no write quota.
func (s *Server) limit(name string, r *http.Request, isLane bool, now time.Time) error {
	if isLane {
		// Keepalives and stream attaches are limited where they are served,
		// by the tenant leader (laneAllow): a follower that forwards one or
		// answers `moved` spends nothing of the session's lane.
		return nil
	}
	rec, ok := s.node.Meta().Brief(name)
	if !ok {
		return nil // deleted meanwhile: authorization answers
	}
	q := rec.Quotas
	if ok, retry := s.requests.Allow("req:"+name, float64(q.RequestsPerSecond), int(q.Burst), now); !ok {
		return &api.Error{Code: api.CodeRateLimited, Message: "tenant " + name + ": requests_per_second exceeded", RetryAfter: retry}
	}
	return nil
}

// chargeWrite applies the tenant's write rate to a write about to be
// proposed (its body's bytes were charged before it was read: admitBody).
func (s *Server) chargeWrite(name string, now time.Time) error {
	rec, ok := s.node.Meta().Brief(name)
	if !ok {
		return nil
	}
	q := rec.Quotas
	if ok, retry := s.writes.Allow("w:"+name, float64(q.WritesPerSecond), tenants.WriteBurst(q), now); !ok {
		return &api.Error{Code: api.CodeRateLimited, Message: "tenant " + name + ": writes_per_second exceeded", RetryAfter: retry}
	}
	return nil
}

// chargeWriteBytes applies the tenant's write bytes to size bytes of a
// write (a REST body, a client stream's write frame).
func (s *Server) chargeWriteBytes(name string, size int, now time.Time) error {
	rate := s.node.Config().WriteBytesPerSecond
	if rate <= 0 {
		return nil
	}
	if ok, retry := s.bytes.AllowN("wb:"+name, size, float64(rate), rate, now); !ok {
		return &api.Error{Code: api.CodeRateLimited, Message: "tenant " + name + ": write bytes a second exceeded on this node", RetryAfter: retry}
	}
	return nil
}

// chargeAnswer applies the tenant's answer bytes to an answer of size bytes
// about to be sent.
func (s *Server) chargeAnswer(name string, size int, now time.Time) error {
	rate := s.node.Config().AnswerBytesPerSecond
	if rate <= 0 {
		return nil
	}
	if ok, retry := s.bytes.AllowN("ab:"+name, size, float64(rate), rate, now); !ok {
		return &api.Error{Code: api.CodeRateLimited, Message: "tenant " + name + ": answer bytes a second exceeded on this node", RetryAfter: retry}
	}
	return nil
}

// errConnections refuses a request on a connection that would be one more
// than its tenant may hold on this node (ConnLimits.MaxPerTenant).
var errConnections = staticError(&api.Error{Code: api.CodeRateLimited, RetryAfter: time.Second,
	Message: "this tenant holds every connection it may on this node: reuse one"})

// TokenChecks is how many unknown tokens a second a node checks with the
// meta shard (a new token, or a node behind); past it they are answered
// 503 (never 401, which a client takes as final).
const TokenChecks = 200

// maxAddressBuckets bounds the buckets keyed by what a client can mint
// (its source address): past it new keys share one bucket. The lane's
// buckets, keyed by session, are bounded per tenant instead (laneCap).
const maxAddressBuckets = 16384

// laneCap is how many lane buckets of its own a tenant holds on a node
// whose max_sessions is maxSessions: its live sessions, and as many ended
// since the last Sweep (a minute: at the default writes_per_second a
// tenant ends at most 12,000 a minute) whose buckets Sweep drops. Past it
// the tenant's new sessions share one overflow bucket of the tenant's
// (tenants.Limiters.AllowIn): never another tenant's. A bucket takes
// ≈ 270 bytes of heap: 5.4 MB a tenant at the default 10,000.
func laneCap(maxSessions int64) int {
	return int(min(2*max(maxSessions, 1), 1<<30))
}

// maxLaneBody bounds a keepalive's body (it has none to speak of).
const maxLaneBody = 4 << 10

// laneAllow admits a keepalive or a stream attach. The lane (outside the
// tenant's request and write rates, so that a tenant's own flood cannot
// expire its sessions) is only for sessions this node knows — live, or
// ended and remembered — each with a bucket of its own on every node that
// sees its keepalives (a follower before it forwards them, the leader). A session this node does not know is charged to the
// tenant's request bucket, and gets no bucket of its own: keepalives for
// random session IDs are an ordinary flood, and leave nothing behind.
func (s *Server) laneAllow(r *http.Request, who identity, t *cluster.Tenant, session string) error {
	now := time.Now()
	if _, state := t.SM.Session(session); state == fsm.SessionUnknown {
		if who.tenant != "" {
			return s.limit(who.tenant, r, false, now)
		}
		return nil // the admin token
	}
	// Every node charges it, the one that forwards too: a follower
	// forwarding a flood to the leader would spend the leader's lane and
	// its own CPU for nothing.
	if ok, retry := s.chargeLane(t.Name, api.SessionTag(session), now); !ok {
		return &api.Error{Code: api.CodeRateLimited, Message: "session keepalive lane: too many keepalives or attaches for this session, or for this tenant's sessions together", RetryAfter: retry}
	}
	return nil
}

// laneKeyPrefix starts every lane bucket's key: laneKeyPrefix, the
// tenant, ':', the session's tag.
const laneKeyPrefix = "lane:"

// chargeLane takes one keepalive or attach from the lane bucket of
// tenant's session tagged tag, among the tenant's own (laneCap).
func (s *Server) chargeLane(tenant, tag string, now time.Time) (bool, time.Duration) {
	maxSessions := int64(tenants.DefaultMaxSessions)
	if rec, ok := s.node.Meta().Brief(tenant); ok {
		maxSessions = rec.Quotas.MaxSessions
	}
	if ok, retry := s.lane.AllowIn(tenant, laneCap(maxSessions), laneKeyPrefix+tenant+":"+tag, tenants.LaneRate, tenants.LaneBurst, now); !ok {
		return false, retry
	}
	// And the tenant's whole lane on this node: each session within its
	// own rate, max_sessions of them together would still keep a core busy.
	rate := tenants.LaneTenantRate(maxSessions)
	return s.lane.Allow(laneTenantKeyPrefix+tenant, float64(rate), 2*rate, now)
}

// laneTenantKeyPrefix starts the key of a tenant's whole lane's bucket
// (one a tenant: never swept by sweepLane, dropped when idle).
const laneTenantKeyPrefix = "lane-tenant:"

// sweepLane drops the lane buckets of sessions that are no longer live
// on this node (ended, or their tenant's replica gone), rather than
// leave each for the idle timeout: an ended session's bucket would hold
// room of its tenant's laneCap. It reads each tenant's sessions once.
func (s *Server) sweepLane() int {
	live := map[string]map[string]bool{} // tenant -> live sessions' tags; nil: no replica here
	return s.lane.Evict(func(key string) bool {
		rest, ok := strings.CutPrefix(key, laneKeyPrefix)
		name, tag, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			return false // an overflow bucket: the idle sweep's
		}
		tags, seen := live[name]
		if !seen {
			if t, ok := s.node.Tenant(name); ok {
				tags = map[string]bool{}
				for _, info := range t.SM.Sessions() {
					tags[api.SessionTag(info.ID)] = true
				}
			}
			live[name] = tags
		}
		return !tags[tag]
	})
}

// remoteHost is the client address without its port (an IPv6 address by
// its /64), so one host shares one unauthenticated bucket.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return host
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ identity) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": s.node.ID(), "state_version": fsm.Version})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request, _ identity) {
	if err := s.node.RemovedError(); err != nil {
		writeError(w, err)
		return
	}
	if !s.node.Ready() {
		writeError(w, &api.Error{Code: api.CodeUnavailable, Message: "not ready: the meta replica has not caught up, tenant replicas are starting, or this node's addresses are not recorded yet", RetryAfter: time.Second})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "node_id": s.node.ID()})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ identity) {
	s.metricsServe.ServeHTTP(w, r)
}

// openapi answers the REST API's OpenAPI 3.1 document (api/openapi.yaml).
func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ identity) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(api.OpenAPI) // an error means the client went away
}

// openapiJSON answers the same document as JSON (api/openapi.json).
func (s *Server) openapiJSON(w http.ResponseWriter, _ *http.Request, _ identity) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(api.OpenAPIJSON)
}

// Sweep evicts idle rate-limit buckets, and the lane buckets of sessions
// that ended; the server calls it every minute.
func (s *Server) Sweep(now time.Time) {
	s.requests.Sweep(now)
	s.writes.Sweep(now)
	s.sweepLane()
	s.lane.Sweep(now)
	s.unauth.Sweep(now)
}

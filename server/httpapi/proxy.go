package httpapi

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
)

// HeaderProxied marks a request one node proxied to another (its value is
// the proxying node's ID). A node never proxies such a request again: a
// request travels one hop at most, even while the placement changes under
// it (it is answered 503 instead, and the client asks again).
const HeaderProxied = "X-Rafting-Proxied"

// Routed is the API with the placement's routing in front (DESIGN.md,
// "Placement"): a request for a tenant whose shard has no replica on this
// node is proxied, one hop, to a node that holds one — once its token has
// been checked here; one this node cannot authenticate goes through the
// ordinary path, which refuses it. The client stream is not proxied: it
// answers `moved` with the tenant's nodes (clientStream), and the SDK
// goes there.
func (s *Server) Routed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, who, ok := s.proxyTarget(r)
		if !ok {
			s.ServeHTTP(w, r)
			return
		}
		// Authenticated here as on any other path: the connection is the
		// tenant's (not closed by the unauthenticated connections' limits
		// mid-request), within the connections it may hold.
		if !markAuthenticated(r.Context(), who.tenant) {
			writeError(w, errConnections)
			return
		}
		// The tenant's request rate is per node: this node's work for it
		// counts here as well as where it is served (keepalives and
		// session streams are limited by their lane, by the leader).
		if _, rest, _ := tenantPath(r.URL.Path); who.tenant != "" && !laneRoute(rest) {
			if err := s.limit(who.tenant, r, false, time.Now()); err != nil {
				s.tarpitOn(w, r, who, err)
				writeError(w, err)
				return
			}
		}
		release, err := s.takeProxied(who)
		if err != nil {
			s.tarpitOn(w, r, who, err)
			writeError(w, err)
			return
		}
		defer release()
		s.proxy(w, r, target)
	})
}

// laneRoute reports whether rest (a tenant path's tail) is a session's
// keepalive or stream: limited by the session's lane, not the request rate.
func laneRoute(rest string) bool {
	return strings.HasPrefix(rest, "sessions/") && (strings.HasSuffix(rest, "/keepalive") || strings.HasSuffix(rest, "/stream"))
}

// MaxProxiedPerTenant is how many requests of one tenant a node proxies
// at once: a quarter of the connections it keeps to each peer for them
// (proxyTransport). A proxied request holds one of those connections for
// as long as it lasts — a blocking query up to its wait — so without it
// one tenant's 200 blocking queries through a node held them all, and
// every other tenant's requests through that node waited.
const MaxProxiedPerTenant = 32

// errProxied refuses a request past MaxProxiedPerTenant.
var errProxied = staticError(&api.Error{Code: api.CodeRateLimited, RetryAfter: time.Second,
	Message: "this node proxies at most 32 requests of a tenant at once, and this tenant's shard has no replica here: send them to the tenant's nodes (GET /v1/servers)"})

// takeProxied counts a request of who's in the requests this node proxies
// (an admin's are not counted: it is trusted with the whole cluster).
func (s *Server) takeProxied(who identity) (release func(), _ error) {
	if who.tenant == "" {
		return func() {}, nil
	}
	s.proxyMu.Lock()
	defer s.proxyMu.Unlock()
	if s.proxying[who.tenant] >= MaxProxiedPerTenant {
		return nil, errProxied
	}
	s.proxying[who.tenant]++
	return func() {
		s.proxyMu.Lock()
		defer s.proxyMu.Unlock()
		if s.proxying[who.tenant]--; s.proxying[who.tenant] <= 0 {
			delete(s.proxying, who.tenant)
		}
	}, nil
}

// proxyTransport is the pool proxied requests use: a copy of peers' own
// (its limits and TLS), so that proxied requests, however long, never
// take the connections that forwarded keepalives and the nodes' own
// requests to each other need.
func proxyTransport(peers *http.Client) http.RoundTripper {
	if peers != nil {
		if tr, ok := peers.Transport.(*http.Transport); ok {
			return tr.Clone()
		}
		if peers.Transport != nil {
			return peers.Transport
		}
	}
	return http.DefaultTransport
}

// proxyTarget says where to proxy r: the API address of a node that holds
// the tenant of r's path, when r needs one and this node holds none, and
// who r authenticated as.
func (s *Server) proxyTarget(r *http.Request) (string, identity, bool) {
	name, rest, ok := tenantPath(r.URL.Path)
	if !ok || rest == "stream" || rest == "token" || strings.HasPrefix(rest, "token/") || rest == "" && r.Method != http.MethodGet {
		return "", identity{}, false // no tenant's shard, the client stream, or the meta shard's
	}
	if r.Header.Get(HeaderProxied) != "" || s.node.RemovedReason() != "" {
		return "", identity{}, false // the second hop: answered here (503)
	}
	if _, here := s.node.Serving(name); here || s.node.HostsTenant(name) {
		return "", identity{}, false
	}
	if _, known := s.node.Meta().Brief(name); !known {
		return "", identity{}, false // 404, or a token to check with the meta shard
	}
	who, ok := s.authenticate(r, time.Now())
	if !ok || !who.admin && who.tenant != name {
		return "", identity{}, false // refused by the ordinary path
	}
	nodes := s.node.TenantNodes(name)
	if len(nodes) == 0 {
		return "", identity{}, false
	}
	return nodes[0], who, true
}

// tenantPath splits /v1/tenants/{t}[/{rest...}] (kv:txn is a rest too);
// GET /v1/tenants/{t} is proxied as well: its usage is its replica's.
func tenantPath(p string) (name, rest string, ok bool) {
	tail, found := strings.CutPrefix(p, "/v1/tenants/")
	if !found {
		return "", "", false
	}
	name, rest, found = strings.Cut(tail, "/")
	if name == "" || found && rest == "" {
		return "", "", false
	}
	return name, rest, true
}

// proxy sends r to the node at target and streams its answer back.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, target string) {
	id := strconv.FormatUint(s.node.ID(), 10)
	p := &httputil.ReverseProxy{
		Transport:     s.proxyTr,
		FlushInterval: -1, // blocking queries and session streams: at once
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: s.scheme(), Host: target})
			pr.SetXForwarded()
			pr.Out.Header.Set(HeaderProxied, id)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, proxyError(r, err))
		},
		ErrorLog: log.New(io.Discard, "", 0), // a client gone mid-answer is not news
	}
	p.ServeHTTP(w, r)
}

// proxyError is the answer when the node proxied to did not answer: 503
// when it was never reached (nothing applied), else for a write 504, its
// outcome unknown (every write may be sent again).
func proxyError(r *http.Request, err error) *api.Error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return &api.Error{Code: api.CodeUnavailable, RetryAfter: 200 * time.Millisecond,
			Message: "the node holding the tenant did not answer through this one: " + err.Error()}
	}
	return &api.Error{Code: api.CodeTimeout, RetryAfter: 200 * time.Millisecond,
		Message: "the node holding the tenant did not answer through this one; the outcome is unknown, retry with the same body: " + err.Error()}
}

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
		if target, ok := s.proxyTarget(r); ok {
			s.proxy(w, r, target)
			return
		}
		s.ServeHTTP(w, r)
	})
}

// proxyTarget says where to proxy r: the API address of a node that holds
// the tenant of r's path, when r needs one and this node holds none.
func (s *Server) proxyTarget(r *http.Request) (string, bool) {
	name, rest, ok := tenantPath(r.URL.Path)
	if !ok || rest == "stream" || rest == "token" || strings.HasPrefix(rest, "token/") || rest == "" && r.Method != http.MethodGet {
		return "", false // no tenant's shard, the client stream, or the meta shard's
	}
	if r.Header.Get(HeaderProxied) != "" || s.node.RemovedReason() != "" {
		return "", false // the second hop: answered here (503)
	}
	if _, here := s.node.Tenant(name); here || s.node.HostsTenant(name) {
		return "", false
	}
	if _, known := s.node.Meta().Brief(name); !known {
		return "", false // 404, or a token to check with the meta shard
	}
	who, ok := s.authenticate(r, time.Now())
	if !ok || !who.admin && who.tenant != name {
		return "", false // refused by the ordinary path
	}
	nodes := s.node.TenantNodes(name)
	if len(nodes) == 0 {
		return "", false
	}
	return nodes[0], true
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
	tr := http.DefaultTransport
	if s.peers != nil && s.peers.Transport != nil {
		tr = s.peers.Transport // keeps its connections to the peers
	}
	id := strconv.FormatUint(s.node.ID(), 10)
	p := &httputil.ReverseProxy{
		Transport:     tr,
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

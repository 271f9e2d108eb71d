package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
)

// peerLookEvery is how often a node looks at every other node's API.
const peerLookEvery = 2 * time.Second

// watchPeers looks at every other node's GET /v1/cluster every
// peerLookEvery, all at once, and records what each answered (its build,
// health and applied indexes) or that it did not (cluster.Node.SawPeers):
// GET /v1/cluster, `rafting cluster` and the peer metrics show it. It
// needs a token the peers accept (the admin or the read-only one); without
// one the peers' health stays unknown.
func (s *Server) watchPeers(ctx context.Context) {
	defer s.wg.Done()
	token := s.cfg.AdminToken
	if token == "" {
		token = s.cfg.ReadToken
	}
	if token == "" {
		return
	}
	t := time.NewTicker(peerLookEvery)
	defer t.Stop()
	for {
		s.lookAtPeers(ctx, token)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lookAtPeers makes one round of looks.
func (s *Server) lookAtPeers(ctx context.Context, token string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	looks := map[uint64]cluster.PeerLook{}
	for _, rec := range s.node.Meta().Nodes() {
		if rec.ID == s.cfg.NodeID {
			continue
		}
		mu.Lock() // the looks already started write it too
		looks[rec.ID] = cluster.PeerLook{}
		mu.Unlock()
		if rec.APIAddress == "" {
			continue
		}
		wg.Add(1)
		go func(id uint64, addr string) {
			defer wg.Done()
			l := s.lookAt(ctx, addr, token)
			mu.Lock()
			looks[id] = l
			mu.Unlock()
		}(rec.ID, rec.APIAddress)
	}
	wg.Wait()
	if ctx.Err() == nil {
		s.node.SawPeers(looks, time.Now())
	}
}

// lookAt asks one node for its view of the cluster and keeps what it says
// of itself.
func (s *Server) lookAt(ctx context.Context, addr, token string) cluster.PeerLook {
	ctx, cancel := context.WithTimeout(ctx, peerLookEvery)
	defer cancel()
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.scheme()+addr+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return s.peers.Do(req)
	}
	resp, err := get("/v1/cluster?local=true") // its own shards: what a look keeps
	if err != nil {
		return cluster.PeerLook{}
	}
	defer resp.Body.Close()
	var c api.Cluster
	if resp.StatusCode != http.StatusOK {
		// It answers, but not this: a removed node, say, or another
		// admin token. Its readiness still tells something.
		return cluster.PeerLook{Answered: true, Health: s.readiness(get)}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, api.MaxBodyBytes)).Decode(&c); err != nil {
		return cluster.PeerLook{Answered: true, Health: api.NodeUnknown}
	}
	l := cluster.PeerLook{Answered: true, Build: c.Build, Applied: map[uint64]uint64{}, Leaders: map[uint64]uint64{}}
	l.RaftAddresses = make(map[uint64]string, len(c.Nodes))
	for _, nd := range c.Nodes {
		l.RaftAddresses[nd.ID] = nd.RaftAddress
	}
	for _, sh := range c.Shards {
		if sh.Applied > 0 { // a replica it runs
			l.Applied[sh.ShardID] = sh.Applied
			if sh.Leader != 0 {
				l.Leaders[sh.ShardID] = sh.Leader
			}
		}
	}
	l.Health = api.NodeNotReady
	switch {
	case c.Build == nil: // a build from before builds were reported: ask /readyz
		l.Health = s.readiness(get)
	case c.Ready:
		l.Health = api.NodeReady
	default:
		for _, nd := range c.Nodes {
			if nd.ID == c.NodeID && nd.Health != "" {
				l.Health = nd.Health
			}
		}
	}
	return l
}

// readiness is a node's health by its /readyz.
func (s *Server) readiness(get func(string) (*http.Response, error)) string {
	resp, err := get("/readyz")
	if err != nil {
		return api.NodeUnreachable
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return api.NodeReady
	}
	return api.NodeNotReady
}

// scheme is the peers' API scheme with its "://".
func (s *Server) scheme() string {
	if s.cfg.TLSCert != "" {
		return "https://"
	}
	return "http://"
}

// countRefusals counts the API's 401 answers by the tenant the presented
// token names (tokens are self-identifying: rft_<tenant>_...), as
// rafting_http_unauthorized_total{tenant}: a tenant whose clients still
// send a revoked or mistyped token shows in its own series. A token that
// names no tenant of the cluster (an admin token, none, a made-up name)
// counts under tenant="", so no request adds a series.
func (s *Server) countRefusals(next http.Handler) http.Handler {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_http_unauthorized_total",
		Help: "Requests answered 401, by the tenant their token names (\"\": an admin token, none, or a tenant this cluster does not have)."}, []string{"tenant"})
	s.reg.MustRegister(refused)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		if cw.code != http.StatusUnauthorized {
			return
		}
		tenant := tokenTenant(r.Header.Get("Authorization"))
		if _, ok := s.node.Meta().Tenant(tenant); !ok {
			tenant = ""
		}
		refused.WithLabelValues(tenant).Inc()
	})
}

// tokenTenant is the tenant a bearer token names ("" for another token).
func tokenTenant(auth string) string {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return ""
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(tok), "rft_")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, "_")
	if !ok || len(name) > 63 {
		return ""
	}
	return name
}

// codeWriter keeps the status an answer was written with. It flushes and
// unwraps (http.ResponseController) as the writer it wraps does, so
// streams work through it.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *codeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *codeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

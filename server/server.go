// Package server runs one Rafting server: the Raft node (cluster), the REST
// API (httpapi) and its HTTP listener, with a graceful stop that hands every
// leadership over before closing.
//
// A Server is started by New and stopped by Close, once. `rafting server`
// runs one per process; `rafting dev` and tests run several in one process.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/metrics"
)

// Server is one running Rafting server.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	node  *cluster.Node
	api   *httpapi.Server
	http  *http.Server
	ln    net.Listener
	peers *http.Client // to the other nodes' API
	reg   *prometheus.Registry

	stop   chan struct{}
	cancel context.CancelFunc // ends every request's context at shutdown
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a server: it opens the API listener (an address with port 0
// gets a free port, advertised as such), starts the Raft node, and serves.
func New(cfg config.Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		cfg.Logger = log
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.APIAddress)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.APIAddress, err)
	}
	cfg.APIAddress = ln.Addr().String()
	maxConns := cfg.MaxConnections
	if maxConns == 0 {
		maxConns = httpapi.DefaultMaxConnections()
	}
	lim := httpapi.ConnLimits{MaxTotal: maxConns, MaxUnauthenticated: cfg.MaxUnauthenticated,
		MaxUnauthenticatedPerAddress: cfg.MaxUnauthenticatedPerAddress, AuthTimeout: cfg.AuthTimeout}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("load API certificate: %w", err)
		}
		// h2 by ALPN for the client stream (and every request of an SDK
		// client, multiplexed on one connection), HTTP/1.1 for the rest.
		// Served by the limited listener, above its limits.
		lim.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"}}
	}
	ln = httpapi.Limit(ln, lim)
	reg := metrics.NewRegistry()
	node, err := cluster.New(cfg, reg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	peers, err := PeerClient(cfg)
	if err != nil {
		node.Close()
		ln.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log.With("node", cfg.NodeID), node: node, ln: ln, stop: make(chan struct{}), peers: peers, reg: reg}
	s.api = httpapi.New(node, reg, peers)
	base, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.http = &http.Server{
		BaseContext: func(net.Listener) context.Context { return base },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			// Who asked, for the INFO lines of membership, tenant and
			// token changes (every one of them needs the admin token).
			return cluster.WithRequester(httpapi.ConnContext(ctx, c), "admin at "+c.RemoteAddr().String())
		},
		Handler:           s.countRefusals(s.api.Routed()),
		ReadHeaderTimeout: 10 * time.Second,
		// A whole request, body included, within ReadTimeout: an
		// authenticated client cannot trickle a body forever. Answers are
		// not bounded: net/http lifts the deadline once a request is read,
		// so a blocking query or a stream lives on (TestReadTimeoutAndHeaders).
		ReadTimeout:    cfg.ReadTimeout,
		MaxHeaderBytes: 64 << 10,
		IdleTimeout:    2 * time.Minute,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		Protocols:      apiProtocols(),
	}
	build := Build()
	node.SetBuild(build)
	metrics.NewGaugeFunc(reg, "rafting_build_info", "The build this node runs (1): its release version, commit, Go version and the newest state version it speaks.",
		[]string{"version", "commit", "go_version", "state_version"}, func(emit func(float64, ...string)) {
			emit(1, build.Version, build.Commit, build.GoVersion, strconv.FormatUint(build.StateVersion, 10))
		})
	node.Start()
	vctx, vcancel := context.WithCancel(context.Background())
	s.wg.Add(6)
	go func() {
		defer s.wg.Done()
		<-s.stop
		vcancel()
	}()
	go s.askIfRemoved(vctx)
	go s.agreeVersions(vctx)
	go s.watchPeers(vctx)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	go s.sweep()
	s.log.Info("rafting server started", "api", cfg.APIAddress, "raft", cfg.RaftAddress, "data", cfg.DataDir,
		"version", build.Version, "commit", build.Commit, "state_version", build.StateVersion)
	return s, nil
}

// apiProtocols are the API port's protocols: HTTP/1.1 for REST and curl,
// HTTP/2 for the client stream — h2 by ALPN with TLS, h2c with prior
// knowledge without (an HTTP/1.1 Upgrade to h2c is not offered).
func apiProtocols() *http.Protocols {
	p := &http.Protocols{}
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// PeerClient is the HTTP client a node uses to reach the other nodes' API
// (keepalive forwarding, revocation sync, and a new node's join request).
// With API TLS, peers are verified against the peer CA when one is given,
// else the system roots.
func PeerClient(cfg config.Config) (*http.Client, error) {
	// At most 128 connections to one peer, 64 kept idle: forwarding
	// reuses them instead of opening one per request under a flood.
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 128, IdleConnTimeout: 90 * time.Second}
	if cfg.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.PeerCA != "" {
			pool, err := LoadCA(cfg.PeerCA)
			if err != nil {
				return nil, fmt.Errorf("peer CA: %w", err)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

// LoadCA reads a file of PEM certificates into a pool to verify servers
// with.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.api.Sweep(now)
		}
	}
}

// Addr is the API address the server listens on.
func (s *Server) Addr() string { return s.cfg.APIAddress }

// API is the server's REST API handler.
func (s *Server) API() *httpapi.Server { return s.api }

// Node is the server's Raft node.
func (s *Server) Node() *cluster.Node { return s.node }

// Removed is closed once the server learned that its node was removed from
// the cluster (cluster.Node.Removed): it serves nothing from then on, and
// its owner should Close it and end the process.
func (s *Server) Removed() <-chan struct{} { return s.node.Removed() }

// askIfRemoved asks the other nodes whether this one was removed, every
// two seconds while its meta replica cannot confirm it is current: a
// removed node's replicas stop hearing from their leaders and cannot tell
// a removal from a partition, but the others' meta shard remembers every
// removed ID. A peer that answers nothing (down, or this node cut off)
// says nothing.
func (s *Server) askIfRemoved(ctx context.Context) {
	defer s.wg.Done()
	token := s.cfg.AdminToken
	if token == "" {
		token = s.cfg.ReadToken
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.node.Removed():
			return
		case <-t.C:
		}
		if s.node.MetaUnconfirmedFor() < max(3*time.Second, 2*s.cfg.ElectionTimeout()) {
			continue
		}
		asked := 0
		for _, rec := range s.node.Meta().Nodes() {
			if rec.ID == s.cfg.NodeID || rec.APIAddress == "" || token == "" {
				continue
			}
			asked++
			if s.peerSaysRemoved(ctx, rec.APIAddress, token) {
				s.node.MarkRemoved(fmt.Sprintf("node %d (%s) records this node as removed", rec.ID, rec.APIAddress))
				return
			}
		}
		if asked == 0 && !warned {
			warned = true
			s.log.Warn("the meta replica cannot confirm it is current, and no other node can be asked whether this one was removed",
				"why", map[bool]string{true: "no admin or read-only token", false: "no other node's API address known"}[token == ""])
		}
	}
}

// peerSaysRemoved asks one peer's GET /v1/cluster whether this node is
// among the removed.
func (s *Server) peerSaysRemoved(ctx context.Context, addr, token string) bool {
	scheme := "http://"
	if s.cfg.TLSCert != "" {
		scheme = "https://"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/v1/cluster", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.peers.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var c api.Cluster
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, api.MaxBodyBytes)).Decode(&c) != nil ||
		c.NodeID == s.cfg.NodeID {
		return false
	}
	return slices.Contains(c.Removed, s.cfg.NodeID)
}

// Ready reports the server's readiness (GET /readyz).
func (s *Server) Ready() bool { return s.node.Ready() }

// Close stops the server gracefully: leaderships are handed over (streams
// get `moved` first), then the API and the Raft node stop.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.stop)
		// Hand every leadership over first: streams get `moved`, so no
		// client mistakes this stop for a crash.
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		peers := s.api.PeerApplied(pctx)
		cancel()
		s.node.TransferLeaderships(3*time.Second, peers)
		// Client streams end with `moved` (no drop_grace for their
		// sessions), then blocking queries answer and session streams end.
		s.api.CloseStreams(time.Second)
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
		s.node.Close()
		s.wg.Wait()
		s.log.Info("rafting server stopped")
	})
}

// Abort stops the server at once, as a crash looks to its peers: no
// leadership transfer, connections cut without `moved`. For tests of
// failures; a real stop is Close.
func (s *Server) Abort() {
	s.once.Do(func() {
		close(s.stop)
		s.cancel()
		s.http.Close()
		s.node.Abort()
		s.wg.Wait()
	})
}

// WaitReady waits until the server is ready or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	for !s.node.Ready() {
		select {
		case <-ctx.Done():
			return api.Errorf(api.CodeUnavailable, "server %d not ready: %v", s.cfg.NodeID, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

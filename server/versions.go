package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// StateVersion is the state machines' version this build speaks
// (server/fsm's Version); a node sends it with its join request.
const StateVersion = fsm.Version

// The release and commit this binary was built from, set at link time
// (make build does):
//
//	go build -ldflags "-X github.com/rafting/rafting/server.version=v0.6.0 -X github.com/rafting/rafting/server.commit=$(git rev-parse HEAD)"
//
// Without them the version is "devel" and the commit is the one Go
// stamped (go build -buildvcs=true in a checkout), else "".
var (
	version string
	commit  string
)

// Build is what this binary runs: shown per node in GET /v1/cluster and
// `rafting cluster`, and as the rafting_build_info metric.
func Build() api.Build {
	b := api.Build{Version: version, Commit: commit, GoVersion: runtime.Version(), StateVersion: StateVersion}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		modified := false
		rev := ""
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.Commit == "" && rev != "" {
			b.Commit = rev
			if modified {
				b.Commit += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// How often a node looks for a state version to raise: often while this
// build's is not agreed yet (a cluster that just started, or an upgrade's
// end), seldom after.
const (
	versionPending = 200 * time.Millisecond
	versionAgreed  = 2 * time.Second
)

// agreeVersions raises the cluster's state version (server/fsm's
// version.go) once every node runs a build that speaks it, so that a
// rolling upgrade never has two replicas apply one entry differently:
// the meta shard's leader asks every member's /healthz for the version its
// build speaks and, when all of them answer with at least one above the
// meta state's, proposes the lowest answer into the meta shard; the
// leader of each tenant shard then raises its shard to the meta state's.
// A member that does not answer holds the version where it is.
func (s *Server) agreeVersions(ctx context.Context) {
	defer s.wg.Done()
	for {
		wait := versionAgreed
		if !s.raiseVersions(ctx) {
			wait = versionPending
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// raiseVersions makes one pass; it reports whether nothing is left that a
// pass soon could raise: every state speaks this build's version, or a
// member speaks an older one or cannot tell (down, unreachable): its
// upgrade is waited for at the slower pace.
func (s *Server) raiseVersions(ctx context.Context) bool {
	meta := s.node.Meta()
	if have := meta.Version(); have < fsm.Version && s.node.MetaLeaderIsLocal() {
		v := s.clusterSpeaks(ctx)
		if v <= have {
			return true // a member speaks no more (an older build), or cannot tell
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.node.ProposeMeta(pctx, fsm.Encode(fsm.OpSetMetaVersion, fsm.SetVersion{Version: v}))
		cancel()
		if err != nil {
			s.log.Warn("raise the meta state's version", "version", v, "err", err)
			return false
		}
		s.log.Info("every node speaks a newer state version: raised", "version", v)
	}
	want := meta.Version()
	agreed := want == fsm.Version
	for _, t := range s.node.Tenants() {
		if ctx.Err() != nil || t.SM.Version() >= want {
			continue
		}
		agreed = false
		if !t.LeaderIsLocal() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := t.Propose(pctx, fsm.Encode(fsm.OpSetVersion, fsm.SetVersion{Version: want, AtMs: time.Now().UnixMilli()}))
		cancel()
		if err != nil {
			s.log.Warn("raise a tenant shard's state version", "tenant", t.Name, "version", want, "err", err)
		}
	}
	return agreed
}

// clusterSpeaks is the lowest state version the meta shard's members speak,
// or 0 when one of them cannot tell (unreachable, not registered).
func (s *Server) clusterSpeaks(ctx context.Context) uint64 {
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	members, err := s.node.MetaMembers(mctx)
	cancel()
	if err != nil {
		return 0
	}
	v := uint64(fsm.Version)
	for id := range members {
		addr := s.node.NodeAPI(id)
		if addr == "" {
			return 0
		}
		got, err := s.speaks(ctx, addr)
		if err != nil {
			s.log.Debug("state version of a node unknown", "node", id, "err", err)
			return 0
		}
		v = min(v, got)
	}
	return v
}

// speaks asks the node at addr for the state version its build speaks (a
// build before versions does not say: 1).
func (s *Server) speaks(ctx context.Context, addr string) (uint64, error) {
	scheme := "http://"
	if s.cfg.TLSCert != "" {
		scheme = "https://"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.peers.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, api.Errorf(api.CodeUnavailable, "GET %s/healthz: %s", addr, resp.Status)
	}
	var h struct {
		StateVersion uint64 `json:"state_version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h); err != nil {
		return 0, err
	}
	return max(h.StateVersion, 1), nil
}

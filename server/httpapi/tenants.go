package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

func (s *Server) writeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.node.Config().RequestTimeout)
}

func (s *Server) tenantView(rec *fsm.TenantRecord, withUsage bool) api.Tenant {
	t := api.Tenant{Name: rec.Name, Epoch: rec.Epoch, ShardID: rec.ShardID, Quotas: tenants.Effective(rec.Quotas),
		CreatedAt: time.UnixMilli(rec.CreatedMs).UTC(), Restoring: rec.Restore != nil && rec.Restore.Pending}
	if c := rec.Credentials; c.Previous != nil && time.Now().Before(c.PreviousValidUntil) {
		until := c.PreviousValidUntil.UTC()
		t.PreviousTokenValidUntil = &until
	}
	if withUsage {
		u := api.Usage{}
		if rt, ok := s.node.Tenant(rec.Name); ok {
			u = rt.SM.Usage()
		}
		u.Watchers = s.watcherCount(rec.Name).Load()
		t.Usage = &u
	}
	return t
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, _ identity) {
	req, err := parseCreateTenant(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	hash := tenants.HashToken(req.token.Reveal())
	if err := s.metaPrecheck(ctx, func() *api.Error {
		if rec, ok := s.node.Meta().Tenant(req.name); ok && !rec.Credentials.Current.Equal(hash) {
			return api.Errorf(api.CodeConflict, "tenant %s exists", req.name)
		}
		return nil
	}); err != nil {
		writeError(w, err)
		return
	}
	members, replicas, err := s.node.PlaceOn(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpCreateTenant, fsm.CreateTenant{
		Name: req.name, Quotas: req.quotas, TokenHash: tenants.HashToken(req.token.Reveal()),
		Members: members, NowMs: time.Now().UnixMilli(), Replicas: replicas,
	}))
	if err != nil {
		writeError(w, err)
		return
	}
	// Answer once the tenant's shard runs here with a leader (on a node
	// that holds it, else on one that does), so the token works at once.
	s.awaitTenant(ctx, req.name)
	view := s.tenantView(o.Tenant, false)
	view.Token = req.token.Reveal()
	setIndex(w, o.Index)
	status := http.StatusOK
	if o.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, view)
}

// awaitTenant waits (bounded by ctx, at most 10 s) until the tenant's shard
// runs on this node and has a leader — on a node that does not hold it,
// until a node that does says it has one.
func (s *Server) awaitTenant(ctx context.Context, name string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !s.node.HostsTenant(name) {
			s.awaitTenantElsewhere(ctx, name, deadline)
			return
		}
		if t, ok := s.node.Tenant(name); ok {
			if _, _, known := t.Leader(); known {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitTenantElsewhere asks the nodes holding a tenant (the admin token's
// GET /v1/cluster) until one of them sees its shard's leader.
func (s *Server) awaitTenantElsewhere(ctx context.Context, name string, deadline time.Time) {
	tok := s.node.Config().AdminToken
	if tok == "" {
		return
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, addr := range s.node.TenantNodes(name) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, s.scheme()+"://"+addr+"/v1/cluster", nil)
			if err != nil {
				cancel()
				return
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			var c api.Cluster
			resp, err := s.peers.Do(req)
			if err == nil {
				err = json.NewDecoder(io.LimitReader(resp.Body, api.MaxBodyBytes)).Decode(&c)
				resp.Body.Close()
			}
			cancel()
			if err != nil {
				continue
			}
			for _, sh := range c.Shards {
				if sh.Tenant == name && sh.Leader != 0 && sh.Applied > 0 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) listTenants(w http.ResponseWriter, _ *http.Request, _ identity) {
	l := api.TenantList{Tenants: []api.Tenant{}}
	for _, rec := range s.node.Meta().Tenants() {
		l.Tenants = append(l.Tenants, s.tenantView(rec, true))
	}
	setIndex(w, s.node.Meta().Applied())
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) showTenant(w http.ResponseWriter, r *http.Request, _ identity) {
	rec, ok := s.node.Meta().Tenant(r.PathValue("t"))
	if !ok {
		writeError(w, api.Errorf(api.CodeNotFound, "tenant %s not found", r.PathValue("t")))
		return
	}
	setIndex(w, s.node.Meta().Applied())
	writeJSON(w, http.StatusOK, s.tenantView(rec, true))
}

func (s *Server) updateTenant(w http.ResponseWriter, r *http.Request, _ identity) {
	name := r.PathValue("t")
	rec, ok := s.node.Meta().Tenant(name)
	if !ok {
		writeError(w, api.Errorf(api.CodeNotFound, "tenant %s not found", name))
		return
	}
	quotas, err := parseUpdateTenant(w, r, rec.Quotas)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpUpdateQuotas, fsm.UpdateQuotas{Name: name, Quotas: quotas}))
	if err != nil {
		writeError(w, err)
		return
	}
	// Count quotas are enforced by the tenant's state machine: propose the
	// new version there now (the reconciler retries it if this fails).
	if t, ok := s.node.Tenant(name); ok {
		if _, err := t.Propose(ctx, fsm.Encode(fsm.OpSetQuotas, fsm.SetQuotas{Version: o.Tenant.QuotasVersion, Quotas: o.Tenant.Quotas})); err != nil {
			writeError(w, err)
			return
		}
	}
	setIndex(w, o.Index)
	writeJSON(w, http.StatusOK, s.tenantView(o.Tenant, true))
}

func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request, _ identity) {
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	if _, ok := s.node.Meta().Tenant(r.PathValue("t")); !ok && s.node.SyncMetaSince(ctx) == nil {
		if _, ok := s.node.Meta().Tenant(r.PathValue("t")); !ok {
			w.WriteHeader(http.StatusNoContent) // a DELETE of a missing thing
			return
		}
	}
	o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpDeleteTenant, fsm.DeleteTenant{Name: r.PathValue("t"), NowMs: time.Now().UnixMilli()}))
	if err != nil {
		writeError(w, err)
		return
	}
	s.awaitMetaEverywhere(ctx, o.Index)
	setIndex(w, o.Index)
	w.WriteHeader(http.StatusNoContent)
}

// metaPrecheck refuses an admin write the meta state would refuse (check),
// without proposing it: a refusal on this replica is confirmed once the
// replica is current as of a moment after the request arrived. When that
// cannot be done, the meta shard decides.
func (s *Server) metaPrecheck(ctx context.Context, check func() *api.Error) error {
	if check() == nil {
		return nil
	}
	if s.node.SyncMetaSince(ctx) != nil {
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	return nil
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request, _ identity) {
	req, err := parseRotate(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	name := r.PathValue("t")
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	if err := s.metaPrecheck(ctx, func() *api.Error {
		if _, ok := s.node.Meta().Tenant(name); !ok {
			return api.Errorf(api.CodeNotFound, "tenant %s not found", name)
		}
		return nil
	}); err != nil {
		writeError(w, err)
		return
	}
	o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpRotateToken, fsm.RotateToken{
		Name: name, TokenHash: tenants.HashToken(req.token.Reveal()), PreviousValidMs: req.previous.Milliseconds(), NowMs: time.Now().UnixMilli(),
	}))
	if err != nil {
		writeError(w, err)
		return
	}
	// A revoked token must fail on every node once this answers.
	s.awaitMetaEverywhere(ctx, o.Index)
	view := s.tenantView(o.Tenant, false)
	view.Token = req.token.Reveal()
	setIndex(w, o.Index)
	writeJSON(w, http.StatusOK, view)
}

// revokePrevious ends a tenant's previous token, keeping the current one
// (DELETE /v1/tenants/{t}/token/previous): after a rotation, once the
// clients have moved to the new token. Revoking when there is none
// succeeds.
func (s *Server) revokePrevious(w http.ResponseWriter, r *http.Request, _ identity) {
	name := r.PathValue("t")
	ctx, cancel := s.writeCtx(r)
	defer cancel()
	if !s.speaksVersion(ctx, 4) {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
			Message: "revoke-previous: the cluster has not agreed on state version 4 yet (a node runs an older build, or is unreachable); retry"})
		return
	}
	o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpRevokePrevious, fsm.RevokePrevious{Name: name}))
	if err != nil {
		writeError(w, err)
		return
	}
	// The revoked token must fail on every node once this answers.
	s.awaitMetaEverywhere(ctx, o.Index)
	s.log.Info("tenant's previous token revoked", "tenant", name)
	setIndex(w, o.Index)
	writeJSON(w, http.StatusOK, s.tenantView(o.Tenant, false))
}

// awaitMetaEverywhere waits until every other node's meta replica applied
// index (asking each with the admin token), so a revocation holds on every
// node when the request that made it returns. Unreachable nodes are
// skipped: a node cut off from the quorum serves nothing new anyway, and it
// syncs its meta replica before it accepts a token it does not know.
func (s *Server) awaitMetaEverywhere(ctx context.Context, index uint64) {
	cfg := s.node.Config()
	if cfg.AdminToken == "" {
		return
	}
	var wg sync.WaitGroup
	for _, rec := range s.node.Meta().Nodes() {
		if rec.ID == s.node.ID() || rec.APIAddress == "" {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			url := s.scheme() + "://" + addr + "/v1/cluster/meta-applied?index=" + strconv.FormatUint(index, 10) + "&wait=2s"
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
			resp, err := s.peers.Do(req)
			if err != nil {
				s.log.Debug("meta-applied on peer", "peer", addr, "err", err)
				return
			}
			resp.Body.Close()
		}(rec.APIAddress)
	}
	wg.Wait()
}

// PeerApplied asks every other node (admin token) for its view of the
// cluster and returns each one's applied index per shard: the graceful
// stop hands leaderships to the most caught-up replicas. Unreachable nodes
// are left out.
func (s *Server) PeerApplied(ctx context.Context) cluster.PeerApplied {
	cfg := s.node.Config()
	if cfg.AdminToken == "" {
		return nil
	}
	out := cluster.PeerApplied{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, rec := range s.node.Meta().Nodes() {
		if rec.ID == s.node.ID() || rec.APIAddress == "" {
			continue
		}
		wg.Add(1)
		go func(id uint64, addr string) {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.scheme()+"://"+addr+"/v1/cluster", nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
			resp, err := s.peers.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var c api.Cluster
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&c) != nil {
				return
			}
			applied := map[uint64]uint64{}
			for _, sh := range c.Shards {
				applied[sh.ShardID] = sh.Applied
			}
			mu.Lock()
			out[id] = applied
			mu.Unlock()
		}(rec.ID, rec.APIAddress)
	}
	wg.Wait()
	return out
}

func (s *Server) scheme() string {
	if s.node.Config().TLSCert != "" {
		return "https"
	}
	return "http"
}

// metaApplied blocks until the local meta replica applied ?index (or ?wait,
// at most 5 s, passes) and answers the applied index.
func (s *Server) metaApplied(w http.ResponseWriter, r *http.Request, _ identity) {
	index, err := parseIndex(r)
	if err != nil {
		writeError(w, err)
		return
	}
	wait, err := parseWait(r, 2*time.Second, 5*time.Second)
	if err != nil {
		writeError(w, err)
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		applied, ch := s.node.Meta().WaitApplied()
		if applied >= index {
			setIndex(w, applied)
			writeJSON(w, http.StatusOK, api.WriteResponse{Index: applied})
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			writeError(w, &api.Error{Code: api.CodeStaleReplica, Message: fmt.Sprintf("meta replica at %d, asked %d", applied, index), RetryAfter: 100 * time.Millisecond})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// cluster answers GET /v1/cluster; ?local=true lists only the shards
// this node runs (a peer's look).
func (s *Server) cluster(w http.ResponseWriter, r *http.Request, _ identity) {
	local, err := parseBool(r, "local")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.ClusterView(local))
}

func (s *Server) joinNode(w http.ResponseWriter, r *http.Request, _ identity) {
	req, err := parseJoin(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	speaks, _ := strconv.ParseUint(r.Header.Get(api.HeaderStateVersion), 10, 64)
	if have := s.node.Meta().Version(); max(speaks, 1) < have {
		writeError(w, api.Errorf(api.CodeConflict, "node %d's build speaks state version %d; the cluster runs version %d: run the cluster's build on it", req.ID, max(speaks, 1), have))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.node.AddNode(ctx, req.ID, req.RaftAddress, req.APIAddress); err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			err = api.Errorf(api.CodeUnavailable, "add node: %v", err)
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.Cluster())
}

// removeNode takes a node out of the cluster for good (a lost machine):
// DELETE /v1/cluster/nodes/{id}. It answers the cluster as it is after.
func (s *Server) removeNode(w http.ResponseWriter, r *http.Request, _ identity) {
	id, err := parseNodeID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var opts cluster.RemoveOptions
	if f := r.URL.Query().Get("force"); f != "" {
		if opts.Force, err = strconv.ParseBool(f); err != nil {
			writeError(w, api.Errorf(api.CodeBadRequest, "force: %q is not a boolean", f))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.node.RemoveNode(ctx, id, opts); err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			err = api.Errorf(api.CodeUnavailable, "remove node: %v", err)
		}
		writeError(w, err)
		return
	}
	// Not done while a node that answers still lists the removed one (its
	// meta replica behind the removal: cut off from the others' Raft
	// traffic, or on a build that does not apply it): its clients would
	// still be sent there.
	if behind := s.metaBehind(ctx, s.node.Meta().Applied()); len(behind) > 0 {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
			Message: fmt.Sprintf("node %d is out of the cluster's Raft shards, but %s answered without having applied its removal, so it still lists node %d: "+
				"look at it (rafting cluster: health, lag) and run the removal again once it has caught up", id, strings.Join(behind, ", "), id)})
		return
	}
	writeJSON(w, http.StatusOK, s.node.Cluster())
}

// metaBehind asks every other node (admin token) whether its meta replica
// applied index, waiting up to removalSettle, and names those that
// answered without having applied it. A node that does not answer (down,
// unreachable) is not named: it syncs its meta replica with a quorum
// before it is ready again. Without the admin token (a node that knows
// only its hash) nothing is asked.
func (s *Server) metaBehind(ctx context.Context, index uint64) []string {
	cfg := s.node.Config()
	if cfg.AdminToken == "" {
		return nil
	}
	var (
		mu     sync.Mutex
		behind []string
		wg     sync.WaitGroup
	)
	for _, rec := range s.node.Meta().Nodes() {
		if rec.ID == s.node.ID() || rec.APIAddress == "" {
			continue
		}
		wg.Add(1)
		go func(id uint64, addr string) {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, removalSettle+time.Second)
			defer cancel()
			url := fmt.Sprintf("%s://%s/v1/cluster/meta-applied?index=%d&wait=%dms", s.scheme(), addr, index, removalSettle.Milliseconds())
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
			resp, err := s.peers.Do(req)
			if err != nil {
				return // no answer
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				mu.Lock()
				behind = append(behind, fmt.Sprintf("node %d (%s, %s)", id, addr, resp.Status))
				mu.Unlock()
			}
		}(rec.ID, rec.APIAddress)
	}
	wg.Wait()
	slices.Sort(behind)
	return behind
}

// removalSettle bounds how long a removal waits for the other nodes to
// apply it.
const removalSettle = 5 * time.Second

// serverList answers the API address of every node (api.ServerList); for
// a tenant's token, of the nodes that hold the tenant's shard (its leader's
// first when this node knows it), where its clients belong.
func (s *Server) serverList(w http.ResponseWriter, _ *http.Request, who identity) {
	l := api.ServerList{Servers: []string{}}
	if who.tenant != "" {
		if nodes := s.node.TenantNodes(who.tenant); len(nodes) > 0 {
			l.Servers = nodes
			writeJSON(w, http.StatusOK, l)
			return
		}
	}
	for _, n := range s.node.Meta().Nodes() {
		if n.APIAddress != "" {
			l.Servers = append(l.Servers, n.APIAddress)
		}
	}
	writeJSON(w, http.StatusOK, l)
}

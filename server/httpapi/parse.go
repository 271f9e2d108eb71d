package httpapi

import (
	"cmp"
	"net/http"
	"strconv"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// The request decoders. Each turns a request (path values, query, body)
// into a command or a 4xx *api.Error naming the bad field; none needs the
// cluster, so each has a fuzz target. w may be nil (it only tells the
// http.Server to close a connection whose body was too large).

func parseRegister(w http.ResponseWriter, r *http.Request, now time.Time) (fsm.Register, error) {
	if err := pathNames(r, "s", "id"); err != nil {
		return fsm.Register{}, err
	}
	var req api.RegisterRequest
	if err := decode(w, r, &req, false); err != nil {
		return fsm.Register{}, err
	}
	if req.Session != "" {
		if err := api.ValidateSessionID("session", req.Session); err != nil {
			return fsm.Register{}, err
		}
	}
	if req.Meta != nil && tenants.MetaSize(req.Meta) > api.MaxBodyBytes {
		return fsm.Register{}, api.BadField("meta", "too large")
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.Register{}, err
	}
	seq, err := parseSeq(r, cmp.Or(caller, req.Session))
	if err != nil {
		return fsm.Register{}, err
	}
	return fsm.Register{Service: r.PathValue("s"), ID: r.PathValue("id"), Instance: req,
		Caller: caller, Seq: seq, AtMs: now.UnixMilli()}, nil
}

// callerSession reads X-Rafting-Session: a session ID, or "" when absent.
func callerSession(r *http.Request) (string, error) {
	v := r.Header.Get(api.HeaderSession)
	if v == "" {
		return "", nil
	}
	if err := api.ValidateSessionID(api.HeaderSession, v); err != nil {
		return "", err
	}
	return v, nil
}

// parseSeq reads X-Rafting-Sequence: a positive number, on a write made
// under a session (0 when absent).
func parseSeq(r *http.Request, session string) (uint64, error) {
	v := r.Header.Get(api.HeaderSequence)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	switch {
	case err != nil || n == 0:
		return 0, api.BadField(api.HeaderSequence, "%q is not a positive integer", v)
	case session == "":
		return 0, api.BadField(api.HeaderSequence, "numbers a write under a session: send X-Rafting-Session too")
	}
	return n, nil
}

func parseDeregister(r *http.Request, now time.Time) (fsm.Deregister, error) {
	if err := pathNames(r, "s", "id"); err != nil {
		return fsm.Deregister{}, err
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.Deregister{}, err
	}
	seq, err := parseSeq(r, caller)
	if err != nil {
		return fsm.Deregister{}, err
	}
	return fsm.Deregister{Service: r.PathValue("s"), ID: r.PathValue("id"),
		Caller: caller, Seq: seq, AtMs: now.UnixMilli()}, nil
}

func parsePolicy(w http.ResponseWriter, r *http.Request, now time.Time) (fsm.SetPolicy, error) {
	if err := pathNames(r, "s"); err != nil {
		return fsm.SetPolicy{}, err
	}
	var req api.PolicyRequest
	if err := decode(w, r, &req, false); err != nil {
		return fsm.SetPolicy{}, err
	}
	if req.ColdStart == nil {
		return fsm.SetPolicy{}, api.BadField("cold_start", "is required")
	}
	return fsm.SetPolicy{Service: r.PathValue("s"), ColdStart: *req.ColdStart, AtMs: now.UnixMilli()}, nil
}

func parseResign(w http.ResponseWriter, r *http.Request, now time.Time) (fsm.Resign, error) {
	if err := pathNames(r, "s"); err != nil {
		return fsm.Resign{}, err
	}
	var req api.ResignRequest
	if err := decode(w, r, &req, false); err != nil {
		return fsm.Resign{}, err
	}
	if err := api.ValidateName("instance", req.Instance); err != nil {
		return fsm.Resign{}, err
	}
	if req.FencingToken == 0 {
		// No grant has token 0 (its epoch is at least 1): a resign
		// without one could only be refused, as a conflict it is not.
		return fsm.Resign{}, api.BadField("fencing_token", "is required: the fencing token of the mastership to resign")
	}
	if req.To != "" {
		if err := api.ValidateName("to", req.To); err != nil {
			return fsm.Resign{}, err
		}
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.Resign{}, err
	}
	seq, err := parseSeq(r, caller)
	if err != nil {
		return fsm.Resign{}, err
	}
	return fsm.Resign{Service: r.PathValue("s"), Instance: req.Instance, Token: req.FencingToken, To: req.To,
		Caller: caller, Seq: seq, AtMs: now.UnixMilli()}, nil
}

func parseOpenSession(w http.ResponseWriter, r *http.Request, now time.Time) (fsm.OpenSession, error) {
	id := r.PathValue("id")
	if err := api.ValidateSessionID("id", id); err != nil {
		return fsm.OpenSession{}, err
	}
	var req api.SessionRequest
	if err := decode(w, r, &req, true); err != nil {
		return fsm.OpenSession{}, err
	}
	switch {
	case req.TTLMs < 0:
		return fsm.OpenSession{}, api.BadField("ttl_ms", "must not be negative")
	case req.LeaseMs < 0:
		return fsm.OpenSession{}, api.BadField("lease_ms", "must not be negative")
	case req.DropGraceMs < 0:
		return fsm.OpenSession{}, api.BadField("drop_grace_ms", "must not be negative")
	}
	return fsm.OpenSession{ID: id, TTLMs: req.TTLMs, LeaseMs: req.LeaseMs, DropGraceMs: req.DropGraceMs, AtMs: now.UnixMilli()}, nil
}

// createTenant is a validated tenant creation.
type createTenant struct {
	name   string
	quotas api.Quotas
	token  tenants.Token
}

func parseCreateTenant(w http.ResponseWriter, r *http.Request) (createTenant, error) {
	var req api.CreateTenantRequest
	if err := decode(w, r, &req, false); err != nil {
		return createTenant{}, err
	}
	if err := api.ValidateTenantName("name", req.Name); err != nil {
		return createTenant{}, err
	}
	quotas, err := tenants.Resolve(req.Quotas)
	if err != nil {
		return createTenant{}, err
	}
	secret, err := secretOrNew(req.Secret)
	if err != nil {
		return createTenant{}, err
	}
	return createTenant{name: req.Name, quotas: quotas, token: tenants.FormatToken(req.Name, secret)}, nil
}

func secretOrNew(secret string) (string, error) {
	if secret == "" {
		return tenants.NewSecret(), nil
	}
	if err := tenants.ValidateSecret("secret", secret); err != nil {
		return "", err
	}
	return secret, nil
}

func parseUpdateTenant(w http.ResponseWriter, r *http.Request, current api.Quotas) (api.Quotas, error) {
	var req api.UpdateTenantRequest
	if err := decode(w, r, &req, false); err != nil {
		return api.Quotas{}, err
	}
	return tenants.Merge(current, req.Quotas)
}

// rotation is a validated token rotation.
type rotation struct {
	token    tenants.Token
	previous time.Duration
}

func parseRotate(w http.ResponseWriter, r *http.Request) (rotation, error) {
	var req api.RotateTokenRequest
	if err := decode(w, r, &req, true); err != nil {
		return rotation{}, err
	}
	prev, err := tenants.ResolvePreviousValid(req.PreviousValidMs)
	if err != nil {
		return rotation{}, err
	}
	secret, err := secretOrNew(req.Secret)
	if err != nil {
		return rotation{}, err
	}
	return rotation{token: tenants.FormatToken(r.PathValue("t"), secret), previous: prev}, nil
}

func parseJoin(w http.ResponseWriter, r *http.Request) (api.JoinRequest, error) {
	var req api.JoinRequest
	if err := decode(w, r, &req, false); err != nil {
		return req, err
	}
	switch {
	case req.ID == 0 || req.ID >= fsm.FirstReplicaID:
		return req, api.BadField("id", "must be within [1, %d)", fsm.FirstReplicaID)
	case req.RaftAddress == "":
		return req, api.BadField("raft_address", "is required")
	case req.APIAddress == "":
		return req, api.BadField("api_address", "is required")
	}
	return req, nil
}

// parseNodeID reads the {id} of /v1/cluster/nodes/{id}.
func parseNodeID(r *http.Request) (uint64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 || id >= fsm.FirstReplicaID {
		return 0, api.BadField("id", "%q is not a node ID within [1, %d)", v, fsm.FirstReplicaID)
	}
	return id, nil
}

// serviceQuery is a validated GET .../services/{s}.
type serviceQuery struct {
	index uint64
	epoch uint64 // the epoch index is of; 0: not said
	wait  time.Duration
}

func parseServiceQuery(r *http.Request, maxWait time.Duration) (serviceQuery, error) {
	if err := pathNames(r, "s"); err != nil {
		return serviceQuery{}, err
	}
	index, err := parseIndex(r)
	if err != nil {
		return serviceQuery{}, err
	}
	epoch, err := parseUintParam(r, "epoch")
	if err != nil {
		return serviceQuery{}, err
	}
	wait, err := parseWait(r, maxWait, maxWait)
	if err != nil {
		return serviceQuery{}, err
	}
	if _, err := parseBool(r, "consistent"); err != nil {
		return serviceQuery{}, err
	}
	return serviceQuery{index: index, epoch: epoch, wait: wait}, nil
}

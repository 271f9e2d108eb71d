package fsm

import "github.com/rafting/rafting/api"

// Check runs the checks of a tenant command that depend only on the command
// and the tenant's quota limits — every field's validity and size — so the
// node that receives a write refuses a bad one before anything is proposed:
// a refused write never reaches the Raft log (DESIGN.md) and costs no write
// quota. Apply runs the same functions first, so both refuse alike; the
// checks that depend on the state (sessions alive, ownership, counts
// against max_instances and the like) run only when the command applies,
// since a replica may be behind and would refuse wrongly.
//
// The quota limits are this replica's copy, and also: a command is refused
// only when both refuse it. A tenant shard learns a change of quotas from
// the meta shard some time after it committed; the caller passes the
// meta replica's, so a raised limit is taken at once by the edge (the state
// machine's own copy decides, when it applies).
func (t *Tenant) Check(op Op, cmd any, also api.Quotas) *api.Error {
	t.mu.RLock()
	q, name := t.st.Quotas, t.st.Name
	t.mu.RUnlock()
	err := check(cmd, q, name)
	if err != nil && q != also && check(cmd, also, name) == nil {
		return nil
	}
	return err
}

func check(cmd any, q api.Quotas, name string) *api.Error {
	switch c := cmd.(type) {
	case Register:
		_, err := checkRegister(c, q, name)
		return err
	case Deregister:
		return checkNames(c.Service, c.ID)
	case OpenSession:
		_, err := checkOpenSession(c, q)
		return err
	case SetPolicy:
		return checkPolicy(c)
	case Resign:
		return checkNames(c.Service, "")
	}
	return nil
}

// checkNames checks a service name and, when id is not empty, an instance ID.
func checkNames(service, id string) *api.Error {
	if err := api.ValidateName("service", service); err != nil {
		return err.(*api.Error)
	}
	if id != "" {
		if err := api.ValidateName("id", id); err != nil {
			return err.(*api.Error)
		}
	}
	return nil
}

// checkRegister checks a registration's fields against the tenant's quota
// limits and returns the request with its defaults filled in.
func checkRegister(c Register, q api.Quotas, tenant string) (api.RegisterRequest, *api.Error) {
	if err := api.ValidateName("service", c.Service); err != nil {
		return api.RegisterRequest{}, err.(*api.Error)
	}
	if err := api.ValidateName("id", c.ID); err != nil {
		return api.RegisterRequest{}, err.(*api.Error)
	}
	r := c.Instance
	if r.Mode == "" {
		r.Mode = api.ModeFarm
	}
	if r.State == "" {
		r.State = api.StateReady
	}
	weight := api.DefaultWeight
	if r.Weight != nil {
		weight = *r.Weight
	}
	switch {
	case r.Address == "" || len(r.Address) > 1024:
		return r, api.BadField("address", "must be 1 to 1024 characters")
	case !r.Mode.Valid():
		return r, api.BadField("mode", "%q is not farm or master-standby", r.Mode)
	case !r.State.Valid():
		return r, api.BadField("state", "%q is not starting, ready or draining", r.State)
	case weight < 0 || weight > 1_000_000:
		return r, api.BadField("weight", "%d must be within [0, 1000000]", weight)
	case r.Priority < -1_000_000 || r.Priority > 1_000_000:
		return r, api.BadField("priority", "%d must be within [-1000000, 1000000]", r.Priority)
	case len(r.Zone) > 128:
		return r, api.BadField("zone", "must be at most 128 characters")
	}
	metaBytes := int64(0)
	for k, v := range r.Meta {
		if k == "" {
			return r, api.BadField("meta", "keys must not be empty")
		}
		metaBytes += int64(len(k) + len(v))
	}
	if q.MaxMetaBytes > 0 && metaBytes > q.MaxMetaBytes {
		return r, api.QuotaExceeded(tenant, "max_meta_bytes", q.MaxMetaBytes, metaBytes)
	}
	if r.ColdStart != nil {
		cs := *r.ColdStart
		if err := validColdStart("cold_start", &cs); err != nil {
			return r, err
		}
		r.ColdStart = &cs
	}
	return r, nil
}

// checkOpenSession checks a session's parameters against the tenant's TTL
// bounds and returns them with their defaults filled in.
func checkOpenSession(c OpenSession, q api.Quotas) (OpenSession, *api.Error) {
	if err := api.ValidateSessionID("id", c.ID); err != nil {
		return c, err.(*api.Error)
	}
	if c.TTLMs == 0 {
		c.TTLMs = DefaultTTLMs
	}
	minTTL, maxTTL := q.MinTTLMs, q.MaxTTLMs
	if minTTL <= 0 {
		minTTL = 3000
	}
	if maxTTL <= 0 {
		maxTTL = 3600_000
	}
	switch {
	case c.TTLMs < minTTL || c.TTLMs > maxTTL:
		return c, api.BadField("ttl_ms", "%d is outside the tenant's bounds [%d, %d]", c.TTLMs, minTTL, maxTTL)
	case c.LeaseMs < 0 || c.LeaseMs > c.TTLMs:
		return c, api.BadField("lease_ms", "%d must be within [0, ttl_ms %d]", c.LeaseMs, c.TTLMs)
	case c.DropGraceMs < 0 || c.DropGraceMs > c.TTLMs:
		return c, api.BadField("drop_grace_ms", "%d must be within [0, ttl_ms %d]", c.DropGraceMs, c.TTLMs)
	}
	if c.DropGraceMs == 0 {
		c.DropGraceMs = DefaultDropGraceMs
		if c.LeaseMs > 0 {
			c.DropGraceMs = min(DefaultDropGraceMs, c.LeaseMs)
		}
	}
	return c, nil
}

// checkPolicy checks a service's election policy.
func checkPolicy(c SetPolicy) *api.Error {
	if err := api.ValidateName("service", c.Service); err != nil {
		return err.(*api.Error)
	}
	cs := c.ColdStart
	return validColdStart("cold_start", &cs)
}

package fsm

import (
	"cmp"

	"github.com/rafting/rafting/api"
)

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
	q, name, v := t.st.Quotas, t.st.Name, versionOf(t.st.Version)
	t.mu.RUnlock()
	err := check(cmd, q, name, v)
	if err != nil && q != also && check(cmd, also, name, v) == nil {
		return nil
	}
	return err
}

func check(cmd any, q api.Quotas, name string, v uint64) *api.Error {
	switch c := cmd.(type) {
	case Register:
		_, err := checkRegister(c, q, name, v)
		return err
	case Deregister:
		return checkNames(v, c.Service, c.ID)
	case OpenSession:
		_, err := checkOpenSession(c, q)
		return err
	case SetPolicy:
		return checkPolicy(c, v)
	case Resign:
		return validName(v, "service", c.Service)
	case KVPut:
		return checkKVPut(c, q, name)
	case KVDelete:
		return checkKVDelete(c)
	case KVTxn:
		return checkKVTxnCmd(c, q, name)
	}
	return nil
}

// CheckCommand runs Check's checks of cmd for a state of this build's
// version with quotas q, without a replica: for a restore, which checks
// the whole backup before it creates anything.
func CheckCommand(cmd any, q api.Quotas, tenant string) *api.Error {
	return check(cmd, q, tenant, Version)
}

// MaxMetaEntries bounds an instance's meta entries, and each costs
// MetaEntryCost bytes of max_meta_bytes beside its key and value (from
// version 2): what an entry costs in memory on every replica, whatever its
// length. 2,048 two-byte keys counted as 4 KiB took 166 KB of heap each.
const (
	MaxMetaEntries = 64
	MetaEntryCost  = 32
)

// validName checks a service name or an instance ID as a state at version
// v does: "." and ".." are names only before version 2.
func validName(v uint64, field, s string) *api.Error {
	check := api.ValidateName
	if v < 2 {
		check = api.ValidateNameChars
	}
	if err := check(field, s); err != nil {
		return err.(*api.Error)
	}
	return nil
}

// validText checks a value operators read (address, zone, meta) as a
// state at version v does: no control characters from version 2.
func validText(v uint64, field, s string) *api.Error {
	if v < 2 {
		return nil
	}
	if err := api.ValidateText(field, s); err != nil {
		return err.(*api.Error)
	}
	return nil
}

// checkNames checks a service name and an instance ID.
func checkNames(v uint64, service, id string) *api.Error {
	if err := validName(v, "service", service); err != nil {
		return err
	}
	return validName(v, "id", id)
}

// checkRegister checks a registration's fields against the tenant's quota
// limits and returns the request with its defaults filled in.
func checkRegister(c Register, q api.Quotas, tenant string, v uint64) (api.RegisterRequest, *api.Error) {
	if err := validName(v, "service", c.Service); err != nil {
		return api.RegisterRequest{}, err
	}
	if err := validName(v, "id", c.ID); err != nil {
		return api.RegisterRequest{}, err
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
	if err := validText(v, "address", r.Address); err != nil {
		return r, err
	}
	if err := validText(v, "zone", r.Zone); err != nil {
		return r, err
	}
	if err := checkMeta(r.Meta, q, tenant, v); err != nil {
		return r, err
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

// checkMeta checks an instance's meta entries, and their size against
// max_meta_bytes. A refusal names the first bad entry in key order, so
// that every replica refuses alike; only a refusal pays for the sorting.
func checkMeta(meta map[string]string, q api.Quotas, tenant string, v uint64) *api.Error {
	if v >= 2 && len(meta) > MaxMetaEntries {
		return api.BadField("meta", "%d entries, at most %d", len(meta), MaxMetaEntries)
	}
	size := int64(0)
	for key, val := range meta {
		if err := checkMetaEntry(v, key, val); err != nil {
			return firstBadMeta(meta, v)
		}
		size += int64(len(key) + len(val))
		if v >= 2 {
			size += MetaEntryCost
		}
	}
	if q.MaxMetaBytes > 0 && size > q.MaxMetaBytes {
		return api.QuotaExceeded(tenant, "max_meta_bytes", q.MaxMetaBytes, size)
	}
	return nil
}

// checkMetaEntry checks one meta entry.
func checkMetaEntry(v uint64, key, val string) *api.Error {
	if key == "" {
		return api.BadField("meta", "keys must not be empty")
	}
	if err := validText(v, "meta", key); err != nil {
		return err
	}
	return validText(v, "meta."+key, val)
}

// firstBadMeta is the refusal of meta's first bad entry in key order.
func firstBadMeta(meta map[string]string, v uint64) *api.Error {
	for _, key := range sortedKeys(meta) {
		if err := checkMetaEntry(v, key, meta[key]); err != nil {
			return err
		}
	}
	return nil
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
func checkPolicy(c SetPolicy, v uint64) *api.Error {
	if err := validName(v, "service", c.Service); err != nil {
		return err
	}
	cs := c.ColdStart
	return validColdStart("cold_start", &cs)
}

// The checks of a command that depend on the state, shared by Apply
// (which runs them first, and refuses the command when one fails) and by
// Precheck (which runs them on a replica's state before anything is
// proposed). They read and never change the state.

// admitRegister checks a registration (r, its checked request) against the
// state; it returns the service, the instance it replaces and the session
// it will be owned by.
func (t *Tenant) admitRegister(c Register, r api.RegisterRequest) (svc *service, old *instance, sess string, err *api.Error) {
	q := t.st.Quotas
	svc = t.st.Services[c.Service]
	if svc != nil {
		old = svc.Instances[c.ID]
	}
	sess = r.Session
	if sess == "" && old != nil {
		sess = old.Session // an operator's update keeps the owner
	}
	if sess != "" {
		if _, ok := t.st.Sessions[sess]; !ok {
			if _, dead := t.st.Tombs[sess]; dead {
				return nil, nil, "", api.Errorf(api.CodeSessionExpired, "session %s has ended", api.SessionTag(sess))
			}
			return nil, nil, "", api.Errorf(api.CodeNotFound, "session %s not found", api.SessionTag(sess))
		}
	}
	if r.Mode == api.ModeMasterStandby && sess == "" {
		return nil, nil, "", api.BadField("session", "a master-standby instance must name a session")
	}
	if old != nil && old.Session != "" && old.Session != sess {
		if _, alive := t.st.Sessions[old.Session]; alive {
			return nil, nil, "", api.Errorf(api.CodeConflict, "instance %s is owned by live session %s", c.ID, api.SessionTag(old.Session))
		}
	}
	if svc == nil {
		if n := int64(len(t.st.Services)); q.MaxServices > 0 && n >= q.MaxServices {
			return nil, nil, "", api.QuotaExceeded(t.st.Name, "max_services", q.MaxServices, n)
		}
	}
	if old == nil {
		if n := t.instanceCount(); q.MaxInstances > 0 && n >= q.MaxInstances {
			return nil, nil, "", api.QuotaExceeded(t.st.Name, "max_instances", q.MaxInstances, n)
		}
	}
	return svc, old, sess, nil
}

// admitOpen checks a session's opening (c, checked) against the state; it
// reports whether the session exists already with these parameters (a
// retry, which reads it back).
func (t *Tenant) admitOpen(c OpenSession) (exists bool, err *api.Error) {
	tag := api.SessionTag(c.ID)
	if _, dead := t.st.Tombs[c.ID]; dead {
		return false, api.Errorf(api.CodeSessionExpired, "session %s has ended", tag)
	}
	if s, ok := t.st.Sessions[c.ID]; ok {
		if s.TTLMs != c.TTLMs || s.LeaseMs != c.LeaseMs || s.DropGraceMs != c.DropGraceMs {
			return false, api.Errorf(api.CodeConflict, "session %s exists with ttl_ms %d, lease_ms %d, drop_grace_ms %d",
				tag, s.TTLMs, s.LeaseMs, s.DropGraceMs)
		}
		return true, nil
	}
	q := t.st.Quotas
	if n := int64(len(t.st.Sessions)); q.MaxSessions > 0 && n >= q.MaxSessions {
		return false, api.QuotaExceeded(t.st.Name, "max_sessions", q.MaxSessions, n)
	}
	return false, nil
}

// admitPolicy checks a policy against the state: a new service counts
// against max_services.
func (t *Tenant) admitPolicy(c SetPolicy) *api.Error {
	if t.st.Services[c.Service] == nil {
		q := t.st.Quotas
		if n := int64(len(t.st.Services)); q.MaxServices > 0 && n >= q.MaxServices {
			return api.QuotaExceeded(t.st.Name, "max_services", q.MaxServices, n)
		}
	}
	return nil
}

// admitResign checks a resign against the state.
func (t *Tenant) admitResign(c Resign) *api.Error {
	svc := t.st.Services[c.Service]
	if svc == nil || svc.Master == nil {
		return api.Errorf(api.CodeConflict, "service %s has no master", c.Service)
	}
	m := svc.Master
	if m.Instance != c.Instance || m.Token != c.Token {
		return api.Errorf(api.CodeConflict, "%s with fencing token %d is not the master of %s (current: %s, %d)",
			c.Instance, c.Token, c.Service, m.Instance, m.Token)
	}
	if c.To != "" {
		if c.To == m.Instance || !t.candidate(svc.Instances[c.To]) {
			return api.Errorf(api.CodeConflict, "to: %s is not a ready standby of %s", c.To, c.Service)
		}
	} else if len(t.candidates(svc, m.Instance)) == 0 {
		return api.Errorf(api.CodeConflict, "service %s has no other ready candidate to hand over to", c.Service)
	}
	return nil
}

// admitSeq is what sequenced refuses a numbered write for without
// applying it and without keeping its answer: a session that is not live
// (ended, or never known), or a number below the session's last.
func (t *Tenant) admitSeq(caller string, seq uint64) *api.Error {
	if versionOf(t.st.Version) < 2 {
		return api.Errorf(api.CodeUnavailable, "the tenant's state version is being raised to 2: send the write again")
	}
	s := t.st.Sessions[caller]
	if s == nil {
		if _, dead := t.st.Tombs[caller]; dead {
			return api.Errorf(api.CodeSessionExpired, "write %d of session %s came after the session ended: not applied", seq, api.SessionTag(caller))
		}
		return api.Errorf(api.CodeNotFound, "write %d names session %s, which is not known", seq, api.SessionTag(caller))
	}
	if seq < s.Seq {
		return api.Errorf(api.CodeConflict, "write %d of session %s came after its write %d: not applied", seq, api.SessionTag(caller), s.Seq)
	}
	return nil
}

// Precheck tells, on this replica's state, the refusal that applying cmd
// now would get for a reason of the state (a session ended, an instance
// owned by another, a count quota reached, a resign that names an old
// token), or nil. The node that receives a write runs it after Check, and
// when it refuses, confirms with a ReadIndex (this replica may be behind)
// and runs it again before answering without proposing: a refused write
// stays out of the Raft log. A numbered write (X-Rafting-Sequence) is
// prechecked only for what sequenced refuses without keeping an answer:
// any other refusal of it must be committed, so that a late copy gets the
// same answer.
func (t *Tenant) Precheck(op Op, cmd any) *api.Error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v := versionOf(t.st.Version)
	switch c := cmd.(type) {
	case Register:
		if c.Seq != 0 {
			return t.admitSeq(cmp.Or(c.Caller, c.Instance.Session), c.Seq)
		}
		r, err := checkRegister(c, t.st.Quotas, t.st.Name, v)
		if err != nil {
			return err
		}
		_, _, _, err = t.admitRegister(c, r)
		return err
	case Deregister:
		if c.Seq != 0 {
			return t.admitSeq(c.Caller, c.Seq)
		}
	case Resign:
		if c.Seq != 0 {
			return t.admitSeq(c.Caller, c.Seq)
		}
		return t.admitResign(c)
	case OpenSession:
		c, err := checkOpenSession(c, t.st.Quotas)
		if err != nil {
			return err
		}
		_, err = t.admitOpen(c)
		return err
	case SetPolicy:
		if err := checkPolicy(c, v); err != nil {
			return err
		}
		return t.admitPolicy(c)
	case KVPut:
		return t.precheckKV(op, c.txn(), cmp.Or(c.Caller, c.Session), c.Seq)
	case KVDelete:
		return t.precheckKV(op, c.txn(), c.Caller, c.Seq)
	case KVTxn:
		return t.precheckKV(op, c.txn(), c.Caller, c.Seq)
	}
	return nil
}

// precheckKV is Precheck of a store write (Check has passed it: the
// fields are valid).
func (t *Tenant) precheckKV(op Op, x kvTxn, caller string, seq uint64) *api.Error {
	if versionOf(t.st.Version) < kvVersion {
		return errKVVersion(op)
	}
	if seq != 0 {
		return t.admitSeq(caller, seq)
	}
	return t.admitKV(x)
}

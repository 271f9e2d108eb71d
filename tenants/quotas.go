package tenants

import (
	"cmp"

	"github.com/rafting/rafting/api"
)

// Quota names: the JSON names of api.Quotas' fields. QuotaError.Quota and
// api.Error.Quota carry them; a bad quota in a request is reported as the
// field "quotas.<name>".
const (
	QuotaMaxServices       = "max_services"
	QuotaMaxInstances      = "max_instances"
	QuotaMaxSessions       = "max_sessions"
	QuotaMaxWatchers       = "max_watchers"
	QuotaMaxMetaBytes      = "max_meta_bytes"
	QuotaMinTTLMs          = "min_ttl_ms"
	QuotaMaxTTLMs          = "max_ttl_ms"
	QuotaRequestsPerSecond = "requests_per_second"
	QuotaBurst             = "burst"
	QuotaWritesPerSecond   = "writes_per_second"
	QuotaMaxKeys           = "max_keys"
	QuotaMaxValueBytes     = "max_value_bytes"
	QuotaMaxKVBytes        = "max_kv_bytes"
)

// Default quotas: generous, so that a tenant created without quotas is
// limited only against accidents (a registration loop, a leaked session per
// request), never in normal use.
const (
	// DefaultMaxServices is how many services a tenant may have.
	DefaultMaxServices = 1000
	// DefaultMaxInstances is how many instances a tenant may register, over
	// all its services.
	DefaultMaxInstances = 10000
	// DefaultMaxSessions is how many live sessions a tenant may hold (an
	// attached session stream belongs to its session and counts there).
	DefaultMaxSessions = 10000
	// DefaultMaxWatchers is how many blocking queries a tenant may have open
	// at once on one node (per node: watchers are not replicated state).
	DefaultMaxWatchers = 10000
	// DefaultMaxMetaBytes bounds one instance's meta: the sum over its
	// entries of len(key)+len(value), in bytes (see MetaSize).
	DefaultMaxMetaBytes = 4096
	// DefaultMinTTLMs is the shortest session TTL a tenant may ask for, in
	// milliseconds: MinTTLMs, the design's floor.
	DefaultMinTTLMs = MinTTLMs
	// DefaultMaxTTLMs is the longest session TTL a tenant may ask for, in
	// milliseconds: one hour.
	DefaultMaxTTLMs = 3_600_000
	// DefaultRequestsPerSecond is the refill rate of the tenant's request
	// bucket, per node: with N nodes a tenant can reach N times this rate.
	// Sized for a small node (2 cores): a tenant flooding at 1,000 a second
	// per node took 0.7 of such a node's cores (benchmarks/attacks).
	DefaultRequestsPerSecond = 500
	// DefaultBurst is the size of the tenant's request bucket, per node.
	DefaultBurst = 1000
	// DefaultWritesPerSecond is the refill rate of the tenant's write
	// (proposal) bucket, per node, charged where the write is proposed. Its
	// burst is max(1, writes_per_second): see WriteBurst.
	DefaultWritesPerSecond = 200
	// DefaultMaxKeys is how many keys a tenant's configuration store may
	// hold.
	DefaultMaxKeys = 10000
	// DefaultMaxValueBytes is the largest value a key may hold, in bytes.
	DefaultMaxValueBytes = 64 << 10
	// DefaultMaxKVBytes bounds the configuration store's size: the sum over
	// its keys of len(key) + len(value) + KVEntryCost, in bytes. It is held
	// in memory on every replica and written whole in every snapshot.
	DefaultMaxKVBytes = 16 << 20
)

// KVEntryCost is what a key costs of max_kv_bytes beside its key and value:
// its record, its place in the sorted index and its subtree entries on
// every replica (docs/DECISIONS.md, "Configuration store").
const KVEntryCost = 128

// MaxValueBytes is the largest max_value_bytes a tenant may be given: a
// value must fit in one request's body.
const MaxValueBytes = api.MaxBodyBytes

// Bounds every resolved Quotas keeps.
const (
	// MinTTLMs is the shortest session TTL Rafting accepts, in milliseconds
	// (the design's minimum: a shorter TTL expires healthy sessions on an
	// ordinary Raft leader failover). No tenant's min_ttl_ms may be below it.
	MinTTLMs = 3000
	// MaxTTLMs is the largest max_ttl_ms a tenant may be given, in
	// milliseconds: one day. A TTL is how long a crashed host's instances
	// stay listed; a day is already far past useful, and the bound keeps
	// every TTL far from overflowing a time.Duration.
	MaxTTLMs = 86_400_000
)

// DefaultQuotas returns the quotas of a tenant created without any.
func DefaultQuotas() api.Quotas {
	return api.Quotas{
		MaxServices:       DefaultMaxServices,
		MaxInstances:      DefaultMaxInstances,
		MaxSessions:       DefaultMaxSessions,
		MaxWatchers:       DefaultMaxWatchers,
		MaxMetaBytes:      DefaultMaxMetaBytes,
		MinTTLMs:          DefaultMinTTLMs,
		MaxTTLMs:          DefaultMaxTTLMs,
		RequestsPerSecond: DefaultRequestsPerSecond,
		Burst:             DefaultBurst,
		WritesPerSecond:   DefaultWritesPerSecond,
		MaxKeys:           DefaultMaxKeys,
		MaxValueBytes:     DefaultMaxValueBytes,
		MaxKVBytes:        DefaultMaxKVBytes,
	}
}

// KVLimits are a tenant's configuration store quotas with a zero (a tenant
// created before the store existed) taking its default.
func KVLimits(q api.Quotas) (maxKeys, maxValueBytes, maxKVBytes int64) {
	return cmp.Or(q.MaxKeys, DefaultMaxKeys), cmp.Or(q.MaxValueBytes, DefaultMaxValueBytes), cmp.Or(q.MaxKVBytes, DefaultMaxKVBytes)
}

// Effective is q as it applies: a configuration store quota of zero (a
// tenant created before the store existed) shown as the default it takes.
func Effective(q api.Quotas) api.Quotas {
	q.MaxKeys, q.MaxValueBytes, q.MaxKVBytes = KVLimits(q)
	return q
}

// KVSize is what one key costs of max_kv_bytes.
func KVSize(key string, valueLen int) int64 {
	return int64(len(key)) + int64(valueLen) + KVEntryCost
}

// Resolve gives the quotas of a tenant being created with q: every zero field
// takes its default, then the result is validated. The error is a 400
// bad_request (an *api.Error) naming the field as "quotas.<json name>".
//
// Validation: no field is negative; MinTTLMs <= min_ttl_ms <= max_ttl_ms <=
// MaxTTLMs; every other field is at least 1 (which a zero taking its default
// guarantees).
func Resolve(q api.Quotas) (api.Quotas, error) {
	if err := checkNegative(q); err != nil {
		return api.Quotas{}, err
	}
	r := overlay(DefaultQuotas(), q)
	if err := validate(r, blameTTL(q)); err != nil {
		return api.Quotas{}, err
	}
	return r, nil
}

// Merge applies a PATCH to a tenant's current quotas: every non-zero field of
// patch replaces cur's, the rest are kept; the result is validated as in
// Resolve. cur is normally an earlier result of Resolve or Merge; a zero field
// left in it takes its default.
func Merge(cur, patch api.Quotas) (api.Quotas, error) {
	if err := checkNegative(patch); err != nil {
		return api.Quotas{}, err
	}
	r := overlay(overlay(DefaultQuotas(), cur), patch)
	if err := validate(r, blameTTL(patch)); err != nil {
		return api.Quotas{}, err
	}
	return r, nil
}

// WriteBurst is the burst of a tenant's write bucket: max(1, writes_per_second).
func WriteBurst(q api.Quotas) int {
	return int(max(1, q.WritesPerSecond))
}

// MetaSize is the size of an instance's meta that max_meta_bytes bounds: the
// sum over its entries of len(key)+len(value), in bytes.
func MetaSize(meta map[string]string) int64 {
	var n int64
	for k, v := range meta {
		n += int64(len(k)) + int64(len(v))
	}
	return n
}

// quotaField is one field of api.Quotas, named as the wire names it.
type quotaField struct {
	name string
	ptr  func(*api.Quotas) *int64
}

// quotaFields lists api.Quotas' fields in declaration order, so errors are
// reported in a stable order.
var quotaFields = [...]quotaField{
	{QuotaMaxServices, func(q *api.Quotas) *int64 { return &q.MaxServices }},
	{QuotaMaxInstances, func(q *api.Quotas) *int64 { return &q.MaxInstances }},
	{QuotaMaxSessions, func(q *api.Quotas) *int64 { return &q.MaxSessions }},
	{QuotaMaxWatchers, func(q *api.Quotas) *int64 { return &q.MaxWatchers }},
	{QuotaMaxMetaBytes, func(q *api.Quotas) *int64 { return &q.MaxMetaBytes }},
	{QuotaMinTTLMs, func(q *api.Quotas) *int64 { return &q.MinTTLMs }},
	{QuotaMaxTTLMs, func(q *api.Quotas) *int64 { return &q.MaxTTLMs }},
	{QuotaRequestsPerSecond, func(q *api.Quotas) *int64 { return &q.RequestsPerSecond }},
	{QuotaBurst, func(q *api.Quotas) *int64 { return &q.Burst }},
	{QuotaWritesPerSecond, func(q *api.Quotas) *int64 { return &q.WritesPerSecond }},
	{QuotaMaxKeys, func(q *api.Quotas) *int64 { return &q.MaxKeys }},
	{QuotaMaxValueBytes, func(q *api.Quotas) *int64 { return &q.MaxValueBytes }},
	{QuotaMaxKVBytes, func(q *api.Quotas) *int64 { return &q.MaxKVBytes }},
}

func field(name string) string { return "quotas." + name }

// overlay returns base with every non-zero field of top written over it.
func overlay(base, top api.Quotas) api.Quotas {
	for _, f := range quotaFields {
		if v := *f.ptr(&top); v != 0 {
			*f.ptr(&base) = v
		}
	}
	return base
}

func checkNegative(q api.Quotas) error {
	for _, f := range quotaFields {
		if v := *f.ptr(&q); v < 0 {
			return api.BadField(field(f.name), "must not be negative, got %d", v)
		}
	}
	return nil
}

// blameTTL names the field to report when min_ttl_ms ends above max_ttl_ms:
// the one the request set, or max_ttl_ms when it set both or neither.
func blameTTL(req api.Quotas) string {
	if req.MinTTLMs != 0 && req.MaxTTLMs == 0 {
		return QuotaMinTTLMs
	}
	return QuotaMaxTTLMs
}

// validate checks resolved quotas (no zero field left).
func validate(q api.Quotas, ttlBlame string) error {
	for _, f := range quotaFields {
		if v := *f.ptr(&q); v < 1 {
			return api.BadField(field(f.name), "must be at least 1, got %d", v)
		}
	}
	if q.MinTTLMs < MinTTLMs {
		return api.BadField(field(QuotaMinTTLMs), "must be at least %d (the minimum session TTL), got %d", MinTTLMs, q.MinTTLMs)
	}
	if q.MaxTTLMs > MaxTTLMs {
		return api.BadField(field(QuotaMaxTTLMs), "must be at most %d (one day), got %d", MaxTTLMs, q.MaxTTLMs)
	}
	if q.MaxValueBytes > MaxValueBytes {
		return api.BadField(field(QuotaMaxValueBytes), "must be at most %d (a request body), got %d", MaxValueBytes, q.MaxValueBytes)
	}
	if q.MinTTLMs > q.MaxTTLMs {
		if ttlBlame == QuotaMinTTLMs {
			return api.BadField(field(QuotaMinTTLMs), "must not exceed quotas.max_ttl_ms (%d), got %d", q.MaxTTLMs, q.MinTTLMs)
		}
		return api.BadField(field(QuotaMaxTTLMs), "must not be below quotas.min_ttl_ms (%d), got %d", q.MinTTLMs, q.MaxTTLMs)
	}
	return nil
}

package tenants

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

func TestDefaultQuotasResolve(t *testing.T) {
	got, err := Resolve(api.Quotas{})
	if err != nil {
		t.Fatalf("Resolve(zero) error = %v", err)
	}
	if want := DefaultQuotas(); got != want {
		t.Fatalf("Resolve(zero) = %+v, want %+v", got, want)
	}
	// Every default is set and valid on its own.
	for _, f := range quotaFields {
		d := DefaultQuotas()
		if *f.ptr(&d) == 0 {
			t.Errorf("DefaultQuotas().%s is zero", f.name)
		}
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name  string
		in    api.Quotas
		want  func(*api.Quotas) // edits DefaultQuotas() into the wanted result
		field string            // the field the error names; "" = no error
	}{
		{name: "zero is defaults", want: func(*api.Quotas) {}},
		{name: "some set", in: api.Quotas{MaxServices: 5, Burst: 1, WritesPerSecond: 1},
			want: func(q *api.Quotas) { q.MaxServices, q.Burst, q.WritesPerSecond = 5, 1, 1 }},
		{name: "ttl range", in: api.Quotas{MinTTLMs: 10_000, MaxTTLMs: 10_000},
			want: func(q *api.Quotas) { q.MinTTLMs, q.MaxTTLMs = 10_000, 10_000 }},
		{name: "max ttl at ceiling", in: api.Quotas{MaxTTLMs: MaxTTLMs},
			want: func(q *api.Quotas) { q.MaxTTLMs = MaxTTLMs }},
		{name: "min ttl at floor", in: api.Quotas{MinTTLMs: MinTTLMs},
			want: func(q *api.Quotas) {}},
		{name: "kv quotas", in: api.Quotas{MaxKeys: 3, MaxValueBytes: MaxValueBytes, MaxKVBytes: 1},
			want: func(q *api.Quotas) { q.MaxKeys, q.MaxValueBytes, q.MaxKVBytes = 3, MaxValueBytes, 1 }},

		{name: "negative max_services", in: api.Quotas{MaxServices: -1}, field: "quotas.max_services"},
		{name: "negative max_instances", in: api.Quotas{MaxInstances: -1}, field: "quotas.max_instances"},
		{name: "negative max_sessions", in: api.Quotas{MaxSessions: -1}, field: "quotas.max_sessions"},
		{name: "negative max_watchers", in: api.Quotas{MaxWatchers: -1}, field: "quotas.max_watchers"},
		{name: "negative max_meta_bytes", in: api.Quotas{MaxMetaBytes: -1}, field: "quotas.max_meta_bytes"},
		{name: "negative min_ttl_ms", in: api.Quotas{MinTTLMs: -1}, field: "quotas.min_ttl_ms"},
		{name: "negative max_ttl_ms", in: api.Quotas{MaxTTLMs: -1}, field: "quotas.max_ttl_ms"},
		{name: "negative requests_per_second", in: api.Quotas{RequestsPerSecond: -1}, field: "quotas.requests_per_second"},
		{name: "negative burst", in: api.Quotas{Burst: -5}, field: "quotas.burst"},
		{name: "negative writes_per_second", in: api.Quotas{WritesPerSecond: -1}, field: "quotas.writes_per_second"},
		{name: "negative max_keys", in: api.Quotas{MaxKeys: -1}, field: "quotas.max_keys"},
		{name: "negative max_value_bytes", in: api.Quotas{MaxValueBytes: -1}, field: "quotas.max_value_bytes"},
		{name: "negative max_kv_bytes", in: api.Quotas{MaxKVBytes: -1}, field: "quotas.max_kv_bytes"},
		{name: "max_value_bytes over a body", in: api.Quotas{MaxValueBytes: MaxValueBytes + 1}, field: "quotas.max_value_bytes"},
		{name: "first negative named", in: api.Quotas{MaxSessions: -1, Burst: -1}, field: "quotas.max_sessions"},

		{name: "min ttl below floor", in: api.Quotas{MinTTLMs: 2999}, field: "quotas.min_ttl_ms"},
		{name: "max ttl over ceiling", in: api.Quotas{MaxTTLMs: MaxTTLMs + 1}, field: "quotas.max_ttl_ms"},
		{name: "max ttl below default min", in: api.Quotas{MaxTTLMs: 1000}, field: "quotas.max_ttl_ms"},
		{name: "min ttl above default max", in: api.Quotas{MinTTLMs: DefaultMaxTTLMs + 1}, field: "quotas.min_ttl_ms"},
		{name: "both ttl, inverted", in: api.Quotas{MinTTLMs: 20_000, MaxTTLMs: 10_000}, field: "quotas.max_ttl_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.in)
			checkQuotaResult(t, "Resolve", got, err, tt.want, tt.field)
		})
	}
}

func TestMerge(t *testing.T) {
	cur, err := Resolve(api.Quotas{MaxServices: 10, MinTTLMs: 5000, MaxTTLMs: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cur   api.Quotas
		patch api.Quotas
		want  func(*api.Quotas) // edits cur into the wanted result
		field string
	}{
		{name: "empty patch keeps all", cur: cur, want: func(*api.Quotas) {}},
		{name: "one field", cur: cur, patch: api.Quotas{MaxInstances: 7},
			want: func(q *api.Quotas) { q.MaxInstances = 7 }},
		{name: "rates", cur: cur, patch: api.Quotas{RequestsPerSecond: 10, Burst: 20, WritesPerSecond: 3},
			want: func(q *api.Quotas) { q.RequestsPerSecond, q.Burst, q.WritesPerSecond = 10, 20, 3 }},
		{name: "raise min ttl within max", cur: cur, patch: api.Quotas{MinTTLMs: 60_000},
			want: func(q *api.Quotas) { q.MinTTLMs = 60_000 }},
		{name: "move both ttl", cur: cur, patch: api.Quotas{MinTTLMs: 100_000, MaxTTLMs: 200_000},
			want: func(q *api.Quotas) { q.MinTTLMs, q.MaxTTLMs = 100_000, 200_000 }},
		{name: "zero cur fields take defaults", cur: api.Quotas{MaxServices: 3}, patch: api.Quotas{Burst: 4},
			want: func(q *api.Quotas) { *q = DefaultQuotas(); q.MaxServices, q.Burst = 3, 4 }},

		{name: "negative", cur: cur, patch: api.Quotas{MaxMetaBytes: -1}, field: "quotas.max_meta_bytes"},
		{name: "negative burst", cur: cur, patch: api.Quotas{Burst: -1}, field: "quotas.burst"},
		{name: "min ttl above cur max", cur: cur, patch: api.Quotas{MinTTLMs: 60_001}, field: "quotas.min_ttl_ms"},
		{name: "max ttl below cur min", cur: cur, patch: api.Quotas{MaxTTLMs: 4000}, field: "quotas.max_ttl_ms"},
		{name: "min ttl below floor", cur: cur, patch: api.Quotas{MinTTLMs: 1}, field: "quotas.min_ttl_ms"},
		{name: "max ttl over ceiling", cur: cur, patch: api.Quotas{MaxTTLMs: MaxTTLMs + 1}, field: "quotas.max_ttl_ms"},
		{name: "bad cur is caught", cur: api.Quotas{MinTTLMs: 10}, field: "quotas.min_ttl_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Merge(tt.cur, tt.patch)
			var want func(*api.Quotas)
			if tt.want != nil {
				base := overlay(DefaultQuotas(), tt.cur)
				want = func(q *api.Quotas) { *q = base; tt.want(q) }
			}
			checkQuotaResult(t, "Merge", got, err, want, tt.field)
		})
	}
}

// checkQuotaResult checks a Resolve or Merge result: with field == "" it must
// succeed and equal DefaultQuotas() edited by want; otherwise it must be a
// bad_request naming field.
func checkQuotaResult(t *testing.T, fn string, got api.Quotas, err error, want func(*api.Quotas), field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("%s() error = %v", fn, err)
		}
		w := DefaultQuotas()
		want(&w)
		if got != w {
			t.Fatalf("%s() = %+v, want %+v", fn, got, w)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s() = %+v, want error naming %s", fn, got, field)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("%s() error = %#v, want an *api.Error bad_request", fn, err)
	}
	if !strings.HasPrefix(ae.Message, field+": ") {
		t.Fatalf("%s() error = %q, want it to name %s", fn, ae.Message, field)
	}
	if got != (api.Quotas{}) {
		t.Fatalf("%s() = %+v with an error, want zero Quotas", fn, got)
	}
}

func TestWriteBurst(t *testing.T) {
	tests := []struct {
		wps  int64
		want int
	}{{0, 1}, {1, 1}, {500, 500}, {-3, 1}}
	for _, tt := range tests {
		if got := WriteBurst(api.Quotas{WritesPerSecond: tt.wps}); got != tt.want {
			t.Errorf("WriteBurst(%d) = %d, want %d", tt.wps, got, tt.want)
		}
	}
}

func TestMetaSize(t *testing.T) {
	if got := MetaSize(nil); got != 0 {
		t.Errorf("MetaSize(nil) = %d, want 0", got)
	}
	if got := MetaSize(map[string]string{"version": "1.4.2", "a": ""}); got != 7+5+1 {
		t.Errorf("MetaSize() = %d, want 13", got)
	}
}

func TestQuotaError(t *testing.T) {
	var err error = &QuotaError{Tenant: "acme", Quota: QuotaMaxInstances, Limit: 100, Used: 100}
	if !errors.Is(err, api.ErrQuotaExceeded) {
		t.Fatalf("errors.Is(%v, api.ErrQuotaExceeded) = false", err)
	}
	if errors.Is(err, api.ErrConflict) {
		t.Fatalf("errors.Is(%v, api.ErrConflict) = true", err)
	}
	wrapped := errors.Join(errors.New("register b-1"), err)
	var qe *QuotaError
	if !errors.As(wrapped, &qe) || qe.Limit != 100 || !errors.Is(wrapped, api.ErrQuotaExceeded) {
		t.Fatalf("errors.As(wrapped) = %v, %+v", errors.As(wrapped, &qe), qe)
	}
	if got, want := err.Error(), "tenant acme: max_instances 100 reached (used 100)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	a := qe.API()
	want := api.QuotaExceeded("acme", "max_instances", 100, 100)
	if *a != *want || a.Status() != 409 || !errors.Is(a, api.ErrQuotaExceeded) {
		t.Errorf("API() = %+v, want %+v", *a, *want)
	}
}

// TestEffectiveKVQuotas: a tenant created before the configuration store
// has zero for its quotas; it is shown the defaults it gets, and quotas
// it was given stay as they are.
func TestEffectiveKVQuotas(t *testing.T) {
	old := api.Quotas{MaxInstances: 5, RequestsPerSecond: 10}
	got := Effective(old)
	if got.MaxKeys != DefaultMaxKeys || got.MaxValueBytes != DefaultMaxValueBytes || got.MaxKVBytes != DefaultMaxKVBytes {
		t.Errorf("Effective(%+v) = %+v: the configuration store quotas are not their defaults", old, got)
	}
	if got.MaxInstances != 5 || got.RequestsPerSecond != 10 {
		t.Errorf("Effective changed quotas it was given: %+v", got)
	}
	set := api.Quotas{MaxKeys: 7, MaxValueBytes: 8, MaxKVBytes: 9}
	if got := Effective(set); got.MaxKeys != 7 || got.MaxValueBytes != 8 || got.MaxKVBytes != 9 {
		t.Errorf("Effective(%+v) = %+v", set, got)
	}
}

// TestQuotaFieldsListEveryQuota: quotaFields, the one table the quota code
// walks (defaults, validation, overlay, errors), lists every field of
// api.Quotas under its wire name, in order: a quota added to api.Quotas
// and not to the table would be neither defaulted nor checked (that is,
// unlimited).
func TestQuotaFieldsListEveryQuota(t *testing.T) {
	typ := reflect.TypeOf(api.Quotas{})
	if typ.NumField() != len(quotaFields) {
		t.Fatalf("api.Quotas has %d fields, quotaFields lists %d", typ.NumField(), len(quotaFields))
	}
	for i, f := range quotaFields {
		sf := typ.Field(i)
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag != f.name {
			t.Errorf("quotaFields[%d] is %q, api.Quotas.%s is %q on the wire", i, f.name, sf.Name, tag)
		}
		var q api.Quotas
		reflect.ValueOf(&q).Elem().Field(i).SetInt(42)
		if *f.ptr(&q) != 42 {
			t.Errorf("quotaFields[%d] (%s) does not point at api.Quotas.%s", i, f.name, sf.Name)
		}
	}
}

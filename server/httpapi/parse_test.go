package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// The request decoders' fuzz targets: any input either decodes into a
// command the state machine applies without an internal error, or is a 4xx
// *api.Error. Nothing panics.

func request(method, body string, path map[string]string, query string) *http.Request {
	r := httptest.NewRequest(method, "/x?"+query, strings.NewReader(body))
	for k, v := range path {
		r.SetPathValue(k, v)
	}
	return r
}

func wantClientError(t *testing.T, err error) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("decoder error %v is not an *api.Error", err)
	}
	if s := e.Status(); s < 400 || s >= 500 {
		t.Fatalf("decoder error %v has status %d, want 4xx", e, s)
	}
}

var fuzzNow = time.UnixMilli(1_800_000_000_000)

func fuzzTenant() *fsm.Tenant {
	sm := fsm.NewTenant(fsm.TenantInfo{Name: "acme", Epoch: 1, Version: fsm.Version, Quotas: api.Quotas{MaxServices: 10, MaxInstances: 10, MaxSessions: 10, MaxMetaBytes: 4096, MinTTLMs: 3000, MaxTTLMs: 60000}})
	var ch fsm.Changes
	sm.Apply(1, fsm.Encode(fsm.OpOpenSession, fsm.OpenSession{ID: "sessA-0000000000", TTLMs: 5000, LeaseMs: 1000}), &ch)
	return sm
}

func applyOK(t *testing.T, op fsm.Op, cmd any) {
	t.Helper()
	var ch fsm.Changes
	o := fuzzTenant().Apply(2, fsm.Encode(op, cmd), &ch)
	if o.Code == api.CodeInternal {
		t.Fatalf("%s %+v: internal error %s", op, cmd, o.Message)
	}
	if e := o.Err(); e != nil && (e.Status() < 400 || e.Status() >= 500) {
		t.Fatalf("%s %+v: rejected with status %d", op, cmd, e.Status())
	}
}

func FuzzParseRegister(f *testing.F) {
	f.Add("web", "w1", `{"address":"10.0.0.1:80","weight":5,"meta":{"v":"1"}}`, "", "")
	f.Add("db", "d1", `{"address":"a","mode":"master-standby","session":"sessA-0000000000","cold_start":{"min_ready":2,"settle_ms":100}}`, "sessA-0000000000", "3")
	f.Add("db", "d1", `{"address":"a","session":"sessA-0000000000"}`, "", "7")
	f.Add("web", "w1", `{"address":"a"}`, "", "1")
	f.Add("web", "w1", `{"address":"a"}`, "sessA-0000000000", "-1")
	f.Add("web", "w1", `{"address":"a","weight":"x"}`, "", "")
	f.Add("web", "w1", `{"address":"a","nope":1}`, "", "")
	f.Add("bad name", "w1", `{}`, "", "")
	f.Add("web", "w1", `{"address":"a"} trailing`, "", "")
	f.Add("web", "w1", strings.Repeat("[", 10000), "", "")
	f.Fuzz(func(t *testing.T, svc, id, body, caller, seq string) {
		r := request(http.MethodPut, body, map[string]string{"s": svc, "id": id}, "")
		r.Header.Set(api.HeaderSession, caller)
		r.Header.Set(api.HeaderSequence, seq)
		cmd, err := parseRegister(nil, r, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpRegister, cmd)
	})
}

func FuzzParseOpenSession(f *testing.F) {
	f.Add("sessB-0000000000", `{"ttl_ms":5000,"lease_ms":1000}`)
	f.Add("sessB-0000000000", ``)
	f.Add("sessB-0000000000", `{"ttl_ms":-1}`)
	f.Add("short", `{}`)
	f.Add("sessB-0000000000", `{"ttl_ms":1e99}`)
	f.Fuzz(func(t *testing.T, id, body string) {
		cmd, err := parseOpenSession(nil, request(http.MethodPut, body, map[string]string{"id": id}, ""), fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpOpenSession, cmd)
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add("db", `{"cold_start":{"min_ready":3,"settle_ms":10000}}`)
	f.Add("db", `{}`)
	f.Add("db", `{"cold_start":{"min_ready":-1}}`)
	f.Fuzz(func(t *testing.T, svc, body string) {
		cmd, err := parsePolicy(nil, request(http.MethodPut, body, map[string]string{"s": svc}, ""), fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpSetPolicy, cmd)
	})
}

func FuzzParseResign(f *testing.F) {
	f.Add("db", `{"instance":"d1","fencing_token":1099511627778,"to":"d2"}`, "sessA-0000000000", "")
	f.Add("db", `{"instance":"d1","fencing_token":1099511627778}`, "sessA-0000000000", "2")
	f.Add("db", `{"instance":"d1","fencing_token":1099511627778}`, "", "2")
	f.Add("db", `{"instance":"d1","fencing_token":1099511627778}`, "sessA-0000000000", "0")
	f.Add("db", `{"instance":"","fencing_token":-1}`, "", "")
	f.Fuzz(func(t *testing.T, svc, body, caller, seq string) {
		r := request(http.MethodPost, body, map[string]string{"s": svc}, "")
		r.Header.Set(api.HeaderSession, caller)
		r.Header.Set(api.HeaderSequence, seq)
		cmd, err := parseResign(nil, r, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpResign, cmd)
	})
}

func FuzzParseDeregister(f *testing.F) {
	f.Add("web", "w1", "sessA-0000000000", "")
	f.Add("web", "w1", "sessA-0000000000", "9")
	f.Add("web", "w1", "", "9")
	f.Add("", "../x", "", "x")
	f.Fuzz(func(t *testing.T, svc, id, caller, seq string) {
		r := request(http.MethodDelete, "", map[string]string{"s": svc, "id": id}, "")
		r.Header.Set(api.HeaderSession, caller)
		r.Header.Set(api.HeaderSequence, seq)
		cmd, err := parseDeregister(r, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpDeregister, cmd)
	})
}

func FuzzParseCreateTenant(f *testing.F) {
	f.Add(`{"name":"acme","quotas":{"max_services":10},"secret":"AAAAAAAAAAAAAAAAAAAAAAAA"}`)
	f.Add(`{"name":"Acme"}`)
	f.Add(`{"name":"acme","quotas":{"min_ttl_ms":9000,"max_ttl_ms":4000}}`)
	f.Add(`{"name":"acme","secret":"short"}`)
	f.Fuzz(func(t *testing.T, body string) {
		c, err := parseCreateTenant(nil, request(http.MethodPost, body, nil, ""))
		if err != nil {
			wantClientError(t, err)
			return
		}
		if err := api.ValidateTenantName("name", c.name); err != nil || c.quotas.MaxServices <= 0 || !strings.HasPrefix(c.token.Reveal(), "rft_"+c.name+"_") {
			t.Fatalf("accepted a bad tenant: %+v", c)
		}
	})
}

func FuzzParseUpdateTenant(f *testing.F) {
	f.Add(`{"quotas":{"max_instances":5}}`)
	f.Add(`{"quotas":{"burst":-1}}`)
	f.Fuzz(func(t *testing.T, body string) {
		q, err := parseUpdateTenant(nil, request(http.MethodPatch, body, nil, ""), api.Quotas{MaxServices: 1, MaxInstances: 1, MaxSessions: 1,
			MaxWatchers: 1, MaxMetaBytes: 1, MinTTLMs: 3000, MaxTTLMs: 5000, RequestsPerSecond: 1, Burst: 1, WritesPerSecond: 1})
		if err != nil {
			wantClientError(t, err)
			return
		}
		if q.MaxServices <= 0 || q.Burst <= 0 || q.MinTTLMs > q.MaxTTLMs {
			t.Fatalf("accepted bad quotas %+v", q)
		}
	})
}

func FuzzParseRotate(f *testing.F) {
	f.Add("acme", `{"previous_valid_ms":0}`)
	f.Add("acme", ``)
	f.Add("acme", `{"previous_valid_ms":-5,"secret":"x"}`)
	f.Fuzz(func(t *testing.T, tenant, body string) {
		rot, err := parseRotate(nil, request(http.MethodPost, body, map[string]string{"t": tenant}, ""))
		if err != nil {
			wantClientError(t, err)
			return
		}
		if rot.previous < 0 {
			t.Fatalf("accepted a negative window %v", rot.previous)
		}
	})
}

func FuzzParseJoin(f *testing.F) {
	f.Add(`{"id":4,"raft_address":"127.0.0.1:7371","api_address":"127.0.0.1:7370"}`)
	f.Add(`{"id":0}`)
	f.Fuzz(func(t *testing.T, body string) {
		if _, err := parseJoin(nil, request(http.MethodPost, body, nil, "")); err != nil {
			wantClientError(t, err)
		}
	})
}

func FuzzParseServiceQuery(f *testing.F) {
	f.Add("web", "index=5&wait=30s&consistent=true")
	f.Add("web", "index=-1")
	f.Add("web", "wait=99999999999999999999h")
	f.Add("web", "wait=5")
	f.Add("web", "index=9&epoch=2")
	f.Add("web", "epoch=x")
	f.Fuzz(func(t *testing.T, svc, query string) {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.URL.RawQuery = query
		r.SetPathValue("s", svc)
		q, err := parseServiceQuery(r, 5*time.Minute)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if q.wait < 0 || q.wait > 5*time.Minute {
			t.Fatalf("wait %v outside [0, 5m]", q.wait)
		}
	})
}

// FuzzQueryValue: queryValue reads a query as url.ParseQuery does.
func FuzzQueryValue(f *testing.F) {
	f.Add("index=5&wait=30s&consistent=true", "wait")
	f.Add("a=1&a=2&%zz=3&b=%41+x;&b=4", "b")
	f.Add("=&&x", "")
	f.Add("&=0", "")
	f.Fuzz(func(t *testing.T, raw, name string) {
		q, _ := url.ParseQuery(raw)
		if got, want := queryValue(raw, name), q.Get(name); got != want {
			t.Fatalf("queryValue(%q, %q) = %q, want %q", raw, name, got, want)
		}
	})
}

func TestDecodeLimits(t *testing.T) {
	big := `{"address":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	_, err := parseRegister(nil, request(http.MethodPut, big, map[string]string{"s": "web", "id": "w1"}, ""), fuzzNow)
	if !errors.Is(err, api.ErrTooLarge) {
		t.Fatalf("body over 1 MiB: %v, want too_large", err)
	}
	tests := []struct {
		body, field string
	}{
		{`{"address":"a","bogus":1}`, "bogus:"},
		{`{"address":"a","weight":"heavy"}`, "weight:"},
		{`{"address":`, "body:"},
		{`not json`, "body:"},
		{``, "body:"},
	}
	for _, tt := range tests {
		_, err := parseRegister(nil, request(http.MethodPut, tt.body, map[string]string{"s": "web", "id": "w1"}, ""), fuzzNow)
		var e *api.Error
		if !errors.As(err, &e) || e.Code != api.CodeBadRequest || !strings.HasPrefix(e.Message, tt.field) {
			t.Errorf("parseRegister(%q) = %v, want bad_request naming %q", tt.body, err, tt.field)
		}
	}
}

func FuzzParseRestore(f *testing.F) {
	hash := strings.Repeat("ab", 32)
	f.Add(`{"version":1,"next_shard_id":9,"next_replica_id":30,"epochs":{"acme":2,"gone":1},"tenants":[{"name":"acme","epoch":2,"quotas":{"max_services":10},"token_hash":"` + hash + `","services":[{"name":"web","policy":{"min_ready":2,"settle_ms":100},"instances":[{"id":"p1","address":"a:1","weight":5}]}]}]}`)
	f.Add(`{"version":2,"tenants":[]}`)
	f.Add(`{"version":1,"tenants":[{"name":"acme","token_hash":"00"}]}`)
	f.Add(`{"version":1,"tenants":[{"name":"acme","token_hash":"` + hash + `","previous_token_hash":"xyz"}]}`)
	f.Add(`{"version":1,"tenants":[{"name":"a","token_hash":"` + hash + `"},{"name":"a","token_hash":"` + hash + `"}]}`)
	f.Add(`{"version":1,"tenants":[{"name":"acme","token_hash":"` + hash + `","services":[{"name":"web","instances":[{"id":"x","session_tag":"91c2e0"}]}]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		cmd, backup, _, err := parseRestore(nil, request(http.MethodPost, body, nil, ""))
		if err != nil {
			wantClientError(t, err)
			return
		}
		if len(cmd.Tenants) != len(backup) {
			t.Fatalf("%d tenants in the command, %d in the backup", len(cmd.Tenants), len(backup))
		}
		for i, rt := range cmd.Tenants {
			if api.ValidateTenantName("name", rt.Name) != nil || rt.Credentials.Current.IsZero() ||
				rt.Quotas.MaxServices <= 0 || cmd.Epochs[rt.Name] < backup[i].Epoch {
				t.Fatalf("accepted a bad tenant: %+v", rt)
			}
			for _, svc := range backup[i].Services {
				for _, in := range svc.Instances {
					if in.SessionTag != "" || api.ValidateName("id", in.ID) != nil {
						t.Fatalf("accepted a bad instance: %+v", in)
					}
				}
			}
		}
	})
}

func FuzzParseNodeID(f *testing.F) {
	f.Add("3")
	f.Add("0")
	f.Add("999")
	f.Add("1000")
	f.Add("-1")
	f.Add("x")
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodDelete, "/x", nil)
		r.SetPathValue("id", v)
		id, err := parseNodeID(r)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if id == 0 || id >= fsm.FirstReplicaID {
			t.Fatalf("accepted node ID %d from %q", id, v)
		}
	})
}

func FuzzParseSessionsQuery(f *testing.F) {
	f.Add("limit=2&start=0123456789abcdef&consistent=true")
	f.Add("limit=0")
	f.Add("limit=1001")
	f.Add("start=sess-abcdefghijklmn")
	f.Add("index=3&wait=1s")
	f.Add("")
	f.Fuzz(func(t *testing.T, query string) {
		r := request(http.MethodGet, "", nil, "")
		r.URL.RawQuery = query
		q, err := parseSessionsQuery(r)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if q.limit < 1 || q.limit > api.MaxSessionPage {
			t.Fatalf("limit %d outside [1, %d]", q.limit, api.MaxSessionPage)
		}
		if q.start != "" && !isSessionTag(q.start) {
			t.Fatalf("start %q is not a session tag", q.start)
		}
	})
}

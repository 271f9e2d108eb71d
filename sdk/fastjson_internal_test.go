package sdk

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// encodedAnswer is a service answer with every field set, as a server encodes it.
func encodedAnswer(tb testing.TB, instances int) []byte {
	tb.Helper()
	r := api.ServiceResponse{
		Index: 1 << 40, ModifyIndex: 12345, Service: "orders",
		Master: &api.Master{Instance: "i0", SessionTag: "s-0", FencingToken: 77,
			Since: time.Date(2026, 11, 26, 4, 5, 6, 789, time.UTC), Releasing: true},
		Policy: api.Policy{ColdStart: api.ColdStart{MinReady: 2, SettleMs: -1}},
	}
	for i := range instances {
		r.Instances = append(r.Instances, api.Instance{
			ID: "i" + string(rune('0'+i%10)), Address: "10.0.0.7:8080", Mode: api.Mode("farm"),
			State: api.State("ready"), Weight: i * 10, Priority: -i, Zone: "eu-1a",
			Meta:       map[string]string{"version": "1.2.3", "région": "ouest"},
			SessionTag: "tag", RegisteredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)),
		})
	}
	b, err := json.Marshal(&r)
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

// TestFastServiceTakesServerAnswers: what a server writes takes the fast
// path, and decodes as encoding/json decodes it.
func TestFastServiceTakesServerAnswers(t *testing.T) {
	for _, b := range [][]byte{
		encodedAnswer(t, 0), encodedAnswer(t, 1), encodedAnswer(t, 11),
		[]byte(`{"index":3,"modify_index":2,"service":"s","instances":[],"master":null,"policy":{"cold_start":{"min_ready":0,"settle_ms":0}}}`),
		[]byte(` { "instances" : [ { "id" : "a" } , {"id":"b","weight":0} ] } `),
	} {
		got, ok := fastService(b)
		if !ok {
			t.Fatalf("fastService refused %s", b)
		}
		want, err := slowService(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fastService(%s)\n = %+v\nwant %+v", b, got, want)
		}
	}
}

// TestFastServiceRefuses: what the fast path does not take goes to
// encoding/json, which decodes it or says why not.
func TestFastServiceRefuses(t *testing.T) {
	for _, b := range []string{
		``, `null`, `[]`, `{`, `{}x`, `{"index":1,}`, `{"index":01}`, `{"index":1.0}`, `{"index":1e3}`,
		`{"index":-1}`, `{"index":1234567890123456789}`, `{"Index":1}`, `{"index":1,"index":2}`,
		`{"service":"a\"b"}`, `{"service":"\u00e9"}`, "{\"service\":\"a\x01\"}", "{\"service\":\"\xff\"}",
		`{"extra":1}`, `{"instances":[{"id":"a","meta":null}]}`,
		`{"instances":[{"weight":null}]}`, `{"instances":[{"id":"a","id":"b"}]}`,
		`{"master":{"since":"yesterday"}}`, `{"master":{"releasing":1}}`, `{"policy":{"cold_start":{},"cold_start":{}}}`,
	} {
		if r, ok := fastService([]byte(b)); ok {
			t.Errorf("fastService(%q) took it: %+v", b, r)
		}
	}
}

// FuzzFastService: whatever the fast path takes decodes exactly as
// encoding/json decodes it.
func FuzzFastService(f *testing.F) {
	f.Add(encodedAnswer(f, 2))
	f.Add([]byte(`{"instances":[{"id":"a","meta":{"k":"v","k":"w"}},{"id":"b","weight":-3}],"master":null}`))
	f.Add([]byte(`{"master":{"instance":"a","fencing_token":9,"since":"2026-01-01T00:00:00Z","releasing":false}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := fastService(b)
		if !ok {
			return
		}
		want, err := slowService(b)
		if err != nil {
			t.Fatalf("fastService took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fastService(%q)\n = %+v\nwant %+v", b, got, want)
		}
	})
}

// BenchmarkDecodeService: one watcher's decode of an answer of 11 instances.
func BenchmarkDecodeService(b *testing.B) {
	body := encodedAnswer(b, 11)
	for _, tt := range []struct {
		name   string
		decode func([]byte) (*api.ServiceResponse, error)
	}{{"fast", decodeService}, {"encoding-json", slowService}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := tt.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

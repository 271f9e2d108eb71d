package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/stream"
	"github.com/rafting/rafting/sdk/internal/watchcache"
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
			ID: fmt.Sprintf("i%04d", i), Address: "10.0.0.7:8080", Mode: api.Mode("farm"),
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
		got, ok := fastService(b, nil)
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
		if r, ok := fastService([]byte(b), nil); ok {
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
		got, ok := fastService(b, nil)
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

// FuzzFastServiceKnown: an answer decoded with what the answer before it
// left in known decodes exactly as it does alone.
func FuzzFastServiceKnown(f *testing.F) {
	a := encodedAnswer(f, 3)
	f.Add(a, bytes.Replace(a, []byte(`"weight":0`), []byte(`"weight":1`), 1))
	f.Add(a, a[:len(a)/2])
	f.Add([]byte(`{"instances":[{"id":"a"},{"id":"b"}]}`), []byte(`{"instances":[{"id":"b"},{"id":"a"},{"id":"a"}]}`))
	f.Add([]byte(`{"instances":[{"id":"a\"}"}]}`), []byte(`{"instances":[{"id":"a\"}"},{"id":"}"}]}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var k known
		fastService(a, &k)
		got, gotOK := fastService(b, &k)
		want, wantOK := fastService(b, nil)
		if gotOK != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("after %q, fastService(%q) with known = %+v, %v\nalone %+v, %v", a, b, got, gotOK, want, wantOK)
		}
	})
}

// TestKnownInstances: a watcher's answers, each a change of the one
// before, decode with known as they decode alone, and what did not change
// is taken from known.
func TestKnownInstances(t *testing.T) {
	a := encodedAnswer(t, 11)
	changed := bytes.Replace(a, []byte(`"weight":0`), []byte(`"weight":1`), 1)
	fewer := encodedAnswer(t, 10)
	var k known
	for i, body := range [][]byte{a, changed, fewer, a, []byte(`{"instances":[{"id":"x","weight":null}]}`), a, a} {
		got, err := decodeService(body, &k)
		want, wantErr := decodeService(body, nil)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("answer %d: with known %+v, %v; alone %+v, %v", i, got, err, want, wantErr)
		}
	}
	// The last answer repeated the one before: every instance was taken
	// from known, not decoded again (they share their meta maps).
	before, _ := decodeService(a, &k)
	again, _ := decodeService(a, &k)
	for i := range again.Instances {
		if reflect.ValueOf(again.Instances[i].Meta).Pointer() != reflect.ValueOf(before.Instances[i].Meta).Pointer() {
			t.Fatalf("instance %d was decoded again", i)
		}
	}
	if fresh, _ := decodeService(a, nil); reflect.ValueOf(fresh.Instances[0].Meta).Pointer() == reflect.ValueOf(again.Instances[0].Meta).Pointer() {
		t.Fatal("an answer decoded without known shares a map with one decoded before")
	}
}

// BenchmarkDecodeService: one watcher's decode of a change to an answer of
// n instances (one instance's weight differs from the answer before): fast
// decodes every instance, known (the watch loop's way) only the changed
// one; encoding-json is for reference.
//
//	go test -run '^$' -bench DecodeService ./sdk/
func BenchmarkDecodeService(b *testing.B) {
	for _, n := range []int{11, 1000} {
		a := encodedAnswer(b, n)
		bodies := [2][]byte{a, bytes.Replace(a, []byte(`"weight":0`), []byte(`"weight":1`), 1)}
		for _, tt := range []struct {
			name   string
			decode func([]byte, *known) (*api.ServiceResponse, error)
		}{
			{"fast", func(b []byte, _ *known) (*api.ServiceResponse, error) { return decodeService(b, nil) }},
			{"known", decodeService},
			{"encoding-json", func(b []byte, _ *known) (*api.ServiceResponse, error) { return slowService(b) }},
		} {
			b.Run(fmt.Sprintf("%s/%d", tt.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(a)))
				var k known
				i := 0
				for b.Loop() {
					if _, err := tt.decode(bodies[i%2], &k); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkDecodeServiceStream: one watcher's cost of the same change on
// the client stream, the default path — the changes frame that carries the
// one changed instance decoded (encoding/json), applied to the watch's
// view, the whole service rebuilt from the view and applied to the cache —
// to be read beside BenchmarkDecodeService's, the REST blocking query's
// decode alone.
//
//	go test -run '^$' -bench 'DecodeService' ./sdk/
func BenchmarkDecodeServiceStream(b *testing.B) {
	for _, n := range []int{11, 1000} {
		var r api.ServiceResponse
		if err := json.Unmarshal(encodedAnswer(b, n), &r); err != nil {
			b.Fatal(err)
		}
		var frames [2][]byte
		for i := range frames {
			in := r.Instances[0]
			in.Weight = i
			f, err := json.Marshal(api.ServerFrame{Type: api.FrameChanges, W: 1, Index: r.Index + 1, Upsert: []api.Instance{in}})
			if err != nil {
				b.Fatal(err)
			}
			frames[i] = f
		}
		b.Run(fmt.Sprintf("delta/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var v stream.View
			v.Snapshot(&api.ServerFrame{Type: api.FrameSnapshot, Index: r.Index, Instances: r.Instances,
				Master: api.MasterUpdate{Set: true, Master: r.Master}, Policy: &r.Policy}, 1)
			c := watchcache.New(watchcache.Config{Service: "orders"})
			i := 0
			for b.Loop() {
				var f api.ServerFrame
				if err := json.Unmarshal(frames[i%2], &f); err != nil {
					b.Fatal(err)
				}
				f.Index += uint64(i)
				if err := v.Changes(&f); err != nil {
					b.Fatal(err)
				}
				if c.Apply(v.Service("orders"), 1) != watchcache.Applied {
					b.Fatal("not applied")
				}
				i++
			}
		})
	}
}

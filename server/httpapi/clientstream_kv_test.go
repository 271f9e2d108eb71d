package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// kvState is a key or subtree as a client builds it from a watch_kv's
// frames.
type kvState struct {
	index uint64
	kvs   map[string]api.KV
}

func (st *kvState) apply(t testing.TB, f api.ServerFrame) {
	t.Helper()
	if f.Index <= st.index && st.index != 0 {
		t.Fatalf("%s frame at index %d after index %d", f.Type, f.Index, st.index)
	}
	st.index = f.Index
	switch f.Type {
	case api.FrameSnapshot:
		st.kvs = map[string]api.KV{}
		for _, kv := range f.KVs {
			st.kvs[kv.Key] = kv
		}
	case api.FrameChanges:
		if len(f.Put) == 0 && len(f.Delete) == 0 {
			t.Fatalf("changes frame at %d changes nothing", f.Index)
		}
		for _, kv := range f.Put {
			st.kvs[kv.Key] = kv
		}
		for _, k := range f.Delete {
			if _, ok := st.kvs[k]; !ok {
				t.Fatalf("changes at %d delete %s, which the client does not hold", f.Index, k)
			}
			delete(st.kvs, k)
		}
	default:
		t.Fatalf("unexpected %s frame", f.Type)
	}
}

func (st *kvState) describe() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(st.kvs)) {
		kv := st.kvs[k]
		fmt.Fprintf(&b, "%s=%s@%d;", k, kv.Value, kv.ModIndex)
	}
	return b.String()
}

func describeKVs(kvs []api.KV) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s@%d;", kv.Key, kv.Value, kv.ModIndex)
	}
	return b.String()
}

// TestClientStreamWatchKV: a watch_kv of a subtree, on a follower, gets its
// result, a snapshot of the subtree, then changes in index order under
// concurrent puts and deletes inside and outside the subtree: no frame for
// a change elsewhere, none that changes nothing, every delete of a key the
// client holds, and the state the frames build at the end is what a
// consistent REST read of the subtree answers. A watch of one key sees its
// puts and its delete.
func TestClientStreamWatchKV(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 100000, RequestsPerSecond: 100000, Burst: 100000})
	leader := c.WaitTenantLeader("acme")
	follower := leader%3 + 1
	put := func(node int, key, text string) uint64 {
		r := c.Do(node, tok, http.MethodPut, "/v1/tenants/acme/kv/"+key, api.KVPutRequest{Text: &text})
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Errorf("put %s = %d %s", key, r.Status, r.Body)
			return 0
		}
		var pr api.KVPutResponse
		r.JSON(t, &pr)
		return pr.Index
	}
	put(leader, "app/a", "1")
	put(leader, "app/b/c", "1")
	put(leader, "other/x", "1")

	s := openStream(t, h2cClient(0), c.Addr(follower), "acme", tok)
	s.send(api.ClientFrame{Type: api.FrameWatchKV, Req: 1, W: 7, Key: "app", Prefix: true})
	s.send(api.ClientFrame{Type: api.FrameWatchKV, Req: 2, W: 8, Key: "app/a"})
	for req := uint64(1); req <= 2; req++ {
		r := s.result(req)
		var wr api.WatchResponse
		if err := json.Unmarshal(r.Body, &wr); err != nil || r.Status != http.StatusOK || !wr.Snapshot {
			t.Fatalf("watch_kv %d = %+v %s", req, r, r.Body)
		}
	}

	const writers, each = 4, 30
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				node := 1 + (g+i)%3
				switch i % 4 {
				case 0, 1:
					put(node, fmt.Sprintf("app/g%d/k%d", g, i%3), fmt.Sprint(i))
				case 2:
					put(node, fmt.Sprintf("other/g%d", g), fmt.Sprint(i))
				case 3:
					r := c.Do(node, tok, http.MethodDelete, fmt.Sprintf("/v1/tenants/acme/kv/app/g%d/k%d", g, (i+1)%3), nil)
					if r.Status != http.StatusOK {
						t.Errorf("delete = %d %s", r.Status, r.Body)
					}
				}
				if g == 0 && i%10 == 9 {
					put(node, "app/a", fmt.Sprint(i))
				}
			}
		}()
	}
	wg.Wait()
	last := put(leader, "app/a", "last")
	r := c.Do(leader, tok, http.MethodDelete, "/v1/tenants/acme/kv/app/a", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("delete app/a = %d %s", r.Status, r.Body)
	}
	var dr api.KVDeleteResponse
	r.JSON(t, &dr)
	end := dr.Index

	// Both watches reach the last write.
	s.wait(15*time.Second, "both watches at the last write", func(frames []recvFrame, _ bool) bool {
		var at7, at8 uint64
		for _, f := range frames {
			switch f.f.W {
			case 7:
				at7 = max(at7, f.f.Index)
			case 8:
				at8 = max(at8, f.f.Index)
			}
		}
		return at7 >= end && at8 >= end
	})
	subtree, key := &kvState{}, &kvState{}
	var keyPuts int
	for _, f := range s.snapshotFrames() {
		switch {
		case f.f.Type == api.FrameResult:
		case f.f.W == 7:
			subtree.apply(t, f.f)
			for _, kv := range append(slices.Clone(f.f.Put), f.f.KVs...) {
				if !api.InSubtree(kv.Key, "app") {
					t.Fatalf("the watch of app sent %s", kv.Key)
				}
			}
		case f.f.W == 8:
			key.apply(t, f.f)
			keyPuts += len(f.f.Put)
		}
	}
	got := c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/kv/app?prefix=true&consistent=true", nil)
	var list api.KVListResponse
	got.JSON(t, &list)
	if subtree.describe() != describeKVs(list.KVs) {
		t.Fatalf("the watch built\n%s\nREST reads\n%s", subtree.describe(), describeKVs(list.KVs))
	}
	if len(key.kvs) != 0 || keyPuts < 3 || key.index != end {
		t.Fatalf("the watch of app/a: %s at %d after %d puts, want empty at %d (last put at %d)", key.describe(), key.index, keyPuts, end, last)
	}
}

// TestClientStreamWatchKVRefusals: a watch_kv with a bad key, a field of
// another frame, or of a subtree too large for one frame is refused with
// the status and the field named, and the stream goes on.
func TestClientStreamWatchKVRefusals(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{MaxValueBytes: 64 << 10, MaxKVBytes: 1 << 20})
	big := strings.Repeat("x", 60<<10)
	for i := range 5 {
		r := c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/kv/big/%d", i), api.KVPutRequest{Text: &big})
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Fatalf("put = %d %s", r.Status, r.Body)
		}
	}
	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)
	for i, tc := range []struct {
		frame  string
		status int
		field  string
	}{
		{`{"type":"watch_kv","req":%d,"w":1}`, 400, "key"},
		{`{"type":"watch_kv","req":%d,"w":1,"key":"a//b"}`, 400, "key"},
		{`{"type":"watch_kv","req":%d,"key":"a"}`, 400, "w"},
		{`{"type":"watch_kv","req":%d,"w":1,"key":"a","service":"web"}`, 400, "service"},
		{`{"type":"watch","req":%d,"w":1,"service":"web","key":"a"}`, 400, "key"},
		{`{"type":"watch_kv","req":%d,"w":1,"key":"big","prefix":true}`, 413, "key"},
	} {
		req := uint64(i + 1)
		s.send(fmt.Sprintf(tc.frame, req))
		r := s.result(req)
		if r.Status != tc.status || !strings.Contains(string(r.Body), tc.field) {
			t.Errorf("%s = %d %s, want %d naming %s", tc.frame, r.Status, r.Body, tc.status, tc.field)
		}
	}
	// The stream goes on: a watch of everything else works.
	s.send(api.ClientFrame{Type: api.FrameWatchKV, Req: 100, W: 2, Key: "big/1"})
	if r := s.result(100); r.Status != http.StatusOK {
		t.Fatalf("watch_kv big/1 = %d %s", r.Status, r.Body)
	}
	s.wait(5*time.Second, "big/1's snapshot", func(frames []recvFrame, _ bool) bool {
		for _, f := range frames {
			if f.f.Type == api.FrameSnapshot && f.f.W == 2 && len(f.f.KVs) == 1 && f.f.KVs[0].Key == "big/1" {
				return true
			}
		}
		return false
	})
}

// TestClientStreamKVWrites: put_kv, kv_txn and delete_kv frames are the
// REST PUT of a key, POST kv:txn and DELETE of a key or subtree on the
// stream — the same answers (201 then 200 with the key's indexes, 409 on a
// failed compare-and-set or compare), the same refusals (400 naming the
// field: a bad key, a field the type does not take), and what they wrote
// is what REST reads.
func TestClientStreamKVWrites(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	leader := c.WaitTenantLeader("acme")
	s := openStream(t, h2cClient(0), c.Addr(leader), "acme", tok)
	body := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	text := func(s string) *string { return &s }

	s.send(api.ClientFrame{Type: api.FramePutKV, Req: 1, Key: "app/flag", Body: body(api.KVPutRequest{Text: text("on")})})
	r := s.result(1)
	var put api.KVPutResponse
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &put) != nil || put.KV.Version != 1 || put.Index == 0 {
		t.Fatalf("put_kv = %d %s, want 201 with version 1", r.Status, r.Body)
	}
	stale := uint64(0) // "must not exist": it does now
	s.send(api.ClientFrame{Type: api.FramePutKV, Req: 2, Key: "app/flag", Body: body(api.KVPutRequest{Text: text("off"), IfIndex: &stale})})
	if r := s.result(2); r.Status != http.StatusConflict {
		t.Fatalf("put_kv with a stale if_index = %d %s, want 409", r.Status, r.Body)
	}
	mod := put.KV.ModIndex
	s.send(api.ClientFrame{Type: api.FrameKVTxn, Req: 3, Body: body(api.KVTxnRequest{
		Compare: []api.KVCompare{{Key: "app/flag", ModIndex: &mod}},
		Put:     []api.KVTxnPut{{Key: "app/flag", Text: text("off")}, {Key: "app/other", Text: text("1")}}})})
	if r := s.result(3); r.Status != http.StatusOK {
		t.Fatalf("kv_txn = %d %s, want 200", r.Status, r.Body)
	}
	s.send(api.ClientFrame{Type: api.FrameKVTxn, Req: 4, Body: body(api.KVTxnRequest{
		Compare: []api.KVCompare{{Key: "app/flag", ModIndex: &mod}}, Put: []api.KVTxnPut{{Key: "app/flag", Text: text("again")}}})})
	if r := s.result(4); r.Status != http.StatusConflict {
		t.Fatalf("kv_txn with a stale compare = %d %s, want 409", r.Status, r.Body)
	}
	for _, key := range []string{"app/flag", "app/other"} {
		var got api.KVResponse
		c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/kv/"+key+"?consistent=true", nil).JSON(t, &got)
		want := map[string]string{"app/flag": "off", "app/other": "1"}[key]
		if got.KV.Text == nil || *got.KV.Text != want {
			t.Errorf("REST reads %s = %+v, want %q", key, got.KV, want)
		}
	}

	// delete_kv: a stale if_index is refused, the right one deletes, a
	// prefix deletes the subtree.
	var flag api.KVResponse
	c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/kv/app/flag?consistent=true", nil).JSON(t, &flag)
	s.send(api.ClientFrame{Type: api.FrameDeleteKV, Req: 5, Key: "app/flag", IfIndex: &mod})
	if r := s.result(5); r.Status != http.StatusConflict {
		t.Fatalf("delete_kv with a stale if_index = %d %s, want 409", r.Status, r.Body)
	}
	now := flag.KV.ModIndex
	s.send(api.ClientFrame{Type: api.FrameDeleteKV, Req: 6, Key: "app/flag", IfIndex: &now})
	var del api.KVDeleteResponse
	if r := s.result(6); r.Status != http.StatusOK || json.Unmarshal(r.Body, &del) != nil || del.Deleted != 1 {
		t.Fatalf("delete_kv at the key's mod_index = %d %s, want 200 deleting 1", r.Status, r.Body)
	}
	s.send(api.ClientFrame{Type: api.FramePutKV, Req: 7, Key: "app/x/1", Body: body(api.KVPutRequest{Text: text("1")})})
	s.result(7)
	s.send(api.ClientFrame{Type: api.FrameDeleteKV, Req: 8, Key: "app", Prefix: true})
	if r := s.result(8); r.Status != http.StatusOK || json.Unmarshal(r.Body, &del) != nil || del.Deleted != 2 {
		t.Fatalf("delete_kv of the subtree app = %d %s, want 200 deleting app/other and app/x/1", r.Status, r.Body)
	}
	for _, key := range []string{"app/flag", "app/other", "app/x/1"} {
		if r := c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/kv/"+key+"?consistent=true", nil); r.Status != http.StatusNotFound {
			t.Errorf("REST reads %s after the deletes: %d %s, want 404", key, r.Status, r.Body)
		}
	}

	for _, tc := range []struct {
		f     api.ClientFrame
		field string
	}{
		{api.ClientFrame{Type: api.FrameDeleteKV, Req: 13, Key: "../x"}, "key"},
		{api.ClientFrame{Type: api.FrameDeleteKV, Req: 14, Key: "app", Prefix: true, IfIndex: &now}, "if_index"},
		{api.ClientFrame{Type: api.FramePutKV, Req: 15, Key: "a", IfIndex: &now, Body: body(api.KVPutRequest{Text: text("1")})}, "if_index"},
		{api.ClientFrame{Type: api.FrameDeleteKV, Req: 16, Key: "a", Body: body(api.KVPutRequest{})}, "body"},
		{api.ClientFrame{Type: api.FramePutKV, Req: 10, Key: "../x", Body: body(api.KVPutRequest{Text: text("1")})}, "key"},
		{api.ClientFrame{Type: api.FramePutKV, Req: 11, Key: "a", Service: "web", Body: body(api.KVPutRequest{Text: text("1")})}, "service"},
		{api.ClientFrame{Type: api.FrameKVTxn, Req: 12, Key: "a", Body: body(api.KVTxnRequest{})}, "key"},
	} {
		s.send(tc.f)
		r := s.result(tc.f.Req)
		var eb api.ErrorBody
		if r.Status != http.StatusBadRequest || json.Unmarshal(r.Body, &eb) != nil || !strings.Contains(eb.Error.Message, tc.field) {
			t.Errorf("%s with a bad %s = %d %s, want 400 naming it", tc.f.Type, tc.field, r.Status, r.Body)
		}
	}
	// The stream lives on.
	s.send(api.ClientFrame{Type: api.FramePutKV, Req: 20, Key: "app/flag", Body: body(api.KVPutRequest{Text: text("on")})})
	if r := s.result(20); r.Status != http.StatusCreated {
		t.Fatalf("put_kv after the refusals = %d %s", r.Status, r.Body)
	}
}

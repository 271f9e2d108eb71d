package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// The configuration store through the REST API, on real clusters.

func kvPath(tenant, key string) string { return "/v1/tenants/" + tenant + "/kv/" + key }

// kvApplied is a tenant replica's applied index on a node, once the
// tenant's own entries (a new leader's barrier, its quotas from the meta
// shard, which the reconciler proposes when it comes round) are in.
func kvApplied(t *testing.T, c *servertest.Cluster, node int, tenant string) uint64 {
	t.Helper()
	servertest.Eventually(t, 20*time.Second, "the tenant's quotas to reach its shard", func() bool {
		tr, ok := c.Server(node).Node().Tenant(tenant)
		if !ok {
			return false
		}
		_, v := tr.SM.Quotas()
		rec, ok := c.Server(node).Node().Meta().Tenant(tenant)
		return ok && v >= rec.QuotasVersion
	})
	return settled(t, 300*time.Millisecond, func() uint64 { return tenantApplied(c, node, tenant) })
}

// kvDo sends a request with a raw body and headers (a Content-Type among
// them, or none).
func kvDo(t *testing.T, c *servertest.Cluster, node int, tok, method, path string, body []byte, header http.Header) *servertest.Response {
	t.Helper()
	var b any
	if body != nil {
		b = body
	}
	r, err := c.DoErr(context.Background(), node, tok, method, path, b, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

func kvGet(t *testing.T, c *servertest.Cluster, node int, tok, path string) (api.KVResponse, *servertest.Response) {
	t.Helper()
	r := c.Do(node, tok, http.MethodGet, path, nil)
	var kv api.KVResponse
	if r.Status == http.StatusOK {
		r.JSON(t, &kv)
	}
	return kv, r
}

func wantStatus(t *testing.T, r *servertest.Response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %d %s, want %d", r.Status, r.Body, status)
	}
}

// TestKVAPI runs the store's REST contract: raw and JSON bodies, CAS,
// reads of one key (JSON and raw) and of subtrees with pages, deletes,
// transactions, and the answers of every refusal — with nothing proposed
// for a request refused at the edge (the applied index stays put).
func TestKVAPI(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	p := func(key string) string { return kvPath("acme", key) }

	// A raw body is the value; the answer is the key as written.
	r := kvDo(t, c, 1, tok, http.MethodPut, p("app/flag"), []byte("on"), nil)
	wantStatus(t, r, http.StatusCreated)
	var put api.KVPutResponse
	r.JSON(t, &put)
	if put.KV.Key != "app/flag" || string(put.KV.Value) != "on" || *put.KV.Text != "on" || put.KV.Version != 1 ||
		put.KV.CreateIndex != put.Index || put.KV.ModIndex != put.Index || r.Header.Get(api.HeaderIndex) != strconv.FormatUint(put.Index, 10) {
		t.Fatalf("put answered %s", r.Body)
	}
	first := put.Index

	// JSON bodies: text or value (base64), and if_index in the body.
	r = kvDo(t, c, 2, tok, http.MethodPut, p("app/flag"), fmt.Appendf(nil, `{"text":"off","if_index":%d}`, first), jsonHeader)
	wantStatus(t, r, http.StatusOK)
	r.JSON(t, &put)
	if put.KV.Version != 2 || put.KV.CreateIndex != first || put.KV.ModIndex <= first {
		t.Fatalf("CAS put answered %s", r.Body)
	}
	binary := []byte{0, 0xff, 0xfe, '\n'}
	r = kvDo(t, c, 3, tok, http.MethodPut, p("app/bin"), fmt.Appendf(nil, `{"value":%q}`, base64.StdEncoding.EncodeToString(binary)), jsonHeader)
	wantStatus(t, r, http.StatusCreated)
	kv, r := kvGet(t, c, 3, tok, p("app/bin"))
	if !bytes.Equal(kv.KV.Value, binary) || kv.KV.Text != nil || !strings.Contains(string(r.Body), `"value":"AP/+Cg=="`) {
		t.Fatalf("a binary value reads %s", r.Body)
	}
	// A JSON document stored as raw bytes is stored as it is.
	r = kvDo(t, c, 1, tok, http.MethodPut, p("app/doc"), []byte(`{"limit": 5}`), http.Header{"Content-Type": {"application/octet-stream"}})
	wantStatus(t, r, http.StatusCreated)
	kv, _ = kvGet(t, c, 1, tok, p("app/doc")+"?consistent=true")
	if string(kv.KV.Value) != `{"limit": 5}` || *kv.KV.Text != `{"limit": 5}` {
		t.Fatalf("the raw JSON document reads %+v", kv.KV)
	}
	// Raw read: the value as the body, the mod_index in a header.
	r = c.Do(1, tok, http.MethodGet, p("app/doc")+"?raw=true", nil)
	if r.Status != http.StatusOK || string(r.Body) != `{"limit": 5}` || r.Header.Get(api.HeaderModIndex) != strconv.FormatUint(kv.KV.ModIndex, 10) {
		t.Fatalf("raw read = %d %q %v", r.Status, r.Body, r.Header)
	}

	// CAS refusals name the key's mod_index now; nothing is proposed.
	base := kvApplied(t, c, 2, "acme")
	r = kvDo(t, c, 2, tok, http.MethodPut, p("app/flag")+"?if_index=1", []byte("x"), nil)
	wantErr(t, r, http.StatusConflict, api.CodeConflict)
	if e := r.Err(); e.Conflict == nil || e.Conflict.Key != "app/flag" || e.Conflict.ModIndex != mustMod(t, c, tok, "app/flag") || e.Conflict.Compare != nil {
		t.Fatalf("CAS conflict %s", r.Body)
	}
	r = kvDo(t, c, 2, tok, http.MethodPut, p("app/flag")+"?if_index=0", []byte("x"), nil)
	wantErr(t, r, http.StatusConflict, api.CodeConflict)
	// A missing key: 404, with the index to block on.
	_, r = kvGet(t, c, 2, tok, p("app/none"))
	wantErr(t, r, http.StatusNotFound, api.CodeNotFound)
	if r.Header.Get(api.HeaderIndex) == "" {
		t.Fatal("a missing key's 404 carries no X-Rafting-Index")
	}
	if after := kvApplied(t, c, 2, "acme"); after != base {
		t.Fatalf("refused CAS writes moved the applied index from %d to %d", base, after)
	}

	// Subtrees: the key itself and what is under it, never a sibling
	// with the same string prefix; pages by limit and start.
	for _, k := range []string{"app", "app-x", "app/db/url", "app/db/user"} {
		wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, p(k), []byte(k), nil), http.StatusCreated)
	}
	var list api.KVListResponse
	r = c.Do(1, tok, http.MethodGet, p("app")+"?prefix=true&consistent=true", nil)
	r.JSON(t, &list)
	if got := kvKeys(list.KVs); got != "app app/bin app/db/url app/db/user app/doc app/flag" || list.Next != "" {
		t.Fatalf("subtree app = %s next %q", got, list.Next)
	}
	r = c.Do(1, tok, http.MethodGet, p("app")+"?prefix=true&limit=2&start=app/db", nil)
	r.JSON(t, &list)
	if got := kvKeys(list.KVs); got != "app/db/url app/db/user" || list.Next != "app/doc" {
		t.Fatalf("page of app from app/db = %s next %q", got, list.Next)
	}
	r = c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/kv?prefix=true&limit=1", nil)
	r.JSON(t, &list)
	if got := kvKeys(list.KVs); got != "app" || list.Next != "app-x" {
		t.Fatalf("first page of everything = %s next %q (%s)", got, list.Next, r.Body)
	}

	// Deletes: CAS, missing, subtree.
	r = c.Do(1, tok, http.MethodDelete, p("app/db/url")+"?if_index=1", nil)
	wantErr(t, r, http.StatusConflict, api.CodeConflict)
	var del api.KVDeleteResponse
	r = c.Do(1, tok, http.MethodDelete, p("app/db/url"), nil)
	r.JSON(t, &del)
	if r.Status != http.StatusOK || del.Deleted != 1 {
		t.Fatalf("delete = %d %s", r.Status, r.Body)
	}
	r = c.Do(1, tok, http.MethodDelete, p("app/db/url"), nil)
	r.JSON(t, &del)
	if r.Status != http.StatusOK || del.Deleted != 0 {
		t.Fatalf("delete of a missing key = %d %s", r.Status, r.Body)
	}
	r = c.Do(1, tok, http.MethodDelete, p("app/db")+"?prefix=true", nil)
	r.JSON(t, &del)
	if r.Status != http.StatusOK || del.Deleted != 1 {
		t.Fatalf("subtree delete = %d %s", r.Status, r.Body)
	}

	// Transactions: all or nothing; the failed compare is named.
	flag := mustMod(t, c, tok, "app/flag")
	txn := fmt.Sprintf(`{"compare":[{"key":"app/flag","mod_index":%d},{"key":"app/none","exists":false},{"key":"app","text":"app"}],
		"put":[{"key":"app/flag","text":"rolled"},{"key":"app/new","value":"eA=="}],"delete":[{"key":"app-x"}]}`, flag)
	base = kvApplied(t, c, 3, "acme")
	bad := strings.Replace(txn, `"text":"app"`, `"text":"nope"`, 1)
	r = c.Do(3, tok, http.MethodPost, "/v1/tenants/acme/kv:txn", bad)
	wantErr(t, r, http.StatusConflict, api.CodeConflict)
	if e := r.Err(); e.Conflict == nil || e.Conflict.Compare == nil || *e.Conflict.Compare != 2 || e.Conflict.Key != "app" {
		t.Fatalf("failed txn answered %s", r.Body)
	}
	if after := kvApplied(t, c, 3, "acme"); after != base {
		t.Fatalf("a failed transaction moved the applied index from %d to %d", base, after)
	}
	if _, r := kvGet(t, c, 3, tok, p("app/new")); r.Status != http.StatusNotFound {
		t.Fatal("a failed transaction put a key")
	}
	var tx api.KVTxnResponse
	r = c.Do(3, tok, http.MethodPost, "/v1/tenants/acme/kv:txn", txn)
	r.JSON(t, &tx)
	if r.Status != http.StatusOK || !tx.Succeeded {
		t.Fatalf("txn = %d %s", r.Status, r.Body)
	}
	for key, want := range map[string]string{"app/flag": "rolled", "app/new": "x"} {
		kv, _ := kvGet(t, c, 3, tok, p(key))
		if string(kv.KV.Value) != want || kv.KV.ModIndex != tx.Index {
			t.Fatalf("after the txn %s = %+v, want %q at %d", key, kv.KV, want, tx.Index)
		}
	}
	if _, r := kvGet(t, c, 3, tok, p("app-x")); r.Status != http.StatusNotFound {
		t.Fatal("the txn's delete did not apply")
	}

	// Every refusal at the edge, on every node: 400 naming the field (or
	// 413 naming the value), and nothing proposed.
	before := [4]uint64{0, kvApplied(t, c, 1, "acme"), kvApplied(t, c, 2, "acme"), kvApplied(t, c, 3, "acme")}
	long := strings.Repeat("a", api.MaxKeyLen+1)
	deep := strings.Repeat("a/", api.MaxKeySegments) + "a"
	refusals := []struct {
		method, path string
		body         []byte
		header       http.Header
		status       int
		field        string
	}{
		{http.MethodPut, p("a/b%20c"), []byte("x"), nil, 400, "key"},
		{http.MethodPut, p(long), []byte("x"), nil, 400, "key"},
		{http.MethodPut, p(deep), []byte("x"), nil, 400, "key"},
		{http.MethodPut, p("a//b"), []byte("x"), nil, 400, "path"},
		{http.MethodPut, p("a/../b"), []byte("x"), nil, 400, "path"},
		{http.MethodPut, p("a/.%2e/b"), []byte("x"), nil, 400, "path"},
		{http.MethodPut, p("a/b/"), []byte("x"), nil, 400, "key"},
		{http.MethodPut, p("a") + "?if_index=x", []byte("x"), nil, 400, "if_index"},
		{http.MethodPut, p("a") + "?session=short", []byte("x"), nil, 400, "session"},
		{http.MethodPut, p("a"), []byte(`{"text":"x","value":"eA=="}`), jsonHeader, 400, "value"},
		{http.MethodPut, p("a"), []byte(`{"txt":"x"}`), jsonHeader, 400, "txt"},
		{http.MethodPut, p("a"), []byte(`{}`), jsonHeader, 400, "value"},
		{http.MethodPut, p("a"), bytes.Repeat([]byte("v"), tenants.DefaultMaxValueBytes+1), nil, 413, "value"},
		{http.MethodPut, p("a"), fmt.Appendf(nil, `{"value":%q}`, base64.StdEncoding.EncodeToString(make([]byte, tenants.DefaultMaxValueBytes+1))), jsonHeader, 413, "value"},
		{http.MethodDelete, p("a") + "?prefix=true&if_index=3", nil, nil, 400, "if_index"},
		{http.MethodDelete, "/v1/tenants/acme/kv/?prefix=true", nil, nil, 400, "key"},
		{http.MethodGet, p("a") + "?prefix=true&limit=0", nil, nil, 400, "limit"},
		{http.MethodGet, p("a") + "?prefix=true&raw=true", nil, nil, 400, "raw"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"compare":[{"key":"a","mod_index":1,"exists":true}],"put":[{"key":"a","text":""}]}`), nil, 400, "compare[0]"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"put":[{"key":"a","text":""}],"delete":[{"key":"a"}]}`), nil, 400, "delete[0].key"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"put":[{"key":"a/","text":""}]}`), nil, 400, "put[0].key"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"put":[` + strings.Repeat(`{"key":"a","text":""},`, api.MaxTxnOps) + `{"key":"b","text":""}]}`), nil, 400, "compare"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"compare":[{"key":"a","exists":true}]}`), nil, 400, "put"},
		{http.MethodPost, "/v1/tenants/acme/kv:txn", []byte(`{"put":[{"key":"a","text":"` + strings.Repeat("v", tenants.DefaultMaxValueBytes+1) + `"}]}`), nil, 413, "put[0].value"},
	}
	for i, tt := range refusals {
		node := i%3 + 1
		was := tenantApplied(c, node, "acme")
		r := kvDo(t, c, node, tok, tt.method, tt.path, tt.body, tt.header)
		if now := tenantApplied(c, node, "acme"); now != was {
			t.Errorf("%s %s moved the applied index: %d %s", tt.method, tt.path, r.Status, r.Body)
		}
		e := r.Err()
		if r.Status != tt.status || e == nil || !strings.HasPrefix(e.Message, tt.field+": ") {
			t.Errorf("%s %s = %d %s, want %d naming %s", tt.method, tt.path, r.Status, r.Body, tt.status, tt.field)
		}
		if tt.status == 413 && (e.Quota != tenants.QuotaMaxValueBytes || e.Limit != tenants.DefaultMaxValueBytes) {
			t.Errorf("413 of %s %s names no quota: %s", tt.method, tt.path, r.Body)
		}
	}
	for node := 1; node <= 3; node++ {
		if after := kvApplied(t, c, node, "acme"); after != before[node] {
			t.Fatalf("refused requests moved node %d's applied index from %d to %d", node, before[node], after)
		}
	}
	// The usage shows the store.
	if u := usage(t, c, 2, "acme"); u.Keys != 5 || u.KVBytes == 0 {
		t.Fatalf("usage %+v, want 5 keys", u)
	}
}

func mustMod(t *testing.T, c *servertest.Cluster, tok, key string) uint64 {
	t.Helper()
	kv, r := kvGet(t, c, 1, tok, kvPath("acme", key)+"?consistent=true")
	wantStatus(t, r, http.StatusOK)
	return kv.KV.ModIndex
}

func kvKeys(kvs []api.KV) string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	return strings.Join(keys, " ")
}

// TestKVQuotas: max_keys and max_kv_bytes exactly at the limit accepted,
// one more refused 409 quota_exceeded {quota, limit, used}; max_value_bytes
// exactly accepted, one byte more 413 as the body arrives; raising a quota
// lets the same write through; a refused write is never proposed.
func TestKVQuotas(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	// 3 keys; each key "k/N" with 10 bytes of value costs 3+10+KVEntryCost.
	entry := int64(3 + 10 + tenants.KVEntryCost)
	tok := c.CreateTenant("acme", api.Quotas{MaxKeys: 3, MaxValueBytes: 10, MaxKVBytes: 3*entry - 1})
	put := func(node int, key string, n int) *servertest.Response {
		return kvDo(t, c, node, tok, http.MethodPut, kvPath("acme", key), bytes.Repeat([]byte("v"), n), nil)
	}
	wantStatus(t, put(1, "k/1", 10), http.StatusCreated)
	wantStatus(t, put(2, "k/2", 10), http.StatusCreated)
	// The third key of 10 bytes would be one byte over max_kv_bytes; each
	// refusal is answered without a proposal (the applied index stays at
	// the last accepted write's).
	applied := func(want uint64) {
		t.Helper()
		if got := tenantApplied(c, 3, "acme"); got != want {
			t.Fatalf("node 3's applied index is %d, want %d: a refused write was proposed", got, want)
		}
	}
	before := kvApplied(t, c, 3, "acme")
	wantQuota(t, put(3, "k/3", 10), "max_kv_bytes", 3*entry-1, 2*entry)
	applied(before)
	r := put(3, "k/3", 9) // exactly at the limit
	wantStatus(t, r, http.StatusCreated)
	at, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
	applied(at)
	// A fourth key is one over max_keys.
	wantQuota(t, put(3, "k/4", 0), "max_keys", 3, 3)
	applied(at)
	// A value one byte over max_value_bytes: 413 as it arrives.
	r = put(3, "k/1", 11)
	wantErr(t, r, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	if e := r.Err(); e.Quota != "max_value_bytes" || e.Limit != 10 || !strings.HasPrefix(e.Message, "value: ") {
		t.Fatalf("oversize value answered %s", r.Body)
	}
	applied(at)
	// Shrinking is always allowed; raising the quotas lets writes through.
	wantStatus(t, put(2, "k/3", 0), http.StatusOK)
	patchQuotas(t, c, "acme", api.Quotas{MaxKeys: 4, MaxValueBytes: 11, MaxKVBytes: 10_000})
	servertest.Eventually(t, 10*time.Second, "the raised quotas to apply", func() bool {
		return put(1, "k/4", 0).Status == http.StatusCreated
	})
	wantStatus(t, put(1, "k/1", 11), http.StatusOK)
	if u := usage(t, c, 1, "acme"); u.Keys != 4 {
		t.Fatalf("usage %+v, want 4 keys", u)
	}
}

// TestKVCASRace: in every round, clients on every node compare-and-set
// one key from the same mod_index at once: exactly one wins, the others
// get 409 with the winner's mod_index, and the key holds the winner's
// value at the winner's index.
func TestKVCASRace(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 10_000, RequestsPerSecond: 10_000, Burst: 10_000})
	const clients, rounds = 6, 40
	r := kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", "race"), []byte("start"), nil)
	wantStatus(t, r, http.StatusCreated)
	var put api.KVPutResponse
	r.JSON(t, &put)
	mod := put.Index
	for round := range rounds {
		type result struct {
			client int
			status int
			index  uint64
			seen   uint64
		}
		results := make(chan result, clients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for cl := range clients {
			wg.Go(func() {
				<-start
				node := cl%3 + 1
				r, err := c.DoErr(context.Background(), node, tok, http.MethodPut,
					fmt.Sprintf("%s?if_index=%d", kvPath("acme", "race"), mod), fmt.Appendf(nil, "r%d-c%d", round, cl), nil)
				if err != nil {
					t.Errorf("client %d: %v", cl, err)
					return
				}
				res := result{client: cl, status: r.Status}
				switch r.Status {
				case http.StatusOK:
					var p api.KVPutResponse
					r.JSON(t, &p)
					res.index = p.Index
				case http.StatusConflict:
					if e := r.Err(); e.Conflict != nil {
						res.seen = e.Conflict.ModIndex
					}
				default:
					t.Errorf("client %d in round %d: %d %s", cl, round, r.Status, r.Body)
				}
				results <- res
			})
		}
		close(start)
		wg.Wait()
		close(results)
		var winners []result
		var losers []result
		for res := range results {
			if res.status == http.StatusOK {
				winners = append(winners, res)
			} else {
				losers = append(losers, res)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners of one CAS from mod_index %d: %+v", round, len(winners), mod, winners)
		}
		w := winners[0]
		for _, l := range losers {
			// A loser is told the key's mod_index is the winner's.
			if l.seen != w.index {
				t.Fatalf("round %d: a loser was told mod_index %d; the winner wrote at %d over %d", round, l.seen, w.index, mod)
			}
		}
		kv, _ := kvGet(t, c, round%3+1, tok, kvPath("acme", "race")+"?consistent=true")
		if want := fmt.Sprintf("r%d-c%d", round, w.client); string(kv.KV.Value) != want || kv.KV.ModIndex != w.index {
			t.Fatalf("round %d: the key holds %q at %d, the winner wrote %q at %d", round, kv.KV.Value, kv.KV.ModIndex, want, w.index)
		}
		if kv.KV.Version != uint64(round+2) {
			t.Fatalf("round %d: version %d, want %d (one write a round)", round, kv.KV.Version, round+2)
		}
		mod = w.index
	}
}

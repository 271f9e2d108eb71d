package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// kvAll reads every key of a tenant, page by page.
func kvAll(t *testing.T, c *servertest.Cluster, node int, tok, tenant string) []api.KV {
	t.Helper()
	var out []api.KV
	start := ""
	for {
		var l api.KVListResponse
		r := c.Do(node, tok, http.MethodGet, "/v1/tenants/"+tenant+"/kv?prefix=true&consistent=true&limit=50&start="+start, nil)
		wantStatus(t, r, http.StatusOK)
		r.JSON(t, &l)
		out = append(out, l.KVs...)
		if l.Next == "" {
			return out
		}
		start = l.Next
	}
}

// TestKVBackupRestore: a backup holds a tenant's permanent keys, values
// byte for byte, and no ephemeral one; a restore into a new cluster puts
// them all back (in transactions of 64), again as a retry; a backup with
// a bad key, an ephemeral key or keys over the quotas is refused whole.
func TestKVBackupRestore(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	tok := old.CreateTenant("acme", api.Quotas{MaxKeys: 200, WritesPerSecond: 10_000, RequestsPerSecond: 10_000, Burst: 10_000})
	const n = 150
	for i := range n {
		value := fmt.Appendf(nil, "value %d", i)
		if i%10 == 0 {
			value = []byte{byte(i), 0xff, 0}
		}
		wantStatus(t, kvDo(t, old, i%3+1, tok, http.MethodPut, kvPath("acme", fmt.Sprintf("cfg/k%03d", i)), value, nil), http.StatusCreated)
	}
	kvOpen(t, old, tok, kvSess, api.SessionRequest{TTLMs: 10_000})
	putEphemeral(t, old, 1, tok, "jobs/owner", kvSess)
	want := kvAll(t, old, 2, tok, "acme")
	if len(want) != n+1 {
		t.Fatalf("%d keys before the backup, want %d", len(want), n+1)
	}

	r := old.Do(3, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	wantStatus(t, r, http.StatusOK)
	backup := r.Body
	var b api.Backup
	r.JSON(t, &b)
	if len(b.Tenants) != 1 || len(b.Tenants[0].KV) != n {
		t.Fatalf("the backup holds %d keys, want the %d permanent ones", len(b.Tenants[0].KV), n)
	}
	for _, kv := range b.Tenants[0].KV {
		if kv.Key == "jobs/owner" || kv.SessionTag != "" {
			t.Fatalf("the backup holds the ephemeral key %+v", kv)
		}
	}

	c := servertest.Start(t, servertest.Options{})
	var res api.RestoreResponse
	r = c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res.Keys != n {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}
	check := func(version uint64) {
		t.Helper()
		got := kvAll(t, c, 3, tok, "acme")
		if len(got) != n {
			t.Fatalf("%d keys after the restore, want %d", len(got), n)
		}
		for i, kv := range got {
			w := want[i]
			if kv.Key != w.Key || !bytes.Equal(kv.Value, w.Value) || kv.Version != version || kv.SessionTag != "" {
				t.Fatalf("restored %s = %q v%d, backed up %s = %q", kv.Key, kv.Value, kv.Version, w.Key, w.Value)
			}
		}
	}
	check(1)
	// Again: the tenant holds the backup's keys already, and a retry
	// leaves it alone (the keys stay at version 1).
	r = c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	wantStatus(t, r, http.StatusOK)
	res = api.RestoreResponse{}
	if r.JSON(t, &res); res.Unchanged != 1 || res.Keys != 0 {
		t.Fatalf("restore again = %s, want acme unchanged", r.Body)
	}
	check(1)

	// Bad backups are refused whole, naming what is wrong.
	edit := func(f func(kvs []any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(backup, &m)
		ten := m["tenants"].([]any)[0].(map[string]any)
		f(ten["kv"].([]any))
		out, _ := json.Marshal(m)
		return out
	}
	for _, tt := range []struct {
		body   []byte
		status int
		says   string
	}{
		{edit(func(kvs []any) { kvs[3].(map[string]any)["key"] = "a//b" }), 400, "tenants[0].kv[3].key"},
		{edit(func(kvs []any) { kvs[3].(map[string]any)["key"] = "cfg/k000" }), 400, "named twice"},
		{edit(func(kvs []any) { kvs[5].(map[string]any)["session_tag"] = "0a6047c4b549e9a8" }), 400, "tenants[0].kv[5].session_tag"},
		{edit(func(kvs []any) { kvs[1].(map[string]any)["text"] = "not the value" }), 400, "tenants[0].kv[1].text"},
		{bytes.Replace(backup, []byte(`"max_keys":200`), []byte(`"max_keys":100`), 1), 409, "max_keys"},
	} {
		r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", tt.body)
		if r.Status != tt.status || !strings.Contains(string(r.Body), tt.says) {
			t.Errorf("restore of a bad backup = %d %s, want %d saying %s", r.Status, r.Body, tt.status, tt.says)
		}
	}
}

// TestKVSnapshotCatchUp: a node that was down while the log was compacted
// catches up from a snapshot and holds the same store — keys, indexes,
// subtree indexes, an ephemeral key with its owner — as the others, and
// after a restart of its own, from its own snapshot, still does.
func TestKVSnapshotCatchUp(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.SnapshotEntries, cfg.CompactionOverhead = 20, 5
	}})
	tok := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 10_000, RequestsPerSecond: 10_000, Burst: 10_000})
	for i := range 10 {
		wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", fmt.Sprintf("a/k%d", i)), []byte("v"), nil), http.StatusCreated)
	}
	c.StopNode(3)
	kvOpen(t, c, tok, kvSess, api.SessionRequest{TTLMs: 60_000})
	putEphemeral(t, c, 1, tok, "jobs/owner", kvSess)
	for i := range 100 {
		key := fmt.Sprintf("b/k%d/x", i%30)
		if r := kvDo(t, c, i%2+1, tok, http.MethodPut, kvPath("acme", key), fmt.Appendf(nil, "%d", i), nil); r.Status >= 300 {
			t.Fatalf("put %s = %d %s", key, r.Status, r.Body)
		}
	}
	if r := c.Do(1, tok, http.MethodDelete, kvPath("acme", "a")+"?prefix=true", nil); r.Status != http.StatusOK {
		t.Fatalf("delete a = %d %s", r.Status, r.Body)
	}
	wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", "c"), []byte("last"), nil), http.StatusCreated)
	same := func(what string) {
		t.Helper()
		one, _ := c.Server(1).Node().Tenant("acme")
		servertest.Eventually(t, 30*time.Second, what, func() bool {
			three, ok := c.Server(3).Node().Tenant("acme")
			return ok && three.SM.Dump() == one.SM.Dump()
		})
		three, _ := c.Server(3).Node().Tenant("acme")
		if !strings.Contains(three.SM.Dump(), "kv jobs/owner") || three.SM.KVModifyIndex("a", true) != one.SM.KVModifyIndex("a", true) {
			t.Fatalf("node 3's store after %s:\n%s", what, three.SM.Dump())
		}
	}
	c.StartNode(3)
	same("node 3 to catch up from a snapshot")
	c.StopNode(3)
	c.StartNode(3)
	same("node 3 to recover from its own snapshot")
}

package httpapi_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// Ephemeral keys: owned by a session, deleted by the entry that ends it.

const kvSess = "sess-kv-0123456789abcdef"

func kvOpen(t *testing.T, c *servertest.Cluster, tok, id string, req api.SessionRequest) {
	t.Helper()
	servertest.Eventually(t, 20*time.Second, "the session to open", func() bool {
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id, req)
		return r.Status == http.StatusCreated || r.Status == http.StatusOK
	})
}

// kvKeepalive renews the session through node (forwarded to the leader)
// and returns when it was sent and the promise it was answered.
func kvKeepalive(t *testing.T, c *servertest.Cluster, node int, tok, id string) (time.Time, api.KeepaliveResponse) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sent := time.Now()
		r := c.Do(node, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id+"/keepalive", nil)
		if r.Status == http.StatusOK {
			var ka api.KeepaliveResponse
			r.JSON(t, &ka)
			return sent, ka
		}
		if e := r.Err(); e == nil || !e.Code.Retryable() || time.Now().After(deadline) {
			t.Fatalf("keepalive: %d %s", r.Status, r.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kvPresent reports whether node's replica holds the key.
func kvPresent(t *testing.T, c *servertest.Cluster, node int, key string) bool {
	tr, ok := c.Server(node).Node().Tenant("acme")
	if !ok {
		t.Fatalf("node %d runs no replica of acme", node)
	}
	_, found, _ := tr.SM.KV(key)
	return found
}

// kvGone polls node's replica until the key is gone and returns when that
// was seen.
func kvGone(t *testing.T, c *servertest.Cluster, node int, key string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for kvPresent(t, c, node, key) {
		if time.Now().After(deadline) {
			t.Fatalf("key %s still there after %v", key, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Now()
}

func putEphemeral(t *testing.T, c *servertest.Cluster, node int, tok, key, sess string) api.KVPutResponse {
	t.Helper()
	r := kvDo(t, c, node, tok, http.MethodPut, kvPath("acme", key)+"?if_index=0&session="+sess, []byte("owner"), nil)
	wantStatus(t, r, http.StatusCreated)
	var put api.KVPutResponse
	r.JSON(t, &put)
	if put.KV.SessionTag != api.SessionTag(sess) {
		t.Fatalf("ephemeral put answered %s", r.Body)
	}
	return put
}

// TestKVEphemeralClose: closing a session deletes its keys in the close's
// own entry — the key's subtree index is the close's index — and wakes a
// blocking read of the key, which then answers 404.
func TestKVEphemeralClose(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	kvOpen(t, c, tok, kvSess, api.SessionRequest{TTLMs: 10_000})
	putEphemeral(t, c, 2, tok, "jobs/owner", kvSess)
	wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", "jobs/config"), []byte("permanent"), nil), http.StatusCreated)
	// Someone else's update keeps the key ephemeral; another session
	// cannot take it.
	r := kvDo(t, c, 3, tok, http.MethodPut, kvPath("acme", "jobs/owner"), []byte("updated"), nil)
	wantStatus(t, r, http.StatusOK)
	kvOpen(t, c, tok, kvSess+"-2", api.SessionRequest{TTLMs: 10_000})
	r = kvDo(t, c, 3, tok, http.MethodPut, kvPath("acme", "jobs/owner")+"?session="+kvSess+"-2", []byte("mine"), nil)
	wantErr(t, r, http.StatusConflict, api.CodeConflict)

	woken := make(chan *servertest.Response, 1)
	// The blocking read waits past the current index: take the current one.
	_, cur := kvGet(t, c, 3, tok, kvPath("acme", "jobs/owner"))
	idx := cur.Header.Get(api.HeaderIndex)
	go func() {
		r, err := c.DoErr(context.Background(), 3, tok, http.MethodGet, kvPath("acme", "jobs/owner")+"?wait=20s&index="+idx, nil, nil)
		if err != nil {
			t.Error(err)
		}
		woken <- r
	}()
	time.Sleep(100 * time.Millisecond)
	r = c.Do(1, tok, http.MethodDelete, "/v1/tenants/acme/sessions/"+kvSess, nil)
	wantStatus(t, r, http.StatusNoContent)
	closed, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
	if kvPresent(t, c, 1, "jobs/owner") {
		t.Fatal("the key outlived the close that answered")
	}
	if !kvPresent(t, c, 1, "jobs/config") {
		t.Fatal("the close deleted a permanent key")
	}
	tr, _ := c.Server(1).Node().Tenant("acme")
	if got := tr.SM.KVModifyIndex("jobs/owner", false); got != closed {
		t.Fatalf("the deleted key's index is %d, the close's %d", got, closed)
	}
	select {
	case r := <-woken:
		wantErr(t, r, http.StatusNotFound, api.CodeNotFound)
		if at, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64); at < closed {
			t.Fatalf("the woken read answered at %d, before the close at %d", at, closed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the close did not wake the blocking read of its key")
	}
}

// TestKVEphemeralExpiry: a session that stops its keepalives loses its
// keys its TTL after the last keepalive, and not before; keepalives keep
// them for longer than a TTL.
func TestKVEphemeralExpiry(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	kvOpen(t, c, tok, kvSess, api.SessionRequest{TTLMs: 3000})
	putEphemeral(t, c, 2, tok, "jobs/owner", kvSess)
	servertest.Eventually(t, 5*time.Second, "node 3 to apply the put", func() bool { return kvPresent(t, c, 3, "jobs/owner") })
	// Keepalives for longer than a TTL keep the key.
	var sent time.Time
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		sent, _ = kvKeepalive(t, c, 2, tok, kvSess)
		if !kvPresent(t, c, 3, "jobs/owner") {
			t.Fatal("the key went while its session was kept alive")
		}
	}
	gone := kvGone(t, c, 3, "jobs/owner", 10*time.Second)
	if lived := gone.Sub(sent); lived < 3000*time.Millisecond || lived > 4500*time.Millisecond {
		t.Fatalf("key deleted %v after the last keepalive was sent, want within [3s, 4.5s]", lived)
	}
	// The key can be taken by another session now.
	kvOpen(t, c, tok, kvSess+"-2", api.SessionRequest{TTLMs: 10_000})
	putEphemeral(t, c, 1, tok, "jobs/owner", kvSess+"-2")
}

// TestKVEphemeralStreamDrop: a session whose stream its client closes (a
// kill -9) loses its keys at max(its last promise, the close +
// drop_grace), never before the promise lapses.
func TestKVEphemeralStreamDrop(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	kvOpen(t, c, tok, kvSess, api.SessionRequest{TTLMs: 10_000, LeaseMs: 1000})
	putEphemeral(t, c, 1, tok, "jobs/owner", kvSess)
	leader := c.WaitTenantLeader("acme")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(leader)+"/v1/tenants/acme/sessions/"+kvSess+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("attach: %v %v", err, resp)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines:
		if l == "" || l[0] != '{' {
			t.Fatalf("first stream line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first heartbeat")
	}
	sent, ka := kvKeepalive(t, c, leader, tok, kvSess)
	if ka.LeaseMs != 1000 {
		t.Fatalf("keepalive answer %+v", ka)
	}
	cancel() // the client's end of the stream closes, as a crash closes it
	for range lines {
	}
	closed := time.Now()
	gone := kvGone(t, c, leader, "jobs/owner", 5*time.Second)
	promise := sent.Add(time.Duration(ka.LeaseMs) * time.Millisecond)
	if gone.Before(promise) {
		t.Fatalf("the key went %v before its session's promise lapsed", promise.Sub(gone))
	}
	want := promise
	if g := closed.Add(500 * time.Millisecond); g.After(want) {
		want = g
	}
	if late := gone.Sub(want); late > 400*time.Millisecond {
		t.Fatalf("the key went %v after max(promise, close + drop_grace), want within 400ms", late)
	}
}

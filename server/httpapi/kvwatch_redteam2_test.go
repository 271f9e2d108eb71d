package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// deepPrefix is a key path of n segments ("s/s/.../s").
func deepPrefix(n int) string { return strings.TrimSuffix(strings.Repeat("s/", n), "/") }

// fillSubtree puts n keys under prefix with kv:txn (64 puts a transaction).
func fillSubtree(t *testing.T, c *servertest.Cluster, node int, tok, tenant, prefix string, n int) {
	t.Helper()
	one := "x"
	for i := 0; i < n; {
		var req api.KVTxnRequest
		for ; i < n && len(req.Put) < 64; i++ {
			req.Put = append(req.Put, api.KVTxnPut{Key: fmt.Sprintf("%s/k%05d", prefix, i), Text: &one})
		}
		for {
			r := c.Do(node, tok, http.MethodPost, "/v1/tenants/"+tenant+"/kv:txn", req)
			if r.Status == http.StatusTooManyRequests {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if r.Status != http.StatusOK {
				t.Fatalf("fill %s: txn = %d %s", prefix, r.Status, r.Body)
			}
			break
		}
	}
}

// cpuPerPut is the process's CPU time per put of key, over n puts.
func cpuPerPut(t *testing.T, c *servertest.Cluster, node int, tok, tenant, key string, n int) (each, took time.Duration) {
	t.Helper()
	start, began := cpuTime(), time.Now()
	for i := range n {
		v := fmt.Sprint(i)
		r := c.Do(node, tok, http.MethodPut, "/v1/tenants/"+tenant+"/kv/"+key, api.KVPutRequest{Text: &v})
		for r.Status == http.StatusTooManyRequests { // the tenant's write rate
			time.Sleep(r.Err().RetryAfter)
			r = c.Do(node, tok, http.MethodPut, "/v1/tenants/"+tenant+"/kv/"+key, api.KVPutRequest{Text: &v})
		}
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Fatalf("put %s = %d %s", key, r.Status, r.Body)
		}
	}
	time.Sleep(300 * time.Millisecond) // the feeds' work after the last put
	return (cpuTime() - start) / time.Duration(n), time.Since(began)
}

// TestRedTeam2KVPrefixWatchAmplification: a watch of a configuration-store
// subtree re-reads the whole subtree (up to 10,000 keys, under the
// tenant's read lock) at every put under it, and there is one feed per
// distinct prefix watched: a key 32 segments deep has 32 prefixes (and
// ""), each a feed that re-reads the same subtree. None of it is charged
// to anything: a watch's snapshot is charged to the answer bytes once,
// "changes are not (they are the tenant's own writes, already charged)" —
// but a change costs the node a full subtree read per feed, not the write's
// size. A tenant with default quotas fills one subtree of 4,000 keys
// (within max_keys), watches its 33 prefixes on one stream (within
// max_watchers), and each 1-byte put then costs the node many times what it
// costs without the watches. At the tenant's own writes_per_second (200 a
// node) that is more CPU than the whole machine has.
func TestRedTeam2KVPrefixWatchAmplification(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("evil", api.Quotas{}) // default quotas
	c.WaitTenantLeader("evil")

	const depth, keys, puts = 31, 4000, 150
	prefix := deepPrefix(depth)
	fillSubtree(t, c, 1, tok, "evil", prefix, keys)
	hot := prefix + "/k00000"

	alone, _ := cpuPerPut(t, c, 1, tok, "evil", hot, puts)

	s := openStream(t, h2cClient(0), c.Addr(1), "evil", tok)
	watched := []string{""}
	for i := 1; i <= depth; i++ {
		watched = append(watched, deepPrefix(i))
	}
	for i, p := range watched {
		s.send(api.ClientFrame{Type: api.FrameWatchKV, Req: uint64(i + 1), W: uint64(i + 1), Key: p, Prefix: true})
	}
	for i := range watched {
		r := s.result(uint64(i + 1))
		var wr api.WatchResponse
		if err := json.Unmarshal(r.Body, &wr); err != nil || r.Status != http.StatusOK {
			t.Fatalf("watch_kv %q = %d %s", watched[i], r.Status, r.Body)
		}
	}
	time.Sleep(time.Second) // snapshots sent

	cpuPerPut(t, c, 1, tok, "evil", hot, puts) // spends the answer budget's burst
	watching, took := cpuPerPut(t, c, 1, tok, "evil", hot, puts)
	// What the watches cost the node a second while the puts went on: the
	// answer budget bounds it, whatever the puts' pace (on a loaded host
	// they go slower, and each finds more budget).
	extra := time.Duration(float64(max(watching-alone, 0)) * puts / took.Seconds())
	t.Logf("CPU per 1-byte put: %v alone, %v with %d prefix watches of a %d-key subtree (%.1fx); the watches' reads took %.2f cores over %v of puts",
		alone, watching, len(watched), keys, float64(watching)/float64(alone), extra.Seconds(), took)
	// The budget bounds the reads' bytes a second, not their CPU: under the
	// race detector and a loaded CI host a read costs several times what it
	// costs here (0.52 cores seen in CI against 0.09–0.11 here); without
	// the charge the reads take 1.7 cores here, all there is in CI.
	if extra > time.Second {
		t.Fatalf("a tenant's puts under %d watched prefixes of one %d-key subtree cost %v of CPU each (%v without the watches, %.1fx): "+
			"the reads of its watches took %.2f cores while it wrote, charged to nothing but the write",
			len(watched), keys, watching, alone, float64(watching)/float64(alone), extra.Seconds())
	}
}

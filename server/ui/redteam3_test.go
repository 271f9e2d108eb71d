package ui_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam3UIPagesAreUnlimited: the page and its assets need no token,
// and unlike every other route a client without one may ask (the OpenAPI
// documents, a path no route matches: TestRedTeam2PublicRoutesAreUnlimited),
// /ui, /ui/{asset} and /ui/{anything} are charged to no budget: one address
// without a token is answered as fast as the node can serve 24 KB of
// app.js. The unauthenticated per-address bucket allows
// tenants.UnauthenticatedRate a second (burst UnauthenticatedBurst).
func TestRedTeam3UIPagesAreUnlimited(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	for _, path := range []string{"/ui/app.js", "/ui", "/ui/no-such-asset"} {
		c.RequireAnonymousLimited(t, 1, path)
	}
}

// TestRedTeam3AdminFeedAmplifiesTenantWrites: a feed follows a service
// with a blocking query and sends the whole service's answer on every
// change. A tenant's own feed is charged for those answers (its
// AnswerBytesPerSecond), but the admin's and the read-only token's are
// charged nothing, and they follow a tenant whether or not anyone looks
// at its services (the admin's default is the first tenant by name). So
// a tenant holding one large service (here 300 instances with 3 KB of
// meta: 0.9 MB) makes every open operator tab re-read, compact and send
// 0.9 MB for each 100-byte write it makes to that service, as fast as the
// node can encode them: the tenant's small writes become the node's
// megabytes a second per tab, outside any budget.
func TestRedTeam3AdminFeedAmplifiesTenantWrites(t *testing.T) {
	const answerBudget = 2 << 20
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) {
		cfg.ReadToken = readToken
		cfg.AnswerBytesPerSecond = answerBudget
	}})
	base := "http://" + c.Addr(1)
	acme := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 10000, Burst: 20000, RequestsPerSecond: 10000})
	pad := strings.Repeat("x", 3000)
	for i := range 300 {
		register(t, c, acme, "big", fmt.Sprintf("i-%03d", i), api.RegisterRequest{Address: "10.0.0.1:80", Meta: map[string]string{"pad": pad}})
		if i%50 == 49 {
			time.Sleep(time.Second) // within the write bytes a second
		}
	}
	for _, tok := range []string{servertest.AdminToken, readToken} {
		resp, _ := openFeed(t, base, tok, "?tenant=acme")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("feed = %d", resp.StatusCode)
		}
		var got atomic.Int64 // bytes of service events
		var events atomic.Int64
		var last atomic.Value // the last service event's data
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 4<<20), 4<<20)
			var name string
			first := true
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
					name = n
				} else if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && name == "service" {
					if first {
						first = false
						close(ready)
						continue
					}
					got.Add(int64(len(d)))
					events.Add(1)
					last.Store(d)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("no service event in 10 s")
		}
		// 3 s of small writes to the big service: a tiny instance's
		// weight, about 100 bytes each.
		const window = 3 * time.Second
		start := time.Now()
		writes, written := 0, 0
		for time.Since(start) < window {
			w := writes%100 + 1
			body := api.RegisterRequest{Address: "10.0.0.2:80", Weight: &w}
			b, _ := json.Marshal(body)
			register(t, c, acme, "big", "tiny", body)
			writes++
			written += len(b)
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		took := time.Since(start)
		// Paced or not, the page ends up with the service as it is.
		final := (writes-1)%100 + 1
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var sr api.ServiceResponse
			if d, _ := last.Load().(string); json.Unmarshal([]byte(d), &sr) == nil &&
				slices.ContainsFunc(sr.Instances, func(i api.Instance) bool { return i.ID == "tiny" && i.Weight == final }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the feed did not show tiny's last weight %d within 5 s of the last write", final)
			}
		}
		kind := "admin"
		if tok == readToken {
			kind = "read-only"
		}
		t.Logf("%s feed: the tenant's %d writes (%d bytes) in %v were sent as %d service events, %.1f MB; the tenant's own answer budget is %.1f MB/s",
			kind, writes, written, window, events.Load(), float64(got.Load())/1e6, float64(answerBudget)/1e6)
		if limit := int64(float64(answerBudget) * took.Seconds()); got.Load() > limit {
			t.Errorf("the %s token's feed was sent %.1f MB of acme's service answers in %v (%d events for %d writes of %d bytes): "+
				"more than acme's own answer budget would let it read (%.1f MB), charged to no one",
				kind, float64(got.Load())/1e6, took.Round(time.Millisecond), events.Load(), writes, written, float64(limit)/1e6)
		}
	}
}

package httpapi_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// keepalive429s reads, from node id's /metrics, how many keepalives it
// answered 429.
func keepalive429s(t *testing.T, c *servertest.Cluster, id int) int {
	t.Helper()
	r := c.Do(id, servertest.AdminToken, http.MethodGet, "/metrics", nil)
	n := 0
	for _, line := range strings.Split(string(r.Body), "\n") {
		if strings.HasPrefix(line, "rafting_http_requests_total{") && strings.Contains(line, "keepalive") && strings.Contains(line, `code="429"`) {
			v, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
			n += v
		}
	}
	return n
}

// TestAttackLaneRefusalsAreNotHeld: a 429 of the request or write rate is
// held ~250 ms, because "refusing at full speed costs a node ≈ 35 µs of
// CPU per request, CPU the other tenants share", and a refusal that finds
// no hold ends its connection rather than "let a flood go on at the rate
// the node can refuse" (DECISIONS.md). Keepalives of a session the node
// knows are outside every tenant rate, and their lane's 429s are neither
// held nor counted against anything: one tenant with one live session
// sends keepalives as fast as the node can refuse them. Sent to a
// follower, each is also forwarded to the leader (the follower spends
// nothing of the lane), so every refused keepalive costs two nodes a
// request.
func TestAttackLaneRefusalsAreNotHeld(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 5, Burst: 5})
	sid := "sess-redteam-lane-0001"
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid, api.SessionRequest{}); r.Status >= 300 {
		t.Fatalf("open session = %d %s", r.Status, r.Body)
	}
	leader := c.WaitTenantLeader("acme")
	follower := 1 + leader%3
	before := keepalive429s(t, c, leader)

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	const run = 2 * time.Second
	statuses := map[int]int{}
	start := time.Now()
	for time.Since(start) < run {
		req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr(follower)+"/v1/tenants/acme/sessions/"+sid+"/keepalive", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	elapsed := time.Since(start)
	forwardedRefused := keepalive429s(t, c, leader) - before
	total := 0
	for _, n := range statuses {
		total += n
	}
	t.Logf("one connection, %v, one session of a tenant limited to 5 requests/s: %d keepalives answered %v; "+
		"the leader refused %d forwarded ones", elapsed.Round(time.Millisecond), total, statuses, forwardedRefused)
	// What the lane admits in that time, plus one held refusal per
	// RateLimitHold/2 for the rest.
	admitted := tenants.LaneBurst + int(tenants.LaneRate*elapsed.Seconds())
	bound := admitted + int(elapsed/(125*time.Millisecond)) + 10
	if total > bound {
		t.Fatalf("%d keepalives answered in %v on one connection (%d refused 429, none held): the lane admits %d; "+
			"a tenant far over its lane is refused at the rate the node can refuse, on two nodes",
			total, elapsed.Round(time.Millisecond), statuses[http.StatusTooManyRequests], admitted)
	}
}

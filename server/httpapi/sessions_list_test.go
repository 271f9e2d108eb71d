package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestListSessions: GET /v1/tenants/{t}/sessions on a real three-node
// cluster lists every live session by its tag, in tag order, page by page
// (start, limit, next), with its settings, the instances it owns and the
// masterships it holds; the tenant leader says which have a stream
// attached, a follower says nothing of it. No answer holds a session ID.
// The tenant's token, the admin and the read-only token read it; another
// tenant's token gets 404; bad parameters get a 400 naming them.
func TestListSessions(t *testing.T) {
	read := tenants.NewSecret()
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.ReadToken = read }})
	tok := c.CreateTenant("acme", api.Quotas{})
	other := c.CreateTenant("other", api.Quotas{})

	ids := []string{"sess-list-farm-000001", "sess-list-master-0002", "sess-list-farm-000003", "sess-list-farm-000004", "sess-list-farm-000005"}
	for i, id := range ids {
		req := api.SessionRequest{TTLMs: 60_000}
		if i == 1 {
			req.LeaseMs = 1000
		}
		if r := c.Do(1+i%3, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id, req); r.Status != http.StatusCreated {
			t.Fatalf("open session %d = %d %s", i, r.Status, r.Body)
		}
	}
	// The second session owns a master-standby instance (and so becomes
	// the master of db) and a farm instance; the first owns one instance.
	reg := func(service, id, session string, mode api.Mode) {
		t.Helper()
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/"+service+"/instances/"+id,
			api.RegisterRequest{Address: "10.0.0.1:80", Mode: mode, Session: session})
		if r.Status != http.StatusCreated {
			t.Fatalf("register %s/%s = %d %s", service, id, r.Status, r.Body)
		}
	}
	reg("db", "db-1", ids[1], api.ModeMasterStandby)
	reg("web", "web-2", ids[1], api.ModeFarm)
	reg("web", "web-1", ids[0], api.ModeFarm)
	var master *api.Master
	servertest.Eventually(t, 10*time.Second, "db's master", func() bool {
		var s api.ServiceResponse
		c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/db", nil).JSON(t, &s)
		master = s.Master
		return master != nil
	})

	// A stream attached to the master's session, on the tenant leader.
	leader := c.WaitTenantLeader("acme")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(leader)+"/v1/tenants/acme/sessions/"+ids[1]+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadBytes('\n'); resp.StatusCode != http.StatusOK || err != nil || !bytes.Contains(line, []byte(`"heartbeat"`)) {
		t.Fatalf("attach = %d, first line %q (%v); want 200 and a heartbeat", resp.StatusCode, line, err)
	}

	list := func(node int, token, query string) (api.SessionList, []byte) {
		t.Helper()
		r := c.Do(node, token, http.MethodGet, "/v1/tenants/acme/sessions"+query, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET sessions%s on node %d = %d %s", query, node, r.Status, r.Body)
		}
		if r.Header.Get(api.HeaderIndex) == "" {
			t.Errorf("GET sessions%s: no %s", query, api.HeaderIndex)
		}
		var l api.SessionList
		r.JSON(t, &l)
		return l, r.Body
	}
	noIDs := func(body []byte) {
		t.Helper()
		for _, id := range ids {
			if bytes.Contains(body, []byte(id)) {
				t.Fatalf("an answer holds session ID %s: %s", id, body)
			}
		}
	}

	tags := make([]string, len(ids))
	byTag := map[string]string{}
	for i, id := range ids {
		tags[i] = api.SessionTag(id)
		byTag[tags[i]] = id
	}
	slices.Sort(tags)

	// The whole list, as the leader answers it (consistent: every node
	// applied the registrations by then).
	l, body := list(leader, tok, "?consistent=true")
	noIDs(body)
	var got []string
	for _, s := range l.Sessions {
		got = append(got, s.SessionTag)
	}
	if !slices.Equal(got, tags) || l.Next != "" || l.Index == 0 {
		t.Fatalf("sessions = %v, next %q, index %d; want %v in tag order, no next", got, l.Next, l.Index, tags)
	}
	for _, s := range l.Sessions {
		id := byTag[s.SessionTag]
		want := api.SessionSummary{SessionTag: s.SessionTag, TTLMs: 60_000, DropGraceMs: 500, RemainingMs: 60_000,
			Instances: []api.HeldInstance{}, Masters: []api.HeldMastership{}}
		switch id {
		case ids[0]:
			want.Instances = []api.HeldInstance{{Service: "web", Instance: "web-1", State: api.StateReady}}
		case ids[1]:
			want.LeaseMs, want.SeeksMaster = 1000, true
			want.Instances = []api.HeldInstance{{Service: "db", Instance: "db-1", State: api.StateReady},
				{Service: "web", Instance: "web-2", State: api.StateReady}}
			want.Masters = []api.HeldMastership{{Service: "db", Instance: "db-1", FencingToken: master.FencingToken}}
		}
		if s.Attached == nil || *s.Attached != (id == ids[1]) {
			t.Errorf("session %s: attached %v on the leader, want %v", s.SessionTag, s.Attached, id == ids[1])
		}
		s.Attached = nil
		if w := want.DropGraceMs; id == ids[1] {
			want.DropGraceMs = min(w, want.LeaseMs)
		}
		if fmt.Sprint(s) != fmt.Sprint(want) {
			t.Errorf("session %s:\n got %+v\nwant %+v", s.SessionTag, s, want)
		}
	}

	// A follower lists the same sessions, without saying which are attached.
	follower := leader%3 + 1
	servertest.Eventually(t, 10*time.Second, "the follower's list", func() bool {
		l, body := list(follower, tok, "")
		noIDs(body)
		if len(l.Sessions) != len(ids) {
			return false
		}
		for _, s := range l.Sessions {
			if s.Attached != nil {
				t.Fatalf("a follower says session %s is attached: %v", s.SessionTag, *s.Attached)
			}
		}
		return true
	})

	// Pages of two: every session once, in order, the last page without next.
	got = nil
	query := "?limit=2"
	for pages := 0; ; pages++ {
		if pages > len(ids) {
			t.Fatalf("more than %d pages", len(ids))
		}
		l, body := list(1, tok, query)
		noIDs(body)
		if len(l.Sessions) > 2 {
			t.Fatalf("a page of limit 2 holds %d sessions", len(l.Sessions))
		}
		for _, s := range l.Sessions {
			got = append(got, s.SessionTag)
		}
		if l.Next == "" {
			break
		}
		query = "?limit=2&start=" + l.Next
	}
	if !slices.Equal(got, tags) {
		t.Fatalf("paged sessions = %v, want %v", got, tags)
	}

	// Who may read it.
	for _, who := range []struct {
		name, token string
		want        int
	}{
		{"admin", servertest.AdminToken, http.StatusOK},
		{"read-only", read, http.StatusOK},
		{"another tenant", other, http.StatusNotFound},
		{"no token", "", http.StatusUnauthorized},
	} {
		r := c.Do(2, who.token, http.MethodGet, "/v1/tenants/acme/sessions", nil)
		if r.Status != who.want {
			t.Errorf("GET sessions with the %s token = %d %s, want %d", who.name, r.Status, r.Body, who.want)
		}
		noIDs(r.Body)
	}

	// Bad parameters: a 400 naming each.
	for _, bad := range []struct{ query, field string }{
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=x", "limit"},
		{"?start=" + ids[0], "start"},
		{"?start=ABCDEF0123456789", "start"},
		{"?index=3", "index"},
		{"?wait=1s", "wait"},
		{"?consistent=maybe", "consistent"},
	} {
		r := c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/sessions"+bad.query, nil)
		if e := r.Err(); r.Status != http.StatusBadRequest || e == nil || !bytes.Contains([]byte(e.Message), []byte(bad.field)) {
			t.Errorf("GET sessions%s = %d %s, want 400 naming %s", bad.query, r.Status, r.Body, bad.field)
		}
	}

	// An ended session leaves the list.
	if r := c.Do(1, tok, http.MethodDelete, "/v1/tenants/acme/sessions/"+ids[0], nil); r.Status != http.StatusNoContent {
		t.Fatalf("close session = %d %s", r.Status, r.Body)
	}
	l, _ = list(1, tok, "?consistent=true")
	for _, s := range l.Sessions {
		if s.SessionTag == api.SessionTag(ids[0]) {
			t.Fatalf("a closed session is still listed: %+v", s)
		}
	}
	if len(l.Sessions) != len(ids)-1 {
		t.Fatalf("%d sessions after one closed, want %d", len(l.Sessions), len(ids)-1)
	}
}

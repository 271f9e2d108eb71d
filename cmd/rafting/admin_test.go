package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestAdminCLI drives every admin subcommand against a real cluster.
func TestAdminCLI(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	servers := strings.Join(c.Addrs(), ",")
	cli := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := run(args, &out, &errb)
		return out.String() + errb.String(), err
	}
	mustCLI := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("rafting %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	admin := []string{"--servers", servers, "--token", servertest.AdminToken}
	with := func(args ...string) []string { return append(args, admin...) }

	out := mustCLI(with("tenant", "create", "acme", "--max-instances", "7", "-o", "json")...)
	var ten api.Tenant
	if err := json.Unmarshal([]byte(out), &ten); err != nil || ten.Name != "acme" || ten.Quotas.MaxInstances != 7 || !strings.HasPrefix(ten.Token, "rft_acme_") {
		t.Fatalf("tenant create -o json = %s (%v)", out, err)
	}
	if out := mustCLI(with("tenant", "list")...); !strings.Contains(out, "acme") || !strings.Contains(out, "0/7") {
		t.Fatalf("tenant list:\n%s", out)
	}
	if out := mustCLI(with("tenant", "update", "acme", "--max-instances", "9")...); !strings.Contains(out, "instances") || !strings.Contains(out, "9") {
		t.Fatalf("tenant update:\n%s", out)
	}
	c.Do(1, ten.Token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "10.0.0.1:80", Zone: "eu-1"})
	if out := mustCLI("service", "list", "--tenant", "acme", "--servers", servers, "--token", ten.Token); !strings.Contains(out, "web") {
		t.Fatalf("service list:\n%s", out)
	}
	if out := mustCLI("service", "show", "web", "--tenant", "acme", "--servers", servers, "--token", ten.Token); !strings.Contains(out, "10.0.0.1:80") || !strings.Contains(out, "eu-1") {
		t.Fatalf("service show:\n%s", out)
	}
	if out := mustCLI(with("tenant", "show", "acme")...); !strings.Contains(out, "instances") || !strings.Contains(out, "1 ") {
		t.Fatalf("tenant show lacks usage:\n%s", out)
	}
	// A rotation keeps the old token for --previous-valid, and says until
	// when; revoke-previous ends it sooner, the new one kept.
	out = mustCLI(with("tenant", "rotate-token", "acme", "--previous-valid", "1h", "-o", "json")...)
	var mid api.Tenant
	if _ = json.Unmarshal([]byte(out), &mid); mid.PreviousTokenValidUntil == nil || time.Until(*mid.PreviousTokenValidUntil) < 59*time.Minute {
		t.Fatalf("rotate-token --previous-valid 1h = %s, want previous_token_valid_until an hour ahead", out)
	}
	if out := mustCLI(with("tenant", "show", "acme")...); !strings.Contains(out, "previous token") || !strings.Contains(out, "valid until") {
		t.Fatalf("tenant show after a rotation does not say until when the previous token works:\n%s", out)
	}
	mustCLI(with("tenant", "revoke-previous", "acme")...)
	if _, err := cli("service", "list", "--tenant", "acme", "--servers", servers, "--token", ten.Token); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("the previous token works after revoke-previous: %v", err)
	}
	if out := mustCLI("service", "list", "--tenant", "acme", "--servers", servers, "--token", mid.Token); !strings.Contains(out, "web") {
		t.Fatalf("the current token after revoke-previous:\n%s", out)
	}
	if out := mustCLI(with("tenant", "show", "acme")...); !strings.Contains(out, "none") {
		t.Fatalf("tenant show after revoke-previous:\n%s", out)
	}
	out = mustCLI(with("tenant", "rotate-token", "acme", "--previous-valid", "0", "-o", "json")...)
	var rot api.Tenant
	_ = json.Unmarshal([]byte(out), &rot)
	if rot.Token == "" || rot.Token == ten.Token {
		t.Fatalf("rotate-token = %s", out)
	}
	if _, err := cli("service", "list", "--tenant", "acme", "--servers", servers, "--token", ten.Token); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("the revoked token still works: %v", err)
	}
	if out := mustCLI(with("cluster")...); !strings.Contains(out, "acme") || !strings.Contains(out, c.Addr(1)) {
		t.Fatalf("cluster:\n%s", out)
	}
	mustCLI(with("tenant", "delete", "acme")...)
	if _, err := cli(with("tenant", "show", "acme")...); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("show after delete: %v", err)
	}
	// Bad usage is a usage error, not a crash.
	if _, err := cli("tenant"); err == nil {
		t.Fatal("tenant without a subcommand succeeded")
	}
	if _, err := cli(with("tenant", "create")...); err == nil {
		t.Fatal("tenant create without a name succeeded")
	}
	if _, err := cli("cluster", "--servers", servers, "--token", ""); err == nil {
		t.Fatal("cluster without a token succeeded")
	}
}

// TestSubcommandHelp: `rafting tenant -h` (and `help`) lists the tenant
// subcommands, and `rafting cluster -h` the cluster ones, without a server
// or a token; an unknown subcommand's error lists them too.
func TestSubcommandHelp(t *testing.T) {
	tenantCmds := []string{"create", "list", "show", "update", "rotate-token", "revoke-previous", "delete"}
	for _, args := range [][]string{{"tenant", "-h"}, {"tenant", "--help"}, {"tenant", "help"}} {
		var out, errb bytes.Buffer
		if err := run(args, &out, &errb); err != nil {
			t.Fatalf("rafting %s: %v", strings.Join(args, " "), err)
		}
		for _, sub := range tenantCmds {
			if !strings.Contains(out.String(), "  "+sub+" ") {
				t.Errorf("rafting %s does not list %q:\n%s", strings.Join(args, " "), sub, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run([]string{"tenant", "frobnicate"}, &out, &out); err == nil || !strings.Contains(err.Error(), "revoke-previous") {
		t.Errorf("an unknown tenant command's error does not list the commands: %v", err)
	}
	out.Reset()
	if err := run([]string{"cluster", "help"}, &out, &out); err != nil || !strings.Contains(out.String(), "transfer-leader") || !strings.Contains(out.String(), "  remove ") {
		t.Errorf("rafting cluster help = %v:\n%s", err, out.String())
	}
}

// TestClusterPrintsUnknownFields: fields of GET /v1/cluster this binary
// does not know are printed: a node's and a shard's as columns of their
// own, the view's as sections (a list of objects as a table), escaped.
func TestClusterPrintsUnknownFields(t *testing.T) {
	raw := `{"node_id": 1, "state_version": 3, "ready": true,
		"nodes": [{"id": 1, "raft_address": "a:1", "api_address": "a:2", "leaders": 1, "last_contact_ms": -1,
			"zone": "eu-1\u001b[2J", "leader_of": [1, 5], "replicas": 4}],
		"shards": [{"shard_id": 5, "tenant": "acme", "replicas": {"1": 1}, "leader_node": 1, "term": 2, "applied_index": 9, "moving": true}],
		"moves": [{"shard": 5, "from": 1, "to": 2}], "paused": false}`
	var out bytes.Buffer
	if err := printCluster(&out, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	want := [][]string{
		{"NODE", "HEALTH", "API", "LEADER OF", "REPLICAS", "ZONE"},
		{"a:2", "1,5", "4", `eu-1\x1b[2J`},
		{"SHARD", "REPLICAS", "MOVING"},
		{"acme", "1@1", "true"},
		{"moves:"},
		{"FROM", "SHARD", "TO"},
		{"1", "5", "2"},
		{"paused", "false"},
	}
	i := 0
	for _, l := range lines {
		if i < len(want) && containsInOrder(l, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("the cluster table lacks a line with %q (in this order):\n%s", want[i], out.String())
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Errorf("the cluster table holds an escape character:\n%q", out.String())
	}
}

// containsInOrder says whether s holds each of parts, in order.
func containsInOrder(s string, parts []string) bool {
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

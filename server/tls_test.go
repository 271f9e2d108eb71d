package server_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestTLS: a cluster with API TLS and mutual TLS between Raft peers works
// end to end; a peer whose certificate the others' CA did not sign cannot
// take part: it never catches up and never runs the tenant's shard.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := servertest.NewCA(t, dir, "cluster")
	rogue := servertest.NewCA(t, dir, "rogue")
	c := servertest.Start(t, servertest.Options{Nodes: 3, Configure: func(cfg *config.Config) {
		if cfg.NodeID != 3 {
			ca.Secure(t, cfg)
			return
		}
		rogue.Secure(t, cfg) // node 3's certificate is signed by another CA
		cfg.PeerCA = ca.File
	}, SkipWaitReady: []int{3}})
	pool, err := server.LoadCA(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(node int, token, method, path string, body string) (int, []byte) {
		req, _ := http.NewRequest(method, "https://"+c.Addr(node)+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s on node %d: %v", method, path, node, err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	// Plain HTTP is refused by a TLS API.
	if resp, err := http.Get("http://" + c.Addr(1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the TLS API answered plain HTTP")
		}
	}
	code, b := do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants", `{"name":"acme","secret":"`+tenants.NewSecret()+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("create tenant over TLS = %d %s", code, b)
	}
	var ten api.Tenant
	_ = json.Unmarshal(b, &ten)
	servertest.Eventually(t, 10*time.Second, "a registration over TLS", func() bool {
		code, _ := do(2, ten.Token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", `{"address":"a:1"}`)
		return code == http.StatusCreated || code == http.StatusOK
	})
	// Nodes 1 and 2 (a quorum) agree; node 3 is shut out.
	time.Sleep(time.Second)
	if c.Server(3).Ready() {
		t.Fatal("the node with a rogue certificate caught up with the cluster")
	}
	if _, ok := c.Server(3).Node().Tenant("acme"); ok {
		t.Fatal("the node with a rogue certificate runs the tenant's shard")
	}
	for _, node := range []int{1, 2} {
		tr, ok := c.Server(node).Node().Tenant("acme")
		if !ok || len(tr.SM.Service("web").Instances) != 1 {
			t.Fatalf("node %d lacks the registration", node)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestTLSAdminAndJoin: against a cluster whose API and Raft peers use
// certificates of a private CA, the admin CLI works with --ca (and only
// with it), and a new node's join request verifies the member with its
// --peer-ca; with the wrong CA it fails at once, naming the CA.
func TestTLSAdminAndJoin(t *testing.T) {
	dir := t.TempDir()
	ca := servertest.NewCA(t, dir, "cluster")
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { ca.Secure(t, cfg) }})
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append(args, "--token", servertest.AdminToken), &out, &out)
		return out.String(), err
	}
	servertest.Eventually(t, 10*time.Second, "rafting cluster --ca to list three nodes", func() bool {
		out, err := cli("cluster", "-o", "json", "--servers", c.Addr(1), "--ca", ca.File)
		var cl api.Cluster
		if err != nil || json.Unmarshal([]byte(out), &cl) != nil {
			t.Fatalf("rafting cluster --ca = %v\n%s", err, out)
		}
		return len(cl.Nodes) == 3
	})
	if _, err := cli("cluster", "--servers", "https://"+c.Addr(1)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("rafting cluster over https without --ca = %v, want a certificate error", err)
	}

	cert, key := ca.Issue(t, "node4")
	cfg := config.Config{NodeID: 4, RaftAddress: servertest.FreePort(t), APIAddress: servertest.FreePort(t),
		AdminToken: servertest.AdminToken, TLSCert: cert, TLSKey: key, PeerCA: ca.File, Join: c.Addr(2)}
	peers, err := requestJoin(context.Background(), cfg)
	if err != nil || peers[4] != cfg.RaftAddress {
		t.Fatalf("join over TLS = %v, %v; want the members with this node", peers, err)
	}
	other := servertest.NewCA(t, dir, "other")
	cfg.PeerCA = other.File
	if _, err := requestJoin(context.Background(), cfg); !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Fatalf("join with another CA = %v, want a certificate verification error at once", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestBackupRestoreCLI: `rafting backup -f` saves a cluster's durable state
// to a private file, and `rafting restore -f` brings it into a new cluster,
// where the tenant's token and permanent instance work as before.
func TestBackupRestoreCLI(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	tok := old.CreateTenant("acme", api.Quotas{})
	if r := old.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/p1", api.RegisterRequest{Address: "10.0.0.9:80"}); r.Status >= 300 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	cli := func(c *servertest.Cluster, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append(args, "--servers", strings.Join(c.Addrs(), ","), "--token", servertest.AdminToken), &out, &out)
		return out.String(), err
	}
	file := filepath.Join(t.TempDir(), "rafting.backup")
	out, err := cli(old, "backup", "-f", file)
	if err != nil || !strings.Contains(out, "1 tenants and 1 permanent instances") {
		t.Fatalf("rafting backup = %v\n%s", err, out)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, st.Mode())
	}
	var b api.Backup
	if raw, _ := os.ReadFile(file); json.Unmarshal(raw, &b) != nil || len(b.Tenants) != 1 {
		t.Fatalf("backup file holds %s", raw)
	}

	c := servertest.Start(t, servertest.Options{})
	if _, err := cli(c, "restore"); !errors.As(err, new(usageError)) {
		t.Fatalf("restore without -f = %v, want a usage error", err)
	}
	notJSON := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(notJSON, []byte("not json"), 0o600)
	if _, err := cli(c, "restore", "-f", notJSON); err == nil {
		t.Fatal("restore of a file that is not JSON succeeded")
	}
	out, err = cli(c, "restore", "-f", file)
	if err != nil || !strings.Contains(out, "restored 1 tenants, 0 policies, 1 permanent instances and 0 keys") {
		t.Fatalf("rafting restore = %v\n%s", err, out)
	}
	address := func() string {
		var svc api.ServiceResponse
		c.Do(2, tok, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil).JSON(t, &svc)
		if len(svc.Instances) != 1 {
			t.Fatalf("web on the restored cluster: %+v", svc)
		}
		return svc.Instances[0].Address
	}
	if a := address(); a != "10.0.0.9:80" {
		t.Fatalf("p1 on the restored cluster at %s", a)
	}
	// Sent again: nothing to do; over a changed tenant: refused, unless
	// --force.
	if out, err := cli(c, "restore", "-f", file); err != nil || !strings.Contains(out, "1 tenants already held the backup's state") {
		t.Fatalf("rafting restore again = %v\n%s", err, out)
	}
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/p1", api.RegisterRequest{Address: "10.0.0.7:80"}); r.Status >= 300 {
		t.Fatalf("re-register = %d %s", r.Status, r.Body)
	}
	if _, err := cli(c, "restore", "-f", file); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "tenant acme") {
		t.Fatalf("rafting restore over a changed tenant = %v, want a conflict naming acme", err)
	}
	if a := address(); a != "10.0.0.7:80" {
		t.Fatalf("a refused restore moved p1 to %s", a)
	}
	if out, err := cli(c, "restore", "-f", file, "--force"); err != nil {
		t.Fatalf("rafting restore --force = %v\n%s", err, out)
	}
	if a := address(); a != "10.0.0.9:80" {
		t.Fatalf("after restore --force p1 is at %s, want the backup's address", a)
	}
}

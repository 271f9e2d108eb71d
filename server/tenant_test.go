package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestTenantRecreatedWhileNodeDown: a tenant deleted while a node is down,
// then re-created under the same name: the returning node runs the new
// shard (a new shard ID and epoch) and never brings the old state back;
// the old shard's data is removed from its disk.
func TestTenantRecreatedWhileNodeDown(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	register(t, c, 1, tok, "acme", "web", "old-1", api.RegisterRequest{Address: "a:1"})
	old, _ := c.Server(3).Node().Tenant("acme")
	oldShard, oldReplica := old.ShardID, old.ReplicaID
	servertest.Eventually(t, 10*time.Second, "node 3 to apply the registration", func() bool {
		return len(old.SM.Service("web").Instances) == 1
	})
	c.StopNode(3)

	if r := c.Do(1, servertest.AdminToken, http.MethodDelete, "/v1/tenants/acme", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete tenant = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("deleted tenant's token = %d %s, want 401", r.Status, r.Body)
	}
	tok = c.CreateTenant("acme", api.Quotas{})
	register(t, c, 1, tok, "acme", "web", "new-1", api.RegisterRequest{Address: "b:1"})

	c.StartNode(3)
	c.WaitReady()
	servertest.Eventually(t, 20*time.Second, "node 3 to run the new acme shard", func() bool {
		tr, ok := c.Server(3).Node().Tenant("acme")
		return ok && tr.ShardID != oldShard && len(tr.SM.Service("web").Instances) == 1
	})
	tr, _ := c.Server(3).Node().Tenant("acme")
	if tr.Epoch != 2 {
		t.Fatalf("re-created tenant's epoch = %d, want 2", tr.Epoch)
	}
	if in := tr.SM.Service("web").Instances[0]; in.ID != "new-1" {
		t.Fatalf("node 3 serves %s, want new-1 only", in.ID)
	}
	// The tombstoned shard's data is gone from node 3's disk: no log, no
	// snapshots, its snapshot directory marked deleted.
	servertest.Eventually(t, 10*time.Second, "the old shard's data to be removed", func() bool {
		return !c.Server(3).Node().HasReplicaData(oldShard, oldReplica)
	})
	assertShardRemoved(t, c.Config(3).DataDir, oldShard, oldReplica)
}

// assertShardRemoved checks a replica's snapshot directory holds no
// snapshot and is marked deleted (Dragonboat's RemoveData).
func assertShardRemoved(t *testing.T, dataDir string, shard, replica uint64) {
	t.Helper()
	var dirs []string
	_ = filepath.WalkDir(filepath.Join(dataDir, "raft"), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == snapshotDirName(shard, replica) {
			dirs = append(dirs, path)
		}
		return nil
	})
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		marked := false
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("%s still holds %s", dir, e.Name())
			}
			marked = marked || e.Name() == "DELETED.dragonboat"
		}
		if !marked {
			t.Errorf("%s is not marked deleted", dir)
		}
	}
}

func snapshotDirName(shard, replica uint64) string {
	return "snapshot-" + itoa(shard) + "-" + itoa(replica)
}

func itoa(n uint64) string {
	return strconv.FormatUint(n, 10)
}

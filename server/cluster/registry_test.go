package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRegistryKeepsInitialPeers: the peers of --initial-cluster are saved
// at once, in a data dir that does not exist yet, so a node that stops
// before it learnt anything from the meta shard finds them when it
// restarts without the flag. (They were saved only on a later change, and
// the first save failed on the missing dir: such a node restarted knowing
// only itself and never reached its peers.)
func TestRegistryKeepsInitialPeers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node1")
	initial := map[uint64]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
	if _, err := newRegistry(dir, initial); err != nil {
		t.Fatal(err)
	}
	r, err := newRegistry(dir, nil) // a restart
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range initial {
		if got, ok := r.addr(id); !ok || got != want {
			t.Errorf("after a restart node %d is at %q, want %q", id, got, want)
		}
	}
	// A damaged file stops the start instead of leaving the node alone.
	if err := os.WriteFile(filepath.Join(dir, "peers.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newRegistry(dir, nil); err == nil {
		t.Fatal("a damaged peers.json was ignored")
	}
}

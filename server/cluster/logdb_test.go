package cluster

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	dbconfig "github.com/lni/dragonboat/v4/config"

	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/metrics"
)

// TestLogDBShards: a new data dir gets one pebble instance; a dir made
// with Dragonboat's default of 16 (as every version before this rule made
// them) keeps 16, which Dragonboat requires to open it.
func TestLogDBShards(t *testing.T) {
	if got := logDBShards(filepath.Join(t.TempDir(), "raft")); got != 1 {
		t.Fatalf("a new data dir gets %d LogDB shards, want 1", got)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raft := l.Addr().String()
	l.Close()
	cfg := config.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddress = 1, t.TempDir(), raft
	cfg.RTT = 10 * time.Millisecond
	cfg.InitialCluster = map[uint64]string{1: raft}

	// The node's Raft dir as an earlier version left it.
	old := logDBPreset(cfg.LogDB)
	if old.Shards != 16 {
		t.Fatalf("Dragonboat's default LogDB shards = %d; this test assumes 16", old.Shards)
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	nh, err := dragonboat.NewNodeHost(dbconfig.NodeHostConfig{DeploymentID: cfg.DeploymentID, NodeHostID: nodeHostID(cfg.NodeID),
		NodeHostDir: dir, WALDir: dir, RTTMillisecond: uint64(cfg.RTT / time.Millisecond), RaftAddress: raft,
		Expert: dbconfig.ExpertConfig{LogDB: old}})
	if err != nil {
		t.Fatal(err)
	}
	nh.Close()
	if got := logDBShards(dir); got != 16 {
		t.Fatalf("a data dir made with 16 LogDB shards reads as %d", got)
	}
	n, err := New(cfg, metrics.NewRegistry())
	if err != nil {
		t.Fatalf("a data dir made with 16 LogDB shards does not open: %v", err)
	}
	n.Close()
	if got := logDBShards(dir); got != 16 {
		t.Fatalf("after a start, the data dir has %d LogDB shards, want 16", got)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rafting/rafting/server/config"
)

// A member whose data dir was lost (a wiped disk, a new volume) and that
// is started again under its used ID as on a first start (--initial-cluster)
// bootstraps an empty Raft log where its peers remember how far its log
// reached: the first heartbeat makes Dragonboat panic ("invalid commitTo
// index"), and a supervisor restarts it into the same panic for ever. No
// check before Raft starts can tell that start from a new cluster's first
// (a node knows only its peers' Raft addresses then). So the panic is
// turned into what it means: it says so, and it leaves a mark in the data
// dir that refuses every later start before Raft starts, with what to do.

// lostLogFile marks a data dir whose Raft log was found lost.
const lostLogFile = "raft-log-lost"

// lostLogPanic is how Dragonboat's panic about such a log begins.
const lostLogPanic = "invalid commitTo index"

// runningNodes are the data dirs of the Nodes running in this process (one
// in `rafting server`), by node ID: Dragonboat's panic does not say whose
// log it is, so a mark is left only when one node runs.
var runningNodes struct {
	mu   sync.Mutex
	dirs map[string]uint64
}

func trackNode(dir string, id uint64) {
	runningNodes.mu.Lock()
	defer runningNodes.mu.Unlock()
	if runningNodes.dirs == nil {
		runningNodes.dirs = map[string]uint64{}
	}
	runningNodes.dirs[dir] = id
}

func untrackNode(dir string) {
	runningNodes.mu.Lock()
	defer runningNodes.mu.Unlock()
	delete(runningNodes.dirs, dir)
}

// lostLogAdvice is what an operator does about a node whose log was lost.
func lostLogAdvice(id uint64) string {
	return fmt.Sprintf("its data dir was lost or wiped while node %d stayed a member, and Raft cannot run on it: "+
		"remove the node from another one (rafting cluster remove %d), then join the machine under a new --id with an empty data dir", id, id)
}

// onPanic is called with every panic message of Dragonboat's before it
// panics: for a lost log, it says what happened and marks the data dir.
func onPanic(msg string) {
	if !strings.HasPrefix(msg, lostLogPanic) {
		return
	}
	runningNodes.mu.Lock()
	defer runningNodes.mu.Unlock()
	if len(runningNodes.dirs) != 1 {
		return
	}
	for dir, id := range runningNodes.dirs {
		advice := lostLogAdvice(id)
		if lg := dbLogger.Load(); lg != nil {
			lg.Error("this node's Raft log is empty where its peers hold committed entries: "+advice, "raft", msg)
		}
		_ = config.WriteFile(filepath.Join(dir, lostLogFile), []byte(msg+"\n"+advice+"\n"))
	}
}

// checkLostLog refuses a data dir marked lost.
func checkLostLog(dir string, id uint64) error {
	b, err := os.ReadFile(filepath.Join(dir, lostLogFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return fmt.Errorf("data dir %s: its Raft log was found empty where the cluster holds committed entries (%s): %s",
		dir, first, lostLogAdvice(id))
}

// checkNotWiped runs before a node that started on an empty data dir
// registers: once its meta replica has caught up (a ReadIndex), a record
// of its ID with an incarnation says that a process of this node ran
// before, on a data dir that is gone — its peers hold entries it
// acknowledged and has forgotten, which Raft's safety does not allow. On
// a new cluster's first start and on a join the record is absent or has
// no incarnation (AddNode writes none). The node then says so, marks the
// data dir (every later start is refused before Raft starts) and stops as
// a removed node does. False: it stopped, or the node is closing.
//
// Dragonboat may panic first (onPanic), when a heartbeat's commit index
// reaches past the empty log before this check ends; whichever comes first
// marks the dir.
func (n *Node) checkNotWiped() bool {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		err := n.SyncMeta(ctx)
		cancel()
		if err == nil {
			break
		}
		if !n.sleep(backoff(attempt)) {
			return false
		}
	}
	rec, ok := n.meta.Node(n.cfg.NodeID)
	if !ok || rec.Incarnation == 0 || rec.Incarnation == n.incarnation {
		return true
	}
	advice := lostLogAdvice(n.cfg.NodeID)
	msg := fmt.Sprintf("node %d started on an empty data dir, and the cluster remembers a process of node %d that ran before", n.cfg.NodeID, n.cfg.NodeID)
	if err := config.WriteFile(filepath.Join(n.cfg.DataDir, lostLogFile), []byte(msg+"\n"+advice+"\n")); err != nil {
		n.log.Warn("cannot mark the data dir", "err", err)
	}
	n.removal.once.Do(func() {
		reason := msg + ": " + advice
		n.removal.reason.Store(&reason)
		n.log.Error("this node's Raft log is empty where its peers hold committed entries: it stops serving and exits; "+advice, "how", msg)
		close(n.removal.done)
	})
	return false
}

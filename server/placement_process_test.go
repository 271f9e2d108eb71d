package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server/fsm"
)

// view is server i's GET /v1/cluster, nil when it does not answer.
func view(c *proctest.Cluster, i int) *api.Cluster {
	code, b, err := c.Call(i, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil)
	if err != nil || code != http.StatusOK {
		return nil
	}
	var cl api.Cluster
	if json.Unmarshal(b, &cl) != nil {
		return nil
	}
	return &cl
}

// placementDone reports whether cl shows every tenant shard on exactly r
// voting replicas, none on a node of not, no move under way, and the
// nodes (but those of not) within one replica of each other.
func placementDone(cl *api.Cluster, r int, not ...uint64) bool {
	if cl == nil {
		return false
	}
	for _, sh := range cl.Shards {
		if sh.Tenant == "" {
			continue
		}
		if sh.Move != nil || len(sh.NonVoting) > 0 || len(sh.Replicas) != r {
			return false
		}
		for _, node := range sh.Replicas {
			for _, n := range not {
				if node == n {
					return false
				}
			}
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range cl.Nodes {
		lo, hi = min(lo, n.Replicas), max(hi, n.Replicas)
	}
	return hi-lo <= 1
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writer puts keys into a tenant through every server in turn until
// stopped, and keeps those whose write was acknowledged.
type writer struct {
	c       *proctest.Cluster
	tenant  string
	token   string
	mu      sync.Mutex
	acked   []string
	skipped map[int]bool // servers not to ask (killed)
	stop    chan struct{}
	done    chan struct{}
}

func startWriter(c *proctest.Cluster, tenant, token string) *writer {
	w := &writer{c: c, tenant: tenant, token: token, skipped: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	var apis []string // the servers now: c.Servers grows with a join
	for _, s := range c.Servers {
		apis = append(apis, s.API)
	}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			server := 1 + i%len(apis)
			skip := w.skipped[server]
			w.mu.Unlock()
			if skip {
				continue
			}
			key := fmt.Sprintf("k%05d", i)
			code, _, err := proctest.Call(http.MethodPut, "http://"+apis[server-1]+"/v1/tenants/"+tenant+"/kv/"+key, token, map[string]string{"text": key})
			if err == nil && code < 300 {
				w.mu.Lock()
				w.acked = append(w.acked, key)
				w.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) skip(server int) {
	w.mu.Lock()
	w.skipped[server] = true
	w.mu.Unlock()
}

// finish stops the writer and checks that every acknowledged key is there,
// read through server via.
func (w *writer) finish(t *testing.T, via int) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	acked := w.acked
	w.mu.Unlock()
	if len(acked) == 0 {
		t.Fatalf("%s: no write was acknowledged", w.tenant)
	}
	have := map[string]bool{}
	for start := ""; ; {
		code, b := w.c.Retry(via, w.token, http.MethodGet, "/v1/tenants/"+w.tenant+"/kv?prefix=true&consistent=true&start="+start, nil)
		if code != http.StatusOK {
			t.Fatalf("%s: read the keys: %d %s", w.tenant, code, b)
		}
		var l api.KVListResponse
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		for _, kv := range l.KVs {
			have[kv.Key] = true
		}
		if l.Next == "" {
			break
		}
		start = l.Next
	}
	for _, k := range acked {
		if !have[k] {
			t.Fatalf("%s: acknowledged write %s lost (%d acknowledged, %d keys)", w.tenant, k, len(acked), len(have))
		}
	}
}

// TestPlacementProcesses, in server processes: five nodes place every
// tenant on exactly three; a node killed (SIGKILL) and removed (`rafting
// cluster remove`) leaves every tenant back on three, no acknowledged write
// lost; a sixth node joins and replicas move onto it, and a move cut by
// killing the meta shard's leader is finished once it is back.
func TestPlacementProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("processes")
	}
	c := proctest.StartClusterWith(t, proctest.Options{Servers: 5})
	tokens := map[string]string{}
	for i := range 6 {
		name := fmt.Sprintf("p%d", i)
		tokens[name] = c.CreateTenant(name)
	}
	waitFor(t, 60*time.Second, "every tenant on 3 of 5 nodes", func() bool { return placementDone(view(c, 1), 3) })
	var writers []*writer
	for name, tok := range tokens {
		writers = append(writers, startWriter(c, name, tok))
	}

	// Kill a node that is not the meta leader, and remove it.
	cl := view(c, 1)
	metaLeader := 0
	for _, sh := range cl.Shards {
		if sh.ShardID == fsm.MetaShardID {
			metaLeader = int(sh.Leader)
		}
	}
	victim := 5
	if victim == metaLeader {
		victim = 4
	}
	for _, w := range writers {
		w.skip(victim)
	}
	c.Servers[victim-1].Proc.Kill()
	c.Must(1, proctest.AdminToken, http.MethodDelete, fmt.Sprintf("/v1/cluster/nodes/%d", victim), nil)
	waitFor(t, 90*time.Second, "every tenant back on 3 after the removal", func() bool {
		return placementDone(view(c, 1), 3, uint64(victim))
	})

	// A sixth node: replicas move onto it. Kill the meta leader while a
	// move is under way, then start it again.
	added := c.Join(1)
	var moving *api.Shard
	waitFor(t, 60*time.Second, "a move under way", func() bool {
		cl := view(c, 1)
		if cl == nil {
			return false
		}
		for _, sh := range cl.Shards {
			if sh.Move != nil {
				moving = &sh
				for _, m := range cl.Shards {
					if m.ShardID == fsm.MetaShardID {
						metaLeader = int(m.Leader)
					}
				}
				return metaLeader != 0
			}
		}
		return false
	})
	t.Logf("killing the meta leader, node %d, while %s moves %+v", metaLeader, moving.Tenant, *moving.Move)
	for _, w := range writers {
		w.skip(metaLeader)
	}
	c.Servers[metaLeader-1].Proc.Kill()
	via := 1
	if via == metaLeader || via == victim {
		via = 2
	}
	if via == metaLeader || via == victim {
		via = 3
	}
	waitFor(t, 30*time.Second, "another meta leader", func() bool {
		cl := view(c, via)
		for _, sh := range cl.Shards {
			if sh.ShardID == fsm.MetaShardID && sh.Leader != 0 && int(sh.Leader) != metaLeader {
				return true
			}
		}
		return false
	})
	c.Restart(metaLeader)
	c.WaitServerReady(metaLeader)
	waitFor(t, 120*time.Second, "the move finished and the nodes balanced", func() bool {
		cl := view(c, via)
		if !placementDone(cl, 3, uint64(victim)) {
			return false
		}
		for _, n := range cl.Nodes {
			if n.ID == uint64(added.ID) && n.Replicas == 0 {
				return false
			}
		}
		return true
	})
	for _, w := range writers {
		w.finish(t, via)
	}
	if s := c.Servers[metaLeader-1].Log(); strings.Contains(s, "level=ERROR") {
		t.Logf("node %d logged errors:\n%s", metaLeader, s)
	}
}

package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/server/servertest"
)

// TestPlacementJoinKeepsMembers: while a sixth node joins five and replicas
// move onto it, SDK members of every tenant (two master-standby members on
// their own Clients, a farm member) and a writer see nothing of it: no
// failed SDK write, no member lost (Left), the first master stays master
// (suspended at most, during a leadership transfer) with the same token,
// and the standby is never granted.
func TestPlacementJoinKeepsMembers(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	type watched struct {
		mu      sync.Mutex
		changes []sdk.RoleChange
	}
	var (
		all     []*watched
		members []*sdk.Member
		clients []*sdk.Client
		writers sync.WaitGroup
		stop    = make(chan struct{})
		failMu  sync.Mutex
		failed  []string
		writes  int
	)
	for i := range 5 { // 15 replicas, 3 a node: three move onto the sixth
		name := fmt.Sprintf("t%d", i)
		tok := c.CreateTenant(name, api.Quotas{})
		connect := func() *sdk.Client {
			cl, err := sdk.Connect(ctx, sdk.WithServers(c.Addrs()...), sdk.WithTenant(name), sdk.WithToken(tok))
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, cl)
			return cl
		}
		for j, id := range []string{"a", "b"} {
			cl := connect()
			m, err := cl.Join(ctx, sdk.Instance{Service: "ledger", ID: id, Address: "127.0.0.1:1", Mode: sdk.MasterStandby, Priority: 2 - j})
			if err != nil {
				t.Fatal(err)
			}
			w := &watched{}
			m.OnRoleChange(func(rc sdk.RoleChange) {
				w.mu.Lock()
				w.changes = append(w.changes, rc)
				w.mu.Unlock()
			})
			all = append(all, w)
			members = append(members, m)
		}
		cl := connect()
		if _, err := cl.Join(ctx, sdk.Instance{Service: "farm", ID: "f", Address: "127.0.0.1:2"}); err != nil {
			t.Fatal(err)
		}
		servertest.Eventually(t, 30*time.Second, name+"'s first member master", func() bool { return members[2*i].IsMaster() })
		writers.Add(1)
		go func() {
			defer writers.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Put(wctx, fmt.Sprintf("k/%d", k), []byte("v"))
				wcancel()
				failMu.Lock()
				writes++
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: put k/%d: %v", name, k, err))
				}
				failMu.Unlock()
			}
		}()
	}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	servertest.Eventually(t, 30*time.Second, "five nodes settled", func() bool { return settled(c, 1, 3, ids(5)) })
	c.JoinNode()
	servertest.Eventually(t, 90*time.Second, "six nodes balanced", func() bool { return settled(c, 1, 3, ids(6)) })
	close(stop)
	writers.Wait()
	if len(failed) > 0 || writes == 0 {
		t.Fatalf("%d writes, %d failed: %v", writes, len(failed), failed)
	}
	for i, w := range all {
		w.mu.Lock()
		changes := w.changes
		w.mu.Unlock()
		first := i%2 == 0
		var token uint64
		for _, rc := range changes {
			switch {
			case rc.Role == sdk.Left:
				t.Errorf("member %d left: %v", i, changes)
			case !first && (rc.Role == sdk.Master || rc.Role == sdk.Suspended):
				t.Errorf("standby %d became %v: %v", i, rc, changes)
			case rc.Token != 0 && token != 0 && rc.Token != token:
				t.Errorf("member %d's token changed %d -> %d: %v", i, token, rc.Token, changes)
			}
			if rc.Token != 0 {
				token = rc.Token
			}
		}
		if first && !members[i].IsMaster() {
			servertest.Eventually(t, 10*time.Second, fmt.Sprintf("member %d master again", i), members[i].IsMaster)
		}
	}
}

package server_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// regOp is one operation on the register an instance's weight makes; a
// deregistration writes -1, which reads give back as "not listed".
type regOp struct {
	write bool
	value int // written (-1: deregistered), or read (-1: not listed)
}

// registerModel is a single register: a write sets it, a read returns it.
var registerModel = porcupine.Model{
	Init: func() any { return 0 },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regOp)
		if in.write {
			return true, in.value
		}
		return output.(int) == state.(int), state
	},
	DescribeOperation: func(input, output any) string {
		if in := input.(regOp); in.write && in.value < 0 {
			return "deregister"
		} else if in.write {
			return fmt.Sprintf("write %d", in.value)
		}
		return fmt.Sprintf("read %d", output.(int))
	},
}

// TestLinearizable: writes of one instance's weight, its deregistrations,
// and consistent reads of it, from six clients spread over the three nodes
// while the tenant's leader is killed and restarted, then the next leader
// too, form a linearizable history (checked with porcupine). A write answered 2xx happened; one answered 503 (not
// applied) or refused a connection did not; one without an answer may have
// happened, at any time after it was sent.
func TestLinearizable(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("lin", api.Quotas{RequestsPerSecond: 100_000, Burst: 100_000, WritesPerSecond: 100_000})
	const path = "/v1/tenants/lin/services/reg/instances/x"
	zero := 0
	register(t, c, 1, tok, "lin", "reg", "x", api.RegisterRequest{Address: "a:1", Weight: &zero})
	leader := c.WaitTenantLeader("lin")

	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		unknown []porcupine.Operation // writes without an answer: Return set at the end
		stop    atomic.Bool
		wg      sync.WaitGroup
		seq     atomic.Int64
	)
	notSent := func(err error) bool {
		var oe *net.OpError
		return errors.As(err, &oe) && oe.Op == "dial"
	}
	for client := range 6 {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				node := (client+n)%3 + 1
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				op := porcupine.Operation{ClientId: client, Call: since()}
				if client%2 == 0 {
					v := int(seq.Add(1))
					method, body := http.MethodPut, any(api.RegisterRequest{Address: "a:1", Weight: &v})
					if client == 4 && n%4 == 3 {
						v, method, body = -1, http.MethodDelete, nil
					}
					op.Input = regOp{write: true, value: v}
					r, err := c.DoErr(ctx, node, tok, method, path, body, nil)
					op.Return = since()
					mu.Lock()
					switch {
					case err == nil && r.Status < 300:
						history = append(history, op)
					case err == nil && r.Err() != nil && (r.Err().Code == api.CodeUnavailable || r.Err().Code == api.CodeRateLimited):
						// not applied
					case err != nil && notSent(err):
						// never sent
					case err == nil && r.Status < 500:
						t.Errorf("write on node %d: %d %s", node, r.Status, r.Body)
					default:
						unknown = append(unknown, op)
					}
					mu.Unlock()
				} else {
					op.Input = regOp{}
					r, err := c.DoErr(ctx, node, tok, http.MethodGet, "/v1/tenants/lin/services/reg?consistent=true", nil, nil)
					op.Return = since()
					if err == nil && r.Status == http.StatusOK {
						var s api.ServiceResponse
						r.JSON(t, &s)
						op.Output = -1
						for _, in := range s.Instances {
							if in.ID == "x" {
								op.Output = in.Weight
							}
						}
						mu.Lock()
						history = append(history, op)
						mu.Unlock()
					}
				}
				cancel()
			}
		})
	}
	for range 2 {
		time.Sleep(time.Second)
		c.AbortNode(leader) // a crash of the tenant's leader
		time.Sleep(time.Second)
		c.StartNode(leader)
		time.Sleep(1500 * time.Millisecond)
		leader = c.WaitTenantLeader("lin")
	}
	stop.Store(true)
	wg.Wait()
	for _, op := range unknown {
		op.Return = math.MaxInt64
		history = append(history, op)
	}
	reads, writes := 0, 0
	for _, op := range history {
		if op.Input.(regOp).write {
			writes++
		} else {
			reads++
		}
	}
	if reads < 50 || writes < 50 {
		t.Fatalf("only %d reads and %d writes completed", reads, writes)
	}
	t.Logf("%d reads, %d writes (%d without an answer)", reads, writes, len(unknown))
	switch res := porcupine.CheckOperationsTimeout(registerModel, history, time.Minute); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Fatal("the linearizability check did not finish within a minute")
	default:
		t.Fatalf("the history of %d operations is not linearizable", len(history))
	}
}

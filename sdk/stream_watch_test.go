package sdk_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// history records every snapshot a Service's cache applied, in order.
type history struct {
	mu    sync.Mutex
	snaps []sdk.Snapshot
}

func record(t *testing.T, svc *sdk.Service) *history {
	h := &history{}
	stop := sdk.Listen(svc, func(s sdk.Snapshot) {
		h.mu.Lock()
		h.snaps = append(h.snaps, s)
		h.mu.Unlock()
	})
	t.Cleanup(stop)
	return h
}

func (h *history) all() []sdk.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.snaps)
}

// content is what a snapshot says of the service, for comparisons.
func content(instances []api.Instance, m *api.Master) string {
	var b strings.Builder
	for _, in := range instances {
		fmt.Fprintf(&b, "%s@%s/%s/%d;", in.ID, in.Address, in.State, in.Weight)
	}
	if m != nil {
		fmt.Fprintf(&b, " master %s token %d releasing %v", m.Instance, m.FencingToken, m.Releasing)
	}
	return b.String()
}

// checkOrder fails t if h's snapshots go back in index, or if two of them
// at one index differ, or if one differs from what other saw at the same
// index.
func checkOrder(t *testing.T, name string, h *history, other *history) {
	t.Helper()
	at := map[uint64]string{}
	if other != nil {
		for _, s := range other.all() {
			at[s.Index] = content(s.Instances, s.Master)
		}
	}
	var last uint64
	seen := map[uint64]string{}
	for _, s := range h.all() {
		if s.Index < last {
			t.Fatalf("%s: snapshot at index %d after index %d", name, s.Index, last)
		}
		last = s.Index
		c := content(s.Instances, s.Master)
		if prev, ok := seen[s.Index]; ok && prev != c {
			t.Fatalf("%s: two snapshots at index %d differ:\n%s\n%s", name, s.Index, prev, c)
		}
		seen[s.Index] = c
		if want, ok := at[s.Index]; ok && want != c {
			t.Fatalf("%s: at index %d the stream shows\n%s\nthe blocking query\n%s", name, s.Index, c, want)
		}
	}
}

// restRead is the service as a linearizable REST read on the cluster shows it.
func restRead(t *testing.T, c *sdktest.Cluster, service string) api.ServiceResponse {
	t.Helper()
	var r api.ServiceResponse
	resp := c.Servers.Do(c.Servers.WaitTenantLeader(c.Tenant), c.Token, "GET", "/v1/tenants/"+c.Tenant+"/services/"+service+"?consistent=true", nil)
	if e := resp.Err(); e != nil {
		t.Fatalf("REST read: %v", e)
	}
	resp.JSON(t, &r)
	slices.SortFunc(r.Instances, func(a, b api.Instance) int { return strings.Compare(a.ID, b.ID) })
	return r
}

// waitSame waits until svc's snapshot shows what a REST read shows, at an
// index at least the read's modify index (a stream's index is the
// service's modify index; a REST read's, the replica's applied one).
func waitSame(t *testing.T, c *sdktest.Cluster, svc *sdk.Service, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := restRead(t, c, svc.Name())
		snap := svc.Snapshot()
		want, got := content(r.Instances, r.Master), content(snap.Instances, snap.Master)
		if got == want && snap.Index >= r.ModifyIndex {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: cache at index %d:\n%s\nREST at index %d:\n%s", name, snap.Index, got, r.Index, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamWatchBurst: a Service fed by the client stream sees a burst of
// joins and leaves and the master changes, in index order, each index as a
// blocking-query Service saw it, and ends where a REST read does.
func TestStreamWatchBurst(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Quotas: api.Quotas{RequestsPerSecond: 100_000, Burst: 100_000, WritesPerSecond: 100_000}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	onStream := c.Connect(t, sdk.WithClientStream(true), sdk.WithQuarantine(0))
	onREST := c.Connect(t, sdk.WithClientStream(false), sdk.WithQuarantine(0))
	if !sdk.OnStream(onStream) || sdk.OnStream(onREST) {
		t.Fatal("WithClientStream: not as asked")
	}
	svc, err := onStream.Service(ctx, "burst")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := onREST.Service(ctx, "burst")
	if err != nil {
		t.Fatal(err)
	}
	hs, hr := record(t, svc), record(t, ref)

	joiner := c.Connect(t)
	// Two master-standby members: the first is master; its leave hands over.
	var ms []*sdk.Member
	for i := range 2 {
		m, err := joiner.Join(ctx, sdk.Instance{Service: "burst", ID: fmt.Sprintf("ms-%d", i), Address: "10.0.0.9:80", Mode: sdk.MasterStandby}, sdk.WithDrainDelay(0))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	var mu sync.Mutex
	var farm []*sdk.Member
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := joiner.Join(ctx, sdk.Instance{Service: "burst", ID: fmt.Sprintf("f-%02d", i), Address: fmt.Sprintf("10.0.1.%d:80", i)}, sdk.WithDrainDelay(0))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			farm = append(farm, m)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, m := range farm[:25] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Leave(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	// The master leaves: its standby takes over.
	for _, m := range ms {
		if m.IsMaster() {
			if err := m.Leave(ctx); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	wg.Wait()

	waitSame(t, c, svc, "stream")
	waitSame(t, c, ref, "blocking query")
	checkOrder(t, "stream", hs, hr)
	snaps := hs.all()
	if len(snaps) < 5 {
		t.Fatalf("the stream applied %d snapshots for a burst of 70 changes", len(snaps))
	}
	if last := snaps[len(snaps)-1]; last.Master == nil {
		t.Fatalf("no master after the handover: %s", content(last.Instances, last.Master))
	}
	open := 0
	for id := 1; id <= 3; id++ {
		open += c.Servers.Server(id).API().OpenStreams()
	}
	if open == 0 {
		t.Fatal("no client stream open on any node")
	}
}

// TestSessionsOnClientStream: with WithClientStream, a Client's members
// attach their sessions on its one stream and renew them together — the
// keepalives that fall due within a tenth of their interval leave in one
// frame — and the members live, are listed and elect a master as over REST.
func TestSessionsOnClientStream(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	cl := c.Connect(t, sdk.WithClientStream(true))
	ctx := ctxT(t, 30*time.Second)
	const n = 20
	for i := range n {
		// Sessions of their own, to batch: farm members of a Client share
		// one by default (TestSharedSession).
		m, err := cl.Join(ctx, sdk.Instance{Service: "farm", ID: fmt.Sprintf("f%d", i), Address: "10.0.0.1:80"},
			sdk.WithTTL(3*time.Second), sdk.WithDrainDelay(0), sdk.WithOwnSession())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Leave(context.Background()) })
	}
	ms, err := cl.Join(ctx, sdk.Instance{Service: "ms", ID: "m1", Address: "10.0.0.2:80", Mode: sdk.MasterStandby}, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Leave(context.Background()) })
	eventually(t, 5*time.Second, "m1 master", ms.IsMaster)
	f0, s0 := sdk.KeepaliveFrames(cl)
	time.Sleep(3 * time.Second) // a TTL: every farm session renewed at least twice
	f1, s1 := sdk.KeepaliveFrames(cl)
	frames, sessions := f1-f0, s1-s0
	// 20 farm sessions renew every second and the master's every 250 ms:
	// ≥ 40 + 12 keepalives; one frame each would be as many frames.
	if sessions < 2*n+8 {
		t.Fatalf("%d keepalives in 3 s on the client stream, want ≥ %d", sessions, 2*n+8)
	}
	if frames*2 > sessions {
		t.Fatalf("%d keepalives in %d frames: not batched", sessions, frames)
	}
	if !ms.IsMaster() {
		t.Fatalf("m1 lost its mastership: %s", sdk.Debug(ms))
	}
	svc, err := c.Connect(t).Service(ctx, "farm")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(svc.Instances()); got != n {
		t.Fatalf("%d farm instances listed, want %d", got, n)
	}
	t.Logf("%d keepalives in %d frames", sessions, frames)
}

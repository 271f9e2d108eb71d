package fsm

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// bigTenant is a tenant whose service "big" has n instances with 4,000
// bytes of meta each (the default max_meta_bytes is 4 KiB).
func bigTenant(tb testing.TB, n int) *Tenant {
	tb.Helper()
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version})
	meta := map[string]string{"m": strings.Repeat("x", 4000)}
	for i := range n {
		var ch Changes
		o := sm.Apply(uint64(i+1), Encode(OpRegister, Register{Service: "big", ID: fmt.Sprintf("i%05d", i),
			Instance: api.RegisterRequest{Address: "10.0.0.1:80", Meta: meta}}), &ch)
		if o.Code != "" {
			tb.Fatal(o.Message)
		}
	}
	return sm
}

// rewriteBig changes the address of one of big's instances at index.
func rewriteBig(tb testing.TB, sm *Tenant, index uint64, id string) {
	tb.Helper()
	var ch Changes
	o := sm.Apply(index, Encode(OpRegister, Register{Service: "big", ID: id,
		Instance: api.RegisterRequest{Address: fmt.Sprintf("10.0.0.2:%d", index%60000), Meta: map[string]string{"m": "y"}}}), &ch)
	if o.Code != "" {
		tb.Fatal(o.Message)
	}
}

// TestAnswerAfterASmallWrite: after a write of one instance of a large
// service, the next answer encodes that instance alone, and reading it
// (encoding and writing it out) allocates a small part of its size. Before,
// every answer was encoded whole (json.Marshal of 10,000 instances), so a
// tenant that rewrote one instance between reads made every node encode
// and allocate its whole service at every write: attack pattern 6 (a
// 39.7 MB answer, +0.5 GB on each server, the victim's p99 56×).
func TestAnswerAfterASmallWrite(t *testing.T) {
	sm := bigTenant(t, 2000)
	_, a, err := sm.ServiceAnswer("big")
	if err != nil {
		t.Fatal(err)
	}
	size := a.Len()
	var m runtime.MemStats
	alloc := func() uint64 { runtime.ReadMemStats(&m); return m.TotalAlloc }
	var worst uint64
	for i := range 5 {
		rewriteBig(t, sm, uint64(3000+i), fmt.Sprintf("i%05d", 100*i))
		a0 := alloc()
		_, a, err := sm.ServiceAnswer("big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WriteTo(io.Discard); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, alloc()-a0)
		if a.Fresh() != 1 {
			t.Fatalf("the answer after one instance's write encoded %d instances, want 1", a.Fresh())
		}
	}
	t.Logf("answer %d KB; a read after a one-instance write allocated up to %d KB", size>>10, worst>>10)
	if worst > uint64(size)/8 {
		t.Fatalf("a read after a one-instance write allocated %d KB of a %d KB answer: it was encoded whole", worst>>10, size>>10)
	}
	checkAnswer(t, sm, "big")
}

// BenchmarkServiceAnswer is the read path of attack pattern 6 in one
// replica: one instance of a service of 10,000 with 4 KB of meta each is
// rewritten, then its answer is read and written out (to io.Discard).
func BenchmarkServiceAnswer(b *testing.B) {
	sm := bigTenant(b, 10_000)
	index := uint64(20_000)
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		index++
		rewriteBig(b, sm, index, fmt.Sprintf("i%05d", index%10_000))
		_, a, err := sm.ServiceAnswer("big")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := a.WriteTo(io.Discard)
		size = int(n)
	}
	b.ReportMetric(float64(size)/1e6, "MB/answer")
}

// TestServiceLeavesApplyFree: Service reads a large service's instances
// under the tenant's lock, not their views: a write that applies while
// readers loop over Service waits for a small part of one read. Before, a
// read held the lock while it made 10,000 views (the client stream's
// watches of a service read it so), and every apply of the tenant — and
// of the tenants sharing its Dragonboat apply worker — waited for it.
func TestServiceLeavesApplyFree(t *testing.T) {
	sm := bigTenant(t, 10_000)
	read := time.Hour // the shortest of three reads alone
	for range 3 {
		start := time.Now()
		if r := sm.Service("big"); len(r.Instances) != 10_000 {
			t.Fatalf("Service = %d instances", len(r.Instances))
		}
		read = min(read, time.Since(start))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					sm.Service("big")
				}
			}
		})
	}
	var waits []time.Duration
	for i := range 21 {
		time.Sleep(read / 3) // the readers are somewhere in a read
		w0 := time.Now()
		rewriteBig(t, sm, uint64(20_000+i), fmt.Sprintf("i%05d", i))
		waits = append(waits, time.Since(w0))
	}
	close(stop)
	wg.Wait()
	slices.Sort(waits)
	median := waits[len(waits)/2]
	t.Logf("one read %v alone; a write beside two reading loops took %v (median), %v at most", read, median, waits[len(waits)-1])
	if median > read/4 {
		t.Fatalf("a write beside readers of Service took %v (median) where one read takes %v: the readers hold the lock while they read",
			median, read)
	}
	checkAnswer(t, sm, "big")
}

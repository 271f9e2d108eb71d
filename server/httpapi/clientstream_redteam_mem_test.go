package httpapi_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeamStreamPendingMemory: write frames wait in a stream's pending
// queue while its 64 op goroutines are busy (here: held by the tarpit of
// the tenant's own writes_per_second). The pending bound counts only
// len(body) (maxPendingBytes = 1 MiB) and 4,096 frames, so frames whose
// bulk is in a string field (id) rather than in body each hold ~1 MiB while
// the stream believes they hold 0 bytes: up to ~4 GiB per stream.
// DECISIONS.md promises "waiting writes (≈1.2 MiB of frames + 1 MiB of
// bodies)". The client reads everything it is sent: no stall, no
// overload, nothing ends the stream.
func TestRedTeamStreamPendingMemory(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	q := generous
	q.WritesPerSecond = 1
	tok := c.CreateTenant("acme", q)
	c.WaitTenantLeader("acme")

	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)
	var req uint64
	// 3,000 valid writes over the tenant's own writes_per_second: each is
	// held ~250 ms by the tarpit, 64 at a time: ~12 s of busy op goroutines.
	var b strings.Builder
	for range 3000 {
		req++
		fmt.Fprintf(&b, `{"type":"put_instance","req":%d,"service":"web","id":"i%d","body":{"address":"a:1"}}`+"\n", req, req)
	}
	s.send(strings.TrimSuffix(b.String(), "\n"))
	valid := req

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const n = 400
	big := strings.Repeat("x", api.MaxFrameBytes-200) // each frame stays under MaxFrameBytes
	start := time.Now()
	for range n {
		req++
		s.send(`{"type":"put_instance","req":` + fmt.Sprint(req) + `,"service":"web","id":"` + big + `"}`)
	}
	sent := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	open := c.Server(1).API().OpenStreams()
	t.Logf("sent %d frames of %d KiB in %v; live heap grew %d MiB (from %d to %d MiB); open streams %d; results so far %v",
		n, len(big)>>10, sent, grew>>20, before.HeapAlloc>>20, after.HeapAlloc>>20, open, s.statuses(1, req))
	if grew > 32<<20 {
		t.Errorf("one stream holds %d MiB of live heap in waiting write frames (documented bound ≈ 2.2 MiB): "+
			"maxPendingBytes counts only len(body), not id/service/session", grew>>20)
	}
	// Everything is answered in the end, and the big frames are 400s.
	s.waitResults(1, req, 60*time.Second)
	st := s.statuses(valid+1, req)
	if st[http.StatusBadRequest] != n {
		t.Errorf("big frames answered %v", st)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("after every result: heap %d MiB", after.HeapAlloc>>20)
}

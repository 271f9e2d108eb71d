package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeamStreamKeepaliveAmplification: a tenant at requests_per_second
// 2 sends keepalive frames naming 10,000 sessions it does not have. Each
// unknown session is charged to the tenant's request bucket — empty after
// the first two — yet every one is still looked up, refused and answered
// with a full REST error body: the whole frame is served, whatever the
// bucket says, and the answer (several times the frame) is charged to no
// answer-byte budget.
func TestRedTeamStreamKeepaliveAmplification(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 2, Burst: 2, WritesPerSecond: 1000})
	c.WaitTenantLeader("acme")
	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)

	var frame strings.Builder
	const sessions = 10000
	const frames = 40
	var in, out int
	start, cpu0 := time.Now(), cpuTime()
	for req := uint64(1); req <= frames; req++ {
		frame.Reset()
		fmt.Fprintf(&frame, `{"type":"keepalive","req":%d,"sessions":[`, req)
		for i := range sessions {
			if i > 0 {
				frame.WriteByte(',')
			}
			fmt.Fprintf(&frame, `{"id":"nosuchsession%06d"}`, i)
		}
		frame.WriteString("]}")
		in += frame.Len() + 1
		s.send(frame.String())
		s.waitResults(req, req, 30*time.Second) // one at a time: under the 4-frame limit
		out += len(s.results[req][0].Body)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	r := s.results[1][0]
	t.Logf("%d keepalive frames × %d unknown sessions: %d KiB in, %d KiB of answers out (×%.1f) in %v, process CPU %v (%.0f µs per frame-KiB); first item: %.200s",
		frames, sessions, in>>10, out>>10, float64(out)/float64(in), el, cpu, float64(cpu.Microseconds())/float64(in>>10), r.Body)
	if out > 3*in {
		t.Errorf("answers are %.1f× the frames that asked for them, at requests_per_second 2 (%d sessions answered 429 in full each)",
			float64(out)/float64(in), frames*sessions)
	}
}

package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeamStreamUnchargedFrames: a tenant with requests_per_second 2
// (burst 2) sends frames that REST would charge as requests but the stream
// charges nothing: write frames refused by their handler's checks (a 400
// costs no write quota, and write frames are not charged requests), and
// unwatch frames naming no watch. REST refuses the same requests 429
// after the burst.
func TestRedTeamStreamUnchargedFrames(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 2, Burst: 2, WritesPerSecond: 1000})
	c.WaitTenantLeader("acme")
	longName := strings.Repeat("s", api.MaxNameLen+1)

	// REST: the same invalid write, 20 times.
	rest := map[int]int{}
	for range 20 {
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/"+longName+"/instances/i1", api.RegisterRequest{Address: "a:1"})
		rest[r.Status]++
	}
	t.Logf("REST, 20 invalid writes: %v", rest)
	time.Sleep(2 * time.Second) // let the bucket refill a little

	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)
	var req uint64
	send := func(n int, frame func(req uint64) string) (uint64, uint64, time.Duration, time.Duration) {
		from := req + 1
		start, cpu0 := time.Now(), cpuTime()
		var b strings.Builder
		for range n {
			req++
			b.WriteString(frame(req))
			b.WriteByte('\n')
			if b.Len() > 256<<10 {
				s.send(strings.TrimSuffix(b.String(), "\n"))
				b.Reset()
			}
		}
		if b.Len() > 0 {
			s.send(strings.TrimSuffix(b.String(), "\n"))
		}
		s.waitResults(from, req, 60*time.Second)
		return from, req, time.Since(start), cpuTime() - cpu0
	}

	// 1. Invalid writes.
	from, to, el, cpu := send(20000, func(r uint64) string {
		return fmt.Sprintf(`{"type":"put_instance","req":%d,"service":"%s","id":"i1","body":{"address":"a:1"}}`, r, longName)
	})
	inv := s.statuses(from, to)
	t.Logf("stream, %d invalid write frames: %v in %v (process CPU %v)", to-from+1, inv, el, cpu)

	// 2. Unwatch frames naming no watch.
	from, to, el, cpu = send(20000, func(r uint64) string { return fmt.Sprintf(`{"type":"unwatch","req":%d,"w":7}`, r) })
	unw := s.statuses(from, to)
	t.Logf("stream, %d unwatch frames: %v in %v (process CPU %v)", to-from+1, unw, el, cpu)

	// 3. Write frames with ~1 MiB in a string field: decoded in full, refused
	// 400, charged neither a request nor write bytes (only body is).
	big := strings.Repeat("x", api.MaxFrameBytes-200)
	from, to, el, cpu = send(150, func(r uint64) string {
		return fmt.Sprintf(`{"type":"put_instance","req":%d,"service":"web","id":"%s"}`, r, big)
	})
	bigs := s.statuses(from, to)
	t.Logf("stream, %d write frames of 1 MiB (id): %v in %v (process CPU %v): %.0f MiB/s decoded against WriteBytesPerSecond %d MiB/s",
		to-from+1, bigs, el, cpu, float64(to-from+1)/el.Seconds(), c.Config(1).WriteBytesPerSecond>>20)

	if inv[http.StatusTooManyRequests] == 0 {
		t.Errorf("20000 invalid write frames at requests_per_second 2: none refused 429 (%v); REST refused %d of 20", inv, rest[http.StatusTooManyRequests])
	}
	if unw[http.StatusTooManyRequests] == 0 {
		t.Errorf("20000 unwatch frames naming no watch at requests_per_second 2: none refused 429 (%v)", unw)
	}
	if bigs[http.StatusTooManyRequests] == 0 {
		t.Errorf("150 MiB of write frames (bulk in id) refused 400 and never charged (%v): write bytes quota is %d MiB/s", bigs, c.Config(1).WriteBytesPerSecond>>20)
	}
}

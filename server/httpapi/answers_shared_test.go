package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestLargeAnswerSharedAfterSmallWrites: readers of a large service that
// changes by one instance at a time (attack pattern 6) share one encoding
// per change, and that encoding costs the node a small part of the answer:
// the unchanged instances' bytes are kept from the previous answer, and
// the answer is written from its parts, not copied into one buffer.
// Before, each change re-encoded the whole answer (json.Marshal of every
// instance, its buffer grown by doubling, then copied): a 4 MB answer
// allocated more than 12 MB at every write.
func TestLargeAnswerSharedAfterSmallWrites(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) {
		cfg.WriteBytesPerSecond = 64 << 20
		cfg.AnswerBytesPerSecond = 0
	}})
	tok := c.CreateTenant("big", api.Quotas{})
	bigService(t, c, tok, "big", 1000)
	ten, ok := c.Server(1).Node().Tenant("big")
	if !ok {
		t.Fatal("no replica of big on node 1")
	}
	url := "http://" + c.Addr(1) + "/v1/tenants/big/services/big"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	const readers = 8
	// read makes readers GETs at once and returns the bytes they read.
	read := func() int64 {
		var wg sync.WaitGroup
		sizes := make([]int64, readers)
		for i := range readers {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				n, err := io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK || err != nil || n != resp.ContentLength {
					t.Errorf("GET = %d, %d of %d bytes read, %v", resp.StatusCode, n, resp.ContentLength, err)
				}
				sizes[i] = n
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return sizes[0]
	}
	size := read() // the first encoding, and the connections opened
	var m runtime.MemStats
	alloc := func() uint64 { runtime.ReadMemStats(&m); return m.TotalAlloc }
	least := uint64(1 << 62)
	for j := range 5 {
		r := c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/big/services/big/instances/i%05d", 100*j),
			api.RegisterRequest{Address: fmt.Sprintf("10.0.0.2:%d", 1000+j)})
		if r.Status != http.StatusOK {
			t.Fatalf("rewrite = %d %s", r.Status, r.Body)
		}
		n0, a0 := ten.SM.AnswersEncoded(), alloc()
		read()
		a := alloc() - a0
		least = min(least, a)
		if n := ten.SM.AnswersEncoded() - n0; n != 1 {
			t.Fatalf("%d concurrent reads after one write encoded the answer %d times, want once", readers, n)
		}
	}
	t.Logf("answer %d KB; %d concurrent reads after a one-instance write allocated at least %d KB in the process",
		size>>10, readers, least>>10)
	if least > uint64(size)/2 {
		t.Fatalf("%d reads after a one-instance write allocated %d KB in the process for a %d KB answer: it was encoded whole",
			readers, least>>10, size>>10)
	}
}

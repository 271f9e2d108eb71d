package sdk_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
)

// TestConcurrentFirstCalls: many goroutines asking for one service at
// once share one watcher and one first request.
func TestConcurrentFirstCalls(t *testing.T) {
	var fills atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/tenants/t/services":
			w.Write([]byte(`{"index":1,"services":[]}`))
		case r.URL.Path == "/v1/tenants/t/services/svc" && r.URL.Query().Get("index") == "":
			fills.Add(1)
			time.Sleep(50 * time.Millisecond)
			w.Write([]byte(`{"index":5,"modify_index":5,"service":"svc","instances":[{"id":"a","address":"a:1","state":"ready","weight":100}]}`))
		case r.URL.Path == "/v1/tenants/t/services/svc":
			<-r.Context().Done() // a blocking query with nothing new
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cl, err := sdk.Connect(ctxT(t, 5*time.Second), sdk.WithServers(strings.TrimPrefix(srv.URL, "http://")), sdk.WithTenant("t"), sdk.WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var wg sync.WaitGroup
	got := make([]*sdk.Service, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := cl.Service(ctxT(t, 5*time.Second), "svc")
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		}()
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] || len(s.Instances()) != 1 {
			t.Fatal("concurrent first calls got different or empty services")
		}
	}
	if n := fills.Load(); n != 1 {
		t.Fatalf("%d first-fill requests for 20 concurrent calls, want 1", n)
	}
}

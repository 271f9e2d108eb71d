package sdk_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
)

// fakeService is one service on a fake server: a linearizable read
// (consistent=true) answers its state; a plain read answers what a lagging
// follower would (lag); a blocking query never answers, as one with nothing
// new.
type fakeService struct {
	mu          sync.Mutex
	state, lag  string // answer bodies
	failing     bool   // consistent reads answer 503
	plain, cons int    // plain and consistent reads served
}

func (f *fakeService) set(index uint64, ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = serviceBody(index, ids...)
}

func serviceBody(index uint64, ids ...string) string {
	var ins []string
	for _, id := range ids {
		ins = append(ins, fmt.Sprintf(`{"id":%q,"address":"%s:1","state":"ready","weight":100}`, id, id))
	}
	return fmt.Sprintf(`{"index":%d,"modify_index":%d,"service":"svc","instances":[%s]}`, index, index, strings.Join(ins, ","))
}

func (f *fakeService) serve(t *testing.T) *sdk.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.URL.Path == "/v1/tenants/t/services":
			w.Write([]byte(`{"index":1,"services":[]}`))
		case r.URL.Path != "/v1/tenants/t/services/svc":
			http.NotFound(w, r)
		case q.Get("index") != "":
			<-r.Context().Done()
		case q.Get("consistent") == "true":
			f.mu.Lock()
			body, failing := f.state, f.failing
			f.cons++
			f.mu.Unlock()
			if failing {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"error":{"code":"unavailable","message":"no leader","retry_after_ms":10}}`))
				return
			}
			w.Write([]byte(body))
		default:
			f.mu.Lock()
			body := f.lag
			f.plain++
			f.mu.Unlock()
			w.Write([]byte(body))
		}
	}))
	t.Cleanup(srv.Close)
	cl, err := sdk.Connect(ctxT(t, 5*time.Second), sdk.WithServers(strings.TrimPrefix(srv.URL, "http://")),
		sdk.WithTenant("t"), sdk.WithToken("tok"), sdk.WithDebounce(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func instanceIDs(s *sdk.Service) []string {
	var out []string
	for _, in := range s.Instances() {
		out = append(out, in.ID)
	}
	return out
}

// TestFirstFillIsLinearizable: a new Client's first fill is a consistent
// read, never the answer of a follower that has not applied a
// registration yet.
func TestFirstFillIsLinearizable(t *testing.T) {
	f := &fakeService{lag: serviceBody(5)}
	f.set(7, "a")
	cl := f.serve(t)
	svc, err := cl.Service(ctxT(t, 5*time.Second), "svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := instanceIDs(svc); !slices.Equal(got, []string{"a"}) || svc.Index() != 7 {
		t.Fatalf("first fill = %v at %d, want [a] at 7 (the consistent answer)", got, svc.Index())
	}
	if ep, err := svc.Balancer(balancer.RoundRobin()).Pick(); err != nil || ep.ID != "a" {
		t.Fatalf("Pick() = %v, %v, want a", ep.ID, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.plain != 0 || f.cons != 1 {
		t.Fatalf("first fill made %d plain and %d consistent reads, want 0 and 1", f.plain, f.cons)
	}
}

// TestSync: Sync applies a consistent read before it returns, never takes
// the cache back, keeps it when it fails, and refuses after Close.
func TestSync(t *testing.T) {
	f := &fakeService{lag: serviceBody(5)}
	f.set(7, "a")
	cl := f.serve(t)
	svc, err := cl.Service(ctxT(t, 5*time.Second), "svc")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.RoundRobin())

	// A change the watch has not told (its blocking query never answers).
	f.set(9, "a", "b")
	if err := svc.Sync(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if got := instanceIDs(svc); !slices.Equal(got, []string{"a", "b"}) || svc.Index() != 9 {
		t.Fatalf("after Sync the cache holds %v at %d, want [a b] at 9", got, svc.Index())
	}
	eventually(t, 5*time.Second, "the balancer to take b", func() bool { return len(b.Endpoints()) == 2 })

	// An answer older than the cache (a broken server): nothing changes.
	f.set(8, "a")
	if err := svc.Sync(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Sync() with an older answer = %v", err)
	}
	if got := instanceIDs(svc); !slices.Equal(got, []string{"a", "b"}) || svc.Index() != 9 {
		t.Fatalf("an older answer took the cache back to %v at %d", got, svc.Index())
	}

	// No answer: Sync fails with the cause, the cache stays.
	f.mu.Lock()
	f.failing = true
	f.mu.Unlock()
	err = svc.Sync(ctxT(t, 200*time.Millisecond))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "svc") {
		t.Fatalf("Sync() with no quorum = %v, want ErrUnavailable naming the service", err)
	}
	if got := instanceIDs(svc); !slices.Equal(got, []string{"a", "b"}) || svc.Stale() {
		t.Fatalf("a failed Sync changed the cache: %v, stale %v", got, svc.Stale())
	}

	cl.Close()
	if err := svc.Sync(ctxT(t, time.Second)); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Sync() after Close = %v, want ErrClosed", err)
	}
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/internal/restclient"
)

// clientLoad is what the SRE ran through every procedure: a
// writer registering instances and a watcher following the service with
// blocking queries, each as a client of the REST API does (every server
// in turn, 503 and 504 retried within a budget), counting what a client
// would see fail:
//   - a write or a read that fails after its retries (10 s);
//   - an answer whose index is below one seen before (time going back);
//   - an answer that misses an instance whose registration was
//     acknowledged at an index at or below the answer's (a stale or
//     partial state).
type clientLoad struct {
	t       *testing.T
	servers func() []string // the API addresses to use now
	token   string
	tenant  string
	service string

	mu       sync.Mutex
	acked    map[string]uint64 // instance -> the index its registration was acknowledged at
	writes   int
	reads    int
	failures []string

	stop chan struct{}
	wg   sync.WaitGroup
}

// startLoad starts the writer and the watcher on the tenant's service
// "load"; Stop ends them and reports.
func startLoad(t *testing.T, token, tenant string, servers func() []string) *clientLoad {
	l := &clientLoad{t: t, servers: servers, token: token, tenant: tenant, service: "load",
		acked: map[string]uint64{}, stop: make(chan struct{})}
	l.wg.Add(2)
	go l.write()
	go l.watch()
	return l
}

func (l *clientLoad) client(rotate int) *restclient.Client {
	var urls []string
	addrs := l.servers()
	for i := range addrs {
		urls = append(urls, "http://"+addrs[(i+rotate)%len(addrs)])
	}
	return &restclient.Client{Servers: urls, Token: l.token, Retry: restclient.For(10*time.Second, 50*time.Millisecond),
		HTTP: &http.Client{Timeout: 5 * time.Second, CheckRedirect: restclient.NoRedirects}}
}

func (l *clientLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

func (l *clientLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *clientLoad) write() {
	defer l.wg.Done()
	for i := 0; !l.stopped(); i++ {
		id := fmt.Sprintf("i%05d", i)
		var out api.WriteResponse
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := l.client(i).Do(ctx, http.MethodPut, "/v1/tenants/"+l.tenant+"/services/"+l.service+"/instances/"+id,
			api.RegisterRequest{Address: "10.0.0.1:" + fmt.Sprint(1000+i%50000)}, &out)
		cancel()
		if err != nil {
			l.fail("write %s: %v", id, err)
			continue
		}
		l.mu.Lock()
		l.acked[id] = out.Index
		l.writes++
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *clientLoad) watch() {
	defer l.wg.Done()
	var index uint64
	for i := 0; !l.stopped(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		var s api.ServiceResponse
		err := l.client(i).Do(ctx, http.MethodGet, fmt.Sprintf("/v1/tenants/%s/services/%s?index=%d&wait=1s", l.tenant, l.service, index), nil, &s)
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), string(api.CodeNotFound)) && index == 0 {
				time.Sleep(20 * time.Millisecond) // no instance registered yet
				continue
			}
			l.fail("watch from index %d: %v", index, err)
			continue
		}
		if s.Index < index {
			l.fail("watch: index went back from %d to %d", index, s.Index)
		}
		index = max(index, s.Index)
		have := map[string]bool{}
		for _, in := range s.Instances {
			have[in.ID] = true
		}
		l.mu.Lock()
		l.reads++
		for id, at := range l.acked {
			if at <= s.Index && !have[id] {
				l.failures = append(l.failures, fmt.Sprintf("watch: the answer at index %d misses %s, acknowledged at %d", s.Index, id, at))
			}
		}
		l.mu.Unlock()
	}
}

// Stop ends the load and fails the test if a client saw a failure, or if
// the load did not run (too few writes and reads to count).
func (l *clientLoad) Stop() {
	l.t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("client load: %d writes acknowledged, %d watch answers, %d client-visible failures", l.writes, l.reads, len(l.failures))
	if len(l.failures) > 0 {
		l.t.Errorf("%d client-visible failures, want 0:\n%s", len(l.failures), strings.Join(l.failures, "\n"))
	}
	if l.writes < 20 || l.reads < 20 {
		l.t.Errorf("the load hardly ran: %d writes, %d watch answers", l.writes, l.reads)
	}
}

// Acked is how many writes were acknowledged so far.
func (l *clientLoad) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

// checkAll fails the test unless a consistent read through server holds
// every acknowledged instance.
func (l *clientLoad) checkAll(server string) {
	l.t.Helper()
	c := &restclient.Client{Servers: []string{"http://" + server}, Token: l.token, Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	var s api.ServiceResponse
	if err := c.Do(context.Background(), http.MethodGet, "/v1/tenants/"+l.tenant+"/services/"+l.service+"?consistent=true", nil, &s); err != nil {
		l.t.Fatalf("consistent read on %s: %v", server, err)
	}
	have := map[string]bool{}
	for _, in := range s.Instances {
		have[in.ID] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.acked {
		if !have[id] {
			l.t.Errorf("acknowledged registration %s lost (read on %s at index %d)", id, server, s.Index)
		}
	}
}

// clusterView is GET /v1/cluster on server, retried.
func clusterView(t *testing.T, server string) api.Cluster {
	t.Helper()
	c := &restclient.Client{Servers: []string{"http://" + server}, Token: proctest.AdminToken, Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	var cl api.Cluster
	if err := c.Do(context.Background(), http.MethodGet, "/v1/cluster", nil, &cl); err != nil {
		t.Fatalf("GET /v1/cluster on %s: %v", server, err)
	}
	return cl
}

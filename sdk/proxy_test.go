package sdk_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// frontProxy stands in front of one server, for the tests that tamper
// with what a Client sends or is answered. Every request reaches the
// server through it: it drops the leader hint (X-Rafting-Leader) from the
// answers, which would send the Client around it.
type frontProxy struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	addr   string // host:port, for sdk.WithServers

	keptMu sync.Mutex
	kept   []heldRequest // not forwarded: deliver sends them late
}

// newFrontProxy starts a proxy in front of server (host:port), closed
// when t ends. intercept, if not nil, sees each request first; when it
// returns true it has answered the request, which then goes no further.
func newFrontProxy(t *testing.T, server string, intercept func(w http.ResponseWriter, r *http.Request) bool) *frontProxy {
	t.Helper()
	target, err := url.Parse("http://" + server)
	if err != nil {
		t.Fatal(err)
	}
	p := &frontProxy{target: target, rp: httputil.NewSingleHostReverseProxy(target)}
	p.rp.FlushInterval = -1 // session and client streams are NDJSON
	p.rp.ModifyResponse = func(r *http.Response) error {
		r.Header.Del(api.HeaderLeader)
		return nil
	}
	p.rp.ErrorLog = log.New(io.Discard, "", 0) // clients that give up are the tests' point
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if intercept != nil && intercept(w, r) {
			return
		}
		p.rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// answer writes e as a server answers it.
func answer(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status())
	json.NewEncoder(w).Encode(e.Body())
}

// sessionOf is the session a request names in its path, or in its
// X-Rafting-Session header.
func sessionOf(r *http.Request) string {
	_, rest, _ := strings.Cut(r.URL.Path, "/sessions/")
	sid, _, _ := strings.Cut(rest, "/")
	if sid == "" {
		sid = r.Header.Get(api.HeaderSession)
	}
	return sid
}

// opensSession reports whether r opens a session (PUT /sessions/<id>),
// and which.
func opensSession(r *http.Request) (string, bool) {
	_, rest, ok := strings.Cut(r.URL.Path, "/sessions/")
	if !ok || r.Method != http.MethodPut || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// heldRequest is a request a proxy kept instead of forwarding it, to
// send it later as a late copy (deliver).
type heldRequest struct {
	method, path string
	header       http.Header
	body         []byte
}

// hold copies r, reading its body; r keeps a body to forward.
func hold(r *http.Request) heldRequest {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return heldRequest{r.Method, r.URL.RequestURI(), r.Header.Clone(), body}
}

// keep keeps h, for deliver.
func (p *frontProxy) keep(h heldRequest) {
	p.keptMu.Lock()
	defer p.keptMu.Unlock()
	p.kept = append(p.kept, h)
}

func (p *frontProxy) keptCount() int {
	p.keptMu.Lock()
	defer p.keptMu.Unlock()
	return len(p.kept)
}

// takeKept returns the kept requests and forgets them.
func (p *frontProxy) takeKept() []heldRequest {
	p.keptMu.Lock()
	defer p.keptMu.Unlock()
	reqs := p.kept
	p.kept = nil
	return reqs
}

// deliver sends the kept requests to the server now, around the proxy
// (the late commit of a write whose client saw no outcome), and returns
// their answers' statuses.
func (p *frontProxy) deliver(t *testing.T) []int {
	t.Helper()
	var statuses []int
	for _, h := range p.takeKept() {
		r, err := http.NewRequest(h.method, p.target.String()+h.path, bytes.NewReader(h.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header = h.header
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatalf("deliver %s %s: %v", h.method, h.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	return statuses
}

// loseSession, in a proxy's intercept, makes the session r is sent under
// look lost from the servers' side: its keepalives are refused (503
// unavailable), and a held request waits until until, by when the
// servers have ended the session, before it goes on. It reports whether
// it answered r.
func loseSession(w http.ResponseWriter, r *http.Request, held bool, until time.Time) bool {
	if strings.HasSuffix(r.URL.Path, "/keepalive") {
		answer(w, api.Errorf(api.CodeUnavailable, "the proxy drops this session's keepalives"))
		return true
	}
	if held {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	return false
}

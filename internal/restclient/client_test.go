package restclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestCluster: against a real cluster, a call skips a server that is not
// there, creates and reads, and an error answer is an *api.Error that
// keeps its answer.
func TestCluster(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	dead := "http://" + servertest.FreePort(t) // nothing listens
	admin := restclient.Client{Servers: []string{dead, "http://" + c.Addr(1), "http://" + c.Addr(2)}, Token: servertest.AdminToken}
	ctx := context.Background()

	var created api.Tenant
	if err := admin.Do(ctx, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "acme", Secret: tenants.NewSecret()}, &created); err != nil {
		t.Fatalf("create tenant = %v", err)
	}
	var got api.Tenant
	if err := admin.Do(ctx, http.MethodGet, "/v1/tenants/acme", nil, &got); err != nil || got.Name != "acme" || got.Epoch != created.Epoch {
		t.Fatalf("show tenant = %+v, %v; want acme at epoch %d", got, err, created.Epoch)
	}

	resp, err := admin.Send(ctx, restclient.Request{Method: http.MethodGet, Path: "/v1/tenants/nobody"})
	var ae *api.Error
	if !errors.As(err, &ae) || !errors.Is(err, api.ErrNotFound) || resp.Status != http.StatusNotFound || len(resp.Body) == 0 {
		t.Fatalf("missing tenant = %d %s, %v; want 404 not_found with its body", resp.Status, resp.Body, err)
	}

	tenant := admin
	tenant.Token = created.Token
	err = tenant.Do(ctx, http.MethodGet, "/v1/tenants", nil, nil)
	if !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("tenant token on an admin endpoint = %v, want forbidden", err)
	}
}

// script is an http.RoundTripper that answers from a list, and records
// each request as "METHOD host path".
type script struct {
	mu      sync.Mutex
	answers []func(*http.Request) (*http.Response, error)
	got     []string
	tokens  []string
}

func (s *script) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, r.Method+" "+r.URL.Host+" "+r.URL.RequestURI())
	s.tokens = append(s.tokens, r.Header.Get("Authorization"))
	if len(s.answers) == 0 {
		return nil, errors.New("script: no more answers")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a(r)
}

func answer(status int, body string, header ...string) func(*http.Request) (*http.Response, error) {
	return func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
}

func lost(r *http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF }

const (
	unavailable  = `{"error":{"code":"unavailable","message":"no leader"}}`
	timeout      = `{"error":{"code":"timeout","message":"outcome unknown"}}`
	conflict     = `{"error":{"code":"conflict","message":"mod_index 41, not 7"}}`
	unauthorized = `{"error":{"code":"unauthorized","message":"no token, or one this cluster does not know"}}`
)

// TestRetries: what is retried, where, after how long, and what the
// caller is told, with scripted answers in a synctest bubble.
func TestRetries(t *testing.T) {
	tests := []struct {
		name    string
		servers int
		method  string
		answers []func(*http.Request) (*http.Response, error)
		wantGot []string // hosts asked, in order
		wait    time.Duration
		unknown bool
		check   func(error) bool
	}{
		{"a 2xx at once", 1, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(200, `{}`)},
			[]string{"a"}, 0, false, func(err error) bool { return err == nil }},
		{"503 waits its Retry-After on the next server", 2, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(503, unavailable, "Retry-After", "2"), answer(200, `{}`)},
			[]string{"a", "b"}, 2 * time.Second, false, func(err error) bool { return err == nil }},
		{"a leader hint among the servers is tried next", 3, http.MethodPut,
			[]func(*http.Request) (*http.Response, error){answer(503, `{"error":{"code":"unavailable","message":"x","leader":"c"}}`), answer(200, `{}`)},
			[]string{"a", "c"}, 100 * time.Millisecond, false, func(err error) bool { return err == nil }},
		{"no answer moves on at once", 2, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){lost, answer(200, `{}`)},
			[]string{"a", "b"}, 0, false, func(err error) bool { return err == nil }},
		{"no answer anywhere waits after each round", 2, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){lost, lost, lost, answer(200, `{}`)},
			[]string{"a", "b", "a", "b"}, 100 * time.Millisecond, false, func(err error) bool { return err == nil }},
		{"a lost write's outcome is unknown", 2, http.MethodPut,
			[]func(*http.Request) (*http.Response, error){lost, answer(409, conflict)},
			[]string{"a", "b"}, 0, true, func(err error) bool { return errors.Is(err, api.ErrConflict) }},
		{"after a 504 the outcome is unknown", 1, http.MethodPut,
			[]func(*http.Request) (*http.Response, error){answer(504, timeout), answer(409, conflict)},
			[]string{"a", "a"}, 100 * time.Millisecond, true, func(err error) bool { return errors.Is(err, api.ErrConflict) }},
		{"three rounds, then ErrNoAnswer with the last error", 1, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(503, unavailable), answer(503, unavailable), answer(429, `{"error":{"code":"rate_limited","message":"x"}}`)},
			[]string{"a", "a", "a"}, 200 * time.Millisecond, false,
			func(err error) bool {
				return errors.Is(err, restclient.ErrNoAnswer) && errors.Is(err, api.ErrRateLimited)
			}},
		{"a 401 asks the next server at once", 3, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(401, unauthorized), answer(200, `{}`)},
			[]string{"a", "b"}, 0, false, func(err error) bool { return err == nil }},
		{"a 401 from every server is final", 3, http.MethodPut,
			[]func(*http.Request) (*http.Response, error){answer(401, unauthorized), answer(401, unauthorized), answer(401, unauthorized)},
			[]string{"a", "b", "c"}, 0, false, func(err error) bool { return errors.Is(err, api.ErrUnauthorized) }},
		{"a 401 from the only server is final", 1, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(401, unauthorized)},
			[]string{"a"}, 0, false, func(err error) bool { return errors.Is(err, api.ErrUnauthorized) }},
		{"a redirect is not followed", 2, http.MethodGet,
			[]func(*http.Request) (*http.Response, error){answer(307, "", "Location", "http://evil/")},
			[]string{"a"}, 0, false, func(err error) bool { return err != nil && strings.Contains(err.Error(), "redirect") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: tt.answers}
				c := restclient.Client{Servers: []string{"http://a", "http://b", "http://c"}[:tt.servers], Token: "tok",
					HTTP: &http.Client{Transport: s, CheckRedirect: restclient.NoRedirects}}
				start := time.Now()
				resp, err := c.Send(context.Background(), restclient.Request{Method: tt.method, Path: "/v1/x?y=1"})
				if !tt.check(err) {
					t.Errorf("Send() error = %v", err)
				}
				if took := time.Since(start); took != tt.wait {
					t.Errorf("Send() took %v, want %v", took, tt.wait)
				}
				if resp.Unknown != tt.unknown {
					t.Errorf("Send().Unknown = %v, want %v", resp.Unknown, tt.unknown)
				}
				var hosts []string
				for i, g := range s.got {
					f := strings.Fields(g)
					hosts = append(hosts, f[1])
					if f[2] != "/v1/x?y=1" || s.tokens[i] != "Bearer tok" {
						t.Errorf("request %d = %q with %q", i, g, s.tokens[i])
					}
				}
				if strings.Join(hosts, " ") != strings.Join(tt.wantGot, " ") {
					t.Errorf("asked %v, want %v", hosts, tt.wantGot)
				}
			})
		})
	}
}

// TestContextEnds: a ctx that ends during a wait ends the call with its
// error and the failure it cut short.
func TestContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []func(*http.Request) (*http.Response, error){answer(503, unavailable, "Retry-After", "10")}}
		c := restclient.Client{Servers: []string{"http://a"}, HTTP: &http.Client{Transport: s}, Retry: restclient.For(0, time.Second)}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := c.Send(ctx, restclient.Request{Method: http.MethodGet, Path: "/"})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("Send() = %v, want the deadline with the 503", err)
		}
		if s.tokens[0] != "" {
			t.Errorf("sent Authorization %q without a token", s.tokens[0])
		}
	})
}

// TestFor: For retries every wait until its total has passed.
func TestFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var answers []func(*http.Request) (*http.Response, error)
		for range 100 {
			answers = append(answers, answer(503, unavailable))
		}
		s := &script{answers: answers}
		c := restclient.Client{Servers: []string{"http://a"}, HTTP: &http.Client{Transport: s}, Retry: restclient.For(time.Second, 100*time.Millisecond)}
		start := time.Now()
		_, err := c.Send(context.Background(), restclient.Request{Method: http.MethodGet, Path: "/"})
		if !errors.Is(err, restclient.ErrNoAnswer) || time.Since(start) != time.Second || len(s.got) != 11 {
			t.Fatalf("Send() = %v after %v and %d attempts, want ErrNoAnswer after 1s and 11", err, time.Since(start), len(s.got))
		}
	})
}

// seen is an http.RoundTripper that sends on to a real server and
// records the status of each answer.
type seen struct {
	mu       sync.Mutex
	statuses []int
}

func (s *seen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.statuses = append(s.statuses, resp.StatusCode)
		s.mu.Unlock()
	}
	return resp, err
}

func (s *seen) got() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.statuses...)
}

// TestRetriesRealServer: against a real cluster waiting for a restore, a
// tenant's read is answered 503 restoring with a Retry-After, retried
// until the restore has written the tenant, then answered; a read the
// API does not let be retried (404) is sent once.
func TestRetriesRealServer(t *testing.T) {
	ctx := context.Background()
	old := servertest.Start(t, servertest.Options{})
	token := old.CreateTenant("acme", api.Quotas{})
	oldAdmin := restclient.Client{Servers: []string{"http://" + old.Addr(1)}, Token: servertest.AdminToken}
	resp, err := oldAdmin.Send(ctx, restclient.Request{Method: http.MethodGet, Path: "/v1/backup"})
	if err != nil {
		t.Fatalf("backup = %v", err)
	}
	backup := resp.Body

	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.AwaitRestore = true }})
	s := &seen{}
	tenant := restclient.Client{Servers: []string{"http://" + c.Addr(1), "http://" + c.Addr(2)}, Token: token,
		HTTP: &http.Client{Transport: s, CheckRedirect: restclient.NoRedirects}, Retry: restclient.For(0, 50*time.Millisecond)}
	read := make(chan error, 1)
	var list api.ServiceList
	go func() { read <- tenant.Do(ctx, http.MethodGet, "/v1/tenants/acme/services", nil, &list) }()
	for deadline := time.Now().Add(30 * time.Second); len(s.got()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no answer to the tenant's read in 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.got(); got[0] != http.StatusServiceUnavailable {
		t.Fatalf("the first answer before the restore = %d, want 503 restoring", got[0])
	}
	admin := restclient.Client{Servers: []string{"http://" + c.Addr(1)}, Token: servertest.AdminToken, Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	if _, err := admin.Send(ctx, restclient.Request{Method: http.MethodPost, Path: "/v1/restore", Body: backup, ContentType: "application/json"}); err != nil {
		t.Fatalf("restore = %v", err)
	}
	select {
	case err := <-read:
		got := s.got()
		if err != nil || got[len(got)-1] != http.StatusOK {
			t.Fatalf("the read retried through the restore = %v after answers %v, want success", err, got)
		}
		t.Logf("answers to the read: %v", got)
		for _, st := range got[:len(got)-1] {
			if st != http.StatusServiceUnavailable {
				t.Fatalf("answers %v: want 503s, then 200", got)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the read did not end 30 s after the restore (answers %v)", s.got())
	}

	before := len(s.got())
	err = tenant.Do(ctx, http.MethodGet, "/v1/tenants/acme/kv/no/such/key", nil, nil)
	if sent := len(s.got()) - before; !errors.Is(err, api.ErrNotFound) || sent != 1 {
		t.Fatalf("a read answered 404 = %v after %d attempts, want not_found after 1", err, sent)
	}
}

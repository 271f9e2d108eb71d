package fence_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/fence"
)

func TestParseToken(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  error
	}{
		{"1", 1, nil},
		{"1099511628793", 1099511628793, nil},
		{"18446744073709551615", 1<<64 - 1, nil},
		{"0", 0, fence.ErrNoToken},
		{"", 0, fence.ErrMalformedToken},
		{"00", 0, fence.ErrMalformedToken},
		{"007", 0, fence.ErrMalformedToken},
		{"+5", 0, fence.ErrMalformedToken},
		{"-5", 0, fence.ErrMalformedToken},
		{" 5", 0, fence.ErrMalformedToken},
		{"5 ", 0, fence.ErrMalformedToken},
		{"5\t", 0, fence.ErrMalformedToken},
		{"5,7", 0, fence.ErrMalformedToken},
		{"1_000", 0, fence.ErrMalformedToken},
		{"0x10", 0, fence.ErrMalformedToken},
		{"1e3", 0, fence.ErrMalformedToken},
		{"５", 0, fence.ErrMalformedToken}, // a fullwidth digit
		{"18446744073709551616", 0, fence.ErrMalformedToken},
		{"99999999999999999999", 0, fence.ErrMalformedToken},
		{"100000000000000000000", 0, fence.ErrMalformedToken},
	}
	for _, tt := range tests {
		got, err := fence.ParseToken(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("ParseToken(%q) = %d, %v, want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   uint64
		err    error
	}{
		{"one", []string{"42"}, 42, nil},
		{"missing", nil, 0, fence.ErrNoToken},
		{"zero", []string{"0"}, 0, fence.ErrNoToken},
		{"empty", []string{""}, 0, fence.ErrMalformedToken},
		{"twice", []string{"42", "43"}, 0, fence.ErrMalformedToken},
		{"twice the same", []string{"42", "42"}, 0, fence.ErrMalformedToken},
		{"signed", []string{"-1"}, 0, fence.ErrMalformedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			for _, v := range tt.values {
				r.Header.Add(fence.Header, v)
			}
			got, err := fence.FromRequest(r)
			if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("FromRequest() = %d, %v, want %d, %v", got, err, tt.want, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), fence.Header) {
				t.Errorf("FromRequest() error %q does not name %s", err, fence.Header)
			}
		})
	}
}

func TestSetHeader(t *testing.T) {
	h := http.Header{}
	fence.SetHeader(h, 1099511628793)
	if got := h.Get(fence.Header); got != "1099511628793" {
		t.Errorf("SetHeader(h, 1099511628793): %s = %q", fence.Header, got)
	}
	fence.SetHeader(h, 7) // replaces
	if got := h.Values(fence.Header); len(got) != 1 || got[0] != "7" {
		t.Errorf("SetHeader(h, 7) over a value: %s = %q, want [7]", fence.Header, got)
	}
	fence.SetHeader(h, 0) // 0 is no token: no header
	if got := h.Values(fence.Header); len(got) != 0 {
		t.Errorf("SetHeader(h, 0): %s = %q, want none", fence.Header, got)
	}
}

// body is Middleware's error answer, as a client decodes it.
type body struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Token   uint64 `json:"token"`
		Highest uint64 `json:"highest"`
	} `json:"error"`
}

func TestMiddleware(t *testing.T) {
	g := fence.NewGuard(10)
	var served atomic.Int64
	h := fence.Middleware(g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	tests := []struct {
		name    string
		header  []string
		status  int
		code    string
		message []string // substrings of the message
		highest uint64   // g's highest after the request
	}{
		{"missing", nil, 400, "bad_request", []string{fence.Header, "missing"}, 10},
		{"empty", []string{""}, 400, "bad_request", []string{fence.Header}, 10},
		{"zero", []string{"0"}, 400, "bad_request", []string{fence.Header, "no fencing token"}, 10},
		{"signed", []string{"+11"}, 400, "bad_request", []string{fence.Header, `"+11"`, "malformed"}, 10},
		{"overflow", []string{"18446744073709551616"}, 400, "bad_request", []string{fence.Header, "malformed"}, 10},
		{"twice", []string{"11", "12"}, 400, "bad_request", []string{fence.Header, "2 values"}, 10},
		{"stale", []string{"9"}, 409, fence.CodeStaleToken, []string{"9", "10"}, 10},
		{"equal", []string{"10"}, 204, "", nil, 10},
		{"newer", []string{"12"}, 204, "", nil, 12},
		{"now stale", []string{"11"}, 409, fence.CodeStaleToken, []string{"11", "12"}, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served.Load()
			r := httptest.NewRequest(http.MethodPut, "/jobs/1", strings.NewReader("{}"))
			for _, v := range tt.header {
				r.Header.Add(fence.Header, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if ran := served.Load() > before; ran != (tt.status == 204) {
				t.Errorf("next served: %v, want %v", ran, tt.status == 204)
			}
			if g.Highest() != tt.highest {
				t.Errorf("Highest() = %d, want %d", g.Highest(), tt.highest)
			}
			if tt.code == "" {
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var b body
			if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if b.Error.Code != tt.code {
				t.Errorf("code %q, want %q", b.Error.Code, tt.code)
			}
			for _, s := range tt.message {
				if !strings.Contains(b.Error.Message, s) {
					t.Errorf("message %q does not name %q", b.Error.Message, s)
				}
			}
			if tt.status == 409 && (b.Error.Token == 0 || b.Error.Token >= b.Error.Highest || b.Error.Highest != tt.highest) {
				t.Errorf("409 body token %d, highest %d; want the refused token and %d", b.Error.Token, b.Error.Highest, tt.highest)
			}
			// The project's client reads it as its own error shape: a 409
			// conflict (api knows no stale_token) with the message intact.
			e := api.Decode(w.Code, w.Body.Bytes(), "")
			if wantCode := map[int]api.Code{400: api.CodeBadRequest, 409: api.CodeConflict}[tt.status]; e.Code != wantCode || e.Message != b.Error.Message {
				t.Errorf("api.Decode = %v %q, want %v %q", e.Code, e.Message, wantCode, b.Error.Message)
			}
		})
	}
}

// TestMiddlewareContext: a request whose context ends while it waits for
// the guard gets 503 and is not served.
func TestMiddlewareContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g fence.Guard
		started, release := make(chan struct{}), make(chan struct{})
		h := fence.Middleware(&g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(fence.Header) == "5" {
				close(started)
				<-release
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		first := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			r := httptest.NewRequest(http.MethodPut, "/", nil)
			r.Header.Set(fence.Header, "5")
			h.ServeHTTP(first, r)
			close(done)
		}()
		<-started
		ctx, cancel := context.WithCancel(context.Background())
		second := httptest.NewRecorder()
		waited := make(chan struct{})
		go func() {
			r := httptest.NewRequest(http.MethodPut, "/", nil).WithContext(ctx)
			r.Header.Set(fence.Header, "6")
			h.ServeHTTP(second, r)
			close(waited)
		}()
		synctest.Wait()
		cancel()
		<-waited
		var b body
		if second.Code != http.StatusServiceUnavailable || json.Unmarshal(second.Body.Bytes(), &b) != nil || b.Error.Code != "unavailable" {
			t.Errorf("a request whose ctx ended while it waited: %d %s, want 503 unavailable", second.Code, second.Body)
		}
		close(release)
		<-done
		if first.Code != http.StatusNoContent || g.Highest() != 5 {
			t.Errorf("first request %d, Highest() %d; want 204 and 5", first.Code, g.Highest())
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestTransportRefusesLocally(t *testing.T) {
	tests := []struct {
		name  string
		token func() (uint64, bool)
	}{
		{"not master", func() (uint64, bool) { return 0, false }},
		{"token 0", func() (uint64, bool) { return 0, true }},
		{"nil Token", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := false
			tr := &fence.Transport{Token: tt.token, Base: roundTripFunc(func(*http.Request) (*http.Response, error) {
				sent = true
				return nil, errors.New("sent")
			})}
			b := &closeTracker{Reader: strings.NewReader("write")}
			req, _ := http.NewRequest(http.MethodPut, "http://resource.invalid/jobs/1", b)
			_, err := (&http.Client{Transport: tr}).Do(req)
			if !errors.Is(err, fence.ErrNoToken) {
				t.Errorf("Do() = %v, want ErrNoToken", err)
			}
			if sent {
				t.Error("the request was sent")
			}
			if !b.closed {
				t.Error("the request body was not closed")
			}
		})
	}
}

func TestTransportStamps(t *testing.T) {
	var got []string
	token := uint64(7)
	tr := &fence.Transport{
		Token: func() (uint64, bool) { return token, true },
		Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = append(got, strings.Join(r.Header.Values(fence.Header), ","))
			return &http.Response{StatusCode: 204, Body: http.NoBody, Request: r}, nil
		}),
	}
	req, _ := http.NewRequest(http.MethodPut, "http://resource.invalid/", nil)
	req.Header.Set(fence.Header, "3") // a stale value the caller left: replaced
	for _, tok := range []uint64{7, 8} {
		token = tok
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if want := []string{"7", "8"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sent %s = %q, want %q", fence.Header, got, want)
	}
	if v := req.Header.Get(fence.Header); v != "3" {
		t.Errorf("the caller's request was modified: %s = %q", fence.Header, v)
	}
	// A request without a header map (built by hand) is stamped too.
	token = 9
	if _, err := tr.RoundTrip(&http.Request{Method: http.MethodGet, URL: req.URL}); err != nil || got[len(got)-1] != "9" {
		t.Errorf("RoundTrip of a request with a nil Header: %v, sent %q", err, got[len(got)-1])
	}
}

// TestHTTPPair: Transport and Middleware over a real connection; the new
// master's writes are admitted, the old one's refused, and CheckResponse
// reads the refusal back.
func TestHTTPPair(t *testing.T) {
	var g fence.Guard
	var writes []string
	srv := httptest.NewServer(fence.Middleware(&g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		writes = append(writes, string(b))
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	client := func(token uint64) *http.Client {
		return &http.Client{Transport: &fence.Transport{Token: func() (uint64, bool) { return token, true }}}
	}
	put := func(c *http.Client, body string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader(body))
		return c.Do(req)
	}
	old, next := client(5), client(7)
	for _, step := range []struct {
		c      *http.Client
		body   string
		status int
	}{{old, "a", 204}, {next, "b", 204}, {old, "c", 409}, {next, "d", 204}} {
		resp, err := put(step.c, step.body)
		if err != nil {
			t.Fatal(err)
		}
		err = fence.CheckResponse(resp)
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != step.status {
			t.Fatalf("PUT %s: %d, want %d", step.body, resp.StatusCode, step.status)
		}
		var stale *fence.StaleTokenError
		if step.status == 409 {
			if !errors.As(err, &stale) || stale.Token != 5 || stale.Highest != 7 {
				t.Errorf("CheckResponse = %v, want *StaleTokenError{5, 7}", err)
			}
			if !strings.Contains(string(rest), fence.CodeStaleToken) {
				t.Errorf("the body after CheckResponse reads %q, want it whole", rest)
			}
		} else if err != nil {
			t.Errorf("CheckResponse = %v for %d", err, resp.StatusCode)
		}
	}
	if got := strings.Join(writes, ""); got != "abd" {
		t.Errorf("writes %q, want abd", got)
	}
}

func TestCheckResponse(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		stale  bool
	}{
		{"stale", 409, `{"error":{"code":"stale_token","message":"m","token":5,"highest":7}}`, true},
		{"another 409", 409, `{"error":{"code":"conflict","message":"m"}}`, false},
		{"not stale", 409, `{"error":{"code":"stale_token","token":7,"highest":7}}`, false},
		{"no token", 409, `{"error":{"code":"stale_token","highest":7}}`, false},
		{"not JSON", 409, `conflict`, false},
		{"a 400", 400, `{"error":{"code":"stale_token","message":"m","token":5,"highest":7}}`, false},
		{"a 200", 200, `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))}
			err := fence.CheckResponse(resp)
			if errors.Is(err, fence.ErrStaleToken) != tt.stale || (err != nil) != tt.stale {
				t.Errorf("CheckResponse() = %v, want stale: %v", err, tt.stale)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != tt.body {
				t.Errorf("body after CheckResponse = %q, want %q", b, tt.body)
			}
		})
	}
	if err := fence.CheckResponse(nil); err != nil {
		t.Errorf("CheckResponse(nil) = %v", err)
	}
}

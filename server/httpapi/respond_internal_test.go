package httpapi

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

// TestInternalErrorHidden: an internal error's text goes to the log under
// the request's ID; the client's answer names only the ID.
func TestInternalErrorHidden(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := &statusWriter{ResponseWriter: rec}
	sw.Header().Set(HeaderRequestID, "abc123")
	writeError(sw, errors.New("pebble: corrupt at /var/lib/rafting/x"))
	body := rec.Body.String()
	if rec.Code != 500 || strings.Contains(body, "pebble") || !strings.Contains(body, "abc123") {
		t.Fatalf("internal error answered %d %s, want 500 naming the request, not the error", rec.Code, body)
	}
	if !strings.Contains(sw.detail, "pebble: corrupt") {
		t.Fatalf("the error's text was not kept for the log: %q", sw.detail)
	}
}

// headerOnly is a ResponseWriter that keeps its header and discards the
// rest, allocating nothing once its header has every key.
type headerOnly struct{ h http.Header }

func (w headerOnly) Header() http.Header         { return w.h }
func (w headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (w headerOnly) WriteHeader(int)             {}

// TestStaticRefusalsDoNotAllocate: the refusals a flood of made-up tokens
// meets (401, the unauthenticated 429, the 503 of the token checks) are
// answered from bodies encoded once — no encoding, no allocation — and
// their bodies and headers are what writeError would have made of them.
func TestStaticRefusalsDoNotAllocate(t *testing.T) {
	for _, e := range []*api.Error{errUnknownToken, errUnauthenticatedRate, errTokenChecks, errConnections} {
		fresh := *e // not static: encoded as any other error
		want := httptest.NewRecorder()
		writeError(want, &fresh)
		got := httptest.NewRecorder()
		writeError(got, e)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !maps.EqualFunc(got.Header(), want.Header(), slices.Equal) {
			t.Errorf("static %s = %d %v %s, want %d %v %s", e.Code, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
		w := headerOnly{h: http.Header{}}
		writeError(w, e)
		if n := testing.AllocsPerRun(100, func() { writeError(w, e) }); n > 0 {
			t.Errorf("writeError(%s: %s) allocates %.0f times a refusal, want 0", e.Code, e.Message, n)
		}
	}
}

package httpapi

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
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

package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestErrorRoundTrip(t *testing.T) {
	tests := []struct {
		err    *Error
		status int
		is     error
	}{
		{QuotaExceeded("acme", "max_instances", 100, 100), http.StatusConflict, ErrQuotaExceeded},
		{BadField("weight", "must be >= 0"), http.StatusBadRequest, ErrBadRequest},
		{Errorf(CodeSessionExpired, "session 91c2 expired"), http.StatusNotFound, ErrSessionExpired},
		{&Error{Code: CodeRateLimited, RetryAfter: 1500 * time.Millisecond}, http.StatusTooManyRequests, ErrRateLimited},
		{&Error{Code: CodeStaleReplica, Leader: "127.0.0.1:7070"}, http.StatusServiceUnavailable, ErrStaleReplica},
		{Errorf(CodeNotAttached, "attach first"), http.StatusConflict, ErrNotAttached},
		{Errorf(CodeTimeout, "outcome unknown"), http.StatusGatewayTimeout, ErrTimeout},
	}
	for _, tt := range tests {
		if got := tt.err.Status(); got != tt.status {
			t.Errorf("%s: Status() = %d, want %d", tt.err.Code, got, tt.status)
		}
		body, err := json.Marshal(tt.err.Body())
		if err != nil {
			t.Fatal(err)
		}
		got := Decode(tt.status, body, "")
		if !errors.Is(got, tt.is) {
			t.Errorf("Decode(%s) = %v, not Is %v", body, got, tt.is)
		}
		if *got != *tt.err {
			t.Errorf("Decode(%s) = %+v, want %+v", body, *got, *tt.err)
		}
	}
}

func TestDecodeForeignBody(t *testing.T) {
	e := Decode(http.StatusServiceUnavailable, []byte("<html>bad gateway</html>"), "2")
	if !errors.Is(e, ErrUnavailable) || e.RetryAfter != 2*time.Second {
		t.Fatalf("Decode(html) = %+v, want unavailable with 2s retry", e)
	}
	e = Decode(http.StatusConflict, []byte(`{"error":{"code":"no_such_code","message":"x"}}`), "")
	if !errors.Is(e, ErrConflict) {
		t.Fatalf("Decode(unknown code) = %+v, want conflict", e)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"billing", true}, {"a.b_c-D9", true}, {strings.Repeat("x", 128), true},
		{"", false}, {strings.Repeat("x", 129), false}, {"a b", false}, {"a/b", false}, {"é", false},
	}
	for _, tt := range tests {
		err := ValidateName("service", tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrBadRequest) || !strings.HasPrefix(err.(*Error).Message, "service:")) {
			t.Errorf("ValidateName(%q) = %v, want a bad_request naming the field", tt.in, err)
		}
	}
	if ValidateTenantName("name", "Acme") == nil || ValidateTenantName("name", "acme-1") != nil {
		t.Error("ValidateTenantName: want lowercase, digits and dashes only")
	}
	if ValidateSessionID("id", "short") == nil || ValidateSessionID("id", "AAAAAAAAAAAAAAAAAAAAAA") != nil {
		t.Error("ValidateSessionID: want 16..128 chars")
	}
}

func TestSessionTag(t *testing.T) {
	a, b := SessionTag("AAAAAAAAAAAAAAAAAAAAAA"), SessionTag("AAAAAAAAAAAAAAAAAAAAAB")
	if len(a) != 16 || a == b || a != SessionTag("AAAAAAAAAAAAAAAAAAAAAA") {
		t.Fatalf("SessionTag: %q %q", a, b)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(409, []byte(`{"error":{"code":"quota_exceeded","message":"m","quota":"q","limit":1,"used":1}}`), "")
	f.Add(503, []byte(`{"error":{"code":"unavailable","retry_after_ms":-5}}`), "-1")
	f.Add(500, []byte(`not json`), "abc")
	f.Fuzz(func(t *testing.T, status int, body []byte, retry string) {
		e := Decode(status, body, retry)
		if e == nil || e.Code.Sentinel() == nil || !errors.Is(e, e.Code.Sentinel()) {
			t.Fatalf("Decode(%d, %q) = %+v", status, body, e)
		}
	})
}

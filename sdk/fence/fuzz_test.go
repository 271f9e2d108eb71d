package fence_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/rafting/rafting/sdk/fence"
)

// FuzzFromRequest: header parsing never panics, and accepts exactly the
// canonical decimal form of a token from 1 to 2^64-1: no sign, no spaces,
// no leading zeros, no overflow, nothing empty.
func FuzzFromRequest(f *testing.F) {
	for _, s := range []string{
		"1", "42", "1099511628793", "18446744073709551615", "18446744073709551616",
		"99999999999999999999", "0", "00", "007", "", " ", "+1", "-1", "+0", " 1", "1 ",
		"1\t", "\t1", "1,2", "1_000", "0x1f", "1e9", "١", "５", "1\x00", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header[fence.Header] = []string{v}
		token, err := fence.FromRequest(r)
		n, perr := strconv.ParseUint(v, 10, 64)
		canonical := perr == nil && n != 0 && strconv.FormatUint(n, 10) == v
		if canonical != (err == nil) {
			t.Fatalf("FromRequest(%q) = %d, %v; canonical token: %v", v, token, err, canonical)
		}
		if err != nil {
			if token != 0 || !errors.Is(err, fence.ErrNoToken) && !errors.Is(err, fence.ErrMalformedToken) {
				t.Fatalf("FromRequest(%q) = %d, %v: want 0 and ErrNoToken or ErrMalformedToken", v, token, err)
			}
			if !strings.Contains(err.Error(), fence.Header) {
				t.Fatalf("FromRequest(%q) error %q does not name the header", v, err)
			}
			return
		}
		if token != n {
			t.Fatalf("FromRequest(%q) = %d, want %d", v, token, n)
		}
		h := http.Header{}
		fence.SetHeader(h, token)
		if h.Get(fence.Header) != v {
			t.Fatalf("SetHeader(%d) = %q, want %q", token, h.Get(fence.Header), v)
		}
	})
}

// FuzzCheckResponse: decoding a 409's body never panics, returns a
// *StaleTokenError or nil, and leaves the body whole.
func FuzzCheckResponse(f *testing.F) {
	for _, s := range []string{
		`{"error":{"code":"stale_token","message":"m","token":5,"highest":7}}`,
		`{"error":{"code":"stale_token","token":7,"highest":5}}`,
		`{"error":{"code":"stale_token","token":-1,"highest":1e30}}`,
		`{"error":{"code":"conflict","message":"m"}}`,
		`{"error":null}`, `[]`, ``, `{`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := &http.Response{StatusCode: http.StatusConflict, Body: io.NopCloser(bytes.NewReader(b))}
		err := fence.CheckResponse(resp)
		var stale *fence.StaleTokenError
		if err != nil && (!errors.As(err, &stale) || stale.Token == 0 || stale.Token >= stale.Highest) {
			t.Fatalf("CheckResponse(%q) = %v", b, err)
		}
		if got, _ := io.ReadAll(resp.Body); !bytes.Equal(got, b) {
			t.Fatalf("body after CheckResponse = %q, want %q", got, b)
		}
	})
}

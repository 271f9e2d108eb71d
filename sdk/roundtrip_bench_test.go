package sdk_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// BenchmarkTransport measures what svc.Transport adds to a request: over
// a base that answers at once from memory, allocating nothing (Overhead:
// the Transport's own cost), and end to end
// against a real HTTP server on loopback, sent directly and through the
// Transport, LeastLoaded tracking each request until its body's end.
//
//	go test -run '^$' -bench Transport -benchmem ./sdk/
func BenchmarkTransport(b *testing.B) {
	c := sdktest.StartWith(b, sdktest.Options{Nodes: 1})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	c.Join(b, sdk.Instance{Service: "bench", ID: "b1", Address: addr})
	svc, err := c.Connect(b).Service(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	c.WaitEndpoints(b, svc, 1)

	canned := &http.Response{StatusCode: http.StatusOK}
	stub := roundTripFunc(func(*http.Request) (*http.Response, error) {
		canned.Body = eofBody{} // the Transport wrapped the last one
		return canned, nil
	})
	req, err := http.NewRequest(http.MethodGet, "http://bench/x", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Overhead/base-alone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, _ := stub.RoundTrip(req)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("Overhead/Transport", func(b *testing.B) {
		tr := svc.Transport(balancer.LeastLoaded())
		tr.Base = stub
		b.ReportAllocs()
		for b.Loop() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	loop := func(b *testing.B, hc *http.Client, url string) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("Loopback/direct", func(b *testing.B) {
		base := &http.Transport{}
		b.Cleanup(base.CloseIdleConnections)
		loop(b, &http.Client{Transport: base}, "http://"+addr+"/x")
	})
	b.Run("Loopback/Transport", func(b *testing.B) {
		tr := svc.Transport(balancer.LeastLoaded())
		tr.Base = &http.Transport{}
		b.Cleanup(tr.CloseIdleConnections)
		loop(b, &http.Client{Transport: tr}, "http://bench/x")
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// eofBody is an empty body that costs nothing.
type eofBody struct{}

func (eofBody) Read([]byte) (int, error) { return 0, io.EOF }
func (eofBody) Close() error             { return nil }

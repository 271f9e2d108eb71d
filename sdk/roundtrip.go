package sdk

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/rafting/rafting/balancer"
)

// Transport is an http.RoundTripper that sends each request to an
// instance of a service, picked by a Balancer of the Service: it rewrites
// the request URL's host to the instance's address, so a caller writes
// the service's name where a host would go, once:
//
//	hc := &http.Client{Transport: svc.Transport(balancer.LeastLoaded())}
//	resp, err := hc.Get("http://orders/v1/orders/42") // host: an instance of orders
//
// What it does per request:
//
//   - It picks with the Balancer's PickTracked, so LeastLoaded counts the
//     request in flight, and reports its end: when the response body is
//     read to its end or closed (whichever comes first), or at once for a
//     response without a body and for an error. A 5xx answer counts as a
//     failure of the instance (towards ejection, as balancer.Do counts
//     it), any other answer as a success; a request whose context ended
//     counts for nothing.
//   - After a connection error (refused, reset, closed before an answer,
//     a transport timeout) it tries once more on another instance, if the
//     request may be sent twice: an idempotent method (GET, HEAD, OPTIONS,
//     TRACE, PUT, DELETE) or an Idempotency-Key header, and a body it can
//     send again (none, or one with GetBody, as http.NewRequest sets for
//     in-memory bodies). A request that could not be sent at all (the dial
//     failed) is tried again whatever its method. A 5xx answer is returned
//     as it is, never retried.
//   - The Host header is the instance's address, as if the caller had
//     called the instance directly, unless the request set Host to
//     something other than its URL's host.
//   - An instance address written with a scheme (https://10.0.0.5:8443)
//     gives the request that scheme; a bare host:port keeps the URL's.
//
// With no instance to pick, RoundTrip returns the Balancer's
// *balancer.NoEndpointsError (errors.Is ErrNoEndpoints).
//
// Base sends the requests (nil: http.DefaultTransport); set it before
// the first request. A Transport is safe for concurrent use. Its own cost
// per request is three small allocations: the shallow copies of the
// request and its URL that a RoundTripper must make rather than modify
// the caller's, and the wrapper that sees the body's end (none for a
// response without a body).
type Transport struct {
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper

	b *balancer.Balancer
	s *Service // counts the picks
}

// Transport returns an http.RoundTripper over the service's instances,
// picking with policy p (nil: RoundRobin) by the Service's Balancer of p
// (see Balancer). Keep it, as an http.Client keeps its Transport: it holds
// its Balancer, and with it the counts of a LeastLoaded policy.
func (s *Service) Transport(p balancer.Policy) *Transport {
	return &Transport{b: s.Balancer(p), s: s}
}

// HTTPClient returns an http.Client whose Transport is s.Transport(p).
func (s *Service) HTTPClient(p balancer.Policy) *http.Client {
	return &http.Client{Transport: s.Transport(p)}
}

// Balancer returns the Balancer the Transport picks with.
func (t *Transport) Balancer() *balancer.Balancer { return t.b }

// RoundTrip sends req to an instance of the service; see Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	e, done, err := t.b.PickTracked()
	if err != nil {
		t.s.pickErrs.Add(1)
		closeBody(req)
		return nil, err
	}
	t.s.picks.Add(1)
	resp, err := base.RoundTrip(aimed(req, e.Address))
	if err == nil {
		return tracked(resp, done), nil
	}
	if req.Context().Err() != nil {
		done.Release()
		return nil, err
	}
	done.Finish(err)
	if !replayable(req, err) {
		return nil, err
	}
	again := req
	if req.Body != nil && req.Body != http.NoBody {
		body, gerr := req.GetBody()
		if gerr != nil {
			return nil, err
		}
		r := *req
		r.Body = body
		again = &r
	}
	e2, done, perr := t.b.PickExcept(e.ID)
	if perr != nil { // the only instance: the first error tells more
		closeBody(again)
		return nil, err
	}
	t.s.picks.Add(1)
	resp, err = base.RoundTrip(aimed(again, e2.Address))
	if err != nil {
		if req.Context().Err() != nil {
			done.Release()
		} else {
			done.Finish(err)
		}
		return nil, err
	}
	return tracked(resp, done), nil
}

// CloseIdleConnections closes the idle connections of Base, if it can.
func (t *Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// aimed returns a shallow copy of req sent to addr.
func aimed(req *http.Request, addr string) *http.Request {
	r := *req
	u := *req.URL
	if i := strings.Index(addr, "://"); i >= 0 {
		u.Scheme, addr = addr[:i], addr[i+3:]
		if j := strings.IndexByte(addr, '/'); j >= 0 {
			addr = addr[:j]
		}
	}
	if r.Host == "" || r.Host == req.URL.Host {
		r.Host = ""
	}
	u.Host = addr
	r.URL = &u
	return &r
}

// replayable reports whether req may be sent again after err: nothing
// was sent (the dial failed), or the method is idempotent and the body
// can be had again.
func replayable(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return true
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// closeBody closes a request's body that will not be sent, as a
// RoundTripper must.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// tracked returns resp with a body that ends done when it is read to its
// end or closed; done ends at once when resp has no body.
func tracked(resp *http.Response, done balancer.Done) *http.Response {
	var outcome error
	if resp.StatusCode >= 500 {
		outcome = balancer.StatusError(resp.StatusCode)
	}
	rb := resp.Body
	switch rwc, rw := rb.(io.ReadWriteCloser); {
	case rb == nil || rb == http.NoBody:
		done.Finish(outcome)
	case resp.StatusCode == http.StatusSwitchingProtocols && rw: // ends when closed
		resp.Body = &trackedRW{trackedBody{ReadCloser: rb, done: done, outcome: outcome}, rwc}
	default:
		resp.Body = &trackedBody{ReadCloser: rb, done: done, outcome: outcome}
	}
	return resp
}

// trackedBody is a response body that ends its pick's Done once: at EOF,
// at a read error, or at Close.
type trackedBody struct {
	io.ReadCloser
	done    balancer.Done
	outcome error // the answer's: a 5xx, or nil
	ended   atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.end(b.outcome)
	case err != nil:
		b.end(err)
	}
	return n, err
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.end(b.outcome)
	return err
}

// end ends the Done, the first time only: a body closed before its end
// is the caller's choice, not the instance's failure.
func (b *trackedBody) end(err error) {
	if b.ended.Swap(true) {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = context.Canceled // the caller's deadline tells nothing of the instance
	}
	b.done.Finish(err)
}

// trackedRW is a trackedBody that can be written to, for a protocol
// switched to (101).
type trackedRW struct {
	trackedBody
	w io.Writer
}

func (b *trackedRW) Write(p []byte) (int, error) { return b.w.Write(p) }

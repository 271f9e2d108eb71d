package restclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rafting/rafting/api"
)

// Client sends requests to a cluster's REST API. The zero value has no
// servers; set Servers at least.
type Client struct {
	// Servers are the API's base URLs ("http://127.0.0.1:7070"), tried in
	// turn from the first.
	Servers []string
	// Token is the bearer token; "" sends none.
	Token string
	// HTTP sends the requests; nil is DefaultHTTP. Give it NoRedirects as
	// its CheckRedirect: a redirect it follows is not seen here.
	HTTP *http.Client
	// Retry makes the policy of one call: each NextBackOff is the wait
	// before the next attempt (raised to the answer's Retry-After), Stop
	// ends the call with ErrNoAnswer. nil is Tries(3*len(Servers), 100ms):
	// three rounds of the servers.
	Retry func() backoff.BackOff
	// MaxBody bounds the bytes of an answer that are read; 0 is 32 MiB.
	MaxBody int64
}

// DefaultHTTP is the HTTP client of a Client whose HTTP is nil: a 30 s
// bound on each attempt, redirects not followed.
var DefaultHTTP = &http.Client{Timeout: 30 * time.Second, CheckRedirect: NoRedirects}

// NoRedirects is a CheckRedirect that never follows a redirect: Go's
// client would send it again with the method and, to the same host, the
// Authorization header.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Tries is a Retry policy of n attempts in all, wait apart.
func Tries(n int, wait time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff {
		return backoff.WithMaxRetries(backoff.NewConstantBackOff(wait), uint64(max(n-1, 0)))
	}
}

// For is a Retry policy that tries every wait until total has passed
// since the call began (0: until the call's ctx ends).
func For(total, wait time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff {
		return backoff.NewExponentialBackOff(backoff.WithInitialInterval(wait), backoff.WithMultiplier(1),
			backoff.WithRandomizationFactor(0), backoff.WithMaxInterval(wait), backoff.WithMaxElapsedTime(total))
	}
}

// Request is one call.
type Request struct {
	Method string
	// Path is escaped and begins with "/"; it may carry a query.
	Path string
	// Body is sent as it is (nil: none), with ContentType if set.
	Body        []byte
	ContentType string
	// Header holds more headers for every attempt.
	Header http.Header
}

// Response is the answer a call ends with.
type Response struct {
	// Status, Header and Body are the last answer's (0 and nil when no
	// server answered).
	Status int
	Header http.Header
	Body   []byte
	// Unknown says that an earlier attempt of this write may have been
	// applied: it timed out (504), or it was sent and its answer lost.
	Unknown bool
}

// Index is the X-Rafting-Index header: the index a read was served at (a
// missing key's too), and whether there was one.
func (r Response) Index() (uint64, bool) {
	n, err := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
	return n, err == nil
}

// Do sends in as JSON (nil: no body) and decodes a 2xx answer's JSON, if
// it has any, into out (nil: not decoded). Errors are as Send's.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	req := Request{Method: method, Path: path}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		req.Body, req.ContentType = b, "application/json"
	}
	resp, err := c.Send(ctx, req)
	if err != nil {
		return err
	}
	if out != nil && len(bytes.TrimSpace(resp.Body)) > 0 {
		return json.Unmarshal(resp.Body, out)
	}
	return nil
}

// Send sends req until an answer that is not a retryable error, or until
// the Retry policy or ctx ends. A 401 is sent to each other server once
// before it is final (a node may not know a token the others know). It
// returns the last answer with:
//   - nil for a 2xx;
//   - an *api.Error for an error answer that is not retried (the Response
//     holds its header and body);
//   - ErrNoAnswer wrapping the last failure when the policy ended;
//   - ctx's error (with the last failure, if any) when ctx ended;
//   - any other error for what no retry mends: a redirect, a certificate
//     that does not verify, a request that cannot be built.
func (c *Client) Send(ctx context.Context, req Request) (Response, error) {
	if len(c.Servers) == 0 {
		return Response{}, fmt.Errorf("%s %s: no servers", req.Method, req.Path)
	}
	policy := c.Retry
	if policy == nil {
		policy = Tries(3*len(c.Servers), 100*time.Millisecond)
	}
	p := &pacer{policy: policy()}
	write := req.Method != http.MethodGet && req.Method != http.MethodHead
	var resp Response
	var last error
	server, skipped := 0, 0 // skipped: servers moved past at once since the last wait
	refused := 0            // 401s moved past
	_, err := backoff.RetryWithData(func() (struct{}, error) {
		base := c.Servers[server]
		p.floor, p.now = 0, false
		a, err := c.attempt(ctx, base, req)
		if a.Status != 0 {
			resp.Status, resp.Header, resp.Body = a.Status, a.Header, a.Body
		}
		switch {
		case err == nil:
			return struct{}{}, nil
		case ctx.Err() != nil:
			return struct{}{}, backoff.Permanent(ctx.Err())
		}
		var ae *api.Error
		var lost *lostError
		switch {
		case errors.As(err, &ae) && ae.Code == api.CodeUnauthorized && refused < len(c.Servers)-1:
			// Another server may know the token: one restarted without
			// the admin token, or behind on a tenant's new one. Each is
			// asked once, at once; the last 401 is final.
			refused++
			server = (server + 1) % len(c.Servers)
			p.now = true
		case errors.As(err, &ae):
			if !ae.Code.Retryable() {
				return struct{}{}, backoff.Permanent(err)
			}
			resp.Unknown = resp.Unknown || ae.Code == api.CodeTimeout
			p.floor, skipped = ae.RetryAfter, 0
			server = c.after(server, ae.Leader)
		case errors.As(err, &lost):
			resp.Unknown = resp.Unknown || (write && lost.sent)
			server = (server + 1) % len(c.Servers)
			if p.now = skipped < len(c.Servers)-1; p.now { // one not tried since the last wait: at once
				skipped++
			} else {
				skipped = 0
			}
		default:
			return struct{}{}, backoff.Permanent(err)
		}
		last = err
		return struct{}{}, err
	}, backoff.WithContext(p, ctx))
	switch {
	case err == nil:
		return resp, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()) && last != nil:
		return resp, fmt.Errorf("%w (last error: %w)", err, last)
	case last != nil && err == last:
		return resp, fmt.Errorf("%w: %w", ErrNoAnswer, last)
	}
	return resp, err
}

// after is the server to try after a retryable error answer from server
// i: the leader it names, when that is one of the Client's servers, else
// the next.
func (c *Client) after(i int, leader string) int {
	if leader != "" {
		for j, s := range c.Servers {
			if u, err := url.Parse(s); err == nil && u.Host == leader {
				return j
			}
		}
	}
	return (i + 1) % len(c.Servers)
}

// lostError is a failure with no answer: the request was not sent, or
// was sent (and may have been applied) and its answer lost.
type lostError struct {
	err  error
	sent bool
}

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }

// attempt sends req once to base and reads the answer. Its errors are an
// *api.Error for an error answer, a *lostError for none, or final.
func (c *Client) attempt(ctx context.Context, base string, req Request) (Response, error) {
	var body io.Reader = http.NoBody
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, base+req.Path, body)
	if err != nil {
		return Response{}, err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	if c.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if req.ContentType != "" {
		hr.Header.Set("Content-Type", req.ContentType)
	}
	hc := c.HTTP
	if hc == nil {
		hc = DefaultHTTP
	}
	hresp, err := hc.Do(hr)
	if err != nil {
		if errors.As(err, new(*tls.CertificateVerificationError)) {
			return Response{}, err // the same certificate answers again
		}
		var op *net.OpError
		return Response{}, &lostError{err: err, sent: !(errors.As(err, &op) && op.Op == "dial")}
	}
	limit := c.MaxBody
	if limit == 0 {
		limit = 32 << 20
	}
	b, err := io.ReadAll(io.LimitReader(hresp.Body, limit))
	hresp.Body.Close()
	if err != nil {
		return Response{}, &lostError{err: err, sent: true}
	}
	resp := Response{Status: hresp.StatusCode, Header: hresp.Header, Body: b}
	switch {
	case hresp.StatusCode >= 300 && hresp.StatusCode < 400:
		return resp, fmt.Errorf("%s %s: the server answered %d, a redirect to %q: not followed (the API never redirects; it would carry the token)",
			req.Method, hr.URL.EscapedPath(), hresp.StatusCode, hresp.Header.Get("Location"))
	case hresp.StatusCode >= 400:
		return resp, api.Decode(hresp.StatusCode, b, hresp.Header.Get("Retry-After"))
	}
	return resp, nil
}

// pacer is the policy's BackOff with the last attempt's say: a
// Retry-After floor, or "at once" (another server after no answer).
type pacer struct {
	policy backoff.BackOff
	floor  time.Duration
	now    bool
}

func (p *pacer) Reset() { p.policy.Reset() }

func (p *pacer) NextBackOff() time.Duration {
	d := p.policy.NextBackOff()
	switch {
	case d == backoff.Stop:
		return d
	case p.now:
		return 0
	}
	return max(d, p.floor)
}

// Package transport is the SDK's HTTP layer: the cluster's servers, a
// circuit breaker per server, server choice, retries with full jitter that
// honour Retry-After, and the decoding of error answers into *api.Error.
//
// Threading: a Client is safe for concurrent use. Close releases its idle
// connections; requests in flight end with their contexts.
package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/rafting/rafting/api"
)

// Defaults.
const (
	// AttemptTimeout bounds one ordinary request attempt: above the
	// server's own 10 s bound on a write, so the server answers 504 first.
	AttemptTimeout = 11 * time.Second
	// maxResponse bounds a response body read into memory.
	maxResponse = 64 << 20
	// breakerOpen is how long a tripped breaker keeps its server out.
	breakerOpen = time.Second
	// breakerTrip is the consecutive failures that trip a breaker.
	breakerTrip = 3
)

// Config configures a Client.
type Config struct {
	Servers []string // host:port of each server; at least one
	Token   string   // bearer token
	// TLS makes the Client speak HTTPS, with this configuration for its
	// own transports (with HTTPClient, only the scheme follows it: that
	// client's transport does the TLS). nil: plain HTTP.
	TLS        *tls.Config
	HTTPClient *http.Client // nil: the Client's own tuned transports
	Logger     *slog.Logger // nil: silent
	// Insecure allows plain HTTP to servers that are not loopback. Without
	// it a plain-HTTP Client refuses such a server, configured or learnt
	// (a server list, a leader hint): the token would cross the network
	// in the clear.
	Insecure bool
	// Unauthorized, if set, makes the error of a 401 answer: one that
	// names what to fix. It must keep the *api.Error in its chain. nil:
	// the *api.Error as decoded.
	Unauthorized func(*api.Error) error
}

// Client sends requests to the cluster.
type Client struct {
	servers atomic.Pointer[[]string] // the configured ones first; AddServers appends
	scheme  string
	anyHost bool // any server may be used: HTTPS, or plain HTTP allowed off loopback
	auth    string
	unauth  func(*api.Error) error
	short   *http.Client // ordinary requests and streams
	poll    *http.Client // blocking queries: no response-header timeout
	duplex  *http.Client // client streams: HTTP/2 (duplex.go)
	own     []*http.Transport
	log     *slog.Logger

	next     atomic.Uint32
	mu       sync.Mutex
	breakers map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no servers")
	}
	c := &Client{
		scheme:   "http",
		auth:     "Bearer " + cfg.Token,
		unauth:   cfg.Unauthorized,
		log:      cfg.Logger,
		breakers: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS != nil {
		c.scheme = "https"
	}
	c.anyHost = cfg.TLS != nil || cfg.Insecure
	for _, s := range cfg.Servers {
		if !c.allowed(s) {
			return nil, fmt.Errorf("server %s: %w", s, ErrPlaintext)
		}
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient // a copy: the caller's client keeps its own redirect rule
		hc.CheckRedirect = noRedirects
		c.short, c.poll, c.duplex = &hc, &hc, &hc
	} else {
		s, p, d := NewTransport(cfg.TLS, 15*time.Second), NewTransport(cfg.TLS, 0), newDuplexTransport(cfg.TLS)
		c.own = []*http.Transport{s, p, d}
		c.short = &http.Client{Transport: s, CheckRedirect: noRedirects}
		c.poll = &http.Client{Transport: p, CheckRedirect: noRedirects}
		c.duplex = &http.Client{Transport: d, CheckRedirect: noRedirects}
	}
	servers := slices.Clone(cfg.Servers)
	c.servers.Store(&servers)
	c.next.Store(uint32(time.Now().UnixNano()))
	return c, nil
}

// noRedirects never follows a redirect: Go's client would send the
// request again — with its Authorization header to the same host, on any
// port or scheme, plain HTTP included. The servers never redirect; an
// answer that does is an error.
func noRedirects(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("server answered a redirect to %s: not followed", req.URL.Redacted())
}

// NewTransport returns an http.Transport tuned for Rafting: many idle
// connections per server (Go's default keeps two, and every watched service
// holds one in a long-poll), TCP keep-alives to notice dead peers, bounded
// dial and TLS handshakes. responseHeader bounds the wait for an answer's
// headers (0: none, for blocking queries, which answer only when their wait
// ends; their context bounds them instead).
func NewTransport(tc *tls.Config, responseHeader time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseHeader,
	}
	if tc != nil {
		t.TLSClientConfig = tc.Clone()
	}
	return t
}

// Loopback reports whether addr (host:port) is a loopback address:
// localhost, 127.0.0.0/8 or ::1. Plain HTTP is allowed only to those
// unless Config.Insecure.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowed reports whether a request may go to server.
func (c *Client) allowed(server string) bool { return c.anyHost || Loopback(server) }

// url is the URL of path on server, or ErrPlaintext.
func (c *Client) url(server, path string) (string, error) {
	if !c.allowed(server) {
		return "", fmt.Errorf("server %s: %w", server, ErrPlaintext)
	}
	return c.scheme + "://" + server + path, nil
}

// Close releases idle connections.
func (c *Client) Close() {
	for _, t := range c.own {
		t.CloseIdleConnections()
	}
}

// Servers returns the configured servers.
func (c *Client) Servers() []string { return slices.Clone(*c.servers.Load()) }

// AddServers adds the servers not yet known; none is ever dropped (an
// address that stops answering is kept out by its breaker). A plain-HTTP
// Client without Insecure adds only loopback servers. It reports whether
// it added any.
func (c *Client) AddServers(add []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.servers.Load()
	next := slices.Clone(cur)
	for _, s := range add {
		if s != "" && c.allowed(s) && !slices.Contains(next, s) {
			next = append(next, s)
		}
	}
	if len(next) == len(cur) {
		return false
	}
	c.servers.Store(&next)
	return true
}

func (c *Client) breaker(server string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.breakers[server]
	if b == nil {
		b = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        server,
			MaxRequests: 1,
			Timeout:     breakerOpen,
			ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= breakerTrip },
			IsSuccessful: func(err error) bool {
				return err == nil || !serverFault(err)
			},
			IsExcluded: func(err error) bool {
				return errors.Is(err, context.Canceled)
			},
			OnStateChange: func(name string, from, to gobreaker.State) {
				c.log.Debug("breaker", "server", name, "from", from.String(), "to", to.String())
			},
		})
		c.breakers[server] = b
	}
	return b
}

// acquire picks the server for one attempt: prefer when given and its
// breaker lets a request through, else the next server in turn whose
// breaker does. done must be called with the attempt's outcome.
func (c *Client) acquire(prefer string) (string, func(error), error) {
	if prefer != "" && c.allowed(prefer) {
		if done, err := c.breaker(prefer).Allow(); err == nil {
			return prefer, done, nil
		}
	}
	servers := *c.servers.Load()
	n := len(servers)
	start := int(c.next.Add(1))
	for i := range n {
		s := servers[(start+i)%n]
		if s == prefer {
			continue
		}
		if done, err := c.breaker(s).Allow(); err == nil {
			return s, done, nil
		}
	}
	return "", nil, ErrNoServer
}

// Next returns a server to try, other than avoid when there is a choice,
// skipping servers whose breaker is open. It does not count a request.
func (c *Client) Next(avoid string) string {
	servers := *c.servers.Load()
	n := len(servers)
	start := int(c.next.Add(1))
	for i := range n {
		s := servers[(start+i)%n]
		if s != avoid && c.breaker(s).State() != gobreaker.StateOpen {
			return s
		}
	}
	return servers[start%n]
}

// Request is one API call.
type Request struct {
	Method string
	Path   string // with its query
	Body   []byte // JSON; nil: none
	Header http.Header
	// Server is the server to try first (a leader hint, or the server a
	// watch sticks to); empty: the next in turn.
	Server string
	// Long marks a blocking query: no response-header timeout; Timeout
	// must then cover its wait.
	Long bool
	// Timeout bounds one attempt; 0 is AttemptTimeout.
	Timeout time.Duration
	// Retry bounds the retries: nil means one attempt. Retries wait with
	// full jitter, at least a server's Retry-After, and stop with the
	// caller's ctx.
	Retry *Retry
}

// Retry is a retry policy.
type Retry struct {
	Base, Cap  time.Duration // full-jitter range (see Jitter)
	MaxElapsed time.Duration // 0: until ctx ends
}

// Response is a successful answer (status < 400), body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Server string // the server that answered
}

// Leader is the X-Rafting-Leader header: the tenant shard leader's API
// address, when the server knew it.
func (r *Response) Leader() string { return r.Header.Get(api.HeaderLeader) }

// Index is the X-Rafting-Index header (0 when absent).
func (r *Response) Index() uint64 {
	n, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
	return n
}

// Epoch is the X-Rafting-Epoch header: the tenant's epoch (0 when absent).
func (r *Response) Epoch() uint64 { return Epoch(r.Header) }

// Epoch reads X-Rafting-Epoch from a header (0 when absent or malformed).
func Epoch(h http.Header) uint64 {
	n, _ := strconv.ParseUint(h.Get(api.HeaderEpoch), 10, 64)
	return n
}

// Do sends req, retrying per req.Retry on another server where that helps.
// Errors are *api.Error for an error answer, *NetError for no answer, or
// the ctx's error (joined with the last failure, when there was one).
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	if req.Retry == nil {
		resp, _, err := c.attempt(ctx, req, req.Server)
		return resp, err
	}
	j := NewJitter(req.Retry.Base, req.Retry.Cap)
	j.MaxElapsed = req.Retry.MaxElapsed
	server := req.Server
	var last error
	resp, err := backoff.RetryWithData(func() (*Response, error) {
		resp, used, err := c.attempt(ctx, req, server)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() == nil || last == nil {
			// An attempt the ctx cut short says less than the failure
			// before it (a certificate that does not verify, say).
			last = err
		}
		if ctx.Err() != nil || !Retryable(err) {
			return nil, backoff.Permanent(err)
		}
		var ae *api.Error
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			j.SetFloor(ae.RetryAfter)
		}
		switch {
		case errors.As(err, &ae) && ae.Leader != "" && ae.Code != api.CodeStaleReplica:
			server = ae.Leader
		case moveOn(err):
			server = c.Next(used)
		default:
			server = used
		}
		c.log.Debug("retrying", "method", req.Method, "server", used, "err", err)
		return nil, err
	}, backoff.WithContext(j, ctx))
	// The ctx ended the retries: say so, with the failure it cut short. That
	// holds too when an attempt failed without trying the ctx (every breaker
	// open) just as the ctx ran out, but not for a final answer.
	if err != nil && ctx.Err() != nil && last != nil && Retryable(last) &&
		!(errors.Is(err, ctx.Err()) && errors.Is(err, last)) {
		err = fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
	}
	return resp, err
}

// attempt sends req once, to prefer if its breaker allows.
func (c *Client) attempt(ctx context.Context, req Request, prefer string) (*Response, string, error) {
	server, done, err := c.acquire(prefer)
	if err != nil {
		return nil, "", err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = AttemptTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.send(actx, server, req)
	if err != nil && ctx.Err() != nil {
		done(context.Canceled) // the caller gave up: says nothing of the server
		return nil, server, err
	}
	done(err)
	return resp, server, err
}

func (c *Client) send(ctx context.Context, server string, req Request) (*Response, error) {
	var body io.Reader = http.NoBody
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	u, err := c.url(server, req.Path)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	hr.Header.Set("Authorization", c.auth)
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hc := c.short
	if req.Long {
		hc = c.poll
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, netError(ctx, server, err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp, maxResponse)
	if err != nil {
		return nil, netError(ctx, server, err)
	}
	if resp.StatusCode >= 400 {
		return nil, c.decodeError(resp, b)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b, Server: server}, nil
}

// readBody reads resp's body, at most limit bytes of it: in one
// allocation of the right size when the server said how long it is.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= limit {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

// netError wraps a request's failure. The URL is dropped (a *url.Error
// names it): session paths hold session IDs, which are secrets.
func netError(ctx context.Context, server string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return &NetError{Server: server, Err: ctx.Err()}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &NetError{Server: server, Err: err}
}

// decodeError turns an error answer into an *api.Error, a 401 through
// Config.Unauthorized.
func (c *Client) decodeError(resp *http.Response, body []byte) error {
	e := api.Decode(resp.StatusCode, body, resp.Header.Get("Retry-After"))
	if e.Leader == "" {
		e.Leader = resp.Header.Get(api.HeaderLeader)
	}
	if e.Code == api.CodeUnauthorized && c.unauth != nil {
		return c.unauth(e)
	}
	return e
}

// Stream opens a streaming GET (a session stream), on server if its
// breaker allows, else on the next server in turn; it returns the server
// used. On success the caller reads and closes the body; the answer's
// X-Rafting-Leader is in its header. The breaker counts the attempt when
// headers arrive.
//
// A named server is tried whatever its breaker says: the caller names the
// tenant leader that a live server just pointed to, fresher news than the
// breaker's memory of failures (a restarted server's breaker stays open
// for a while after it is back, which would keep a master off its leader).
// A named server that the Client may not use (plain HTTP off loopback) is
// passed over as if none were named.
func (c *Client) Stream(ctx context.Context, server, path string) (*http.Response, string, error) {
	done := func(error) {}
	if server == "" || !c.allowed(server) {
		var err error
		if server, done, err = c.acquire(""); err != nil {
			return nil, "", err
		}
	}
	u, err := c.url(server, path)
	if err != nil {
		done(nil)
		return nil, server, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		done(nil)
		return nil, server, err
	}
	hr.Header.Set("Authorization", c.auth)
	hr.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.short.Do(hr)
	if err != nil {
		err = netError(ctx, server, err)
		if ctx.Err() != nil {
			done(context.Canceled)
		} else {
			done(err)
		}
		return nil, server, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, api.MaxBodyBytes))
		resp.Body.Close()
		e := c.decodeError(resp, b)
		done(e)
		return nil, server, e
	}
	done(nil)
	return resp, server, nil
}

package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/stream"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// Client is a connection to a Rafting cluster for one tenant: the
// membership cache of the services it watches, and the members joined
// through it. Every method is safe for concurrent use. Close it when done.
type Client struct {
	cfg     config
	tr      *transport.Client
	log     *slog.Logger
	stopLog func()             // ends the logger's queue (see logQueue)
	flight  singleflight.Group // merges concurrent refreshes of one service
	stream  *stream.Client     // WithClientStream: the Client's stream (cache_stream.go); else nil
	batch   *keepBatch         // WithClientStream: its sessions' keepalives (session_stream.go); else nil

	mu       sync.Mutex
	services map[string]*Service
	members  map[*Member]struct{}
	shared   map[time.Duration]*sharedSession // the farm members' shared sessions, by TTL (shared_session.go)
	floors   map[string]uint64                // read-your-writes floors of services not watched yet
	closed   bool
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	configs map[string]*Config // the configuration views, by prefix (config.go); guarded by mu

	roles       roleCounts // its members' role changes (metrics.go)
	stopMetrics func()     // WithMetrics: Close ends the observation
}

// Connect returns a Client for the tenant. Settings come from
// RAFTING_SERVERS, RAFTING_TENANT and RAFTING_TOKEN unless options say
// otherwise; without a tenant, the token's is taken (a tenant token names
// it), and a tenant the token contradicts is refused at once. Connect
// checks the token with one request, so a wrong token or tenant fails here
// (ErrUnauthorized, naming the setting to fix; ErrNotFound); while no
// server answers it retries until ctx ends (10 s when ctx has no
// deadline).
func Connect(ctx context.Context, opts ...Option) (*Client, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return connect(ctx, cfg)
}

func connect(ctx context.Context, cfg config) (*Client, error) {
	log := cfg.conn.logger
	stopLog := func() {}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	} else {
		log, stopLog = asyncLogger(log)
	}
	log = log.With("tenant", cfg.conn.tenant)
	tr, err := transport.New(transport.Config{
		Servers: cfg.conn.ep.addrs, Token: cfg.conn.token, TLS: cfg.conn.ep.tls, Insecure: cfg.conn.ep.insecure,
		HTTPClient: cfg.conn.httpClient, Logger: log, Unauthorized: cfg.conn.unauthorized,
	})
	if err != nil {
		stopLog()
		return nil, fmt.Errorf("sdk: %w", err)
	}
	c := &Client{cfg: cfg, tr: tr, log: log, stopLog: stopLog, services: map[string]*Service{}, members: map[*Member]struct{}{},
		floors: map[string]uint64{}, done: make(chan struct{})}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConnectWait)
		defer cancel()
	}
	if _, err := c.do(ctx, http.MethodGet, c.tenantPath("/services"), nil, nil, true); err != nil {
		tr.Close()
		stopLog()
		return nil, fmt.Errorf("sdk: connect to tenant %s: %w", cfg.conn.tenant, certHint(err))
	}
	log.Debug("connected", "servers", cfg.conn.ep.addrs)
	if c.useStream(ctx) {
		c.stream = c.newStream()
		c.batch = newKeepBatch(c.stream)
	}
	if cfg.conn.serverSync > 0 {
		c.wg.Add(1)
		go c.syncServers(cfg.conn.serverSync)
	}
	if m := cfg.conn.metrics; m != nil {
		c.stopMetrics = m.Observe(c.Stats)
	}
	return c, nil
}

// syncServers adds the cluster's servers the Client does not know, now and
// every interval until Close (see WithServerSync).
func (c *Client) syncServers(interval time.Duration) {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.do(rctx, http.MethodGet, "/v1/servers", nil, nil, false)
		rcancel()
		var l api.ServerList
		if err == nil {
			err = jsonUnmarshal(resp.Body, &l)
		}
		if err == nil {
			add := usableServers(l.Servers)
			// Only a Client that reaches the nodes at the addresses they
			// advertise takes more of them: one configured with other
			// addresses (a proxy, a load balancer, NAT) keeps to those.
			direct := slices.ContainsFunc(c.cfg.conn.ep.addrs, func(s string) bool { return slices.Contains(add, s) })
			if direct && c.tr.AddServers(add) {
				c.log.Info("learnt the cluster's servers", "servers", c.tr.Servers())
			}
		} else if ctx.Err() == nil {
			c.log.Debug("server list", "err", err)
		}
		select {
		case <-c.done:
			return
		case <-time.After(interval):
		}
	}
}

// usableServers keeps the entries of a server list that are host:port.
func usableServers(list []string) []string {
	var out []string
	for _, s := range list {
		if _, _, err := net.SplitHostPort(s); err == nil && !strings.Contains(s, "/") {
			out = append(out, s)
		}
	}
	return out
}

// Tenant is the tenant the Client works for.
func (c *Client) Tenant() string { return c.cfg.conn.tenant }

// Close stops the Client: every member still joined through it leaves
// (each bounded by its leave timeout), every watch stops, and Close waits
// for every goroutine the Client started. Balancers keep their last
// endpoints; Service methods keep answering from the last snapshot.
// Close is idempotent.
func (c *Client) Close() error {
	return c.shutdown(false)
}

// shutdown closes the Client: every member leaves, or with crash, every
// member and shared session ends without a word to the servers, as in a
// process killed with kill -9 (see crash.go).
func (c *Client) shutdown(crash bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	members := make([]*Member, 0, len(c.members))
	for m := range c.members {
		members = append(members, m)
	}
	services := make([]*Service, 0, len(c.services))
	for _, s := range c.services {
		services = append(services, s)
	}
	c.mu.Unlock()

	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if crash {
				m.crashLocal()
				return
			}
			if err := m.leave(context.Background()); err != nil && !errors.Is(err, ErrLeft) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Every member has left, and the last of each shared session ended it;
	// a keeper still running (none should be) ends now.
	c.mu.Lock()
	keepers := make([]*Member, 0, len(c.shared))
	for _, ss := range c.shared {
		keepers = append(keepers, ss.k)
	}
	c.shared = nil
	c.mu.Unlock()
	for _, k := range keepers {
		if crash {
			k.crashLocal()
		} else {
			k.leave(context.Background())
		}
	}
	close(c.done)
	for _, s := range services {
		s.stop()
	}
	c.stopConfigs()
	c.wg.Wait()
	if c.stream != nil {
		c.batch.close()
		c.stream.Close()
	}
	c.tr.Close()
	if c.stopMetrics != nil {
		c.stopMetrics()
	}
	if c.stopLog != nil {
		c.stopLog()
	}
	return errors.Join(errs...)
}

// tenantPath is /v1/tenants/{t} + suffix.
func (c *Client) tenantPath(suffix string) string {
	return "/v1/tenants/" + url.PathEscape(c.cfg.conn.tenant) + suffix
}

// writeRetry is the retry policy of writes and one-off reads: full jitter
// from 20 ms up to 1 s between attempts, until the caller's ctx ends.
var writeRetry = &transport.Retry{Base: 20 * time.Millisecond, Cap: time.Second}

// do sends one API request with retries (when retry) and decodes a JSON
// answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, body any, header http.Header, retry bool) (*transport.Response, error) {
	req := transport.Request{Method: method, Path: path, Header: header}
	if body != nil {
		b, err := jsonMarshal(body)
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	if retry {
		req.Retry = writeRetry
	}
	return c.tr.Do(ctx, req)
}

// Service returns the cached view of a service, starting to watch it on
// the first call, and waits until the cache holds a first answer (or ctx
// ends). The first answer is a linearizable read: an instance whose Join
// returned before Service was called — in this process or another — is in
// it, so a Balancer made at once picks it. It needs a quorum of the
// tenant's replicas; without one Service waits until ctx ends. Later calls
// return the same *Service at once (Sync reads again). A service that does
// not exist yet is watched all the same: it has no instances until some
// join.
func (c *Client) Service(ctx context.Context, name string) (*Service, error) {
	if err := api.ValidateName("service", name); err != nil {
		return nil, fmt.Errorf("sdk: %w", err)
	}
	s, err := c.watch(name, 0)
	if err != nil {
		return nil, err
	}
	select {
	case <-s.filled:
		return s, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: service %s: no answer yet: %w", name, errors.Join(ctx.Err(), s.lastError()))
	}
}

// watch returns the service's watcher, starting it if needed; minIndex is
// a read-your-writes floor for its answers.
func (c *Client) watch(name string, minIndex uint64) (*Service, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	s := c.services[name]
	if s == nil {
		s = newService(c, name)
		s.raiseFloor(max(minIndex, c.floors[name]))
		delete(c.floors, name)
		c.services[name] = s
		s.start(&c.wg)
		return s, nil
	}
	s.raiseFloor(minIndex)
	return s, nil
}

// watching returns the service's watcher if it has one.
func (c *Client) watching(name string) *Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.services[name]
}

package sdk

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
)

// Environment variables read by Connect and Join, in this one place, as
// defaults that options override. Nothing else in the SDK reads the
// environment.
const (
	// EnvServers lists the servers' API addresses, comma-separated:
	// host:port, http://host:port or https://host:port
	// ("https://10.0.0.1:7070,https://10.0.0.2:7070"). See WithServers.
	EnvServers = "RAFTING_SERVERS"
	// EnvTenant names the tenant. Unset, the tenant is the one the token
	// names (a tenant token is rft_<tenant>_<secret>); set, it must be
	// that one.
	EnvTenant = "RAFTING_TENANT"
	// EnvToken is the tenant's token (a secret: never logged).
	EnvToken = "RAFTING_TOKEN"
	// EnvCA is a PEM file of the CA certificates that the servers'
	// certificates are verified with, instead of the system's roots (as
	// WithCA). It makes a bare host:port mean https.
	EnvCA = "RAFTING_CA"
	// EnvCert and EnvKey are PEM files of a client certificate and its
	// key, presented to the servers (as WithClientCert); both or neither.
	EnvCert = "RAFTING_CERT"
	EnvKey  = "RAFTING_KEY"
	// EnvInsecure, set to 1 (or true), allows plain HTTP to servers that
	// are not loopback (as WithInsecure). It never turns off the
	// verification of a certificate.
	EnvInsecure = "RAFTING_INSECURE"
)

// Defaults of the options.
const (
	DefaultTTL          = 5 * time.Second        // session TTL: a silent host is replaced after it
	DefaultLease        = time.Second            // promise of a master-standby session
	DefaultDrainDelay   = 500 * time.Millisecond // Leave: draining before deregistering
	DefaultLeaveTimeout = 5 * time.Second        // Leave's bound
	DefaultQuarantine   = 10 * time.Second       // mass removals: how long balancers keep the removed
	DefaultDebounce     = 2 * time.Millisecond   // quiet time that ends a burst of updates
	DefaultConnectWait  = 10 * time.Second       // Connect's bound when its ctx has none
	DefaultWatchWait    = 60 * time.Second       // a blocking query's wait
	DefaultServerSync   = 5 * time.Minute        // how often a Client asks for the cluster's servers
)

// Option configures Connect, Join and (*Client).Join. Connection options
// (WithServers, WithTenant, WithToken, WithLogger, WithHTTPClient, WithTLS,
// WithCA, WithClientCert, WithInsecure) apply to a Client; (*Client).Join refuses them. Member options (WithTTL,
// WithLease, WithTwoStepStartup, WithColdStart, WithRoleChange,
// WithDrainDelay, WithLeaveTimeout) given to Connect are the defaults of
// every member joined through that Client.
type Option func(*config)

// config is what the options set.
type config struct {
	conn    connConfig
	connSet bool // a connection option was given
	member  memberConfig
}

type connConfig struct {
	servers    []string // as written: host:port, http:// or https://
	tenant     string
	tenantFrom string // the setting tenant came from, for errors: RAFTING_TENANT, WithTenant or the token
	token      string
	tokenFrom  string // the setting token came from, for errors: RAFTING_TOKEN or WithToken
	logger     *slog.Logger
	metrics    Metrics // WithMetrics
	httpClient *http.Client
	tls        *tls.Config // WithTLS
	caFile     string      // WithCA
	certFile   string      // WithClientCert
	keyFile    string
	insecure   bool // WithInsecure
	env        tlsEnv
	ep         serverSet // set by validate
	quarantine time.Duration
	debounce   time.Duration
	watchWait  time.Duration
	serverSync time.Duration
	// clientStream: WithClientStream; unset, a Client uses the stream when
	// one opens (Client.useStream).
	clientStream    bool
	clientStreamSet bool
}

type memberConfig struct {
	ttl          time.Duration
	lease        time.Duration // < 0: the mode's default
	twoStep      bool
	coldStart    *api.ColdStart
	roleChange   []func(RoleChange)
	drainDelay   time.Duration // < 0: the default
	leaveTimeout time.Duration
	ownSession   bool // WithOwnSession
}

// defaults returns the configuration before options: the environment's
// connection settings and the documented defaults.
func defaults() config {
	c := config{member: memberConfig{ttl: DefaultTTL, lease: -1, drainDelay: -1, leaveTimeout: DefaultLeaveTimeout}}
	c.conn.quarantine = DefaultQuarantine
	c.conn.debounce = DefaultDebounce
	c.conn.watchWait = DefaultWatchWait
	c.conn.serverSync = DefaultServerSync
	if v := os.Getenv(EnvServers); v != "" {
		c.conn.servers = splitServers(v)
	}
	c.conn.tenant, c.conn.tenantFrom = os.Getenv(EnvTenant), EnvTenant
	c.conn.token, c.conn.tokenFrom = os.Getenv(EnvToken), EnvToken
	c.conn.env = tlsEnv{ca: os.Getenv(EnvCA), cert: os.Getenv(EnvCert), key: os.Getenv(EnvKey), insecure: os.Getenv(EnvInsecure)}
	return c
}

// splitServers splits a server list into its entries, as written (a
// scheme kept, a trailing slash dropped).
func splitServers(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(s), "/")); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *config) validate() error {
	switch {
	case len(c.conn.servers) == 0:
		return ErrNoServers
	case c.conn.token == "":
		return fmt.Errorf("sdk: no token: set %s or use WithToken", EnvToken)
	}
	if err := c.conn.settleTenant(); err != nil {
		return err
	}
	ep, err := c.conn.resolve()
	if err != nil {
		return err
	}
	c.conn.ep = ep
	return c.member.validate()
}

// settleTenant takes the tenant from the token when none is set, and
// refuses a tenant that the token contradicts.
func (c *connConfig) settleTenant() error {
	named, ok := tokenTenant(c.token)
	switch {
	case ok && c.tenant == "":
		c.tenant, c.tenantFrom = named, "the token in "+c.tokenFrom
	case ok && c.tenant != named:
		// ErrNotFound, as the servers would answer: a token never sees
		// another tenant.
		return &fixError{cause: api.ErrNotFound, msg: fmt.Sprintf(
			"sdk: tenant %q from %s, but the token in %s is tenant %q's: use a token of tenant %s, or leave the tenant unset (the token names it)",
			c.tenant, c.tenantFrom, c.tokenFrom, named, c.tenant)}
	case c.tenant == "":
		return fmt.Errorf("sdk: no tenant: set %s or use WithTenant (the token in %s names none: a tenant token is %s<tenant>_<secret>)",
			EnvTenant, c.tokenFrom, tokenPrefix)
	}
	if err := api.ValidateTenantName("tenant (from "+c.tenantFrom+")", c.tenant); err != nil {
		return fmt.Errorf("sdk: %w", err)
	}
	return nil
}

// Tenant tokens are tokenPrefix + tenant + "_" + secret, the secret
// minSecret to maxSecret characters of base64url: tenants.ParseToken's
// rules, which the SDK may not import (a test keeps the two in step).
const (
	tokenPrefix = "rft_"
	minSecret   = 22
	maxSecret   = 128
)

// tokenTenant returns the tenant a well-formed tenant token names. It
// says nothing of whether the token is authentic: the servers decide.
func tokenTenant(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", false
	}
	tenant, secret, ok := strings.Cut(rest, "_")
	if !ok || api.ValidateTenantName("", tenant) != nil || len(secret) < minSecret || len(secret) > maxSecret {
		return "", false
	}
	for i := range len(secret) {
		switch b := secret[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return "", false
		}
	}
	return tenant, true
}

// unauthorized turns a 401 into an error naming what to fix: the setting
// the token came from and the tenant it was for. It still matches
// ErrUnauthorized.
func (c *connConfig) unauthorized(e *api.Error) error {
	fix := "set " + c.tokenFrom + " to"
	if c.tokenFrom == "WithToken" {
		fix = "give WithToken"
	}
	return &fixError{cause: e, msg: fmt.Sprintf("the servers refused the token in %s for tenant %s (401 unauthorized): %s a current token of tenant %s (the server said: %s)",
		c.tokenFrom, c.tenant, fix, c.tenant, e.Message)}
}

// fixError is an error whose text says what setting to fix, in place of
// its cause's, which it unwraps to (so errors.Is matches the cause's
// sentinel).
type fixError struct {
	cause error
	msg   string
}

func (e *fixError) Error() string { return e.msg }
func (e *fixError) Unwrap() error { return e.cause }

func (m *memberConfig) validate() error {
	switch {
	case m.ttl < time.Second:
		return fmt.Errorf("sdk: WithTTL %v: must be at least 1s (servers require 3s by default)", m.ttl)
	case m.lease > m.ttl:
		return fmt.Errorf("sdk: WithLease %v: must not exceed the TTL %v", m.lease, m.ttl)
	case m.coldStart != nil && (m.coldStart.MinReady < 0 || m.coldStart.SettleMs < 0):
		return errors.New("sdk: WithColdStart: minReady and settle must not be negative")
	}
	return nil
}

// WithServers sets the servers' API addresses, overriding
// RAFTING_SERVERS. One reachable server is enough; list them all.
//
// An address is https://host:port (TLS, the servers' certificates
// verified with the system's roots, or with WithCA / RAFTING_CA),
// http://host:port (plain HTTP), or a bare host:port, which means https
// when TLS is configured (WithTLS, WithCA, WithClientCert or their
// environment variables) or another address says https://, and http
// otherwise. One list speaks one scheme: http:// beside https:// is
// refused, as is http:// with a TLS option. Plain HTTP to an address that
// is not loopback (localhost, 127.0.0.0/8, ::1) would send the token in
// the clear, and is refused unless WithInsecure or RAFTING_INSECURE=1
// allows it; the servers a Client learns later (WithServerSync, leader
// hints) are held to the same rule.
func WithServers(servers ...string) Option {
	return func(c *config) {
		c.conn.servers = splitServers(strings.Join(servers, ","))
		c.connSet = true
	}
}

// WithTenant sets the tenant, overriding RAFTING_TENANT. Without either,
// the tenant is the one the token names; with one, a token of another
// tenant is refused by Connect and Join.
func WithTenant(name string) Option {
	return func(c *config) { c.conn.tenant, c.conn.tenantFrom, c.connSet = name, "WithTenant", true }
}

// WithToken sets the tenant's token, overriding RAFTING_TOKEN.
func WithToken(token string) Option {
	return func(c *config) { c.conn.token, c.conn.tokenFrom, c.connSet = token, "WithToken", true }
}

// WithLogger sets the logger; nil (the default) is silent. The SDK never
// logs tokens or session IDs (only session tags).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.conn.logger, c.connSet = l, true }
}

// WithHTTPClient makes the SDK send every request with hc instead of its
// own transports (tuned for long-polls: many idle connections per host, no
// response-header timeout on blocking queries). hc must not have a
// Timeout shorter than a blocking query's wait (60 s), and it is used for
// session streams too, so a Timeout would cut them.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.conn.httpClient, c.connSet = hc, true }
}

// WithTLS talks to the servers over HTTPS with a copy of cfg. It replaces
// the environment's TLS settings (RAFTING_CA, RAFTING_CERT, RAFTING_KEY);
// WithCA and WithClientCert given beside it add to cfg. Not with
// WithHTTPClient, whose transport does its own TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.conn.tls, c.connSet = cfg, true }
}

// WithCA verifies the servers' certificates with the CA certificates in
// caFile (PEM) instead of the system's roots, overriding RAFTING_CA, and
// makes a bare host:port mean https. The file is read by Connect or
// Join.
func WithCA(caFile string) Option {
	return func(c *config) { c.conn.caFile, c.connSet = caFile, true }
}

// WithClientCert presents a client certificate (certFile and keyFile, PEM)
// to the servers, overriding RAFTING_CERT and RAFTING_KEY, and makes a
// bare host:port mean https. The files are read by Connect or Join.
func WithClientCert(certFile, keyFile string) Option {
	return func(c *config) { c.conn.certFile, c.conn.keyFile, c.connSet = certFile, keyFile, true }
}

// WithInsecure allows plain HTTP to servers that are not loopback, as
// RAFTING_INSECURE=1 does: the token then crosses the network in the
// clear, readable by anyone on the path. For a trusted network only. It
// never turns off the verification of a server's certificate.
func WithInsecure() Option {
	return func(c *config) { c.conn.insecure, c.connSet = true, true }
}

// WithQuarantine sets how long balancers keep instances that a single
// update removed en masse (more than half of them, at least two); see
// Service. 0 applies such updates at once. The default is 10 s.
func WithQuarantine(d time.Duration) Option {
	return func(c *config) { c.conn.quarantine, c.connSet = max(d, 0), true }
}

// WithDebounce sets the quiet time of balancer rebuilds (default 2 ms): an
// update after a quiet time rebuilds at once; the updates that follow it
// within the quiet time are a burst, rebuilt once when the burst goes
// quiet (at most 25 quiet times after its first update). 0 rebuilds on
// every update.
func WithDebounce(d time.Duration) Option {
	return func(c *config) { c.conn.debounce, c.connSet = max(d, 0), true }
}

// WithServerSync sets how often a Client asks the cluster for its servers'
// addresses (GET /v1/servers), once at Connect and then every d (default
// 5 minutes), and adds the ones it did not know: a Client configured with
// one address learns the others, and a node that replaced a lost one. No
// address is ever dropped, and a Client none of whose configured addresses
// is one the nodes advertise (it reaches them through a proxy, a load
// balancer, NAT) keeps to its own. 0 turns it off.
func WithServerSync(d time.Duration) Option {
	return func(c *config) { c.conn.serverSync, c.connSet = max(d, 0), true }
}

// WithClientStream(true) puts the Client on one client stream (POST
// /v1/tenants/{t}/stream over HTTP/2: h2c without TLS, h2 by ALPN with it),
// kept on the tenant's leader. Its services are
// followed by watches on it instead of a blocking query each: every change
// arrives as a delta, in index order; the first fill of a Service stays a
// linearizable read, and Service's rules are the same either way. Its
// members' sessions attach on it instead of a session stream each, and
// their keepalives travel together: those due within a tenth of their
// interval leave in one frame, each promise anchored when that frame was
// handed to the transport. Writes do not use the stream yet. With
// WithHTTPClient, that client must speak HTTP/2 to the servers.
//
// By default a Client uses the stream when one opens as it connects, and
// REST (blocking queries, a session stream per member, a request per
// keepalive) when none does: through an HTTP/1.1 proxy, against a server
// older than the stream. WithClientStream(false) keeps it on REST;
// WithClientStream(true) uses the stream whatever happens at Connect.
func WithClientStream(on bool) Option {
	return func(c *config) { c.conn.clientStream, c.conn.clientStreamSet, c.connSet = on, true, true }
}

// WithOwnSession gives a farm member joined through (*Client).Join a
// session of its own. By default the farm members of one Client that have
// the same TTL share one session, opened by the first to join and kept
// alive by one keepalive schedule, as the instances of one process share
// its fate: a member's Leave deregisters its own instance and deletes
// its own ephemeral keys, and the last to leave ends the session; when the
// servers end it, every member sharing it registers again under a new one.
// A member with a session of its own costs the servers a session and its
// keepalives, but its session, and its ephemeral keys, end with it alone.
// Master-standby members, and members made by Join, always have their own.
func WithOwnSession() Option {
	return func(c *config) { c.member.ownSession = true }
}

// WithTTL sets the session TTL: how long the servers keep a member whose
// keepalives stopped with no stream close (a silent host, a partition).
// Default 5 s; servers refuse less than the tenant's min_ttl_ms (3 s).
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.member.ttl = d }
}

// WithLease sets the promise of each keepalive answer: the session lives at
// least this long after a keepalive was sent. A master acts only within
// its promise, and a crashed master is replaced about one lease after its
// last keepalive. Default 1 s for master-standby members, 0 (no promise)
// for farm members.
func WithLease(d time.Duration) Option {
	return func(c *config) { c.member.lease = max(d, 0) }
}

// WithTwoStepStartup joins as `starting`: registered and visible to
// operators, never picked by balancers, never elected, until
// Member.Ready.
func WithTwoStepStartup() Option {
	return func(c *config) { c.member.twoStep = true }
}

// WithColdStart sets the service's election policy, carried by the
// instance: when the service has no master, the first grant waits until
// minReady candidates are ready, or settle has passed since the first was
// (then the highest priority among them wins). settle 0 means "do not
// wait". A policy set through the REST API wins over it.
func WithColdStart(minReady int, settle time.Duration) Option {
	return func(c *config) {
		c.member.coldStart = &api.ColdStart{MinReady: minReady, SettleMs: settle.Milliseconds()}
	}
}

// WithRoleChange registers fn as Member.OnRoleChange does, before the
// registration is sent, so fn sees every role from the first (Starting,
// then Standby, then the first promotion) while Join is still under way.
// Inside fn, reach the member through the change's Member field, never
// through the variable Join's result is assigned to (not set yet: a data
// race and a nil pointer), and act as master only under the change's
// Term. To run a job while master, use Member.RunAsMaster. A blocked fn
// holds back later callbacks, never Leave or Client.Close beyond their
// bound.
func WithRoleChange(fn func(RoleChange)) Option {
	return func(c *config) {
		if fn != nil {
			c.member.roleChange = append(c.member.roleChange, fn)
		}
	}
}

// WithDrainDelay sets how long Leave keeps a member registered as
// `draining` before it deregisters, so that callers' caches drop it before
// it stops answering. Default 500 ms; 0 skips it.
func WithDrainDelay(d time.Duration) Option {
	return func(c *config) { c.member.drainDelay = max(d, 0) }
}

// WithLeaveTimeout bounds Leave (default 5 s), whatever its ctx says.
func WithLeaveTimeout(d time.Duration) Option {
	return func(c *config) { c.member.leaveTimeout = d }
}

// Package sdk is Rafting's client: service discovery with client-side load
// balancing, and single-master election with fencing tokens, for Go
// services, on a small cluster of Rafting servers.
//
// # The three everyday jobs
//
// Call a farm: every instance joins at startup and leaves when it stops;
// a caller watches the service and lets balancer.Do pick an instance per
// request, a different one on each retry, with the outcome reported
// (ExampleClient_Service, and balancer's ExampleDo):
//
//	m, err := sdk.Join(ctx, sdk.Instance{Service: "orders", Address: "10.0.0.5:8080"})
//	defer m.Leave(context.Background()) // graceful: drained, then deregistered
//
//	c, err := sdk.Connect(ctx)
//	svc, err := c.Service(ctx, "orders")      // a consistent first read: sees every Join that returned
//	b := svc.Balancer(balancer.LeastLoaded()) // one per policy per service: ask again, get the same
//	err = balancer.Do(ctx, b, 3, func(ctx context.Context, e balancer.Endpoint) error {
//		return call(ctx, e.Address) // a dial error or balancer.StatusError(5xx): tried elsewhere
//	})
//
// Run a job only on the master: RunAsMaster waits for the member's terms
// and runs the job in each, with the term's fencing token and a ctx that
// ends with the term or with the ctx given to it (SIGTERM); Leave then
// hands over at once. The store the job writes to admits only the highest
// token it has seen (package sdk/fence: a Guard, an HTTP header and its
// middleware, a SQL recipe), so a master that lost its term without
// knowing it cannot write (ExampleJoin_masterStandby):
//
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
//	defer stop()
//	m, err := sdk.Join(ctx, sdk.Instance{Service: "billing", Mode: sdk.MasterStandby})
//	defer m.Leave(context.Background())
//	err = m.RunAsMaster(ctx, func(t sdk.Term) error {
//		return runBatches(t.Ctx, t.Token) // the store rejects older tokens
//	})
//
// Test it: package sdk/sdktest starts a real three-node cluster inside a
// test, joins members, crashes one's process (its Client) as kill -9
// would, and waits for what a caller sees (sdktest's ExampleStart):
//
//	c := sdktest.Start(t)
//	m := c.Join(t, sdk.Instance{Service: "orders", Address: "127.0.0.1:8080"})
//	svc, err := c.Connect(t).Service(ctx, "orders")
//	c.WaitEndpoints(t, svc, 1)
//	c.Crash(t, m) // the session ends after drop_grace; a standby takes over
//
// # Configuration store
//
// A tenant also holds a key-value store for configuration: keys are
// '/'-separated paths, values are bytes. c.Config(ctx, "flags") returns a
// live view of the subtree: the key "flags" and every key under "flags/"
// (never "flagsx"). Its first fill is a consistent read; after that it
// follows every put and delete, never goes back in time, and while no
// server answers keeps its last values, marked Stale. Get, Keys, Watch and
// OnChange read it locally. c.Put, c.CompareAndSet (a 409 ErrConflict
// carries the key's current mod_index in *api.Error's Conflict), c.Delete
// and c.Txn(ctx, new(sdk.Txn).IfModIndex(...).Put(...)) (all or nothing)
// write, and the Client's own views show a write when it returns.
// sdk.Decode[T](kv) reads a JSON value. m.PutEphemeral binds a key to the
// session the member is registered under (its Client's shared one for a
// farm member), so the key goes when the process goes (after drop_grace
// on a crash), and with the member's Leave, which deletes its own keys:
// use it for presence, or for a lock one instance holds at a time. When the servers end a live member's session, it puts
// its keys back under the new one, create-only: a key someone else took
// meanwhile is theirs (ExampleClient_Config, ExampleMember_PutEphemeral).
//
// # Configuration
//
// Connect and Join read these environment variables, and nothing else in
// the package reads the environment:
//
//	RAFTING_SERVERS   the servers' API addresses, comma-separated:
//	                  https://host:port, http://host:port or host:port
//	RAFTING_TENANT    the tenant; optional: by default the one the token
//	                  names (a token is rft_<tenant>_<secret>)
//	RAFTING_TOKEN     the tenant's token (a secret: never logged)
//	RAFTING_CA        PEM file of the CAs that verify the servers' certificates
//	                  (default: the system's roots)
//	RAFTING_CERT      PEM files of a client certificate and its key, presented
//	RAFTING_KEY       to the servers (both or neither)
//	RAFTING_INSECURE  1: allow plain HTTP to servers that are not loopback
//
// Options override them (WithServers, WithTenant, WithToken, WithCA,
// WithClientCert, WithInsecure; WithTLS replaces the three TLS
// variables). The other
// options have defaults that suit most services: a 5 s session TTL, a 1 s
// lease for master-standby members, 500 ms of draining on Leave, a 5 s
// bound on Leave. RAFTING_SERVERS need not name every server: a Client
// asks the cluster for the others at Connect and every 5 minutes
// (WithServerSync), so it also learns a node that joined later. Join
// fills in what an instance can tell about itself: a
// generated ID (the host name and a random suffix), the host name as its
// address, Farm mode, weight 100.
//
// # TLS
//
// The token goes with every request, so the SDK never sends it in the
// clear off the machine unless told to:
//
//   - https://host:port is TLS, the server's certificate verified with the
//     system's roots, or with RAFTING_CA (WithCA) for a private CA, as the
//     servers' --tls-cert is usually issued by one. WithInsecure never
//     turns that verification off.
//   - http://host:port is plain HTTP.
//   - A bare host:port follows the other addresses' scheme; when none has
//     one it is https if TLS is configured (RAFTING_CA, RAFTING_CERT, or
//     an option), else http. So with RAFTING_CA set, the servers' bare
//     addresses mean https, as for the rafting CLI's --ca.
//   - One list has one scheme: http:// beside https:// is refused, and so
//     is http:// beside a TLS option (an explicit http:// only wins over
//     TLS settings from the environment).
//   - Plain HTTP to an address that is not loopback (localhost,
//     127.0.0.0/8, ::1) is refused by Connect and Join with an error that
//     says how to go on: write https://, or allow it with WithInsecure()
//     or RAFTING_INSECURE=1. A plain-HTTP Client also never follows a
//     server list (WithServerSync) or a leader hint to such an address.
//
// With WithHTTPClient the scheme still holds, but that client's transport
// does the TLS: TLS options beside it are refused, and the environment's
// TLS variables are not read.
//
// # Members and their roles
//
// A member registers its instance under a session: a 128-bit random ID
// chosen by the SDK, a secret that only the SDK knows (reads and logs show
// its tag). The farm members of one Client with the same TTL share one
// session, as the keys of an etcd client share its lease: the Client is
// the process, whose crash ends them all anyway. The first to join opens
// it, one keepalive schedule renews it, each member's Leave deregisters
// its own instance (drained first) and deletes its own ephemeral keys, and
// the last to leave ends it; when the servers end it, every member sharing
// it registers again under a new one, as a lone member does below.
// WithOwnSession opts a member out. A master-standby member (its promise
// and fencing token belong to its session) and a member made by Join have
// a session of their own. What follows holds for either kind. The member
// keeps the session's stream attached to the tenant's Raft
// leader (following `moved` answers), so that a crashed process (kill -9,
// OOM) is noticed when the kernel closes its connection and replaced in
// about a second; and it sends keepalives every lease/4 (every TTL/3
// without a lease). A server failover is not a session loss: the stream
// re-attaches and keepalives go on, to the new leader. Only when a server
// answers that the session has ended (session_expired) does the member
// register again, under a new session and the same instance ID. That holds
// during Join too: a session the servers end before the registration or
// the stream gets through (none of its keepalives arrived within the TTL,
// on a cluster under load) is replaced, and Join goes on within its ctx.
//
// Role answers one question, may this member act as its service's one
// master, and follows the member's life cycle:
//
//	Starting   joining, or joined with WithTwoStepStartup until Ready
//	Standby    ready, not master
//	Master     the master record names the member and its promise holds
//	Suspended  master, but its promise ran out while its session lives
//	Draining   leaving, or registered as draining (by Update, or by an
//	           operator through the REST API: told at once by the stream)
//	Left       left, or lost for good (Done is closed)
//
// A farm has no master: a ready farm member is Standby, which means what it
// says, "ready and not master", and balancers pick it. A farm member is
// never Master or Suspended, so code that guards singleton work with
// IsMaster is safe in either mode. (A separate Active role was considered
// and left out: it would make the same ready instance read differently by
// mode, and "is this instance serving" is a question for the Service
// cache, not for the Member.)
//
// OnRoleChange (and WithRoleChange, which registers before the
// registration is sent, so it sees the first promotion too) reports the
// current role at once, then every change, in order, one callback at a
// time on a goroutine of the member's. Demotions are reported the moment
// the SDK sees them, and the Term's Ctx is cancelled first. A change
// carries its Member (a callback registered with WithRoleChange runs
// before Join returns, when the caller's variable is not set yet) and, on
// Master, the Term. For a job that runs while master, RunAsMaster is the
// better tool: it runs the job once per term, ends its ctx with the term
// or the caller's ctx, and never spins.
//
// # The promise rule, from the client's side
//
// Every keepalive answer carries lease_ms: the servers promise not to end
// the session before the leader received the keepalive + lease_ms. The
// SDK anchors that promise at the moment it sent the keepalive, which is
// earlier, so the member can only believe less than was promised.
// IsMaster is true only while both hold:
//
//   - the latest master record the member knows of names its session and
//     is not being revoked (from three sources, newest position wins:
//     keepalive answers, stream events, the member's watch of its
//     service); and
//   - send time + lease_ms − margin is in the future, where elapsed time
//     is the larger of the monotonic and wall-clock differences (a host
//     suspended, whose monotonic clock stopped, or a process paused,
//     never over-believes), and margin = 50 ms + 2·ρ·lease with ρ = 10⁻³
//     for clock-rate drift (52 ms for the default 1 s lease).
//
// The check is made on every read of the role, so a paused process that
// resumes sees IsMaster() == false before it does anything, even before
// the timer that demotes it at the lapse (and cancels the Term's Ctx)
// fires. The Term's Ctx is read the same way (its Err, a look at its
// Done), and a master's role loop looks at the wall clock every 10 ms
// besides that timer, which follows the monotonic clock: after a host
// suspension, whose wall-clock jump the monotonic clock never sees, a
// goroutine waiting on the Ctx is released within 10 ms. A master whose promise lapsed while its session lives, e.g.
// while the tenant's Raft leader is being replaced, is Suspended: same
// token, no successor is granted meanwhile, and it is Master again with
// the same token once a keepalive succeeds. Stream loss alone never
// demotes; the promise does.
//
// A graceful stop stops acting first, then tells the servers under the
// member's own session, which grant the successor in the same Raft entry:
// Leave (registers as draining, waits the drain delay so that callers'
// caches drop it, deregisters, ends the session) and Resign (hands over
// and stays a candidate). A Join that fails after the member was granted
// (its last step timed out) ends it in the same order: Left is reported
// to every callback before the session, whose end grants a successor at
// once, is ended. A handover whose outcome is unknown — a Resign, or an
// Update to starting or draining, whose ctx ended before an answer or that
// the servers answered 504 — may still be applied later and grant the
// successor in its entry: the member does not act as master until it
// knows, sending the same write again (it is idempotent, a resign
// conditional on the token) until the servers apply or refuse it, and
// taking a refusal in only after a linearizable read of the master
// record. Refused, it is master again with the same token; the re-sending
// ends with the session, after which the write can grant nothing. A
// member's Updates and resigns go one at a time, so none overtakes a
// write still unknown. If anyone else revokes the mastership (an
// operator drains the master through the REST API), the record becomes
// `releasing`: the member stops acting at once and resigns itself, so the
// successor does not wait for its last promise. Fencing tokens increase
// with every grant; pass them to whatever the master writes to.
//
// A state someone else gives the member's instance (an operator's drain,
// or its undoing) reaches the member at once through its session's stream
// (and every keepalive answer repeats it): the role follows it, and the member's own later writes keep it (an Update of
// the weight, a registration under a new session after the servers ended
// the old one). The member's explicit Update(SetState) or Ready overrides
// it, as the later write. An instance deregistered by someone else while
// its session lives is registered again at once (as Eureka's and Consul's
// agents do): to take a live instance out, drain it.
//
// # The cache
//
// Client.Service watches one service with one blocking query at a time
// (GET .../services/{s}?index=N&wait=60s) and keeps one monotonic index:
// an answer older than what the cache holds is dropped, and after the
// first answer the SDK never asks from 0 again. Positions, not bare
// indexes, are compared: the tenant's epoch (X-Rafting-Epoch, the high
// bits of its fencing tokens) above the Raft index. A tenant created again
// under its name, or restored from a backup into a new cluster, starts its
// Raft log over under a higher epoch, and its answers are newer than any
// of the old log; the watch passes its epoch back (?epoch=), so a server
// of another epoch answers at once instead of waiting for an index it
// will not reach for a long time. Each answer is a full
// snapshot, applied atomically; balancers are rebuilt from it at once
// for an isolated update and once per burst of updates (WithDebounce),
// and take only ready instances with a positive weight. Writes made through a Client (Join, Update, Ready) are
// visible in that Client's cache when they return (read-your-writes).
// Across Clients: a Client's first answer for a service is a consistent
// read (a ReadIndex on the servers), so it shows every write that
// returned before it was asked, whichever Client made it; Service.Sync
// makes the same read later, on demand.
//
// Static stability: when no server answers, the cache keeps serving the
// last known membership, marked Stale, and Pick goes on working; a failed
// watch never publishes an empty list, and the cache catches up when the
// servers return. An answer in which more than half of the picked
// instances vanish at once goes through a quarantine (see Service).
//
// Watch returns an iterator (iter.Seq[Snapshot]) rather than a channel:
// the current snapshot first, then the latest one after each change; a
// slow consumer skips intermediate ones instead of filling a buffer, and
// nothing leaks when the loop breaks.
//
// # The client stream
//
// By default a Client reaches the servers through one client stream (POST
// /v1/tenants/{t}/stream over HTTP/2, on one connection per server, kept
// on the tenant's Raft leader) when one opens as it connects: its
// services and configuration views are followed by watches on it, which
// send deltas in index order (the first fill stays a consistent REST
// read); its members' sessions attach on it instead of a session stream
// each; and the keepalives of every member of the Client that fall due
// within a tenth of their interval travel in one frame, each promise still
// anchored when that frame was handed to the transport. The rules above do
// not change, only the transport: the stream's end from the client's side
// is a crash for every session on it (drop_grace), as a session stream's
// was, and a session attached again within the grace keeps its deadline.
// Where no stream opens (an HTTP/1.1 proxy, a server older than the
// stream, a WithHTTPClient that speaks only HTTP/1.1) the Client uses
// blocking queries, a session stream per member and a request per
// keepalive, as described above. Writes go by REST either way.
// WithClientStream chooses.
//
// # Resilience
//
// Each server sits behind its own circuit breaker (three failures in a
// row keep it out for a second). A member's session stream goes to the
// server named as the tenant leader (a moved line, X-Rafting-Leader) even
// while that server's breaker is open: a live server's word is fresher
// than the breaker's memory, which would otherwise keep a master off a
// restarted leader for a second, longer than its lease. A server that
// gave no answer at all is not taken for the leader for 500 ms, whatever
// others say: until an election completes they name the one that crashed.
// Requests retry with full-jitter backoff
// (cenkalti/backoff), on another server where that helps (no answer, 503,
// stale_replica), to the leader a server names, and never sooner than a
// Retry-After; writes are retried with the same body, as every write is
// idempotent. Keepalives retry within their lease. Concurrent first calls
// for one service share one watcher and one request, and concurrent
// read-your-writes refreshes of a service share one request (singleflight).
// The SDK's own http.Transport keeps many idle connections per server
// (long-polls hold one each) and bounds dials and TLS handshakes; blocking
// queries are bounded by their own wait, never by a short client timeout.
//
// # Errors
//
// Errors are sentinels usable with errors.Is, across the wire: a server's
// 409 quota_exceeded matches ErrQuotaExceeded, a 401 ErrUnauthorized, and
// so on (they are the api package's sentinels). ErrNotMaster,
// ErrSessionLost, ErrLeft, ErrClosed and ErrNoEndpoints are the SDK's own.
// Messages say what to fix: a 401 names the setting the token came from
// (RAFTING_TOKEN or WithToken) and the tenant; a token of one tenant beside
// RAFTING_TENANT naming another fails at Connect; a Balancer's "no
// endpoints" names the service and counts its instances that are
// registered but not ready.
//
// # Threading
//
// Every method of Client, Service and Member is safe for concurrent use.
// Pick and PickTracked on a Service's Balancer take no lock and allocate
// nothing. Methods that block or do IO take a context first. Background
// work lives from Connect or Join until Close or Leave, which wait for
// every goroutine they started. Role-change callbacks run one at a time
// and must not call Leave or Close themselves; one that blocks holds back
// later callbacks, never Leave or Close beyond their bound (Leave returns
// its error, the member Left; the callback finishes on its own). The one context the
// package keeps is a Term's Ctx, which it hands to the application.
//
// # Logging
//
// WithLogger takes a *slog.Logger; without it the SDK is silent. It never
// logs tokens or session IDs, only session tags.
package sdk

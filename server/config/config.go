// Package config holds the server's configuration: Config, DefaultConfig and
// Validate, which names the bad field. Every field documents its zero value
// and unit; durations are time.Duration.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/tenants"
)

// Config configures one Rafting server (one NodeHost).
type Config struct {
	// NodeID is this server's ID in the cluster, >= 1. It is also its
	// replica ID in the meta shard. Required.
	NodeID uint64
	// DataDir holds the Raft logs, snapshots and the node's identity.
	// Required. The directory is bound to RaftAddress: restart with the same.
	DataDir string
	// APIAddress is the host:port of the REST API. Default 127.0.0.1:7070.
	APIAddress string
	// AdvertiseAPI is the API address other nodes and clients use to reach
	// this one (written to the meta shard). Empty: APIAddress.
	AdvertiseAPI string
	// RaftAddress is the host:port of the Raft transport. Required.
	RaftAddress string
	// RaftListen is where the Raft transport listens when that is not
	// RaftAddress, the address the other nodes dial (NAT, a proxy). Empty:
	// RaftAddress.
	RaftListen string
	// InitialCluster maps node ID to Raft address for the cluster's first
	// start. Empty on restart (the data directory knows) and with Join.
	InitialCluster map[uint64]string
	// Join is the API address of a running member; set it to add this node
	// to an existing cluster. The admin token is required to join.
	Join string
	// Peers are Raft addresses of other nodes this node knows of (node ID ->
	// address), e.g. from the answer to a join: not a membership, only where
	// to reach them until the meta shard says so. Optional.
	Peers map[uint64]string
	// AdminToken is the secret of the admin token (from --admin-token-file
	// or RAFTING_ADMIN_TOKEN). Empty: no admin access at all.
	AdminToken string
	// AdminTokenHash is the admin token's SHA-256, for a node that knows
	// only that (its data dir remembers it): admin requests are accepted as
	// with AdminToken, but the node's own calls that send the token to its
	// peers (a revocation awaited on every node, a stop's choice of the
	// most caught-up successor, the check whether it was removed) are not
	// made. Ignored when AdminToken is set. Zero: none.
	AdminTokenHash tenants.Hash
	// ReadToken is the secret of a read-only admin token (from
	// --read-token-file or RAFTING_READ_TOKEN): every GET the admin token
	// may make but a backup (which holds token hashes) — /metrics for a
	// scraper, the cluster, every tenant's state — and nothing else. Empty:
	// none.
	ReadToken string

	// RTT is Dragonboat's RTTMillisecond: the Raft tick. Default 50 ms
	// (leader failover ≈ 0.6 s median, ≈ 1.05 s p99). Smaller only for tests
	// with few shards: every replica is ticked every RTT.
	RTT time.Duration
	// ElectionRTT and HeartbeatRTT are in ticks. Defaults 10 and 1.
	ElectionRTT  uint64
	HeartbeatRTT uint64
	// SnapshotEntries and CompactionOverhead bound every shard's log.
	// Defaults 5000 and 500.
	SnapshotEntries    uint64
	CompactionOverhead uint64
	// LogDB is the LogDB memory preset: "tiny" (256 MB bound), "small"
	// (1 GB), "medium" (4 GB) or "default" (8 GB). Default "small". It is
	// fixed by the first start of a data directory.
	LogDB string
	// Quiesce lets idle tenant shards stop ticking (Dragonboat's quiesce:
	// after 10 election timeouts without traffic; any request wakes the
	// shard). Default on: measured, it cuts an idle tenant's CPU ~6.5×
	// (benchmarks/RESULTS.md). A tenant with live sessions never quiesces
	// (keepalives are traffic). The meta shard never quiesces.
	Quiesce bool
	// DeploymentID separates clusters that must never talk. Default 1.
	DeploymentID uint64

	// RenewInterval is the most often a tenant leader records sessions'
	// remaining countdowns (one Raft entry per tenant at most). Default 1 s.
	RenewInterval time.Duration
	// ExpiryInterval is the period of the leader's expiry loop. Default 25 ms.
	ExpiryInterval time.Duration
	// StreamHeartbeat is the period of heartbeats on session streams.
	// Default 1 s.
	StreamHeartbeat time.Duration
	// SelfPreservationMin is the least number of sessions an expiry batch
	// must hold, besides being over half the tenant's sessions and
	// unexplained by stream closes, before it is held back one TTL.
	// Default 3.
	SelfPreservationMin int
	// ProposalTimeout bounds one proposal attempt; a request retries within
	// its own deadline. Default 2 s.
	ProposalTimeout time.Duration
	// RequestTimeout bounds a write request (all its attempts). Default 10 s.
	RequestTimeout time.Duration
	// MaxWait caps a blocking query's wait. Default 5 min.
	MaxWait time.Duration

	// MaxConnections caps the API's open connections; one more is closed
	// as it is accepted. 0: three quarters of the process's file
	// descriptor limit, the rest kept for the Raft transport, the LogDB
	// and the peers.
	MaxConnections int
	// MaxUnauthenticated caps the connections that have not yet made a
	// request with a valid token, in total and from one source address (a
	// host; an IPv6 /64). Defaults 4096 and 256. Such a connection is
	// closed AuthTimeout (default 5 s) after it was accepted unless it made
	// one by then: idle connections cannot hold the node's descriptors.
	MaxUnauthenticated, MaxUnauthenticatedPerAddress int
	AuthTimeout                                      time.Duration
	// WriteBytesPerSecond and AnswerBytesPerSecond are each tenant's byte
	// budgets on this node, beside its request and write rates (quotas,
	// counted in requests): the bodies of its writes, charged by their
	// length before they are read (a body over what its quotas allow is
	// refused 413 unread, its length charged all the same), and the
	// service answers it is sent. Each bucket holds one second of its
	// rate; a thing larger than that takes a full bucket. Defaults 2 MiB/s
	// (sized for a 2-core node: every node applies what a tenant writes
	// through all of them, 6 MiB/s of log with three nodes; at 8 MiB/s, 1 MB
	// bodies read and refused took three servers on 2 cores from 21 to 65 %
	// of a core, benchmarks/NOTES.md) and 32 MiB/s.
	WriteBytesPerSecond, AnswerBytesPerSecond int
	// ReadTimeout bounds the reading of one request, its body included.
	// Default 30 s.
	ReadTimeout time.Duration

	// TLSCert and TLSKey serve the API over TLS.
	TLSCert, TLSKey string
	// PeerCA, PeerCert and PeerKey turn on mutual TLS between Raft peers.
	PeerCA, PeerCert, PeerKey string
	// Insecure allows a non-loopback API address without TLS.
	Insecure bool
	// Pprof serves Go's runtime profiles on /debug/pprof/ (admin token
	// required). Off by default.
	Pprof bool
	// AwaitRestore is for a new cluster started to be restored into: until
	// a restore has created its tenants, a tenant token the node does not
	// know is answered 503 restoring, not 401 (which a client takes as
	// final). Off by default.
	AwaitRestore bool

	// Replicas is R, the voting replicas of each tenant shard (--replicas):
	// 1 to 5, recorded by the cluster's first start that gives it (the
	// meta shard keeps it; a later start with another value is logged and
	// ignored). 0: the cluster's, 3 unless a start gave another.
	Replicas int
	// Zone is this node's failure domain (--zone): a tenant's replicas are
	// spread over zones first. Empty: no zone. [A-Za-z0-9._-], at most 64.
	Zone string
	// DeadAfter is how long another node may stay unreachable before its
	// replicas are placed on other nodes (--dead-after). Default (and 0)
	// 5 min.
	DeadAfter time.Duration

	// Logger receives the server's logs; nil is silent.
	Logger *slog.Logger
}

// DefaultWriteBytesPerSecond is WriteBytesPerSecond's default.
const DefaultWriteBytesPerSecond = 2 << 20

// DefaultConfig returns a Config with every default set and the required
// fields (NodeID, DataDir, RaftAddress) empty.
func DefaultConfig() Config {
	return Config{
		APIAddress:          "127.0.0.1:7070",
		RTT:                 50 * time.Millisecond,
		ElectionRTT:         10,
		HeartbeatRTT:        1,
		SnapshotEntries:     5000,
		CompactionOverhead:  500,
		LogDB:               "small",
		Quiesce:             true,
		DeploymentID:        1,
		RenewInterval:       time.Second,
		ExpiryInterval:      25 * time.Millisecond,
		StreamHeartbeat:     time.Second,
		SelfPreservationMin: 3,
		ProposalTimeout:     2 * time.Second,
		RequestTimeout:      10 * time.Second,
		MaxWait:             5 * time.Minute,

		MaxUnauthenticated:           4096,
		MaxUnauthenticatedPerAddress: 256,
		AuthTimeout:                  5 * time.Second,
		WriteBytesPerSecond:          DefaultWriteBytesPerSecond,
		ReadTimeout:                  30 * time.Second,
		AnswerBytesPerSecond:         32 << 20,
		DeadAfter:                    5 * time.Minute,
	}
}

// DeadAfterOr5m is DeadAfter, 5 min when it is 0.
func (c *Config) DeadAfterOr5m() time.Duration {
	if c.DeadAfter == 0 {
		return 5 * time.Minute
	}
	return c.DeadAfter
}

// ElectionTimeout is the Raft election timeout (RTT × ElectionRTT).
func (c *Config) ElectionTimeout() time.Duration {
	return c.RTT * time.Duration(c.ElectionRTT)
}

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == 0:
		return fmt.Errorf("config: NodeID (--id) is required and must be >= 1")
	case c.NodeID >= 1000:
		return fmt.Errorf("config: NodeID (--id) %d must be below 1000", c.NodeID)
	case c.DataDir == "":
		return fmt.Errorf("config: DataDir (--data) is required")
	case c.RaftAddress == "":
		return fmt.Errorf("config: RaftAddress (--raft) is required")
	case c.RTT < time.Millisecond:
		return fmt.Errorf("config: RTT %v must be at least 1ms", c.RTT)
	case c.ElectionRTT < 2*c.HeartbeatRTT || c.HeartbeatRTT == 0:
		return fmt.Errorf("config: ElectionRTT %d must be at least twice HeartbeatRTT %d (>= 1)", c.ElectionRTT, c.HeartbeatRTT)
	case c.SnapshotEntries == 0:
		return fmt.Errorf("config: SnapshotEntries must be > 0 (0 grows the log forever)")
	case c.RenewInterval <= 0 || c.ExpiryInterval <= 0 || c.StreamHeartbeat <= 0:
		return fmt.Errorf("config: RenewInterval, ExpiryInterval and StreamHeartbeat must be > 0")
	case c.ProposalTimeout < c.RTT || c.RequestTimeout < c.ProposalTimeout:
		return fmt.Errorf("config: ProposalTimeout %v must be >= RTT and <= RequestTimeout %v", c.ProposalTimeout, c.RequestTimeout)
	case c.Join != "" && len(c.InitialCluster) > 0:
		return fmt.Errorf("config: Join (--join) and InitialCluster (--initial-cluster) exclude each other")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("config: TLSCert (--tls-cert) and TLSKey (--tls-key) go together")
	case (c.PeerCA == "") != (c.PeerCert == "") || (c.PeerCert == "") != (c.PeerKey == ""):
		return fmt.Errorf("config: PeerCA, PeerCert and PeerKey (--peer-*) go together")
	case c.ReadToken != "" && (!tenants.Strong(c.ReadToken) || c.ReadToken == c.AdminToken ||
		c.AdminToken == "" && c.AdminTokenHash.Equal(tenants.HashToken(c.ReadToken))):
		return fmt.Errorf("config: the read-only token is too weak (at most %.0f bits) or is the admin token: make another of at least %d random bits",
			tenants.EstimateBits(c.ReadToken), tenants.MinSecretBits)
	case c.AdminToken != "" && !tenants.Strong(c.AdminToken):
		return fmt.Errorf("config: the admin token is too weak (at most %.0f bits): make one of at least %d random bits, e.g. head -c 32 /dev/urandom | base64 > token && chmod 600 token",
			tenants.EstimateBits(c.AdminToken), tenants.MinSecretBits)
	case c.MaxConnections < 0 || c.MaxUnauthenticated < 0 || c.MaxUnauthenticatedPerAddress < 0 || c.AuthTimeout < 0 ||
		c.WriteBytesPerSecond < 0 || c.AnswerBytesPerSecond < 0:
		return fmt.Errorf("config: MaxConnections, MaxUnauthenticated, MaxUnauthenticatedPerAddress, AuthTimeout, WriteBytesPerSecond and AnswerBytesPerSecond must not be negative")
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("config: Replicas (--replicas) %d: want 1 to 5 (0: the cluster's)", c.Replicas)
	}
	if c.DeadAfter < 0 {
		return fmt.Errorf("config: DeadAfter (--dead-after) %v must not be negative", c.DeadAfter)
	}
	if !validZone(c.Zone) {
		return fmt.Errorf("config: Zone (--zone) %q: at most 64 of A-Z a-z 0-9 . _ -", c.Zone)
	}
	switch c.LogDB {
	case "tiny", "small", "medium", "default":
	default:
		return fmt.Errorf("config: LogDB %q is not tiny, small, medium or default", c.LogDB)
	}
	for _, a := range []struct{ field, addr string }{{"APIAddress (--api)", c.APIAddress}, {"RaftAddress (--raft)", c.RaftAddress}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("config: %s %q: %w", a.field, a.addr, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.RaftListen); c.RaftListen != "" && err != nil {
		return fmt.Errorf("config: RaftListen (--raft-listen) %q: %w", c.RaftListen, err)
	}
	if len(c.InitialCluster) > 0 {
		addr, ok := c.InitialCluster[c.NodeID]
		if !ok {
			return fmt.Errorf("config: InitialCluster (--initial-cluster) has no entry for NodeID %d", c.NodeID)
		}
		if addr != c.RaftAddress {
			return fmt.Errorf("config: InitialCluster names %s for node %d, RaftAddress is %s", addr, c.NodeID, c.RaftAddress)
		}
	}
	if c.TLSCert == "" && !c.Insecure && !Loopback(c.APIAddress) {
		return fmt.Errorf("config: APIAddress %s is not loopback: serve it with TLS (--tls-cert, --tls-key) or pass --insecure", c.APIAddress)
	}
	if c.PeerCA == "" && !c.Insecure && !Loopback(c.RaftAddress) {
		return fmt.Errorf("config: RaftAddress %s is not loopback: use peer mTLS (--peer-ca, --peer-cert, --peer-key) or pass --insecure", c.RaftAddress)
	}
	if !filepath.IsAbs(c.DataDir) {
		abs, err := filepath.Abs(c.DataDir)
		if err != nil {
			return fmt.Errorf("config: DataDir %q: %w", c.DataDir, err)
		}
		c.DataDir = abs
	}
	return nil
}

func validZone(z string) bool {
	if len(z) > 64 {
		return false
	}
	for _, r := range z {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ReadSecretFile reads a secret (a token) from a file, trimmed of white
// space. As ssh refuses a private key others can read, it refuses a file
// that group or others may read or write: fix it with chmod 600.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is readable or writable by others (mode %04o): chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// Loopback reports whether a host:port binds only the loopback interface.
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

// ParseInitialCluster parses "1=127.0.0.1:7071,2=...": node ID = Raft address.
func ParseInitialCluster(s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("initial cluster entry %q: want ID=HOST:PORT", part)
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("initial cluster entry %q: ID must be a number >= 1", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: %w", part, err)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("initial cluster: node %d named twice", n)
		}
		out[n] = addr
	}
	return out, nil
}

// FormatInitialCluster is the inverse of ParseInitialCluster.
func FormatInitialCluster(m map[uint64]string) string {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s", id, m[id])
	}
	return strings.Join(parts, ",")
}

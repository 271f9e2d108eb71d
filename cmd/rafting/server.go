package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/tenants"
	"github.com/spf13/cobra"
)

// identity is what a data dir remembers of its node, so a restart needs
// no flags but --data (and the addresses, which must not change). The file
// is the owner's only (0600).
type identity struct {
	ID          uint64 `json:"id"`
	RaftAddress string `json:"raft_address"`
	APIAddress  string `json:"api_address"`
	// AdminTokenSHA256 is the SHA-256 (hex) of the admin token the node
	// last ran with: a restart without the token keeps accepting it.
	AdminTokenSHA256 string `json:"admin_token_sha256,omitempty"`
}

func identityPath(dataDir string) string { return filepath.Join(dataDir, "node.json") }

func readIdentity(dataDir string) (identity, bool, error) {
	b, err := os.ReadFile(identityPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return identity{}, false, fmt.Errorf("%s: %w", identityPath(dataDir), err)
	}
	return id, true, nil
}

func writeIdentity(dataDir string, id identity) error {
	b, _ := json.MarshalIndent(id, "", "  ")
	return config.WriteFile(identityPath(dataDir), append(b, '\n'))
}

func (a *app) serverCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "run one Rafting server (one Raft node)",
		Long: `Run one Rafting server, one Raft node:

  rafting server --id 1 --data DIR --api 127.0.0.1:7070 --raft 127.0.0.1:7071 \
    --initial-cluster 1=127.0.0.1:7071,2=127.0.0.1:7171,3=127.0.0.1:7271

A restart needs only --data. --join adds a node to a running cluster. It writes logs on
stderr (--log-format, --log-level) and no result on stdout.`,
		Args: nArgs(0, 0, "[flags]"),
	}
	fs := cmd.Flags()
	def := config.DefaultConfig()
	var (
		id             = fs.Uint64("id", 0, "node ID (>= 1); remembered in the data dir")
		data           = fs.String("data", "", "data directory (required)")
		apiAddr        = fs.String("api", "", "REST API address (default 127.0.0.1:7070; remembered)")
		advertise      = fs.String("advertise-api", "", "API address other nodes and clients use (default: --api)")
		raftAddr       = fs.String("raft", "", "Raft address host:port (required on first start; remembered)")
		raftListen     = fs.String("raft-listen", "", "listen for Raft here instead of on --raft, which the other nodes dial (NAT, a proxy); not remembered")
		initial        = fs.String("initial-cluster", "", "first start of a new cluster: ID=RAFT_ADDR,... (etcd-style); on a restart, the nodes' addresses only")
		join           = fs.String("join", "", "API address of a running member: add this node to that cluster")
		tokenFile      = fs.String("admin-token-file", "", "file holding the admin token (else RAFTING_ADMIN_TOKEN)")
		readTokenFile  = fs.String("read-token-file", "", "file holding a read-only admin token, for /metrics scrapers and dashboards (else RAFTING_READ_TOKEN)")
		rtt            = fs.Duration("rtt", def.RTT, "Raft tick (RTTMillisecond); election timeout = 10 ticks")
		logdb          = fs.String("logdb", def.LogDB, "LogDB memory preset: tiny, small, medium or default (fixed at first start)")
		quiesce        = fs.Bool("quiesce", def.Quiesce, "let idle tenant shards stop ticking (--quiesce=false to keep every shard ticking)")
		logLevel       string
		logFormat      string
		tlsCert        = fs.String("tls-cert", "", "serve the API over TLS with this certificate")
		tlsKey         = fs.String("tls-key", "", "key of --tls-cert")
		peerCA         = fs.String("peer-ca", "", "CA of the Raft peers' certificates (mutual TLS)")
		peerCert       = fs.String("peer-cert", "", "this node's Raft certificate")
		peerKey        = fs.String("peer-key", "", "key of --peer-cert")
		insecure       = fs.Bool("insecure", false, "allow non-loopback addresses without TLS")
		pprofOn        = fs.Bool("pprof", false, "serve Go's profiles on /debug/pprof/ (admin token required)")
		awaitRestore   = fs.Bool("await-restore", false, "a new cluster to restore a backup into: answer unknown tenant tokens 503 restoring, not 401, until a restore has finished")
		selfPreserveMn = fs.Int("self-preservation-min", def.SelfPreservationMin, "least expiry batch held back by self-preservation")
		replicas       = fs.Int("replicas", def.Replicas, "R, the voting replicas of each tenant shard, 1 to 5: recorded by the cluster's first start that gives it (0: the cluster's, 3 unless a start gave another)")
		zone           = fs.String("zone", def.Zone, "this node's failure domain: a tenant's replicas go to different zones first")
		deadAfter      = fs.Duration("dead-after", def.DeadAfter, "a node unreachable this long has its replicas placed on other nodes")
	)
	logFlags(fs, &logLevel, &logFormat, "info")
	cmd.RunE = a.action(func(ctx context.Context, _ []string) error {
		stderr := a.stderr
		logLevel, logFormat := &logLevel, &logFormat
		if *data == "" {
			return usageError{"--data is required"}
		}
		log, err := logger(stderr, *logLevel, *logFormat)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		known, remembered, err := readIdentity(*data)
		if err != nil {
			return err
		}
		cfg := def
		cfg.DataDir, cfg.AdvertiseAPI, cfg.Join = *data, *advertise, *join
		cfg.RTT, cfg.LogDB, cfg.Quiesce, cfg.Logger = *rtt, *logdb, *quiesce, log
		cfg.TLSCert, cfg.TLSKey, cfg.PeerCA, cfg.PeerCert, cfg.PeerKey, cfg.Insecure = *tlsCert, *tlsKey, *peerCA, *peerCert, *peerKey, *insecure
		cfg.Pprof, cfg.RaftListen, cfg.AwaitRestore = *pprofOn, *raftListen, *awaitRestore
		cfg.SelfPreservationMin = *selfPreserveMn
		cfg.Replicas, cfg.Zone, cfg.DeadAfter = *replicas, *zone, *deadAfter
		cfg.NodeID, cfg.RaftAddress, cfg.APIAddress = *id, *raftAddr, *apiAddr
		if remembered {
			switch {
			case cfg.NodeID != 0 && cfg.NodeID != known.ID:
				return usageError{fmt.Sprintf("--id %d, but %s belongs to node %d", cfg.NodeID, *data, known.ID)}
			case cfg.RaftAddress != "" && cfg.RaftAddress != known.RaftAddress:
				return usageError{fmt.Sprintf("--raft %s, but %s is bound to %s (Dragonboat ties a data dir to its Raft address)", cfg.RaftAddress, *data, known.RaftAddress)}
			}
			cfg.NodeID, cfg.RaftAddress = known.ID, known.RaftAddress
			if cfg.APIAddress == "" {
				cfg.APIAddress = known.APIAddress
			}
			if *initial != "" {
				// Only where the nodes are, e.g. after a damaged peers.json was
				// removed: the data dir knows the membership.
				if cfg.Peers, err = config.ParseInitialCluster(*initial); err != nil {
					return usageError{"--initial-cluster: " + err.Error()}
				}
				log.Info("the data dir already holds a cluster: --initial-cluster gives the nodes' addresses only")
			}
			cfg.Join = "" // the data dir knows its membership
		} else if cfg.InitialCluster, err = config.ParseInitialCluster(*initial); err != nil {
			return usageError{"--initial-cluster: " + err.Error()}
		}
		if cfg.APIAddress == "" {
			cfg.APIAddress = def.APIAddress
		}
		if cfg.ReadToken, err = secretFrom(*readTokenFile, "--read-token-file", "RAFTING_READ_TOKEN"); err != nil {
			return err
		}
		if cfg.AdminToken, err = adminToken(*tokenFile); err != nil {
			return err
		}
		remember := known.AdminTokenSHA256
		switch {
		case cfg.AdminToken != "":
			source := "RAFTING_ADMIN_TOKEN"
			if *tokenFile != "" {
				source = "--admin-token-file " + *tokenFile
			}
			h := tenants.HashToken(cfg.AdminToken).String()
			if remember != "" && remember != h {
				log.Info("admin token: a new one replaces the one the data dir remembered", "source", source)
			}
			log.Info("admin token: from "+source+"; its SHA-256 is remembered in the data dir, so a restart with only --data keeps it", "source", source)
			remember = h
		case remember != "":
			if cfg.AdminTokenHash, err = tenants.ParseHash(remember); err != nil {
				return fmt.Errorf("%s: admin_token_sha256: %w", identityPath(*data), err)
			}
			log.Warn("admin token: the one the data dir remembers (its SHA-256, in "+identityPath(*data)+"): admin requests are accepted; "+
				"this node's own calls that send it to its peers (a token revocation awaited on every node, the stop's choice of successor, "+
				"the check whether it was removed) are off until it is started with --admin-token-file or RAFTING_ADMIN_TOKEN",
				"source", "data dir")
		default:
			log.Warn("admin token: none (no --admin-token-file, no RAFTING_ADMIN_TOKEN, none remembered in the data dir): "+
				"this node answers every admin request 401", "source", "none")
		}
		if err := cfg.Validate(); err != nil {
			return usageError{err.Error()}
		}
		if cfg.Join != "" {
			if cfg.AdminToken == "" {
				return usageError{"--join needs the admin token (--admin-token-file or RAFTING_ADMIN_TOKEN)"}
			}
			peers, err := requestJoin(ctx, cfg)
			if err != nil {
				return err
			}
			cfg.Peers = peers
		}
		s, err := server.New(cfg)
		if err != nil {
			return err
		}
		if err := writeIdentity(*data, identity{ID: cfg.NodeID, RaftAddress: cfg.RaftAddress, APIAddress: s.Addr(), AdminTokenSHA256: remember}); err != nil {
			s.Close()
			return fmt.Errorf("remember node identity: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-s.Removed():
			// As etcd's removed member: end, with a failure a supervisor
			// shows, rather than serve stale data or wait for ever.
			s.Close()
			return fmt.Errorf("node %d was removed from the cluster (%s): it exits and must not be restarted with this data dir; "+
				"to bring the machine back, join it under a new --id with an empty data dir", cfg.NodeID, s.Node().RemovedReason())
		}
		log.Info("stopping: handing leaderships over")
		s.Close()
		return nil
	})
	return cmd
}

// requestJoin asks a running member to add this node to the cluster and
// returns the members' Raft addresses.
func requestJoin(ctx context.Context, cfg config.Config) (map[uint64]string, error) {
	advertise := cfg.AdvertiseAPI
	if advertise == "" {
		advertise = cfg.APIAddress
	}
	body, _ := json.Marshal(api.JoinRequest{ID: cfg.NodeID, RaftAddress: cfg.RaftAddress, APIAddress: advertise})
	base := cfg.Join
	if !strings.Contains(base, "://") {
		scheme := "http://"
		if cfg.TLSCert != "" {
			scheme = "https://" // a node with API TLS joins a cluster with API TLS
		}
		base = scheme + base
	}
	hc, err := server.PeerClient(cfg) // a TLS member is verified as the nodes verify each other
	if err != nil {
		return nil, err
	}
	c := restclient.Client{Servers: []string{base}, Token: cfg.AdminToken, HTTP: hc, Retry: restclient.For(60*time.Second, 200*time.Millisecond)}
	resp, err := c.Send(ctx, restclient.Request{Method: http.MethodPost, Path: "/v1/cluster/nodes", Body: body, ContentType: "application/json",
		Header: http.Header{api.HeaderStateVersion: {strconv.Itoa(server.StateVersion)}}})
	if errors.As(err, new(*tls.CertificateVerificationError)) {
		return nil, fmt.Errorf("join %s: %w (is --peer-ca the CA of the cluster's certificates?)", cfg.Join, err)
	}
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", cfg.Join, err)
	}
	var cl api.Cluster
	if err := json.Unmarshal(resp.Body, &cl); err != nil {
		return nil, fmt.Errorf("join %s: %w", cfg.Join, err)
	}
	peers := map[uint64]string{}
	for _, n := range cl.Nodes {
		peers[n.ID] = n.RaftAddress
	}
	return peers, nil
}

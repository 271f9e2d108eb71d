package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

const devTenant = "default"

// devProgress is how often dev says on stderr that it is still starting.
var devProgress = 5 * time.Second

func (a *app) devCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "run a 3-node cluster in this process on 127.0.0.1:7070/7170/7270",
		Long: `Run a 3-node cluster in this process, on loopback, with a "default" tenant; the admin and
tenant tokens are printed once it is up (-o json: as one JSON object), and kept in --data,
so a second start prints the same ones. Progress goes to stderr: the nodes' start and the
cluster's readiness (up to 60 s on a first start). This is what 'make run' starts.`,
		Args: nArgs(0, 0, "[flags]"),
	}
	fs := cmd.Flags()
	var (
		data      = fs.String("data", ".rafting-dev", "data directory of the three nodes")
		tokenFile = fs.String("admin-token-file", "", "file holding the admin token (else RAFTING_ADMIN_TOKEN, else generated into <data>/admin.token)")
		host      = fs.String("host", "127.0.0.1", "loopback address to bind")
		apiPorts  = fs.String("api-ports", "7070,7170,7270", "the three nodes' API ports")
		raftPorts = fs.String("raft-ports", "7071,7171,7271", "the three nodes' Raft ports")
		rtt       = fs.Duration("rtt", 50*time.Millisecond, "Raft tick")
		logLevel  string
		logFormat string
	)
	logFlags(fs, &logLevel, &logFormat, "warn")
	cmd.RunE = a.action(func(ctx context.Context, _ []string) error {
		return a.dev(ctx, *data, *tokenFile, *host, *apiPorts, *raftPorts, *rtt, logLevel, logFormat)
	})
	return cmd
}

func (a *app) dev(ctx context.Context, data, tokenFile, host, apiPorts, raftPorts string, rtt time.Duration, logLevel, logFormat string) error {
	stdout, stderr := a.stdout, a.stderr
	logw := &switchWriter{w: stderr} // through the progress while there is one
	log, err := logger(logw, logLevel, logFormat)
	if err != nil {
		return err
	}
	apis, err := ports("--api-ports", apiPorts)
	if err != nil {
		return err
	}
	rafts, err := ports("--raft-ports", raftPorts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", data, err)
	}
	admin, err := adminToken(tokenFile)
	if err != nil {
		return err
	}
	if admin == "" {
		if admin, err = persistedSecret(filepath.Join(data, "admin.token"), func() string { return "rfa_" + tenants.NewSecret() }); err != nil {
			return err
		}
	}
	initial := map[uint64]string{}
	for i, p := range rafts {
		initial[uint64(i+1)] = fmt.Sprintf("%s:%d", host, p)
	}
	var servers []*server.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	// Nodes start concurrently: a node's first start waits for a quorum.
	// Progress goes to stderr: a first start takes seconds, at most 60.
	fmt.Fprintf(stderr, "dev: starting 3 nodes on %s (data in %s)\n", printable(host), printable(data))
	start := time.Now()
	prog := ticking(stderr, "dev", "starting", devProgress)
	logw.set(prog)
	defer func() {
		prog.Stop()
		logw.set(stderr)
	}()
	type started struct {
		id  int
		s   *server.Server
		err error
	}
	results := make(chan started, len(apis))
	for i, p := range apis {
		cfg := config.DefaultConfig()
		cfg.NodeID = uint64(i + 1)
		cfg.DataDir = filepath.Join(data, fmt.Sprintf("node%d", i+1))
		cfg.APIAddress = fmt.Sprintf("%s:%d", host, p)
		cfg.RaftAddress = initial[cfg.NodeID]
		cfg.InitialCluster = initial
		cfg.AdminToken = admin
		cfg.RTT = rtt
		cfg.LogDB = "tiny"
		cfg.Logger = log.With("node", cfg.NodeID)
		go func() {
			s, err := server.New(cfg)
			results <- started{i + 1, s, err}
		}()
	}
	var firstErr error
	for range apis {
		r := <-results
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.s != nil {
			servers = append(servers, r.s)
			prog.Printf("dev: node %d started (API %s), %s\n", r.id, r.s.Addr(), time.Since(start).Round(time.Millisecond))
		}
	}
	if firstErr != nil {
		return firstErr
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	prog.Printf("dev: waiting for the nodes to be ready (a quorum, the meta shard caught up)\n")
	for _, s := range servers {
		if err := s.WaitReady(rctx); err != nil {
			return err
		}
	}
	prog.Printf("dev: ready in %s; creating tenant %q\n", time.Since(start).Round(time.Millisecond), devTenant)
	base := fmt.Sprintf("http://%s:%d", host, apis[0])
	tenantSecret, err := persistedSecret(filepath.Join(data, devTenant+".secret"), tenants.NewSecret)
	if err != nil {
		return err
	}
	token, err := ensureTenant(rctx, base, admin, devTenant, tenantSecret)
	if err != nil {
		return err
	}
	prog.Stop()
	logw.set(stderr)
	if a.json() {
		if err := printJSON(stdout, devCluster(host, apis, data, admin, token)); err != nil {
			return err
		}
	} else {
		printDevBanner(stdout, host, apis, data, admin, token)
	}
	<-ctx.Done()
	w := stdout
	if a.json() {
		w = stderr // stdout holds one JSON object
	}
	fmt.Fprintln(w, "\nstopping the dev cluster (handing leaderships over)...")
	return nil
}

// devResult is dev -o json's output, once the cluster is up.
type devResult struct {
	Servers    []string `json:"servers"` // the API addresses, host:port
	Data       string   `json:"data"`
	AdminToken string   `json:"admin_token"`
	Tenant     string   `json:"tenant"`
	Token      string   `json:"token"` // the tenant's
}

func devCluster(host string, apis []int, data, admin, token string) devResult {
	r := devResult{Data: data, AdminToken: admin, Tenant: devTenant, Token: token}
	for _, p := range apis {
		r.Servers = append(r.Servers, fmt.Sprintf("%s:%d", host, p))
	}
	return r
}

// persistedSecret reads a secret from path, or makes one and writes it there
// (0600), so a second `make run` prints the same tokens.
func persistedSecret(path string, mk func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	s := mk()
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

// ensureTenant creates the dev tenant with a known secret: a retry (or a
// second start) answers 200 with the same token.
func ensureTenant(ctx context.Context, base, admin, name, secret string) (string, error) {
	c := restclient.Client{Servers: []string{base}, Token: admin, Retry: restclient.For(0, 100*time.Millisecond)}
	var t api.Tenant
	if err := c.Do(ctx, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: name, Secret: secret}, &t); err != nil {
		return "", fmt.Errorf("create tenant %s: %w", name, err)
	}
	return t.Token, nil
}

// ports parses a list of three ports.
func ports(flag, list string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 || n > 65535 {
			return nil, usageError{fmt.Sprintf("%s: %q is not a port", flag, p)}
		}
		out = append(out, n)
	}
	if len(out) != 3 {
		return nil, usageError{fmt.Sprintf("%s: want three ports, got %d", flag, len(out))}
	}
	return out, nil
}

func printDevBanner(w io.Writer, host string, apis []int, data, admin, token string) {
	servers := make([]string, len(apis))
	for i, p := range apis {
		servers[i] = fmt.Sprintf("%s:%d", host, p)
	}
	base := "http://" + servers[0]
	fmt.Fprintf(w, `
Rafting dev cluster is up: 3 nodes, API on %s, data in %s

  admin token:            %s
  tenant "default" token: %s

Try it:
  export RAFTING_SERVERS=%s RAFTING_TOKEN=%s
  curl -s -X PUT -H "Authorization: Bearer $RAFTING_TOKEN" %s/v1/tenants/default/services/web/instances/web-1 -d '{"address":"127.0.0.1:8080"}'
  curl -s -H "Authorization: Bearer $RAFTING_TOKEN" %s/v1/tenants/default/services/web

Ctrl-C stops the cluster; 'make run' again brings it back with the same state and tokens.
`, strings.Join(servers, ", "), data, admin, token, strings.Join(servers, ","), token, base, base)
}

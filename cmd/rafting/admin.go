package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
)

type commonFlags struct {
	servers   string
	token     string
	tokenFile string
	envToken  string // the token's environment variable
	tokenEnv  string // its name
	output    string
	ca        string
	insecure  bool
}

func (c *commonFlags) register(fs *flag.FlagSet, tokenEnv string) {
	fs.StringVar(&c.servers, "servers", "", "comma-separated API addresses (default $RAFTING_SERVERS, else 127.0.0.1:7070)")
	fs.StringVar(&c.token, "token", "", "bearer token (default $"+tokenEnv+"); other users can see it in ps: prefer --token-file")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token; refused if group or others have access to it (chmod 600)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	fs.StringVar(&c.ca, "ca", os.Getenv("RAFTING_CA"), "CA certificate (PEM) of the servers' API: https, verified with it (default $RAFTING_CA; without it, addresses without a scheme are http)")
	fs.BoolVar(&c.insecure, "insecure", os.Getenv("RAFTING_INSECURE") == "1", "allow plain HTTP to an address that is not loopback: the token crosses the network in the clear (default $RAFTING_INSECURE=1)")
	c.envToken, c.tokenEnv = os.Getenv(tokenEnv), tokenEnv
}

// secretFlags registers --secret and --secret-file: the secret part of a
// tenant's token, for a create or a rotation that is safe to retry.
func secretFlags(fs *flag.FlagSet, secret, file *string, what string) {
	fs.StringVar(secret, "secret", "", what+"; other users can see it in ps: prefer --secret-file")
	fs.StringVar(file, "secret-file", "", "file holding --secret; refused if group or others have access to it (chmod 600)")
}

// readSecret is --secret, or the content of --secret-file; "" if neither.
func readSecret(secret, file string) (string, error) {
	if file == "" {
		return secret, nil
	}
	if secret != "" {
		return "", usageError{"--secret and --secret-file: give one"}
	}
	s, err := config.ReadSecretFile(file)
	if err != nil {
		return "", fmt.Errorf("--secret-file: %w", err)
	}
	return s, nil
}

// client is the commands' REST client: it tries each server in turn and
// retries what the API says is safe to retry (every write is idempotent).
func (c *commonFlags) client() (*restclient.Client, error) {
	servers := c.servers
	if servers == "" {
		servers = os.Getenv("RAFTING_SERVERS")
	}
	if servers == "" {
		servers = "127.0.0.1:7070"
	}
	if c.output != "table" && c.output != "json" {
		return nil, usageError{fmt.Sprintf("-o %q: want table or json", c.output)}
	}
	token := c.token
	switch {
	case c.tokenFile != "" && token != "":
		return nil, usageError{"--token and --token-file: give one"}
	case c.tokenFile != "":
		var err error
		if token, err = config.ReadSecretFile(c.tokenFile); err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
	case token == "":
		token = c.envToken
	}
	if token == "" {
		return nil, usageError{"a token is required (--token-file, --token or $" + c.tokenEnv + ")"}
	}
	cl := &restclient.Client{Token: token, HTTP: &http.Client{Timeout: 30 * time.Second, CheckRedirect: restclient.NoRedirects}}
	scheme := "http://"
	if c.ca != "" {
		pool, err := server.LoadCA(c.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		cl.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		scheme = "https://"
	}
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !strings.Contains(s, "://") {
				s = scheme + s
			}
			if u, err := url.Parse(s); err == nil && u.Scheme == "http" && !c.insecure && !config.Loopback(net.JoinHostPort(u.Hostname(), "0")) {
				return nil, usageError{fmt.Sprintf("%s is plain HTTP to an address that is not loopback: the token would cross the network in the clear; use https:// (with --ca for a private CA) or --insecure", s)}
			}
			cl.Servers = append(cl.Servers, strings.TrimRight(s, "/"))
		}
	}
	return cl, nil
}

// printJSON writes v as indented JSON, with the control and format
// characters encoding/json leaves as they are (DEL, C1, bidirectional
// overrides) escaped too: see jsonPrintable.
func printJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(jsonPrintable(b.Bytes()))
	return err
}

func quotaFlags(fs *flag.FlagSet, q *api.Quotas) {
	fs.Int64Var(&q.MaxServices, "max-services", 0, "quota: services")
	fs.Int64Var(&q.MaxInstances, "max-instances", 0, "quota: instances")
	fs.Int64Var(&q.MaxSessions, "max-sessions", 0, "quota: sessions (streams count here)")
	fs.Int64Var(&q.MaxWatchers, "max-watchers", 0, "quota: concurrent blocking queries per node")
	fs.Int64Var(&q.MaxMetaBytes, "max-meta-bytes", 0, "quota: metadata bytes per instance")
	fs.Int64Var(&q.MinTTLMs, "min-ttl-ms", 0, "quota: shortest session TTL")
	fs.Int64Var(&q.MaxTTLMs, "max-ttl-ms", 0, "quota: longest session TTL")
	fs.Int64Var(&q.RequestsPerSecond, "requests-per-second", 0, "rate: requests per second per node")
	fs.Int64Var(&q.Burst, "burst", 0, "rate: request burst")
	fs.Int64Var(&q.WritesPerSecond, "writes-per-second", 0, "rate: writes per second per node")
	fs.Int64Var(&q.MaxKeys, "max-keys", 0, "quota: configuration keys")
	fs.Int64Var(&q.MaxValueBytes, "max-value-bytes", 0, "quota: bytes of one configuration value")
	fs.Int64Var(&q.MaxKVBytes, "max-kv-bytes", 0, "quota: bytes of every configuration key and value")
}

const tenantUsage = `usage: rafting tenant <command> [flags] [NAME]

commands:
  create NAME            create a tenant; its token is shown once (--secret-file: a retry is safe)
  list                   every tenant with its usage
  show NAME              one tenant: quotas, usage, until when its previous token works
  update NAME            change its quotas (the quota flags)
  rotate-token NAME      a new token; the old one works for --previous-valid (default 1h)
  revoke-previous NAME   end the previous token now, once clients use the new one
  delete NAME            delete the tenant and its data on every node

Run 'rafting tenant <command> -h' for a command's flags.
`

func runTenant(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{tenantUsage}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, tenantUsage)
		return nil
	}
	fs := newFlagSet("tenant " + sub)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rafting tenant %s [flags]%s\n\nflags:\n", sub, map[bool]string{true: "", false: " NAME"}[sub == "list"])
		fs.PrintDefaults()
	}
	var cf commonFlags
	cf.register(fs, "RAFTING_ADMIN_TOKEN")
	var q api.Quotas
	var secret, secretFile string
	var previous time.Duration
	switch sub {
	case "create", "update":
		quotaFlags(fs, &q)
		if sub == "create" {
			secretFlags(fs, &secret, &secretFile, "the token's secret part (so a retried create is safe); default: generated")
		}
	case "rotate-token":
		secretFlags(fs, &secret, &secretFile, "the new token's secret part; default: generated")
		fs.DurationVar(&previous, "previous-valid", time.Hour, "how long the old token keeps working (0 revokes it now)")
	case "list", "show", "delete", "revoke-previous":
	default:
		return usageError{fmt.Sprintf("unknown tenant command %q\n%s", sub, tenantUsage)}
	}
	name, err := parseWithName(fs, args, sub != "list")
	if err != nil {
		return err
	}
	tp := "/v1/tenants"
	if sub != "list" && sub != "create" {
		seg, err := pathSeg("tenant", name)
		if err != nil {
			return err
		}
		tp += "/" + seg
	}
	if secret, err = readSecret(secret, secretFile); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var t api.Tenant
	switch sub {
	case "create":
		err = c.Do(ctx, http.MethodPost, tp, api.CreateTenantRequest{Name: name, Quotas: q, Secret: secret}, &t)
	case "update":
		err = c.Do(ctx, http.MethodPatch, tp, api.UpdateTenantRequest{Quotas: q}, &t)
	case "rotate-token":
		ms := previous.Milliseconds()
		err = c.Do(ctx, http.MethodPost, tp+"/token", api.RotateTokenRequest{Secret: secret, PreviousValidMs: &ms}, &t)
	case "revoke-previous":
		err = c.Do(ctx, http.MethodDelete, tp+"/token/previous", nil, &t)
	case "show":
		err = c.Do(ctx, http.MethodGet, tp, nil, &t)
	case "delete":
		if err = c.Do(ctx, http.MethodDelete, tp, nil, nil); err != nil {
			return err
		}
		if cf.output == "json" {
			return printJSON(stdout, deleted{Tenant: name, Deleted: true})
		}
		_, err = fmt.Fprintf(stdout, "tenant %s deleted\n", printable(name))
		return err
	case "list":
		var l api.TenantList
		if err := c.Do(ctx, http.MethodGet, tp, nil, &l); err != nil {
			return err
		}
		if cf.output == "json" {
			return printJSON(stdout, l)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSHARD\tEPOCH\tSERVICES\tINSTANCES\tSESSIONS\tCREATED")
		for _, t := range l.Tenants {
			u := api.Usage{}
			if t.Usage != nil {
				u = *t.Usage
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d/%d\t%d/%d\t%d/%d\t%s\n", printable(t.Name), t.ShardID, t.Epoch,
				u.Services, t.Quotas.MaxServices, u.Instances, t.Quotas.MaxInstances, u.Sessions, t.Quotas.MaxSessions,
				t.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return printJSON(stdout, t)
	}
	return printTenant(stdout, t)
}

// deleted is tenant delete's JSON output.
type deleted struct {
	Tenant  string `json:"tenant"`
	Deleted bool   `json:"deleted"` // true: the tenant is gone (or was not there)
}

func printTenant(w io.Writer, t api.Tenant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\nshard\t%d\nepoch\t%d\ncreated\t%s\n", printable(t.Name), t.ShardID, t.Epoch, t.CreatedAt.Format(time.RFC3339))
	if t.Token != "" {
		fmt.Fprintf(tw, "token\t%s\t(shown once: keep it)\n", printable(t.Token))
	}
	if until := t.PreviousTokenValidUntil; until != nil {
		fmt.Fprintf(tw, "previous token\tvalid until %s\t(in %s)\n", until.Format(time.RFC3339), time.Until(*until).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "previous token\tnone\n")
	}
	if t.Restoring {
		fmt.Fprintf(tw, "restoring\tyes\t(clients are answered 503 restoring until the restore has written it)\n")
	}
	u := api.Usage{}
	if t.Usage != nil {
		u = *t.Usage
	}
	q := t.Quotas
	rows := []struct {
		name        string
		used, limit int64
		hasUse      bool
	}{
		{"services", u.Services, q.MaxServices, true}, {"instances", u.Instances, q.MaxInstances, true},
		{"sessions", u.Sessions, q.MaxSessions, true}, {"watchers (this node)", u.Watchers, q.MaxWatchers, true},
		{"meta bytes per instance", 0, q.MaxMetaBytes, false}, {"min ttl ms", 0, q.MinTTLMs, false},
		{"max ttl ms", 0, q.MaxTTLMs, false}, {"requests/s", 0, q.RequestsPerSecond, false},
		{"burst", 0, q.Burst, false}, {"writes/s", 0, q.WritesPerSecond, false},
		{"keys", u.Keys, q.MaxKeys, true}, {"value bytes", 0, q.MaxValueBytes, false},
		{"kv bytes", u.KVBytes, q.MaxKVBytes, true},
	}
	fmt.Fprintln(tw, "\nQUOTA\tUSED\tLIMIT")
	for _, r := range rows {
		used := "-"
		if r.hasUse && t.Usage != nil {
			used = fmt.Sprint(r.used)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.name, used, r.limit)
	}
	return tw.Flush()
}

// parseWithName parses flags that may come before or after the one NAME.
func parseWithName(fs *flag.FlagSet, args []string, needName bool) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if needName && name == "" {
		return "", usageError{fs.Name() + ": a NAME is required"}
	}
	return name, nil
}

func runService(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"usage: rafting service list|show [--tenant T] [NAME]"}
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		_, err := fmt.Fprintln(stdout, "usage: rafting service list|show [--tenant T] [NAME]\n\nRun 'rafting service <command> -h' for a command's flags.")
		return err
	}
	fs := newFlagSet("service " + sub)
	var cf commonFlags
	cf.register(fs, "RAFTING_TOKEN")
	tenant := fs.String("tenant", os.Getenv("RAFTING_TENANT"), "tenant (default $RAFTING_TENANT)")
	if sub != "list" && sub != "show" {
		return usageError{fmt.Sprintf("unknown service command %q", sub)}
	}
	name, err := parseWithName(fs, args, sub == "show")
	if err != nil {
		return err
	}
	if *tenant == "" {
		return usageError{"--tenant (or RAFTING_TENANT) is required"}
	}
	ten, err := pathSeg("--tenant", *tenant)
	if err != nil {
		return err
	}
	sp := "/v1/tenants/" + ten + "/services"
	if sub == "show" {
		seg, err := pathSeg("service", name)
		if err != nil {
			return err
		}
		sp += "/" + seg
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if sub == "list" {
		var l api.ServiceList
		if err := c.Do(ctx, http.MethodGet, sp, nil, &l); err != nil {
			return err
		}
		if cf.output == "json" {
			return printJSON(stdout, l)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tINSTANCES\tREADY\tMASTER\tMODIFY INDEX")
		for _, s := range l.Services {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", printable(s.Name), s.Instances, s.Ready, dash(s.Master), s.ModifyIndex)
		}
		return tw.Flush()
	}
	var s api.ServiceResponse
	if err := c.Do(ctx, http.MethodGet, sp, nil, &s); err != nil {
		return err
	}
	if cf.output == "json" {
		return printJSON(stdout, s)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "service\t%s\nindex\t%d\nmodify index\t%d\ncold start\tmin_ready %d, settle %dms\n", printable(s.Service), s.Index, s.ModifyIndex,
		s.Policy.ColdStart.MinReady, s.Policy.ColdStart.SettleMs)
	if m := s.Master; m != nil {
		rel := ""
		if m.Releasing {
			rel = " (releasing)"
		}
		fmt.Fprintf(tw, "master\t%s token %d since %s%s\n", printable(m.Instance), m.FencingToken, m.Since.Format(time.RFC3339), rel)
	} else {
		fmt.Fprintln(tw, "master\t-")
	}
	fmt.Fprintln(tw, "\nINSTANCE\tADDRESS\tMODE\tSTATE\tWEIGHT\tPRIORITY\tZONE\tSESSION")
	for _, in := range s.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", printable(in.ID), printable(in.Address), printable(string(in.Mode)),
			printable(string(in.State)), in.Weight, in.Priority, dash(in.Zone), dash(in.SessionTag))
	}
	return tw.Flush()
}

// dash is printable(s), or "-" for an empty s.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

const clusterUsage = `usage: rafting cluster [flags]                  nodes (health, build, leaderships, lag) and shards
       rafting cluster remove ID [flags]        take a node out for good (its leaderships are moved off first)
       rafting cluster transfer-leader (--shard N | --tenant T) [--to ID] [flags]
                                                move one shard's leadership to node ID (default: any other node)
       rafting cluster transfer-leader --from ID [flags]
                                                move every leadership node ID holds to other nodes (before maintenance)
`

func runCluster(ctx context.Context, args []string, stdout io.Writer) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "", "remove", "transfer-leader":
	case "help":
		fmt.Fprint(stdout, clusterUsage)
		return nil
	default:
		return usageError{fmt.Sprintf("unknown cluster command %q\n%s", sub, clusterUsage)}
	}
	fs := newFlagSet(strings.TrimSpace("cluster " + sub))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), clusterUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	var cf commonFlags
	cf.register(fs, "RAFTING_ADMIN_TOKEN")
	var lt api.LeaderTransferRequest
	if sub == "transfer-leader" {
		fs.Uint64Var(&lt.Shard, "shard", 0, "the shard whose leadership moves")
		fs.StringVar(&lt.Tenant, "tenant", "", "the tenant whose shard's leadership moves")
		fs.Uint64Var(&lt.To, "to", 0, "the node to lead it (default: any other node)")
		fs.Uint64Var(&lt.From, "from", 0, "move every leadership this node holds")
	}
	id, err := parseWithName(fs, args, sub == "remove")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var cl api.Cluster
	method, path := http.MethodGet, "/v1/cluster"
	var body any
	switch sub {
	case "remove":
		// A lost machine's node, for good: its replicas leave every shard.
		seg, err := pathSeg("node ID", id)
		if err != nil {
			return err
		}
		method, path = http.MethodDelete, "/v1/cluster/nodes/"+seg
	case "transfer-leader":
		if (lt.Shard != 0 || lt.Tenant != "") == (lt.From != 0) {
			return usageError{"cluster transfer-leader: give --shard or --tenant (one shard), or --from (every leadership of a node)"}
		}
		method, path, body = http.MethodPost, "/v1/cluster/leaders", lt
	}
	if err := c.Do(ctx, method, path, body, &cl); err != nil {
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeForbidden {
			return fmt.Errorf("%w (the cluster view needs the admin token: $RAFTING_ADMIN_TOKEN)", err)
		}
		return err
	}
	if cf.output == "json" {
		return printJSON(stdout, cl)
	}
	return printCluster(stdout, cl)
}

// printCluster writes the cluster view as tables: the nodes with their
// health, build, lag and leaderships, then the shards.
func printCluster(stdout io.Writer, cl api.Cluster) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "answered by node %d; cluster state version %d\n\n", cl.NodeID, cl.StateVersion)
	fmt.Fprintln(tw, "NODE\tHEALTH\tVERSION\tCOMMIT\tSTATE VERSION\tLEADS\tLAG\tLAST CONTACT\tRAFT\tAPI")
	for _, n := range cl.Nodes {
		ver, commit, state := "?", "?", "?"
		if b := n.Build; b != nil {
			ver, commit, state = dash(b.Version), dash(shortCommit(b.Commit)), fmt.Sprint(b.StateVersion)
		}
		contact := "never"
		switch {
		case n.ID == cl.NodeID:
			contact = "-"
		case n.LastContactMs >= 0:
			contact = (time.Duration(n.LastContactMs) * time.Millisecond).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", n.ID, dash(n.Health), ver, commit, state, n.Leaders, n.Lag, contact,
			printable(n.RaftAddress), printable(n.APIAddress))
	}
	fmt.Fprintln(tw, "\nSHARD\tTENANT\tLEADER NODE\tTERM\tAPPLIED\tREPLICAS")
	for _, s := range cl.Shards {
		reps := make([]string, 0, len(s.Replicas))
		for r, n := range s.Replicas {
			reps = append(reps, fmt.Sprintf("%d@%d", r, n))
		}
		sort.Strings(reps)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\n", s.ShardID, dash(s.Tenant), s.Leader, s.Term, s.Applied, strings.Join(reps, " "))
	}
	return tw.Flush()
}

// shortCommit is a commit's first 12 characters (and "-dirty" if so).
func shortCommit(c string) string {
	base, dirty := strings.CutSuffix(c, "-dirty")
	if len(base) > 12 {
		base = base[:12]
	}
	if dirty {
		base += "-dirty"
	}
	return base
}

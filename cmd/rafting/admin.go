package main

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
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commonFlags are the flags of a command that talks to the REST API.
type commonFlags struct {
	a         *app
	servers   string
	token     string
	tokenFile string
	envToken  string // the token's environment variable
	tokenEnv  string // its name
	ca        string
	insecure  bool
}

func (c *commonFlags) register(a *app, fs *pflag.FlagSet, tokenEnv string) {
	c.a = a
	fs.StringVar(&c.servers, "servers", "", "comma-separated API addresses (default $RAFTING_SERVERS, else 127.0.0.1:7070)")
	fs.StringVar(&c.token, "token", "", "bearer token (default $"+tokenEnv+"); other users can see it in ps: prefer --token-file")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token; refused if group or others have access to it (chmod 600)")
	fs.StringVar(&c.ca, "ca", os.Getenv("RAFTING_CA"), "CA certificate (PEM) of the servers' API: https, verified with it (default $RAFTING_CA; without it, addresses without a scheme are http)")
	fs.BoolVar(&c.insecure, "insecure", os.Getenv("RAFTING_INSECURE") == "1", "allow plain HTTP to an address that is not loopback: the token crosses the network in the clear (default $RAFTING_INSECURE=1)")
	c.envToken, c.tokenEnv = os.Getenv(tokenEnv), tokenEnv
}

// secretFlags registers --secret and --secret-file: the secret part of a
// tenant's token, for a create or a rotation that is safe to retry.
func secretFlags(fs *pflag.FlagSet, secret, file *string, what string) {
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

func quotaFlags(fs *pflag.FlagSet, q *api.Quotas) {
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

func (a *app) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tenant",
		Aliases: []string{"tenants"},
		Short:   "create|list|show|update|rotate-token|revoke-previous|delete tenants (admin)",
		Example: `  export RAFTING_SERVERS=10.0.0.1:7070,10.0.0.2:7070 RAFTING_ADMIN_TOKEN=$(cat admin.token)
  rafting tenant create acme --max-instances 500 --secret-file acme.secret   # a retry is safe
  rafting tenant list -o json
  rafting tenant rotate-token acme --previous-valid 24h`,
		RunE: a.group(nil),
	}
	type spec struct {
		use, short string
		args       cobra.PositionalArgs
	}
	for _, s := range []spec{
		{"create NAME", "create a tenant; its token is shown once (--secret-file: a retry is safe)", nArgs(1, 1, "NAME")},
		{"list", "every tenant with its usage", nArgs(0, 0, "")},
		{"show NAME", "one tenant: quotas, usage, until when its previous token works", nArgs(1, 1, "NAME")},
		{"update NAME", "change its quotas (the quota flags)", nArgs(1, 1, "NAME")},
		{"rotate-token NAME", "a new token; the old one works for --previous-valid (default 1h)", nArgs(1, 1, "NAME")},
		{"revoke-previous NAME", "end the previous token now, once clients use the new one", nArgs(1, 1, "NAME")},
		{"delete NAME", "delete the tenant and its data on every node", nArgs(1, 1, "NAME")},
	} {
		t := &tenantCmd{a: a, sub: strings.Fields(s.use)[0]}
		c := &cobra.Command{Use: s.use, Short: s.short, Args: s.args, RunE: a.action(t.run)}
		t.flags(c.Flags())
		if t.sub != "create" && t.sub != "list" {
			c.ValidArgsFunction = completeFrom(&t.cf, func(ctx context.Context, c *restclient.Client) ([]string, error) {
				var l api.TenantList
				err := c.Do(ctx, http.MethodGet, "/v1/tenants", nil, &l)
				names := make([]string, 0, len(l.Tenants))
				for _, t := range l.Tenants {
					names = append(names, t.Name)
				}
				return names, err
			})
		}
		cmd.AddCommand(c)
	}
	return cmd
}

// tenantCmd is one `rafting tenant` command and its flags.
type tenantCmd struct {
	a                  *app
	sub                string
	cf                 commonFlags
	q                  api.Quotas
	secret, secretFile string
	previous           time.Duration
}

func (t *tenantCmd) flags(fs *pflag.FlagSet) {
	t.cf.register(t.a, fs, "RAFTING_ADMIN_TOKEN")
	switch t.sub {
	case "create", "update":
		quotaFlags(fs, &t.q)
		if t.sub == "create" {
			secretFlags(fs, &t.secret, &t.secretFile, "the token's secret part (so a retried create is safe); default: generated")
		}
	case "rotate-token":
		secretFlags(fs, &t.secret, &t.secretFile, "the new token's secret part; default: generated")
		fs.DurationVar(&t.previous, "previous-valid", time.Hour, "how long the old token keeps working (0 revokes it now)")
	}
}

func (t *tenantCmd) run(ctx context.Context, args []string) error {
	name := ""
	if len(args) > 0 {
		name = args[0]
	}
	tp := "/v1/tenants"
	if t.sub != "list" && t.sub != "create" {
		seg, err := pathSeg("tenant", name)
		if err != nil {
			return err
		}
		tp += "/" + seg
	}
	secret, err := readSecret(t.secret, t.secretFile)
	if err != nil {
		return err
	}
	c, err := t.cf.client()
	if err != nil {
		return err
	}
	stdout := t.a.stdout
	var ten api.Tenant
	switch t.sub {
	case "create":
		err = c.Do(ctx, http.MethodPost, tp, api.CreateTenantRequest{Name: name, Quotas: t.q, Secret: secret}, &ten)
	case "update":
		err = c.Do(ctx, http.MethodPatch, tp, api.UpdateTenantRequest{Quotas: t.q}, &ten)
	case "rotate-token":
		ms := t.previous.Milliseconds()
		err = c.Do(ctx, http.MethodPost, tp+"/token", api.RotateTokenRequest{Secret: secret, PreviousValidMs: &ms}, &ten)
	case "revoke-previous":
		err = c.Do(ctx, http.MethodDelete, tp+"/token/previous", nil, &ten)
	case "show":
		err = c.Do(ctx, http.MethodGet, tp, nil, &ten)
	case "delete":
		if err = c.Do(ctx, http.MethodDelete, tp, nil, nil); err != nil {
			return err
		}
		if t.a.json() {
			return printJSON(stdout, deleted{Tenant: name, Deleted: true})
		}
		_, err = fmt.Fprintf(stdout, "tenant %s deleted\n", printable(name))
		return err
	case "list":
		var l api.TenantList
		if err := c.Do(ctx, http.MethodGet, tp, nil, &l); err != nil {
			return err
		}
		if t.a.json() {
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
	if t.a.json() {
		return printJSON(stdout, ten)
	}
	return printTenant(stdout, ten)
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

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"services"},
		Short:   "list|show a tenant's services",
		RunE:    a.group(nil),
	}
	for _, s := range []struct {
		use, short string
		args       cobra.PositionalArgs
	}{
		{"list", "the tenant's services with their instance counts and masters", nArgs(0, 0, "")},
		{"show NAME", "one service: its instances, master and election policy", nArgs(1, 1, "NAME")},
	} {
		sc := &serviceCmd{a: a, sub: strings.Fields(s.use)[0]}
		c := &cobra.Command{Use: s.use, Short: s.short, Args: s.args, RunE: a.action(sc.run)}
		sc.cf.register(a, c.Flags(), "RAFTING_TOKEN")
		c.Flags().StringVar(&sc.tenant, "tenant", os.Getenv("RAFTING_TENANT"), "tenant (default $RAFTING_TENANT)")
		if sc.sub == "show" {
			c.ValidArgsFunction = completeFrom(&sc.cf, func(ctx context.Context, c *restclient.Client) ([]string, error) {
				var l api.ServiceList
				if sc.tenant == "" {
					return nil, nil
				}
				err := c.Do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(sc.tenant)+"/services", nil, &l)
				names := make([]string, 0, len(l.Services))
				for _, s := range l.Services {
					names = append(names, s.Name)
				}
				return names, err
			})
		}
		cmd.AddCommand(c)
	}
	return cmd
}

// completeFrom completes a command's one argument with the names list
// answers, asked of the servers with the command's own flags (--servers,
// the token): one attempt per server, 2 s in all; nothing on a failure.
// Names that a terminal could act on are left out.
func completeFrom(cf *commonFlags, list func(ctx context.Context, c *restclient.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := cf.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c.Retry = restclient.Tries(len(c.Servers), 0)
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		names, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) && printable(n) == n && !strings.ContainsAny(n, " '\"$`") {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// serviceCmd is one `rafting service` command and its flags.
type serviceCmd struct {
	a      *app
	sub    string
	cf     commonFlags
	tenant string
}

func (sc *serviceCmd) run(ctx context.Context, args []string) error {
	if sc.tenant == "" {
		return usageError{"--tenant (or RAFTING_TENANT) is required"}
	}
	ten, err := pathSeg("--tenant", sc.tenant)
	if err != nil {
		return err
	}
	sp := "/v1/tenants/" + ten + "/services"
	if sc.sub == "show" {
		seg, err := pathSeg("service", args[0])
		if err != nil {
			return err
		}
		sp += "/" + seg
	}
	c, err := sc.cf.client()
	if err != nil {
		return err
	}
	stdout := sc.a.stdout
	if sc.sub == "list" {
		var l api.ServiceList
		if err := c.Do(ctx, http.MethodGet, sp, nil, &l); err != nil {
			return err
		}
		if sc.a.json() {
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
	if sc.a.json() {
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

func (a *app) clusterCmd() *cobra.Command {
	var cf commonFlags
	cmd := &cobra.Command{
		Use: "cluster",
		Example: `  rafting cluster
  rafting cluster transfer-leader --from 2      # before node 2's maintenance
  rafting cluster remove 4                      # a lost machine's node, for good`,
		Short: "nodes (health, build, lag, leaderships) and shards; remove ID; transfer-leader (admin)",
		Long: `The cluster as GET /v1/cluster answers it: the nodes with their health, build, lag and
leaderships, then the shards. A field the server adds shows as a column of its own (or a
section), before this binary learns its name; -o json prints the answer whole.`,
	}
	cmd.RunE = a.group(func(c *cobra.Command) error {
		a.ran = true
		return a.cluster(c.Context(), &cf, http.MethodGet, "/v1/cluster", nil)
	})
	cf.register(a, cmd.Flags(), "RAFTING_ADMIN_TOKEN")

	var rf commonFlags
	var force bool
	remove := &cobra.Command{
		Use:   "remove ID [--force]",
		Short: "take a node out for good (its leaderships are moved off first)",
		Args:  nArgs(1, 1, "ID"),
		RunE: a.action(func(ctx context.Context, args []string) error {
			// A lost machine's node, for good: its replicas leave every shard.
			seg, err := pathSeg("node ID", args[0])
			if err != nil {
				return err
			}
			path := "/v1/cluster/nodes/" + seg
			if force {
				path += "?force=true"
			}
			return a.cluster(ctx, &rf, http.MethodDelete, path, nil)
		}),
	}
	rf.register(a, remove.Flags(), "RAFTING_ADMIN_TOKEN")
	remove.Flags().BoolVar(&force, "force", false, "remove it even if it holds a tenant's only replica (--replicas 1): that tenant's data is lost")

	var tf commonFlags
	var lt api.LeaderTransferRequest
	transfer := &cobra.Command{
		Use:   "transfer-leader (--shard N | --tenant T) [--to ID] | --from ID",
		Short: "move one shard's leadership to node ID (default: any other node), or every leadership of node --from (before maintenance)",
		Args:  nArgs(0, 0, "(--shard N | --tenant T) [--to ID] | --from ID"),
		RunE: a.action(func(ctx context.Context, args []string) error {
			if (lt.Shard != 0 || lt.Tenant != "") == (lt.From != 0) {
				return usageError{"cluster transfer-leader: give --shard or --tenant (one shard), or --from (every leadership of a node)"}
			}
			return a.cluster(ctx, &tf, http.MethodPost, "/v1/cluster/leaders", lt)
		}),
	}
	tf.register(a, transfer.Flags(), "RAFTING_ADMIN_TOKEN")
	transfer.Flags().Uint64Var(&lt.Shard, "shard", 0, "the shard whose leadership moves")
	transfer.Flags().StringVar(&lt.Tenant, "tenant", "", "the tenant whose shard's leadership moves")
	transfer.Flags().Uint64Var(&lt.To, "to", 0, "the node to lead it (default: any other node)")
	transfer.Flags().Uint64Var(&lt.From, "from", 0, "move every leadership this node holds")
	cmd.AddCommand(remove, transfer)
	return cmd
}

// cluster sends one request that answers the cluster view and prints it.
func (a *app) cluster(ctx context.Context, cf *commonFlags, method, path string, body any) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, method, path, body, &raw); err != nil {
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeForbidden {
			return fmt.Errorf("%w (the cluster view needs the admin token: $RAFTING_ADMIN_TOKEN)", err)
		}
		return err
	}
	if a.json() {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("the cluster view: %w", err)
		}
		return printJSON(a.stdout, v) // whole, with the fields this binary does not know
	}
	return printCluster(a.stdout, raw)
}

// printCluster writes the cluster view as tables: the nodes with their
// health, build, lag and leaderships, then the shards. The fields this
// binary does not know are printed too, so a server that answers more
// (placement per node, moves in flight) shows it without a new CLI: a
// node's or a shard's as columns of their own after the known ones, and
// the view's own as a section each after the shards (a list of objects as
// a table, anything else on one line).
func printCluster(stdout io.Writer, raw []byte) error {
	var cl api.Cluster
	var fields struct {
		Top    map[string]json.RawMessage
		Nodes  []map[string]json.RawMessage `json:"nodes"`
		Shards []map[string]json.RawMessage `json:"shards"`
	}
	if err := json.Unmarshal(raw, &cl); err != nil {
		return fmt.Errorf("the cluster view: %w", err)
	}
	if err := json.Unmarshal(raw, &fields.Top); err != nil {
		return fmt.Errorf("the cluster view: %w", err)
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("the cluster view: %w", err)
	}
	nodeExtra := extraKeys(fields.Nodes, "id", "raft_address", "api_address", "health", "build", "leaders", "lag", "last_contact_ms")
	shardExtra := extraKeys(fields.Shards, "shard_id", "tenant", "replicas", "leader_node", "term", "applied_index")

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "answered by node %d; cluster state version %d\n\n", cl.NodeID, cl.StateVersion)
	fmt.Fprint(tw, "NODE\tHEALTH\tVERSION\tCOMMIT\tSTATE VERSION\tLEADS\tLAG\tLAST CONTACT\tRAFT\tAPI", headers(nodeExtra), "\n")
	for i, n := range cl.Nodes {
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s%s\n", n.ID, dash(n.Health), ver, commit, state, n.Leaders, n.Lag, contact,
			printable(n.RaftAddress), printable(n.APIAddress), cells(fields.Nodes[i], nodeExtra))
	}
	fmt.Fprint(tw, "\nSHARD\tTENANT\tLEADER NODE\tTERM\tAPPLIED\tREPLICAS", headers(shardExtra), "\n")
	for i, s := range cl.Shards {
		reps := make([]string, 0, len(s.Replicas))
		for r, n := range s.Replicas {
			reps = append(reps, fmt.Sprintf("%d@%d", r, n))
		}
		sort.Strings(reps)
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s%s\n", s.ShardID, dash(s.Tenant), s.Leader, s.Term, s.Applied, strings.Join(reps, " "),
			cells(fields.Shards[i], shardExtra))
	}
	if len(cl.Removed) > 0 {
		fmt.Fprintf(tw, "\nremoved nodes\t%s\n", cell(fields.Top["removed"]))
	}
	top := extraKeys([]map[string]json.RawMessage{fields.Top}, "node_id", "build", "state_version", "ready", "nodes", "shards", "removed")
	for _, k := range top {
		var objs []map[string]json.RawMessage
		if json.Unmarshal(fields.Top[k], &objs) == nil && len(objs) > 0 {
			cols := extraKeys(objs)
			fmt.Fprintf(tw, "\n%s:\n%s\n", strings.ReplaceAll(printable(k), "_", " "), strings.TrimPrefix(headers(cols), "\t"))
			for _, o := range objs {
				fmt.Fprint(tw, strings.TrimPrefix(cells(o, cols), "\t"), "\n")
			}
			continue
		}
		fmt.Fprintf(tw, "\n%s\t%s\n", strings.ReplaceAll(printable(k), "_", " "), cell(fields.Top[k]))
	}
	return tw.Flush()
}

// extraKeys is the keys of the objects in os that are not known, sorted.
func extraKeys(os []map[string]json.RawMessage, known ...string) []string {
	seen := map[string]bool{}
	for _, k := range known {
		seen[k] = true
	}
	var keys []string
	for _, o := range os {
		for k := range o {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// headers is a tab, then the column heads of keys ("moves_in_flight":
// "MOVES IN FLIGHT"), tab-separated.
func headers(keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("\t" + strings.ToUpper(strings.ReplaceAll(printable(k), "_", " ")))
	}
	return b.String()
}

// cells is a tab, then o's values of keys, tab-separated.
func cells(o map[string]json.RawMessage, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("\t" + cell(o[k]))
	}
	return b.String()
}

// cell is one JSON value for a table: a string as it is (escaped), a
// list of strings and numbers joined by commas, "-" for nothing, anything
// else as compact JSON (escaped).
func cell(v json.RawMessage) string {
	var s string
	var list []any
	switch {
	case len(v) == 0 || string(v) == "null":
		return "-"
	case json.Unmarshal(v, &s) == nil:
		return dash(s)
	case json.Unmarshal(v, &list) == nil:
		parts := make([]string, 0, len(list))
		for _, e := range list {
			switch e := e.(type) {
			case string:
				parts = append(parts, e)
			case float64, bool:
				parts = append(parts, fmt.Sprint(e))
			default:
				var b bytes.Buffer
				if json.Compact(&b, v) != nil {
					return printable(string(v))
				}
				return printable(b.String())
			}
		}
		if len(parts) == 0 {
			return "-"
		}
		return printable(strings.Join(parts, ","))
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return printable(string(v))
	}
	return printable(b.String())
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/tenants"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const kvLong = `A tenant's configuration keys: paths of /-separated segments of [A-Za-z0-9._-], e.g. app/db/url.

--if-index N (put, delete): only if KEY's mod_index is N; 0: only if KEY does not exist.

Exit status: 0 done; 1 error; 2 usage; 3 a compare failed (--if-index, txn): nothing changed;
4 get KEY: no such key.

Connection: --servers ($RAFTING_SERVERS), --token or --token-file ($RAFTING_TOKEN), --tenant
($RAFTING_TENANT; by default the tenant the token names).`

// Exit statuses of the kv commands beside 1 (error) and 2 (usage).
const (
	exitCompareFailed = 3 // a CAS or a transaction's compare failed: nothing changed
	exitNotFound      = 4 // get KEY: no such key
)

// exitError ends the process with code, printing err (main).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// kvCmd is one kv command: its flags, and once connected its client and
// the tenant's KV path.
type kvCmd struct {
	a      *app
	name   string
	fs     *pflag.FlagSet
	cf     commonFlags
	tenant string
	c      *restclient.Client
	base   string // /v1/tenants/{t}/kv

	prefix, keysOnly, stale bool
	pageSize                int
	ifIndex                 optIndex
	file                    string

	stdin          io.Reader
	stdout, stderr io.Writer
}

func (a *app) kvCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use: "kv",
		Example: `  export RAFTING_SERVERS=127.0.0.1:7070 RAFTING_TOKEN=rft_acme_...   # the token names its tenant
  rafting kv put app/db/url postgres://db:5432/app
  rafting kv get --prefix app
  rafting kv put app/limit 20 --if-index 41      # only if nobody wrote it since
  rafting kv watch --prefix app -o json
  rafting kv txn < txn.json`,
		Short: "get|put|delete|watch|txn a tenant's configuration keys",
		Long:  kvLong,
		RunE:  a.group(nil),
	}
	type spec struct {
		use, short string
		aliases    []string
		args       cobra.PositionalArgs
		run        func(k *kvCmd, ctx context.Context, args []string) error
	}
	for _, s := range []spec{
		{"get KEY | get --prefix [KEY]", "print KEY's value; --prefix: list the subtree KEY (KEY and every key under KEY/; every key without KEY)", nil,
			nArgs(0, 1, "[--prefix] KEY"), (*kvCmd).get},
		{"put KEY VALUE | put KEY - | put KEY --file F", `write KEY; VALUE "-" or --file F reads it from stdin or a file`, nil,
			nArgs(1, 2, "KEY VALUE | KEY - | KEY --file F"), (*kvCmd).put},
		{"delete KEY", "delete KEY; --prefix the subtree KEY", []string{"del"},
			nArgs(1, 1, "[--prefix] [--if-index N] KEY"), (*kvCmd).delete},
		{"watch KEY | watch --prefix [KEY]", "print each change of KEY (--prefix: of the subtree KEY) until interrupted", nil,
			nArgs(0, 1, "[--prefix] KEY"), (*kvCmd).watch},
		{"txn", "apply a transaction (JSON, api.KVTxnRequest) read from stdin or --file", nil,
			nArgs(0, 0, "[--file F] < txn.json"), (*kvCmd).txn},
	} {
		sub := strings.Fields(s.use)[0]
		k := &kvCmd{a: a, name: "kv " + sub, stdin: a.stdin, stdout: a.stdout, stderr: a.stderr}
		run := s.run
		c := &cobra.Command{Use: s.use, Short: s.short, Aliases: s.aliases, Args: s.args,
			RunE: a.action(func(ctx context.Context, args []string) error { return run(k, ctx, args) })}
		k.fs = c.Flags()
		k.flags(sub)
		cmd.AddCommand(c)
	}
	return cmd
}

// flags registers the flags of kv command sub.
func (k *kvCmd) flags(sub string) {
	fs := k.fs
	k.cf.register(k.a, fs, "RAFTING_TOKEN")
	fs.StringVar(&k.tenant, "tenant", os.Getenv("RAFTING_TENANT"), "tenant (default $RAFTING_TENANT, else the one the token names)")
	switch sub {
	case "get":
		fs.BoolVar(&k.prefix, "prefix", false, "list the subtree KEY: KEY itself and every key under KEY/ (every key without KEY)")
		fs.BoolVar(&k.keysOnly, "keys-only", false, "with --prefix: print the keys, not their values")
		fs.IntVar(&k.pageSize, "page-size", 0, fmt.Sprintf("with --prefix: keys a request (1 to %d; default the server's, %d); every page is followed", api.MaxKVPage, api.DefaultKVPage))
		fs.BoolVar(&k.stale, "stale", false, "read the answering server's replica as it is, without confirming it is current (cheaper; may be behind the last write)")
	case "put":
		fs.Var(&k.ifIndex, "if-index", "write only if KEY's mod_index is N (compare-and-set); 0: only if KEY does not exist")
		fs.StringVarP(&k.file, "file", "f", "", "read the value from this file (\"-\": stdin)")
	case "delete":
		fs.Var(&k.ifIndex, "if-index", "delete only if KEY's mod_index is N (compare-and-delete)")
		fs.BoolVar(&k.prefix, "prefix", false, "delete the subtree KEY: KEY and every key under KEY/")
	case "watch":
		fs.BoolVar(&k.prefix, "prefix", false, "watch the subtree KEY: KEY itself and every key under KEY/ (every key without KEY)")
		fs.IntVar(&k.pageSize, "page-size", 0, fmt.Sprintf("with --prefix: keys a request when the subtree is read (1 to %d; default the server's)", api.MaxKVPage))
	case "txn":
		fs.StringVarP(&k.file, "file", "f", "-", "read the transaction from this file (\"-\": stdin)")
	}
}

// connect builds the client and settles the tenant: --tenant, else
// $RAFTING_TENANT, else the one the token names (rft_<tenant>_<secret>),
// as the SDK does; a tenant token naming another tenant is refused here,
// as the server would refuse it.
func (k *kvCmd) connect() error {
	c, err := k.cf.client()
	if err != nil {
		return err
	}
	from := "$RAFTING_TENANT"
	if k.fs.Changed("tenant") {
		from = "--tenant"
	}
	named, ok := tenants.ParseToken(c.Token)
	switch {
	case k.tenant == "" && ok:
		k.tenant = named
	case k.tenant == "":
		return usageError{"no tenant: give --tenant or set RAFTING_TENANT (the token names none: a tenant's token is rft_<tenant>_<secret>)"}
	case ok && named != k.tenant:
		return usageError{fmt.Sprintf("tenant %q from %s, but the token is tenant %q's: use a token of tenant %s, or leave --tenant and RAFTING_TENANT unset (the token names its tenant)",
			k.tenant, from, named, k.tenant)}
	}
	if err := api.ValidateTenantName(from, k.tenant); err != nil {
		return usageError{apiMessage(err)}
	}
	k.c, k.base = c, "/v1/tenants/"+url.PathEscape(k.tenant)+"/kv"
	return nil
}

// apiMessage is an *api.Error's message (it names the field), else err's
// text.
func apiMessage(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// checkKey validates a KEY argument as the server will: refused before
// anything is sent, naming the argument.
func checkKey(key string, prefix bool) error {
	var err error
	if prefix {
		err = api.ValidateKeyPrefix("KEY", key)
	} else {
		err = api.ValidateKey("KEY", key)
	}
	if err != nil {
		return usageError{apiMessage(err) + " (a key is 1 to 512 bytes of /-separated segments of [A-Za-z0-9._-], e.g. app/db/url)"}
	}
	return nil
}

// keyPath is the path of key (a valid key is safe in a URL path as it is;
// "" is the store's root).
func (k *kvCmd) keyPath(key string) string {
	if key == "" {
		return k.base
	}
	return k.base + "/" + key
}

// withQuery is path with q's query, if any.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// optIndex is an --if-index flag: unset is not 0.
type optIndex struct {
	n   uint64
	set bool
}

func (o *optIndex) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.n, 10)
}

func (o *optIndex) Type() string { return "N" }

func (o *optIndex) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a mod_index (a non-negative integer; 0: only if the key does not exist)", s)
	}
	o.n, o.set = n, true
	return nil
}

func (k *kvCmd) get(ctx context.Context, pos []string) error {
	prefix, keysOnly, pageSize, stale := &k.prefix, &k.keysOnly, &k.pageSize, &k.stale
	key := ""
	if len(pos) == 1 {
		key = pos[0]
	}
	if !*prefix && key == "" {
		return usageError{"usage: rafting kv get KEY (or --prefix [KEY] to list a subtree)"}
	}
	if err := checkKey(key, *prefix); err != nil {
		return err
	}
	if *pageSize != 0 && (*pageSize < 1 || *pageSize > api.MaxKVPage || !*prefix) {
		return usageError{fmt.Sprintf("--page-size %d: pages a --prefix listing; want 1 to %d", *pageSize, api.MaxKVPage)}
	}
	if *keysOnly && (!*prefix || k.a.json()) {
		return usageError{"--keys-only lists a subtree's keys: with --prefix, in table output"}
	}
	if err := k.connect(); err != nil {
		return err
	}
	q := url.Values{}
	if !*stale {
		q.Set("consistent", "true")
	}
	if !*prefix {
		reply, err := k.c.Send(ctx, restclient.Request{Method: http.MethodGet, Path: withQuery(k.keyPath(key), q)})
		if err != nil {
			// A missing key's 404 carries the index to block on; a
			// missing tenant's does not.
			if _, hasIndex := reply.Index(); hasIndex && errors.Is(err, api.ErrNotFound) {
				return &exitError{exitNotFound, fmt.Errorf("%s: no such key", key)}
			}
			return err
		}
		var r api.KVResponse
		if err := json.Unmarshal(reply.Body, &r); err != nil {
			return fmt.Errorf("get %s: the answer is not a key: %w", key, err)
		}
		if k.a.json() {
			return printJSON(k.stdout, r)
		}
		return writeValue(k.stdout, r.KV.Value)
	}
	var all api.KVListResponse
	all.KVs = []api.KV{}
	err := k.list(ctx, k.c, key, q, *pageSize, func(page api.KVListResponse, first bool) error {
		if first {
			all.Index = page.Index
		}
		if k.a.json() {
			all.KVs = append(all.KVs, page.KVs...)
			return nil
		}
		var b bytes.Buffer
		for _, kv := range page.KVs {
			b.WriteString(printable(kv.Key))
			if !*keysOnly {
				b.WriteByte(' ')
				b.WriteString(printable(string(kv.Value)))
			}
			b.WriteByte('\n')
		}
		_, err := k.stdout.Write(b.Bytes())
		return err
	})
	if err != nil || !k.a.json() {
		return err
	}
	return printJSON(k.stdout, all)
}

// list reads the subtree prefix a page at a time, following next, and
// hands each page to fn (first: the first page, whose index is the one to
// block on for any change since: a later page's would miss a change made
// meanwhile to a key already read). q is the first page's query: with
// index and wait, only the first page blocks.
func (k *kvCmd) list(ctx context.Context, c *restclient.Client, prefix string, q url.Values, pageSize int, fn func(page api.KVListResponse, first bool) error) error {
	q.Set("prefix", "true")
	if pageSize > 0 {
		q.Set("limit", strconv.Itoa(pageSize))
	}
	start := ""
	for first := true; ; first = false {
		if start != "" {
			q.Set("start", start)
		}
		reply, err := c.Send(ctx, restclient.Request{Method: http.MethodGet, Path: withQuery(k.keyPath(prefix), q)})
		if err != nil {
			return err
		}
		var page api.KVListResponse
		if err := json.Unmarshal(reply.Body, &page); err != nil {
			return fmt.Errorf("list %s: the answer is not a page of keys: %w", prefix, err)
		}
		if err := fn(page, first); err != nil {
			return err
		}
		if page.Next == "" {
			return nil
		}
		if page.Next <= start {
			return fmt.Errorf("list %s: the server's next page starts at %q, not after %q", prefix, printable(page.Next), printable(start))
		}
		start = page.Next
		q.Del("index")
		q.Del("wait")
	}
}

func (k *kvCmd) put(ctx context.Context, pos []string) error {
	ifIndex, file := k.ifIndex, &k.file
	var err error
	key := pos[0]
	if err := checkKey(key, false); err != nil {
		return err
	}
	var value []byte
	switch {
	case len(pos) == 2 && *file != "":
		return usageError{"put: a VALUE and --file: give one"}
	case len(pos) == 1 && *file == "":
		return usageError{"put " + key + ": a VALUE is required (\"-\" reads it from stdin, --file F from a file; \"\" is the empty value)"}
	case len(pos) == 2 && pos[1] != "-":
		value = []byte(pos[1])
	default:
		src := *file
		if len(pos) == 2 {
			src = "-"
		}
		if value, err = k.readInput(src, tenants.MaxValueBytes, "the value"); err != nil {
			return err
		}
	}
	if err := k.connect(); err != nil {
		return err
	}
	q := url.Values{}
	if ifIndex.set {
		q.Set("if_index", strconv.FormatUint(ifIndex.n, 10))
	}
	reply, err := k.c.Send(ctx, restclient.Request{Method: http.MethodPut, Path: withQuery(k.keyPath(key), q),
		Body: value, ContentType: "application/octet-stream"})
	if err != nil {
		return casError("put", key, ifIndex, reply, err)
	}
	var r api.KVPutResponse
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return fmt.Errorf("put %s: the answer is not a write: %w", key, err)
	}
	if k.a.json() {
		return printJSON(k.stdout, r)
	}
	if r.KV.Version == 1 {
		_, err = fmt.Fprintf(k.stdout, "put %s: created, mod_index %d\n", key, r.KV.ModIndex)
	} else {
		_, err = fmt.Fprintf(k.stdout, "put %s: mod_index %d, version %d\n", key, r.KV.ModIndex, r.KV.Version)
	}
	return err
}

// readInput reads src ("-": stdin) whole, refusing more than limit bytes
// (what as the thing read, for the error).
func (k *kvCmd) readInput(src string, limit int64, what string) ([]byte, error) {
	r, name := k.stdin, "stdin"
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--file: %v", err)}
		}
		defer f.Close()
		r, name = f, "--file "+src
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", what, name, err)
	}
	if int64(len(b)) > limit {
		return nil, usageError{fmt.Sprintf("%s from %s: more than %d bytes, larger than any request can carry", what, name, limit)}
	}
	return b, nil
}

// casError explains a failed write: a compare that failed (exit status 3,
// with the key's mod_index now and what to do), or, when an earlier
// attempt's outcome is unknown, that the failure may be this very write's
// own doing (status 1: nothing is known to have failed).
func casError(op, key string, ifIndex optIndex, reply restclient.Response, err error) error {
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeConflict || e.Conflict == nil {
		return err
	}
	now := e.Conflict.ModIndex
	if reply.Unknown {
		return fmt.Errorf("%s %s: outcome unknown: an attempt timed out, and the retry's --if-index %d found mod_index %d, which may be that attempt's own write: check with rafting kv get %s",
			op, key, ifIndex.n, now, key)
	}
	var msg string
	switch {
	case now == 0:
		msg = fmt.Sprintf("%s does not exist: --if-index %d compares with an existing key's mod_index (--if-index 0: only if it does not exist)", key, ifIndex.n)
	case ifIndex.n == 0:
		msg = fmt.Sprintf("%s exists, at mod_index %d: --if-index 0 %ss only a key that does not exist (--if-index %d: that version)", key, now, op, now)
	default:
		msg = fmt.Sprintf("%s is at mod_index %d, not %d: written since; read it again, then --if-index %d", key, now, ifIndex.n, now)
	}
	return &exitError{exitCompareFailed, fmt.Errorf("%s %s: compare failed, nothing changed: %s", op, key, msg)}
}

func (k *kvCmd) delete(ctx context.Context, pos []string) error {
	ifIndex, prefix := k.ifIndex, &k.prefix
	key := pos[0]
	if err := checkKey(key, false); err != nil {
		if *prefix && key == "" {
			return usageError{"delete --prefix: a KEY is required: every key is not deleted at once (delete each subtree by name)"}
		}
		return err
	}
	if *prefix && ifIndex.set {
		return usageError{"delete: --prefix or --if-index: a subtree delete has no compare (use txn to delete keys under conditions)"}
	}
	if err := k.connect(); err != nil {
		return err
	}
	q := url.Values{}
	if *prefix {
		q.Set("prefix", "true")
	}
	if ifIndex.set {
		q.Set("if_index", strconv.FormatUint(ifIndex.n, 10))
	}
	reply, err := k.c.Send(ctx, restclient.Request{Method: http.MethodDelete, Path: withQuery(k.keyPath(key), q)})
	if err != nil {
		return casError("delete", key, ifIndex, reply, err)
	}
	var r api.KVDeleteResponse
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return fmt.Errorf("delete %s: the answer is not a delete: %w", key, err)
	}
	if k.a.json() {
		return printJSON(k.stdout, r)
	}
	what := key
	if *prefix {
		what = "subtree " + key
	}
	note := ""
	if r.Deleted == 0 && reply.Unknown {
		note = " (an earlier attempt timed out: it may have deleted them)"
	}
	_, err = fmt.Fprintf(k.stdout, "delete %s: %d deleted at index %d%s\n", what, r.Deleted, r.Index, note)
	return err
}

// txnResult is txn's JSON output when a compare failed (an applied
// transaction prints api.KVTxnResponse): which one, and the key's
// mod_index now.
type txnResult struct {
	Succeeded bool            `json:"succeeded"`
	Failed    *api.KVConflict `json:"failed,omitempty"`
}

func (k *kvCmd) txn(ctx context.Context, _ []string) error {
	b, err := k.readInput(k.file, api.MaxBodyBytes, "the transaction")
	if err != nil {
		return err
	}
	var t api.KVTxnRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err = dec.Decode(&t); err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		return usageError{fmt.Sprintf("txn: %v: want one JSON object {\"compare\": [{\"key\", and one of \"mod_index\", \"version\", \"exists\", \"text\", \"value\"}], \"put\": [{\"key\", \"text\" or \"value\" (base64)}], \"delete\": [{\"key\"}]}", err)}
	}
	if len(t.Compare)+len(t.Put)+len(t.Delete) == 0 {
		return usageError{"txn: the transaction is empty: give compare, put or delete"}
	}
	if err := k.connect(); err != nil {
		return err
	}
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	reply, err := k.c.Send(ctx, restclient.Request{Method: http.MethodPost, Path: k.base + ":txn", Body: body, ContentType: "application/json"})
	if err != nil {
		var e *api.Error
		if !errors.As(err, &e) || e.Code != api.CodeConflict || e.Conflict == nil || e.Conflict.Compare == nil {
			return err
		}
		i, now := *e.Conflict.Compare, e.Conflict.ModIndex
		if reply.Unknown {
			return fmt.Errorf("txn: outcome unknown: an attempt timed out, and the retry's compare[%d] failed (%s at mod_index %d now), which may be that attempt's own doing: read the keys to see",
				i, e.Conflict.Key, now)
		}
		if k.a.json() {
			if err := printJSON(k.stdout, txnResult{Failed: e.Conflict}); err != nil {
				return err
			}
		}
		state := fmt.Sprintf("is at mod_index %d", now)
		if now == 0 {
			state = "does not exist"
		}
		return &exitError{exitCompareFailed, fmt.Errorf("txn: compare[%d] failed (%s), nothing applied: %s %s",
			i, describeCompare(t.Compare, i), printable(e.Conflict.Key), state)}
	}
	var r api.KVTxnResponse
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return fmt.Errorf("txn: the answer is not a transaction's: %w", err)
	}
	if k.a.json() {
		return printJSON(k.stdout, r)
	}
	_, err = fmt.Fprintf(k.stdout, "txn: applied at index %d: %d compares held, %d puts, %d deletes\n", r.Index, len(t.Compare), len(t.Put), len(t.Delete))
	return err
}

// describeCompare is compare i as a condition ("app/x mod_index == 41"),
// escaped for the terminal (the request is the user's, but a value may
// be anything).
func describeCompare(cs []api.KVCompare, i int) string {
	if i < 0 || i >= len(cs) {
		return "unknown compare"
	}
	c := cs[i]
	key := printable(c.Key)
	switch {
	case c.ModIndex != nil:
		return fmt.Sprintf("%s mod_index == %d", key, *c.ModIndex)
	case c.Version != nil:
		return fmt.Sprintf("%s version == %d", key, *c.Version)
	case c.Exists != nil:
		return fmt.Sprintf("%s exists == %t", key, *c.Exists)
	case c.Text != nil:
		return fmt.Sprintf(`%s text == "%s"`, key, printable(*c.Text))
	default:
		return fmt.Sprintf("%s value == %d bytes", key, len(c.Value))
	}
}

// writeValue writes one key's value: escaped on a terminal (the tenant's
// bytes, never acted on by it: see printable; newlines and tabs kept, and
// a newline added), the bytes exactly as they are anywhere else, so that
// `rafting kv get KEY > FILE` and `rafting kv put KEY --file FILE` round
// trip.
func writeValue(w io.Writer, value []byte) error {
	if !isTerminal(w) {
		_, err := w.Write(value)
		return err
	}
	s := printable(string(value), '\n', '\t')
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	_, err := io.WriteString(w, s)
	return err
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

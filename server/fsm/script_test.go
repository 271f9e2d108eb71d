package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata scripts")

// TestScripts runs the state machine scripts: testdata/tenant/*.txt drive
// a tenant state machine, testdata/meta/*.txt the meta shard's.
//
// A script is a list of blocks:
//
//	<command> [args...]
//	----
//	<expected output>
//	<blank line>
//
// Commands of both: `<op> <json>` applies a command at the next index (ops
// by their wire name: register, open_session, create_tenant, move_start,
// ...); `<op>@N <json>` applies it at index N; `raw <bytes>` applies bytes
// as they are; `dump` prints the state; `snapshot` checks snapshot ->
// restore -> identical state.
//
// A tenant's: `service <name>` prints a read; `session <id>` prints what
// the leader's session manager sees; `kv`, `kvs`, `kvindex` read the
// store. Leader-only commands take their term from `"term"` like any other
// field.
//
// The meta shard's: `creds <tenant> <hash> <ms>` prints whether a token
// hash opens the tenant at a time; `restoring` prints Restoring and
// Restored. Token hashes are written in full (64 hex digits); the dump
// shows their first 8.
//
// Run with -rewrite to regenerate the expected output, then read it.
func TestScripts(t *testing.T) {
	machines := []struct {
		dir string
		new func(t *testing.T) scripted
	}{
		{"tenant", newTenantScript},
		{"meta", newMetaScript},
	}
	for _, m := range machines {
		files, err := filepath.Glob(filepath.Join("testdata", m.dir, "*.txt"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no %s scripts: %v", m.dir, err)
		}
		for _, file := range files {
			t.Run(m.dir+"/"+strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
				runScript(t, file, m.new(t))
			})
		}
	}
}

// scripted is a state machine a script drives: run applies or reads one
// command line and returns what it prints.
type scripted interface {
	run(line string) string
}

type block struct {
	comment   string // the comment lines right above the command, kept by -rewrite
	cmd, want string
	line      int
}

func parseScript(t *testing.T, file string) []block {
	f, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	sc := bufio.NewScanner(bytes.NewReader(f))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	var comment strings.Builder
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			comment.Reset() // the header's, or a comment on no command
			continue
		}
		if strings.HasPrefix(text, "#") {
			comment.WriteString(text + "\n")
			continue
		}
		b := block{comment: comment.String(), cmd: text, line: line}
		comment.Reset()
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s:%d: want ---- after the command", file, line)
		}
		line++
		var want []string
		for sc.Scan() {
			line++
			if sc.Text() == "" {
				break
			}
			want = append(want, sc.Text())
		}
		b.want = strings.Join(want, "\n")
		blocks = append(blocks, b)
	}
	return blocks
}

func runScript(t *testing.T, file string, sm scripted) {
	blocks := parseScript(t, file)
	var out strings.Builder
	failed := false
	for _, b := range blocks {
		got := strings.TrimRight(sm.run(b.cmd), "\n")
		if got != b.want {
			if !*rewrite {
				t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, b.line, b.cmd, got, b.want)
				failed = true
			}
		}
		fmt.Fprintf(&out, "%s%s\n----\n%s\n\n", b.comment, b.cmd, got)
	}
	if *rewrite && !failed {
		if err := os.WriteFile(file, []byte(header(file)+out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// header keeps a script's leading comment lines when it is rewritten.
func header(file string) string {
	f, _ := os.ReadFile(file)
	var h strings.Builder
	for _, l := range strings.SplitAfter(string(f), "\n") {
		if !strings.HasPrefix(l, "#") {
			break
		}
		h.WriteString(l)
	}
	if h.Len() > 0 {
		h.WriteString("\n")
	}
	return h.String()
}

var opByName = func() map[string]Op {
	m := map[string]Op{}
	for op, name := range opNames {
		m[name] = op
	}
	return m
}()

// tenantScript drives a tenant state machine.
type tenantScript struct {
	t     *testing.T
	sm    *Tenant
	index uint64
}

func newTenantScript(t *testing.T) scripted {
	return &tenantScript{t: t, sm: NewTenant(TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{
		MaxServices: 3, MaxInstances: 5, MaxSessions: 4, MaxMetaBytes: 64, MinTTLMs: 3000, MaxTTLMs: 60000,
	}})}
}

func (s *tenantScript) run(line string) string {
	t, sm := s.t, s.sm
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "dump":
		return sm.Dump()
	case "service":
		b, _ := json.Marshal(sm.Service(rest))
		return string(b)
	case "services":
		b, _ := json.Marshal(sm.Services())
		return string(b)
	case "usage":
		b, _ := json.Marshal(sm.Usage())
		return string(b)
	case "session":
		info, state := sm.Session(rest)
		b, _ := json.Marshal(info)
		return fmt.Sprintf("state=%d %s", state, b)
	case "releasing":
		b, _ := json.Marshal(sm.Releasing())
		return fmt.Sprintf("%s waiting=%t", b, sm.Waiting())
	case "snapshot":
		return checkSnapshot(t, sm)
	case "kv":
		// kv <key>: one key's read
		kv, ok, _ := sm.KV(rest)
		if !ok {
			return "not found"
		}
		b, _ := json.Marshal(kv.WithText())
		return string(b)
	case "kvs":
		// kvs <prefix> [start [limit]]: a subtree's read ("-" is the empty prefix)
		f := strings.Fields(rest)
		prefix, start, limit := strings.TrimPrefix(f[0], "-"), "", 100
		if len(f) > 1 {
			start = f[1]
		}
		if len(f) > 2 {
			limit, _ = strconv.Atoi(f[2])
		}
		kvs, next, _ := sm.KVList(prefix, start, limit, 1<<20)
		var b strings.Builder
		for _, kv := range kvs {
			fmt.Fprintf(&b, "%s mod=%d\n", kv.Key, kv.ModIndex)
		}
		fmt.Fprintf(&b, "next=%q", next)
		return b.String()
	case "kvindex":
		// kvindex <key> [prefix]: what a blocking read waits on ("-" is the empty prefix)
		key, prefix, _ := strings.Cut(rest, " ")
		return strconv.FormatUint(sm.KVModifyIndex(strings.TrimPrefix(key, "-"), prefix == "prefix"), 10)
	}
	cmd := scriptCommand(t, word, rest, &s.index)
	var ch Changes
	o := sm.Apply(s.index, cmd, &ch)
	sm.Notify(&ch)
	return outcomeString(o, &ch)
}

// scriptCommand encodes a script's command line (`<op>[@N] <json>`, or
// `raw <bytes>`) and moves the index to the entry's.
func scriptCommand(t *testing.T, word, rest string, index *uint64) []byte {
	if word == "raw" {
		*index++
		return []byte(rest)
	}
	name, at, hasAt := strings.Cut(word, "@")
	op, ok := opByName[name]
	if !ok {
		t.Fatalf("unknown script command %q", word)
	}
	if hasAt {
		n, err := strconv.ParseUint(at, 10, 64)
		if err != nil {
			t.Fatalf("bad index in %q", word)
		}
		*index = n
	} else {
		*index++
	}
	return append([]byte{CodecVersion, byte(op)}, rest...)
}

func outcomeString(o Outcome, ch *Changes) string {
	var b strings.Builder
	if o.Code != "" {
		fmt.Fprintf(&b, "%s: %s", o.Code, o.Message)
		if o.Quota != "" {
			fmt.Fprintf(&b, " {quota=%s limit=%d used=%d}", o.Quota, o.Limit, o.Used)
		}
	} else {
		fmt.Fprintf(&b, "ok index=%d", o.Index)
		if o.Created {
			b.WriteString(" created")
		}
	}
	if len(ch.Services) > 0 {
		names := make([]string, 0, len(ch.Services))
		for n := range ch.Services {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "\nchanged %s", strings.Join(names, " "))
	}
	for _, id := range ch.Ended {
		fmt.Fprintf(&b, "\nended %s", id)
	}
	for _, m := range ch.Masters {
		fmt.Fprintf(&b, "\nmaster %s: %s -> %s", m.Service, mvString(m.Old), mvString(m.New))
	}
	if o.KV != nil {
		fmt.Fprintf(&b, "\nkv %s create=%d mod=%d version=%d", o.KV.Key, o.KV.CreateIndex, o.KV.ModIndex, o.KV.Version)
	}
	if o.Deleted > 0 {
		fmt.Fprintf(&b, "\ndeleted %d", o.Deleted)
	}
	if c := o.Conflict; c != nil {
		fmt.Fprintf(&b, "\nconflict key=%s mod_index=%d", c.Key, c.ModIndex)
		if c.Compare != nil {
			fmt.Fprintf(&b, " compare=%d", *c.Compare)
		}
	}
	for _, c := range ch.KV {
		if c.KV == nil {
			fmt.Fprintf(&b, "\nkv-change %d delete %s", c.Index, c.Key)
		} else {
			fmt.Fprintf(&b, "\nkv-change %d put %s v%d", c.Index, c.Key, c.KV.Version)
		}
	}
	return b.String()
}

func mvString(m *MasterView) string {
	if m == nil {
		return "none"
	}
	s := fmt.Sprintf("%s(%s)", m.Instance, TokenString(m.Token))
	if m.Releasing {
		s += " releasing"
	}
	return s
}

func checkSnapshot(t *testing.T, sm *Tenant) string {
	var buf bytes.Buffer
	if err := sm.SaveSnapshot(&buf); err != nil {
		return "save: " + err.Error()
	}
	again := NewTenant(TenantInfo{})
	if err := again.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		return "restore: " + err.Error()
	}
	if a, b := sm.Dump(), again.Dump(); a != b {
		t.Errorf("restored state differs:\n%s\nwant:\n%s", b, a)
		return "differs"
	}
	s1, _ := sm.Snapshot()
	s2, _ := again.Snapshot()
	if !bytes.Equal(s1, s2) {
		return "snapshot bytes differ"
	}
	// Derived indexes must be rebuilt: every session's view is identical.
	for _, s := range sm.Sessions() {
		a, _ := json.Marshal(s)
		info, _ := again.Session(s.ID)
		b, _ := json.Marshal(info)
		if !bytes.Equal(a, b) {
			t.Errorf("session %s after restore: %s, want %s", s.ID, b, a)
		}
	}
	return "identical"
}

// metaScript drives the meta shard's state machine.
type metaScript struct {
	t     *testing.T
	m     *Meta
	index uint64
}

func newMetaScript(t *testing.T) scripted {
	return &metaScript{t: t, m: NewMeta()}
}

func (s *metaScript) run(line string) string {
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "dump":
		return s.m.Dump()
	case "snapshot":
		return checkMetaSnapshot(s.t, s.m)
	case "restoring":
		return fmt.Sprintf("restoring=%t restored=%t", s.m.Restoring(), s.m.Restored())
	case "creds":
		// creds <tenant> <hash> <ms>: whether the hash opens the tenant then
		f := strings.Fields(rest)
		if len(f) != 3 {
			s.t.Fatalf("creds wants <tenant> <hash> <ms>: %q", rest)
		}
		h, err := tenants.ParseHash(f[1])
		ms, err2 := strconv.ParseInt(f[2], 10, 64)
		if err != nil || err2 != nil {
			s.t.Fatalf("creds %q: %v %v", rest, err, err2)
		}
		c, ok := s.m.Credentials(f[0])
		return fmt.Sprintf("found=%t match=%t", ok, ok && c.Match(h, time.UnixMilli(ms)))
	}
	cmd := scriptCommand(s.t, word, rest, &s.index)
	return metaOutcomeString(s.m.Apply(s.index, cmd))
}

func metaOutcomeString(o MetaOutcome) string {
	if o.Code != "" {
		return fmt.Sprintf("%s: %s", o.Code, o.Message)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ok index=%d", o.Index)
	if o.Created {
		b.WriteString(" created")
	}
	if o.Tenant != nil {
		fmt.Fprintf(&b, " tenant=%s", o.Tenant.Name)
	}
	if o.Replica != 0 {
		fmt.Fprintf(&b, " replica=%d", o.Replica)
	}
	return b.String()
}

func checkMetaSnapshot(t *testing.T, m *Meta) string {
	var buf bytes.Buffer
	if err := m.SaveSnapshot(&buf); err != nil {
		return "save: " + err.Error()
	}
	again := NewMeta()
	if err := again.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		return "restore: " + err.Error()
	}
	if a, b := m.Dump(), again.Dump(); a != b {
		t.Errorf("restored state differs:\n%s\nwant:\n%s", b, a)
		return "differs"
	}
	if s2, _ := again.Snapshot(); !bytes.Equal(buf.Bytes(), s2) {
		return "snapshot bytes differ"
	}
	return "identical"
}

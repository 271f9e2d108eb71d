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

	"github.com/rafting/rafting/api"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata scripts")

// TestScripts runs the tenant state machine scripts of testdata/tenant/*.txt.
//
// A script is a list of blocks:
//
//	<command> [args...]
//	----
//	<expected output>
//	<blank line>
//
// Commands: `<op> <json>` applies a tenant command at the next index (ops by
// their wire name: register, open_session, expire, ...); `<op>@N <json>`
// applies it at index N; `dump` prints the state; `service <name>` prints a
// read; `session <id>` prints what the leader's session manager sees;
// `snapshot` checks snapshot -> restore -> identical state. Leader-only
// commands take their term from `"term"` like any other field.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/tenant/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScript(t, file)
		})
	}
}

type block struct {
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
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		b := block{cmd: text, line: line}
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

func runScript(t *testing.T, file string) {
	blocks := parseScript(t, file)
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{
		MaxServices: 3, MaxInstances: 5, MaxSessions: 4, MaxMetaBytes: 64, MinTTLMs: 3000, MaxTTLMs: 60000,
	}})
	var index uint64
	var out strings.Builder
	failed := false
	for _, b := range blocks {
		got := strings.TrimRight(step(t, sm, &index, b.cmd), "\n")
		if got != b.want {
			if !*rewrite {
				t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, b.line, b.cmd, got, b.want)
				failed = true
			}
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", b.cmd, got)
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

func step(t *testing.T, sm *Tenant, index *uint64, line string) string {
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
	case "raw":
		// raw <hex>: apply undecodable bytes
		*index++
		var ch Changes
		o := sm.Apply(*index, []byte(rest), &ch)
		return outcomeString(o, &ch)
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
	cmd := append([]byte{CodecVersion, byte(op)}, rest...)
	var ch Changes
	o := sm.Apply(*index, cmd, &ch)
	sm.Notify(&ch)
	return outcomeString(o, &ch)
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

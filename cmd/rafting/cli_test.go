package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/servertest"
	"github.com/spf13/cobra"
)

// commandPaths is every command of the tree, as the words after
// "rafting" (cobra's help command aside).
func commandPaths() [][]string {
	var paths [][]string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasParent() {
			paths = append(paths, strings.Fields(c.CommandPath())[1:])
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk((&app{}).root())
	return paths
}

// TestHelpExitsZero: -h, --help and `rafting help` on every command of
// the tree print help on stdout and succeed; a command line that is not
// one is a usage error, whose text shows the usage.
func TestHelpExitsZero(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 25 {
		t.Fatalf("the tree has %d commands: %v", len(paths), paths)
	}
	argss := [][]string{{"help"}, {"--help"}, {"-h"}, {"tenant", "help"}, {"kv", "help"}, {"cluster", "help"}}
	for _, p := range paths {
		argss = append(argss, append(slices.Clone(p), "--help"), append(slices.Clone(p), "-h"), append([]string{"help"}, p...))
	}
	for _, args := range argss {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); err != nil {
			t.Errorf("rafting %s = %v, want help and success", strings.Join(args, " "), err)
			continue
		}
		if !strings.Contains(stdout.String(), "Usage:") || stderr.Len() != 0 {
			t.Errorf("rafting %s: stdout %q, stderr %q; want help on stdout", strings.Join(args, " "), stdout.String(), stderr.String())
		}
	}
	for _, tt := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{}, "a command is required"},
		{[]string{"frobnicate", "--help"}, `unknown command "frobnicate"`},
		{[]string{"dev", "--no-such-flag"}, "--api-ports"},
		{[]string{"tenant"}, "create"},
		{[]string{"tenant", "frob"}, `unknown command "frob"`},
		{[]string{"tenant", "show"}, "NAME"},
		{[]string{"tenant", "show", "a", "b"}, "NAME"},
		{[]string{"kv", "get", "a", "b"}, "KEY"},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh"`},
		{[]string{"version", "extra"}, "version"},
		{[]string{"version", "-o", "yaml"}, "want table or json"},
		{[]string{"cluster", "transfer-leader"}, "--from"},
	} {
		var out bytes.Buffer
		err := run(tt.args, &out, &out)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
			t.Errorf("rafting %s = %v, want a usage error saying %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestVersion: rafting version prints the build, -o json as api.Build.
func TestVersion(t *testing.T) {
	want := server.Build()
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, &out); err != nil || !strings.Contains(out.String(), "rafting "+want.Version+"\n") ||
		!strings.Contains(out.String(), "go "+want.GoVersion+"\n") || !strings.Contains(out.String(), "commit ") {
		t.Fatalf("rafting version = %v\n%s", err, out.String())
	}
	out.Reset()
	var got api.Build
	if err := run([]string{"version", "-o", "json"}, &out, &out); err != nil || json.Unmarshal(out.Bytes(), &got) != nil || got != want {
		t.Fatalf("rafting version -o json = %v, %+v; want %+v\n%s", err, got, want, out.String())
	}
	if err := run([]string{"version", "-o", "yaml"}, &out, &out); !errors.As(err, new(usageError)) {
		t.Fatalf("rafting version -o yaml = %v, want a usage error", err)
	}
}

// TestCompletion: cobra's scripts for every shell generate, parse in
// their shells where installed, and the bash one, sourced in a real bash,
// completes commands, subcommands and a command's flags by asking the
// binary (`rafting __complete ...`).
func TestCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t, binPkg)
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		s, err := exec.Command(bin, "completion", shell).Output()
		if err != nil || !bytes.Contains(s, []byte("rafting")) {
			t.Fatalf("rafting completion %s = %v\n%s", shell, err, s)
		}
		file := filepath.Join(dir, "rafting."+shell)
		if err := os.WriteFile(file, s, 0o600); err != nil {
			t.Fatal(err)
		}
		if shell == "powershell" {
			continue
		}
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s not installed: its script's syntax is not checked", shell)
			continue
		}
		if out, err := exec.Command(shell, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s script: %v\n%s", shell, shell, err, out)
		}
	}
	if err := exec.Command(bin, "completion", "tcsh").Run(); err == nil {
		t.Error("rafting completion tcsh succeeded")
	}

	// A NAME completes from the cluster, asked with the command's flags.
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	acme := c.CreateTenant("acme", api.Quotas{})
	c.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/web-1", api.RegisterRequest{Address: "127.0.0.1:8080"})
	for _, tt := range []struct {
		args []string
		want string // "": nothing
	}{
		{[]string{"tenant", "show", "--servers", c.Addr(1), "--token", servertest.AdminToken, ""}, "acme"},
		{[]string{"tenant", "delete", "--servers", c.Addr(1), "--token", servertest.AdminToken, "x"}, ""},
		{[]string{"service", "show", "--tenant", "acme", "--servers", c.Addr(1), "--token", acme, "w"}, "web"},
		{[]string{"tenant", "show", "--servers", servertest.FreePort(t), "--token", servertest.AdminToken, ""}, ""},
	} {
		out, err := exec.Command(bin, append([]string{"__complete"}, tt.args...)...).Output()
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(l, ":") {
				names = append(names, l)
			}
		}
		if err != nil || strings.Join(names, " ") != tt.want {
			t.Errorf("rafting __complete %s = %v %q, want %q", strings.Join(tt.args, " "), err, names, tt.want)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	tests := []struct {
		words []string // the command line, the last word being completed
		want  string   // one of the completions
	}{
		{[]string{"ten"}, "tenant"},
		{[]string{""}, "completion"},
		{[]string{"tenant", "de"}, "delete"},
		{[]string{"kv", ""}, "watch"},
		{[]string{"tenant", "delete", "acme", "--ser"}, "--servers"},
		{[]string{"dev", "--log-f"}, "--log-format"},
		{[]string{"restore", "-o", "json", "--ep"}, "--epoch-gap"},
		{[]string{"kv", "get", "--pre"}, "--prefix"},
	}
	// Without the bash-completion package, _get_comp_words_by_ref is
	// the plain split of the line.
	const complete = `source "$1"; shift
declare -F _get_comp_words_by_ref >/dev/null || _get_comp_words_by_ref() {
	cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
}
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
__start_rafting
printf '%s\n' "${COMPREPLY[@]}"`
	for _, tt := range tests {
		cmd := exec.Command("bash", "-c", complete, "bash", filepath.Join(dir, "rafting.bash"))
		cmd.Args = append(cmd.Args, append([]string{bin}, tt.words...)...)
		out, err := cmd.CombinedOutput()
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == tt.want {
				found = true
			}
		}
		if err != nil || !found {
			t.Errorf("bash completion of %q = %v %q, want %s among them", tt.words, err, out, tt.want)
		}
	}
}

// TestCLIProcess: the real binary's exit codes and streams — dev --help
// exits 0 with the help on stdout; a bad flag exits 2; --log-format json
// makes every line a server writes on stderr a JSON object.
func TestCLIProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := proctest.Build(t, binPkg)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "dev", "--help")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "-api-ports") || !strings.Contains(stdout.String(), "-log-format") {
		t.Errorf("rafting dev --help = %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	err := exec.Command(bin, "dev", "--no-such-flag").Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("rafting dev --no-such-flag = %v, want exit status 2", err)
	}
	if err := exec.Command(bin, "server", "--data", t.TempDir(), "--log-format", "xml").Run(); err == nil {
		t.Error("rafting server --log-format xml succeeded")
	}

	c := proctest.StartClusterWith(t, proctest.Options{Servers: 1, RTT: 20 * time.Millisecond, Args: []string{"--log-format", "json", "--log-level", "info"}})
	s := c.Servers[0]
	stop(t, s.Proc)
	started := false
	for _, line := range strings.Split(strings.TrimSpace(s.Log()), "\n") {
		var rec struct {
			Time  time.Time `json:"time"`
			Level string    `json:"level"`
			Msg   string    `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Time.IsZero() || rec.Level == "" || rec.Msg == "" {
			t.Errorf("a server log line is not a JSON record (%v): %s", err, line)
			continue
		}
		started = started || rec.Msg == "rafting server started"
	}
	if !started {
		t.Errorf("no JSON line says the server started:\n%s", s.Log())
	}
}

// jsonElsewhere are the commands whose -o json another test checks, or
// that print no result.
var jsonElsewhere = map[string]string{
	"server":                "no result: its logs take --log-format json (TestCLIProcess)",
	"dev":                   "TestDevRestartKeepsState",
	"kv watch":              "one JSON object a line: TestKVCLI",
	"completion":            "a shell script",
	"completion bash":       "a shell script",
	"completion zsh":        "a shell script",
	"completion fish":       "a shell script",
	"completion powershell": "a shell script",
}

// TestJSONEveryCommand: every command of the tree that prints a result
// prints it as JSON with -o json (a command this test does not run, and
// jsonElsewhere does not name, fails it); restore tells on stderr what it
// waits for, every restoreProgress, and when it is done.
func TestJSONEveryCommand(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	acme := old.CreateTenant("acme", api.Quotas{})
	old.CreateTenant("gone", api.Quotas{})
	old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/web-1", api.RegisterRequest{Address: "127.0.0.1:8080"})
	file := filepath.Join(t.TempDir(), "rafting.backup")
	c := servertest.Start(t, servertest.Options{})

	ran := map[string]bool{}
	cli := func(c *servertest.Cluster, stdin string, stderr *syncBuffer, args ...string) (string, error) {
		var out bytes.Buffer
		args = append(args, "-o", "json")
		if args[0] != "version" {
			args = append(args, "--servers", strings.Join(c.Addrs(), ","), "--token", servertest.AdminToken)
		}
		err := execute(context.Background(), args, strings.NewReader(stdin), &out, stderr)
		return out.String(), err
	}
	tests := []struct {
		path    string // the command, as commandPaths has it
		c       *servertest.Cluster
		args    []string
		stdin   string
		check   func(out string) bool // nil: any JSON value
		wantErr bool                  // a failed compare prints its JSON too
	}{
		{path: "tenant create", args: []string{"beta"}, check: func(out string) bool {
			var t api.Tenant
			return json.Unmarshal([]byte(out), &t) == nil && t.Name == "beta" && t.Token != ""
		}},
		{path: "tenant list"},
		{path: "tenant show", args: []string{"acme"}},
		{path: "tenant update", args: []string{"beta", "--max-keys", "10"}},
		{path: "tenant rotate-token", args: []string{"beta"}},
		{path: "tenant revoke-previous", args: []string{"beta"}},
		{path: "tenant delete", args: []string{"gone"}, check: func(out string) bool {
			var del struct {
				Tenant  string `json:"tenant"`
				Deleted bool   `json:"deleted"`
			}
			return json.Unmarshal([]byte(out), &del) == nil && del.Tenant == "gone" && del.Deleted
		}},
		{path: "service list", args: []string{"--tenant", "acme"}},
		{path: "service show", args: []string{"web", "--tenant", "acme"}, check: func(out string) bool {
			var s api.ServiceResponse
			return json.Unmarshal([]byte(out), &s) == nil && len(s.Instances) == 1
		}},
		{path: "kv put", args: []string{"app/x", "1", "--tenant", "acme"}},
		{path: "kv get", args: []string{"app/x", "--tenant", "acme"}},
		{path: "kv get", args: []string{"--prefix", "app", "--tenant", "acme"}},
		{path: "kv txn", args: []string{"--tenant", "acme"}, stdin: `{"put": [{"key": "app/y", "text": "2"}]}`},
		{path: "kv txn", args: []string{"--tenant", "acme"}, stdin: `{"compare": [{"key": "app/y", "mod_index": 1}], "put": [{"key": "app/z", "text": "3"}]}`, wantErr: true},
		{path: "kv delete", args: []string{"app/x", "--tenant", "acme"}},
		{path: "cluster", check: func(out string) bool {
			var cl api.Cluster
			return json.Unmarshal([]byte(out), &cl) == nil && len(cl.Nodes) == 3
		}},
		{path: "cluster transfer-leader", args: []string{"--tenant", "acme"}},
		{path: "backup"},
		{path: "backup", args: []string{"-f", file}, check: func(out string) bool {
			var bk backupResult
			return json.Unmarshal([]byte(out), &bk) == nil && bk.File == file && bk.Tenants == 2 && bk.Index != 0
		}},
		{path: "restore", c: c, args: []string{"-f", file}, check: func(out string) bool {
			var res api.RestoreResponse
			return json.Unmarshal([]byte(out), &res) == nil && res.Tenants == 2
		}},
		{path: "cluster remove", args: []string{"3"}, check: func(out string) bool {
			var cl api.Cluster
			return json.Unmarshal([]byte(out), &cl) == nil && slices.Contains(cl.Removed, 3)
		}},
		{path: "version"},
	}
	defer func(p time.Duration) { restoreProgress = p }(restoreProgress)
	restoreProgress = time.Millisecond
	var restoreStderr syncBuffer
	for _, tt := range tests {
		cl := cmp.Or(tt.c, old)
		stderr := new(syncBuffer)
		if tt.path == "restore" {
			stderr = &restoreStderr
		}
		args := append(strings.Fields(tt.path), tt.args...)
		out, err := cli(cl, tt.stdin, stderr, args...)
		if (err != nil) != tt.wantErr || !json.Valid([]byte(out)) || (tt.check != nil && !tt.check(out)) {
			t.Errorf("rafting %s -o json = %v\n%s", strings.Join(args, " "), err, out)
		}
		ran[tt.path] = true
	}
	for _, p := range commandPaths() {
		name := strings.Join(p, " ")
		if len(p) > 0 && (p[0] == "tenant" || p[0] == "service" || p[0] == "kv") && len(p) == 1 {
			continue // a group
		}
		if !ran[name] && jsonElsewhere[name] == "" {
			t.Errorf("rafting %s -o json: not checked", name)
		}
	}

	progress := restoreStderr.String()
	for _, want := range []string{"restore: sending " + file + " (2 tenants, ", "restore: still writing, ", "restore: done in "} {
		if !strings.Contains(progress, want) {
			t.Errorf("restore's stderr lacks %q:\n%s", want, progress)
		}
	}
	if strings.Index(progress, "restore: done in ") < strings.LastIndex(progress, "restore: still writing") {
		t.Errorf("restore wrote progress after it was done:\n%s", progress)
	}
}

// TestVersionOfMakeBuild: the binary `make build` makes (the one `make
// run` runs) says the VERSION and COMMIT it was given and its Go: the
// Makefile's -X flags name variables that exist (the linker ignores one
// that does not, silently, and TestVersion runs a binary built without
// them).
func TestVersionOfMakeBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed")
	}
	dir := t.TempDir()
	const version, commit = "v9.8.7-make-test", "0123456789abcdef0123456789abcdef01234567"
	if out, err := exec.Command(mk, "-s", "-C", "../..", "build", "BIN="+dir, "VERSION="+version, "COMMIT="+commit).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "rafting"), "version").Output()
	want := fmt.Sprintf("rafting %s\ncommit %s\ngo %s\nstate version %d\n", version, commit, runtime.Version(), server.StateVersion)
	if err != nil || string(out) != want {
		t.Errorf("rafting version of make build = %v\n%s\nwant\n%s", err, out, want)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/servertest"
)

// TestHelpExitsZero: -h and --help on every command and subcommand of the
// completion tree print help on stdout and succeed; the tree has no name
// run does not know (an unknown one is refused).
func TestHelpExitsZero(t *testing.T) {
	var argss [][]string
	for _, c := range commands {
		argss = append(argss, []string{c.name, "--help"}, []string{c.name, "-h"})
		for _, sub := range c.subs {
			if c.name != "completion" {
				argss = append(argss, []string{c.name, sub, "--help"})
			}
		}
	}
	argss = append(argss, []string{"help"}, []string{"--help"})
	for _, args := range argss {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); err != nil {
			t.Errorf("rafting %s = %v, want help and success", strings.Join(args, " "), err)
			continue
		}
		if stdout.Len() == 0 || stderr.Len() != 0 {
			t.Errorf("rafting %s: stdout %q, stderr %q; want help on stdout", strings.Join(args, " "), stdout.String(), stderr.String())
		}
	}
	for _, c := range commands {
		if !strings.Contains(usage, "\n  "+c.name+" ") {
			t.Errorf("rafting's usage does not list %s", c.name)
		}
	}
	var out bytes.Buffer
	if err := run([]string{"frobnicate", "--help"}, &out, &out); !errors.As(err, new(usageError)) {
		t.Errorf("rafting frobnicate --help = %v, want a usage error", err)
	}
	if err := run([]string{"dev", "--no-such-flag"}, &out, &out); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "-api-ports") {
		t.Errorf("rafting dev --no-such-flag = %v, want a usage error with the flags", err)
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

// TestCompletion: the bash script, sourced in a real bash, completes
// commands, subcommands and a command's flags (asked of the binary); the
// zsh and fish scripts parse in their shells where installed.
func TestCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t, binPkg)
	script := func(shell string) string {
		b, err := exec.Command(bin, "completion", shell).Output()
		if err != nil {
			t.Fatalf("rafting completion %s: %v", shell, err)
		}
		return string(b)
	}
	if err := exec.Command(bin, "completion", "tcsh").Run(); err == nil {
		t.Error("rafting completion tcsh succeeded")
	}
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		s := script(shell)
		for _, c := range commands {
			if !strings.Contains(s, c.name) {
				t.Errorf("the %s script lacks %s", shell, c.name)
			}
		}
		file := filepath.Join(dir, "rafting."+shell)
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s not installed: its script's syntax is not checked", shell)
			continue
		}
		if out, err := exec.Command(shell, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s script: %v\n%s", shell, shell, err, out)
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
	}
	for _, tt := range tests {
		words := append([]string{bin}, tt.words...)
		cmd := exec.Command("bash", "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _rafting; printf '%s\n' "${COMPREPLY[@]}"`,
			"bash", filepath.Join(dir, "rafting.bash"))
		cmd.Args = append(cmd.Args, words...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains("\n"+string(out), "\n"+tt.want+"\n") {
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

// TestJSONResults: the commands that print a result print it as JSON with
// -o json (tenant delete, backup -f), and restore tells on stderr what it
// waits for, every restoreProgress, and when it is done.
func TestJSONResults(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	old.CreateTenant("acme", api.Quotas{})
	old.CreateTenant("gone", api.Quotas{})
	cli := func(c *servertest.Cluster, stderr *syncBuffer, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append(args, "--servers", strings.Join(c.Addrs(), ","), "--token", servertest.AdminToken), &out, stderr)
		return out.String(), err
	}
	var stderr syncBuffer
	out, err := cli(old, &stderr, "tenant", "delete", "gone", "-o", "json")
	var del struct {
		Tenant  string `json:"tenant"`
		Deleted bool   `json:"deleted"`
	}
	if err != nil || json.Unmarshal([]byte(out), &del) != nil || del.Tenant != "gone" || !del.Deleted {
		t.Fatalf("tenant delete -o json = %v\n%s", err, out)
	}
	if out, err := cli(old, &stderr, "tenant", "delete", "gone"); err != nil || out != "tenant gone deleted\n" {
		t.Fatalf("tenant delete (again, table) = %v %q", err, out)
	}

	file := filepath.Join(t.TempDir(), "rafting.backup")
	out, err = cli(old, &stderr, "backup", "-f", file, "-o", "json")
	var bk backupResult
	if err != nil || json.Unmarshal([]byte(out), &bk) != nil || bk.File != file || bk.Tenants != 1 || bk.Index == 0 {
		t.Fatalf("backup -f -o json = %v %+v\n%s", err, bk, out)
	}

	defer func(p time.Duration) { restoreProgress = p }(restoreProgress)
	restoreProgress = time.Millisecond
	c := servertest.Start(t, servertest.Options{})
	var rstderr syncBuffer
	out, err = cli(c, &rstderr, "restore", "-f", file, "-o", "json")
	var res api.RestoreResponse
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Tenants != 1 {
		t.Fatalf("restore -o json = %v\n%s", err, out)
	}
	progress := rstderr.String()
	for _, want := range []string{"restore: sending " + file + " (1 tenants, ", "restore: still writing, ", "restore: done in "} {
		if !strings.Contains(progress, want) {
			t.Errorf("restore's stderr lacks %q:\n%s", want, progress)
		}
	}
	if strings.Index(progress, "restore: done in ") < strings.LastIndex(progress, "restore: still writing") {
		t.Errorf("restore wrote progress after it was done:\n%s", progress)
	}
}

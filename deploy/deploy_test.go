// Package deploy_test checks deploy/ on a machine without Docker: the
// image's build step (build.sh) makes a static binary that runs, the
// Dockerfile has the shape docs/DEPLOY.md promises, certs.sh makes
// certificates that compose.yaml's three nodes accept — their commands
// run here as processes on loopback and form a TLS cluster — and the
// systemd unit passes systemd-analyze (when it is installed).
package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server/ui"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildOut  []byte
	buildErr  error
)

// built runs build.sh once, as the Dockerfile's build stage does.
func built(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rafting-deploy-build-*")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("sh", "build.sh", buildDir)
		cmd.Env = append(os.Environ(), "VERSION=deploy-test", "COMMIT=0123abc")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("sh build.sh: %v\n%s", buildErr, buildOut)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestBuildScript: the image's build step makes a static binary (no
// program interpreter, no shared library: it runs in an image with no
// libc) stamped with VERSION, and the data dir the volume starts from.
func TestBuildScript(t *testing.T) {
	dir := built(t)
	bin := filepath.Join(dir, "rafting")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not static", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v): not static", bin, libs, err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deploy-test") || !strings.Contains(string(out), "0123abc") {
		t.Errorf("rafting version = %q, %v; want the VERSION and COMMIT build.sh was given", out, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "var/lib/rafting")); err != nil || st.Mode().Perm() != 0o700 || !st.IsDir() {
		t.Errorf("var/lib/rafting: %v %v; want a directory, mode 0700", st, err)
	}
}

// instruction is one line of a Dockerfile.
type instruction struct {
	op, args string
}

// stages reads a Dockerfile into its stages (continuation lines joined,
// comments dropped); what comes before the first FROM is stage -1's.
func stages(t *testing.T, file string) (pre []instruction, st [][]instruction) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var line string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			line += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		line += l
		op, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(op), strings.TrimSpace(args)}
		line = ""
		switch {
		case in.op == "FROM":
			st = append(st, []instruction{in})
		case len(st) == 0:
			pre = append(pre, in)
		default:
			st[len(st)-1] = append(st[len(st)-1], in)
		}
	}
	return pre, st
}

// TestDockerfile: multi-stage; the build stage is the Go of go.mod and runs
// build.sh; the image is distroless (no shell: nothing RUN in it), runs as
// a numeric user that is not root, holds the binary and the data volume,
// and starts `rafting server` in exec form.
func TestDockerfile(t *testing.T) {
	pre, st := stages(t, "Dockerfile")
	if len(st) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and the image", len(st))
	}
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	var goVersion string
	for _, in := range pre {
		if v, ok := strings.CutPrefix(in.args, "GO_VERSION="); in.op == "ARG" && ok {
			goVersion = v
		}
	}
	if want == nil || goVersion != string(want[1]) {
		t.Errorf("ARG GO_VERSION=%s, want go.mod's go %s", goVersion, want[1])
	}
	build := st[0]
	if !strings.HasPrefix(build[0].args, "golang:${GO_VERSION}") || !strings.HasSuffix(build[0].args, " AS build") {
		t.Errorf("build stage %q, want FROM golang:${GO_VERSION}-... AS build", build[0].args)
	}
	runsScript := false
	for _, in := range build {
		if in.op == "RUN" && strings.Contains(in.args, "deploy/build.sh") {
			runsScript = true
		}
	}
	if !runsScript {
		t.Error("the build stage does not RUN deploy/build.sh, the step make test checks")
	}
	final := st[len(st)-1]
	if base := final[0].args; !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("image FROM %s, want distroless/static or scratch", base)
	}
	var user, entry string
	var copied, volume bool
	for _, in := range final[1:] {
		switch in.op {
		case "RUN":
			t.Errorf("the image stage RUNs %q: it has no shell", in.args)
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "COPY":
			copied = copied || strings.Contains(in.args, "--from=build /out/rafting ")
		case "VOLUME":
			volume = strings.Contains(in.args, "/var/lib/rafting")
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q, want a numeric user that is not root", user)
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) != 2 || argv[1] != "server" {
		t.Errorf("ENTRYPOINT %s, want the exec form [\"/usr/local/bin/rafting\", \"server\"]", entry)
	}
	if !copied || !volume {
		t.Errorf("the image copies the binary: %v, declares the /var/lib/rafting volume: %v", copied, volume)
	}
}

// compose is the part of compose.yaml this test reads.
type compose struct {
	Services map[string]struct {
		Hostname        string   `yaml:"hostname"`
		Image           string   `yaml:"image"`
		Command         []string `yaml:"command"`
		Ports           []string `yaml:"ports"`
		Volumes         []string `yaml:"volumes"`
		ReadOnly        bool     `yaml:"read_only"`
		CapDrop         []string `yaml:"cap_drop"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
		Build           struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestCompose: compose.yaml parses; its three nodes build this Dockerfile,
// run read-only with no capabilities, give a stop more time than the
// leadership hand-off, name each other consistently, serve TLS on the API
// and mutual TLS on Raft from the files certs.sh makes, publish the API on
// loopback only; and their commands, run here as processes (host names and
// ports mapped to free loopback ports, mounts to temporary files), form a
// TLS cluster of three that serves /ui, and stop gracefully in time.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml does not parse: %v", err)
	}
	names := []string{"rafting-1", "rafting-2", "rafting-3"}
	if len(c.Services) != 3 {
		t.Fatalf("compose.yaml has %d services, want 3", len(c.Services))
	}
	initial := "1=rafting-1:7071,2=rafting-2:7071,3=rafting-3:7071"
	for i, name := range names {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("compose.yaml has no service %s", name)
		}
		flags := map[string]string{}
		for _, a := range s.Command {
			k, v, _ := strings.Cut(a, "=")
			flags[k] = v
		}
		wantFlags := map[string]string{
			"--id": strconv.Itoa(i + 1), "--raft": name + ":7071", "--advertise-api": name + ":7070",
			"--initial-cluster": initial, "--data": "/var/lib/rafting",
			"--tls-cert": "/etc/rafting/node.crt", "--tls-key": "/etc/rafting/node.key",
			"--peer-ca": "/etc/rafting/ca.crt", "--peer-cert": "/etc/rafting/node.crt", "--peer-key": "/etc/rafting/node.key",
			"--admin-token-file": "/etc/rafting/admin.token",
		}
		for k, v := range wantFlags {
			if flags[k] != v {
				t.Errorf("%s: %s=%q, want %q", name, k, flags[k], v)
			}
		}
		if _, insecure := flags["--insecure"]; insecure {
			t.Errorf("%s runs --insecure", name)
		}
		if s.Hostname != name || s.Build.Dockerfile != "deploy/Dockerfile" || s.Build.Context != ".." {
			t.Errorf("%s: hostname %q, build %+v; want its name, deploy/Dockerfile from ..", name, s.Hostname, s.Build)
		}
		if !s.ReadOnly || len(s.CapDrop) != 1 || s.CapDrop[0] != "ALL" {
			t.Errorf("%s: read_only %v, cap_drop %v; want read-only, no capabilities", name, s.ReadOnly, s.CapDrop)
		}
		if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d < 30*time.Second {
			t.Errorf("%s: stop_grace_period %q, want well above the hand-off (>= 30s)", name, s.StopGracePeriod)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
		}
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			mounts[parts[1]] = parts[0]
		}
		wantMounts := map[string]string{"/etc/rafting/ca.crt": "./certs/ca.crt", "/etc/rafting/node.crt": "./certs/" + name + ".crt",
			"/etc/rafting/node.key": "./certs/" + name + ".key", "/etc/rafting/admin.token": "./certs/admin.token",
			"/var/lib/rafting": fmt.Sprintf("data-%d", i+1)}
		for k, v := range wantMounts {
			if mounts[k] != v {
				t.Errorf("%s mounts %q at %s, want %q", name, mounts[k], k, v)
			}
		}
	}
	if t.Failed() {
		return
	}

	// Run them: certificates as the docs make them, each command as a
	// process on loopback.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: certs.sh needs it")
	}
	bin := filepath.Join(built(t), "rafting")
	tmp := t.TempDir()
	certs := filepath.Join(tmp, "certs")
	if out, err := exec.Command("sh", "certs.sh", certs).CombinedOutput(); err != nil {
		t.Fatalf("sh certs.sh: %v\n%s", err, out)
	}
	ports := map[string]string{} // "rafting-1:7070" -> a free loopback host:port
	for _, name := range append(names, "rafting-4") {
		for _, p := range []string{"7070", "7071"} {
			ports[name+":"+p] = proctest.FreePort(t)
		}
	}
	hostPort := regexp.MustCompile(`(rafting-\d|0\.0\.0\.0):(\d+)`)
	_, st := stages(t, "Dockerfile")
	var entry []string
	for _, in := range st[len(st)-1] {
		if in.op == "ENTRYPOINT" {
			_ = json.Unmarshal([]byte(in.args), &entry)
		}
	}
	// start runs a service's command as the image would (its ENTRYPOINT),
	// its host names and ports mapped to loopback, its mounts to files here.
	start := func(name string, command, volumes []string) *proctest.Proc {
		mounts := map[string]string{}
		for _, v := range volumes {
			parts := strings.Split(v, ":")
			src := parts[0]
			if rest, ok := strings.CutPrefix(src, "./certs/"); ok {
				src = filepath.Join(certs, rest)
			} else {
				src = filepath.Join(tmp, src) // a named volume
				if err := os.MkdirAll(src, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			mounts[parts[1]] = src
		}
		args := append([]string{}, entry[1:]...)
		for _, a := range command {
			k, v, _ := strings.Cut(a, "=")
			v = hostPort.ReplaceAllStringFunc(v, func(hp string) string {
				host, port, _ := strings.Cut(hp, ":")
				if host == "0.0.0.0" {
					host = name
				}
				return ports[host+":"+port]
			})
			if m, ok := mounts[v]; ok {
				v = m
			}
			args = append(args, k+"="+v)
		}
		return proctest.Start(t, name, bin, nil, args...)
	}
	procs := map[string]*proctest.Proc{}
	for _, name := range names {
		procs[name] = start(name, c.Services[name].Command, c.Services[name].Volumes)
	}

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("ca.crt: %v", err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	token, err := os.ReadFile(filepath.Join(certs, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string) (int, []byte, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, []byte(err.Error()), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header
	}
	ready := func(name string) {
		t.Helper()
		url := "https://" + ports[name+":7070"] + "/readyz"
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body, _ := get(url)
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready over TLS after 60 s: %d %s\n%s", name, code, body, procs[name].Stderr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, name := range names {
		ready(name)
	}
	var cl api.Cluster
	code, body, _ := get("https://" + ports["rafting-2:7070"] + "/v1/cluster")
	if code != http.StatusOK || json.Unmarshal(body, &cl) != nil || len(cl.Nodes) != 3 {
		t.Fatalf("GET /v1/cluster over TLS = %d %s; want three nodes", code, body)
	}
	for _, n := range cl.Nodes {
		if want := ports[fmt.Sprintf("rafting-%d:7070", n.ID)]; n.APIAddress != want {
			t.Errorf("node %d's API address %s, want %s (its --advertise-api)", n.ID, n.APIAddress, want)
		}
	}
	if code, _, h := get("https://" + ports["rafting-3:7070"] + "/ui"); code != http.StatusOK || h.Get("Content-Security-Policy") != ui.CSP {
		t.Errorf("GET /ui over TLS = %d, CSP %q", code, h.Get("Content-Security-Policy"))
	}
	// The dashboard's feed streams over HTTP/2, as a browser asks for it
	// over TLS.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	feedReq, _ := http.NewRequest(http.MethodGet, "https://"+ports["rafting-2:7070"]+"/ui/events", nil)
	feedReq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if resp, err := h2.Do(feedReq); err != nil {
		t.Errorf("GET /ui/events over TLS: %v", err)
	} else {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || line != "event: hello\n" {
			t.Errorf("GET /ui/events over TLS = %s %d, first line %q; want HTTP/2, 200, the hello event", resp.Proto, resp.StatusCode, line)
		}
		resp.Body.Close()
	}
	h2.CloseIdleConnections()
	// Plain HTTP is not served on the API port.
	if resp, err := http.Get("http://" + ports["rafting-1:7070"] + "/readyz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("the API answers plain HTTP")
		}
		resp.Body.Close()
	}

	// Adding a node as docs/DEPLOY.md says: a certificate for it (the CA
	// kept), rafting-3's service with --id=4, its own files and volume, and
	// --join=rafting-1:7070 in place of --initial-cluster.
	if out, err := exec.Command("sh", "certs.sh", certs, "rafting-4").CombinedOutput(); err != nil {
		t.Fatalf("sh certs.sh DIR rafting-4: %v\n%s", err, out)
	}
	var command, volumes []string
	for _, a := range c.Services["rafting-3"].Command {
		switch {
		case a == "--id=3":
			a = "--id=4"
		case strings.HasPrefix(a, "--initial-cluster="):
			a = "--join=rafting-1:7070"
		}
		command = append(command, strings.ReplaceAll(a, "rafting-3", "rafting-4"))
	}
	for _, v := range c.Services["rafting-3"].Volumes {
		volumes = append(volumes, strings.ReplaceAll(strings.ReplaceAll(v, "rafting-3", "rafting-4"), "data-3", "data-4"))
	}
	procs["rafting-4"] = start("rafting-4", command, volumes)
	ready("rafting-4")
	code, body, _ = get("https://" + ports["rafting-1:7070"] + "/v1/cluster")
	if code != http.StatusOK || json.Unmarshal(body, &cl) != nil || len(cl.Nodes) != 4 {
		t.Fatalf("after rafting-4 joined, GET /v1/cluster = %d %s; want four nodes", code, body)
	}
	// And removing it: asked of another node, it answers once the others
	// applied it; the removed node learns it and exits on its own.
	req, _ := http.NewRequest(http.MethodDelete, "https://"+ports["rafting-1:7070"]+"/v1/cluster/nodes/4", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("DELETE /v1/cluster/nodes/4: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("DELETE /v1/cluster/nodes/4 = %d", resp.StatusCode)
	}
	select {
	case <-procs["rafting-4"].Exited():
	case <-time.After(60 * time.Second):
		t.Errorf("the removed rafting-4 still runs 60 s after its removal")
	}
	code, body, _ = get("https://" + ports["rafting-2:7070"] + "/v1/cluster")
	if code != http.StatusOK || json.Unmarshal(body, &cl) != nil || len(cl.Nodes) != 3 {
		t.Errorf("after rafting-4's removal, GET /v1/cluster = %d %s; want three nodes", code, body)
	}

	// A stop is graceful and ends well within stop_grace_period (and the
	// unit's TimeoutStopSec): the leaderships are handed over first.
	for _, name := range names {
		start := time.Now()
		if !procs[name].Stop(60 * time.Second) {
			t.Errorf("%s did not stop within 60 s of SIGTERM", name)
		} else if err := procs[name].ExitErr(); err != nil {
			t.Errorf("%s stopped with %v after SIGTERM, want status 0", name, err)
		}
		t.Logf("%s stopped %v after SIGTERM", name, time.Since(start).Round(time.Millisecond))
	}
}

// TestSystemdUnit: rafting.service passes systemd-analyze verify, its
// exposure under systemd-analyze security is low, and it keeps what
// docs/DEPLOY.md promises: its own user, ProtectSystem=strict, the data dir
// writable, a restart policy, and a stop timeout above the hand-off.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("rafting.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	one := func(k string) string {
		if v := keys[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for k, want := range map[string]string{"User": "rafting", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/rafting",
		"StateDirectory": "rafting", "Restart": "on-failure", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "KillSignal": "SIGTERM"} {
		if _, ok := keys[k]; !ok || one(k) != want {
			t.Errorf("%s=%q (set: %v), want %q", k, one(k), ok, want)
		}
	}
	if d, err := time.ParseDuration(one("TimeoutStopSec") + "s"); err != nil || d < 30*time.Second {
		t.Errorf("TimeoutStopSec=%s, want well above the leadership hand-off (>= 30)", one("TimeoutStopSec"))
	}
	if !strings.Contains(one("ExecStart"), "--data /var/lib/rafting") {
		t.Errorf("ExecStart=%s does not use the data dir it may write", one("ExecStart"))
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit's keys were checked, not the unit")
	}
	// verify wants the ExecStart binary to exist: this test's own.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "rafting.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/rafting"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for rafting\.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Logf("systemd-analyze security --offline=yes: %v (an older systemd?)\n%s", err, out)
		return
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security: exposure %s, want at most 2.0\n%s", m[1], out)
	} else {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}

// TestDockerignore: the image's build context (the repository root less
// Dockerfile.dockerignore) holds every package the binary is built from,
// their embedded files with them, and build.sh.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	excluded := func(rel string) string {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, rel); ok || rel == p || strings.HasPrefix(rel, p+"/") {
				return p
			}
			if ok, _ := filepath.Match(p, filepath.Base(rel)); ok && strings.Contains(p, "*") {
				return p
			}
		}
		return ""
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "../cmd/rafting").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	need := []string{"go.mod", "go.sum", "deploy/build.sh"}
	for _, dir := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			need = append(need, rel)
		}
	}
	if len(need) < 10 {
		t.Fatalf("the binary is built from %v: too few of this module's packages", need)
	}
	for _, rel := range need {
		if p := excluded(rel); p != "" {
			t.Errorf("Dockerfile.dockerignore's %q leaves %s out of the build context", p, rel)
		}
	}
}

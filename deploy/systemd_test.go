package deploy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// TestSystemdCluster walks docs/DEPLOY.md's systemd section on one
// machine: certificates made by its certs.sh line (each node's IP in its
// certificate), each node's files installed as it installs them, and
// rafting.service's ExecStart run with the rafting.env it writes, for the
// three nodes (10.0.0.N becomes 127.0.0.N, and its ports free ones); they
// form a TLS cluster, verified with the CA by each node's IP. Then a
// fourth joins with the RAFTING_ARGS of *Adding a node*, and every node
// stops on the unit's KillSignal well within its TimeoutStopSec.
func TestSystemdCluster(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: certs.sh needs it")
	}
	doc, err := os.ReadFile("../docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`\s*\n\s*`).ReplaceAllString(string(doc), " ") // lines joined
	find := func(what, re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("docs/DEPLOY.md has no %s (%s)", what, re)
		}
		return m[1]
	}
	certsLine := find("certs.sh line for the nodes", "deploy/certs\\.sh pki ((?:node\\d=IP:10\\.0\\.0\\.\\d ?)+)")
	args1 := find("rafting.env of node 1", `RAFTING_ARGS="(--id 1 [^"]+)"`)
	args4 := find("RAFTING_ARGS of the node added", `RAFTING_ARGS="(--id 4 [^"]+)"`)
	cert4 := find("certs.sh line for the node added", "deploy/certs\\.sh pki (node4=IP:10\\.0\\.0\\.4)")
	tlsFlags := args1[strings.Index(args1, "--tls-cert"):]
	args4 = strings.Replace(args4, "<the TLS flags>", tlsFlags, 1)

	unit, err := os.ReadFile("rafting.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("rafting.service has no ExecStart")
	}
	execStart := string(m[1])

	bin := filepath.Join(built(t), "rafting")
	tmp := t.TempDir()
	// 10.0.0.N:PORT -> 127.0.0.N:a free port.
	ports := map[string]string{}
	hostPort := regexp.MustCompile(`10\.0\.0\.(\d)(:\d+)?`)
	local := func(s string) string {
		return hostPort.ReplaceAllStringFunc(s, func(hp string) string {
			sm := hostPort.FindStringSubmatch(hp)
			ip := "127.0.0." + sm[1]
			if sm[2] == "" {
				return ip
			}
			if ports[hp] == "" {
				_, p, _ := net.SplitHostPort(proctest.FreePort(t))
				ports[hp] = net.JoinHostPort(ip, p)
			}
			return ports[hp]
		})
	}
	pki := filepath.Join(tmp, "pki")
	certs := func(specs string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"deploy/certs.sh", pki}, strings.Fields(local(specs))...)...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deploy/certs.sh pki %s: %v\n%s", specs, err, out)
		}
	}
	certs(certsLine)
	certs(cert4)

	// start installs node n's files as the section does and runs the
	// unit's ExecStart with args as $RAFTING_ARGS.
	start := func(n int, args string) *proctest.Proc {
		t.Helper()
		etc, data := filepath.Join(tmp, fmt.Sprintf("node%d/etc", n)), filepath.Join(tmp, fmt.Sprintf("node%d/data", n))
		if err := os.MkdirAll(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			from, to string
			mode     os.FileMode
		}{{"ca.crt", "ca.crt", 0o644}, {fmt.Sprintf("node%d.crt", n), "node.crt", 0o644},
			{fmt.Sprintf("node%d.key", n), "node.key", 0o600}, {"admin.token", "admin.token", 0o600}} {
			b, err := os.ReadFile(filepath.Join(pki, f.from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(etc, f.to), b, f.mode); err != nil {
				t.Fatal(err)
			}
		}
		line := strings.Replace(execStart, "$RAFTING_ARGS", args, 1)
		line = strings.NewReplacer("/usr/local/bin/rafting", bin, "/var/lib/rafting", data, "/etc/rafting/", etc+"/").Replace(local(line))
		argv := strings.Fields(line)
		return proctest.Start(t, fmt.Sprintf("node%d", n), argv[0], []string{"RAFTING_ADMIN_TOKEN="}, argv[1:]...)
	}

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("pki/ca.crt: %v", err)
	}
	token, err := os.ReadFile(filepath.Join(pki, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	get := func(url string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	procs := map[int]*proctest.Proc{}
	// ready is the section's `curl --cacert pki/ca.crt https://10.0.0.N:7070/readyz`.
	ready := func(n int) {
		t.Helper()
		url := local(fmt.Sprintf("https://10.0.0.%d:7070/readyz", n))
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			code, body := get(url)
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d not ready over TLS after 60 s: %d %s\n%s", n, code, body, procs[n].Stderr())
			}
		}
	}
	for n := 1; n <= 3; n++ {
		args := strings.NewReplacer("--id 1 ", fmt.Sprintf("--id %d ", n),
			"--api 10.0.0.1:", fmt.Sprintf("--api 10.0.0.%d:", n), "--raft 10.0.0.1:", fmt.Sprintf("--raft 10.0.0.%d:", n)).Replace(args1)
		procs[n] = start(n, args)
	}
	for n := 1; n <= 3; n++ {
		ready(n)
	}
	procs[4] = start(4, args4)
	ready(4)
	var cl api.Cluster
	if code, body := get(local("https://10.0.0.2:7070/v1/cluster")); code != http.StatusOK || json.Unmarshal(body, &cl) != nil || len(cl.Nodes) != 4 {
		t.Fatalf("GET /v1/cluster = %d %s; want four nodes", code, body)
	}
	stopWithin, err := strconv.Atoi(regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)$`).FindStringSubmatch(string(unit))[1])
	if err != nil {
		t.Fatal(err)
	}
	for n := 4; n >= 1; n-- {
		begin := time.Now()
		if !procs[n].Stop(time.Duration(stopWithin) * time.Second) {
			t.Errorf("node %d did not stop within TimeoutStopSec=%d of SIGTERM", n, stopWithin)
		} else if err := procs[n].ExitErr(); err != nil {
			t.Errorf("node %d stopped with %v after SIGTERM, want status 0", n, err)
		}
		t.Logf("node %d stopped %v after SIGTERM", n, time.Since(begin).Round(time.Millisecond))
	}
}

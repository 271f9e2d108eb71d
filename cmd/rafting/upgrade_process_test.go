package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server"
)

// previousRelease is the build an upgrade starts from in
// TestUpgradeOneNodeAtATime: the last commit at state version 3, before
// state version 4 (restores held until written, revoke_previous). Move it
// to the last release when one is cut.
const previousRelease = "8d42ff4181610890c25b4357e53a6adcde97cac4"

// buildAt builds cmd/rafting as it was at a commit of this repository
// (git archive into a temporary dir). The test is skipped where the
// commit is not at hand (no git, a shallow clone).
func buildAt(t *testing.T, commit string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this checkout (%v): no previous release to upgrade from", commit, err)
	}
	src := t.TempDir()
	arch := exec.Command("sh", "-c", "git -C \"$0\" archive \"$1\" | tar -x -C \"$2\"", root, commit, src)
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, out)
	}
	bin := filepath.Join(t.TempDir(), "rafting-"+commit[:12])
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rafting")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", commit, err, out)
	}
	return bin
}

// buildRelease builds this checkout's cmd/rafting as a release is built,
// with its version and commit set at link time.
func buildRelease(t *testing.T, version, commit string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rafting-"+version)
	ld := fmt.Sprintf("-X github.com/rafting/rafting/server.version=%s -X github.com/rafting/rafting/server.commit=%s", version, commit)
	cmd := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, out)
	}
	return bin
}

// TestUpgradeOneNodeAtATime walks docs/OPERATIONS.md's *Upgrading*: three
// servers on the previous release's build, with data in their dirs and a
// writer and a watcher running throughout, are restarted on this build one
// at a time, waiting for /readyz between; the first one is rolled back to
// the old build and forward again on the way (a rollback is supported
// until the last node is upgraded). Clients see no failure. While a node
// runs the old build the cluster stays at the old state version, and
// GET /v1/cluster and `rafting cluster` show which build each node runs;
// once all run the new one, the cluster raises its state version and a
// command of the new version (revoke-previous) works.
func TestUpgradeOneNodeAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two releases and starts processes")
	}
	oldBin := buildAt(t, previousRelease)
	const newVersion, newCommit = "v0.0.0-upgrade-test", "0123456789abcdef0123"
	newBin := buildRelease(t, newVersion, newCommit)
	dir := t.TempDir()
	servers := make([]*proctest.Server, 3)
	var initial []string
	for i := range servers {
		servers[i] = &proctest.Server{ID: i + 1, API: proctest.FreePort(t), Raft: proctest.FreePort(t), Dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		initial = append(initial, fmt.Sprintf("%d=%s", i+1, servers[i].Raft))
	}
	start := func(s *proctest.Server, bin string, flags ...string) {
		args := append([]string{"server", "--data", s.Dir, "--log-level", "info", "--rtt", "20ms"}, flags...)
		s.Proc = proctest.Start(t, "server"+strconv.Itoa(s.ID)+"-"+filepath.Base(bin), bin,
			[]string{"RAFTING_ADMIN_TOKEN=" + proctest.AdminToken}, args...)
	}
	ready := func(s *proctest.Server) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if code, _, err := proctest.Call(http.MethodGet, "http://"+s.API+"/readyz", "", nil); err == nil && code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server %d not ready after 60s:\n%s", s.ID, s.Proc.Stderr())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, s := range servers {
		start(s, oldBin, "--id", strconv.Itoa(s.ID), "--api", s.API, "--raft", s.Raft, "--initial-cluster", strings.Join(initial, ","))
	}
	for _, s := range servers {
		ready(s)
	}
	addrs := func() []string { return []string{servers[0].API, servers[1].API, servers[2].API} }
	code, b := proctest.Retry(t, http.MethodPost, "http://"+servers[0].API+"/v1/tenants", proctest.AdminToken,
		api.CreateTenantRequest{Name: "acme", Secret: proctest.Secret("acme")})
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("create tenant on the old build = %d %s", code, b)
	}
	var ten api.Tenant
	if err := json.Unmarshal(b, &ten); err != nil {
		t.Fatal(err)
	}
	load := startLoad(t, ten.Token, "acme", addrs)
	defer func() {
		if load != nil {
			load.Stop()
		}
	}()
	waitWrites := func(n int) {
		t.Helper()
		want := load.Acked() + n
		deadline := time.Now().Add(30 * time.Second)
		for load.Acked() < want {
			if time.Now().After(deadline) {
				t.Fatalf("the writer made fewer than %d writes in 30s", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	restart := func(s *proctest.Server, bin string) {
		t.Helper()
		stop(t, s.Proc)
		start(s, bin)
		ready(s)
		waitWrites(10)
	}
	waitWrites(10)
	for i, s := range servers {
		restart(s, newBin)
		if i == 0 { // roll back, then forward again: the cluster is still at the old version
			restart(s, oldBin)
			restart(s, newBin)
		}
		cl := clusterView(t, s.API)
		if cl.Build == nil || cl.Build.Version != newVersion || cl.Build.Commit != newCommit || cl.Build.StateVersion != server.StateVersion {
			t.Fatalf("node %d on the new build shows build %+v", s.ID, cl.Build)
		}
		if i < len(servers)-1 {
			if cl.StateVersion >= server.StateVersion {
				t.Fatalf("with node 3 on the old build the cluster is at state version %d already", cl.StateVersion)
			}
			// The others' builds: the new one where upgraded, unknown (a
			// build from before builds were reported) where not.
			deadline := time.Now().Add(20 * time.Second)
			for !buildsAre(clusterView(t, s.API), newVersion, i+1) {
				if time.Now().After(deadline) {
					t.Fatalf("GET /v1/cluster does not show nodes 1-%d on %s and the rest on the old build: %+v", i+1, newVersion, clusterView(t, s.API).Nodes)
				}
				time.Sleep(100 * time.Millisecond)
			}
			var out bytes.Buffer
			if err := run([]string{"cluster", "--servers", s.API, "--token", proctest.AdminToken}, &out, &out); err != nil {
				t.Fatalf("rafting cluster: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), newVersion) || !strings.Contains(out.String(), "?") {
				t.Fatalf("rafting cluster mid-upgrade does not show which node runs which build:\n%s", out.String())
			}
			t.Logf("rafting cluster with %d of 3 nodes upgraded:\n%s", i+1, out.String())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for clusterView(t, servers[0].API).StateVersion != server.StateVersion || !buildsAre(clusterView(t, servers[0].API), newVersion, 3) {
		if time.Now().After(deadline) {
			t.Fatalf("after the upgrade the cluster is at state version %d, builds %+v", clusterView(t, servers[0].API).StateVersion, clusterView(t, servers[0].API).Nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitWrites(20)
	load.Stop()
	load.checkAll(servers[1].API)
	load = nil
	// A command of state version 4, refused by the builds before it.
	var out bytes.Buffer
	if err := run([]string{"tenant", "rotate-token", "acme", "--servers", servers[2].API, "--token", proctest.AdminToken, "--secret", proctest.Secret("acme-2")}, &out, &out); err != nil {
		t.Fatalf("rotate-token after the upgrade: %v\n%s", err, out.String())
	}
	if err := run([]string{"tenant", "revoke-previous", "acme", "--servers", servers[2].API, "--token", proctest.AdminToken}, &out, &out); err != nil {
		t.Fatalf("revoke-previous after the upgrade: %v\n%s", err, out.String())
	}
	for _, s := range servers {
		stop(t, s.Proc)
	}
}

// buildsAre reports whether nodes 1..upgraded of cl show the build version
// and the others none (a build from before builds were reported), every
// node reachable.
func buildsAre(cl api.Cluster, version string, upgraded int) bool {
	if len(cl.Nodes) != 3 {
		return false
	}
	for _, n := range cl.Nodes {
		if n.Health != api.NodeReady {
			return false
		}
		if int(n.ID) <= upgraded {
			if n.Build == nil || n.Build.Version != version {
				return false
			}
		} else if n.Build != nil {
			return false
		}
	}
	return true
}

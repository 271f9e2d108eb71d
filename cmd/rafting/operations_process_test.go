package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

// TestOperationsWalk walks docs/OPERATIONS.md's procedures as written —
// the shell blocks of its sections, run by sh with the real binary as
// `rafting` — with a writer and a watcher running throughout, and counts
// the failures a client sees: none. The docs' example addresses
// (10.0.0.N:7070 and :7071), data dir (/var/lib/rafting) and token file
// (/etc/rafting/admin.token) become each node's free loopback ports and
// temporary dirs; `rafting server` lines start processes (ended by PID).
// The walk: a cluster of three; Tenants; Adding a node; a rolling restart
// with only --data (Stopping and restarting); its transfer-leader block;
// Upgrading's order (to the same build); Replacing a lost node (kill -9,
// remove, join the replacement); Configuration keys; a backup, and its
// restore into a new cluster of three.
func TestOperationsWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, doc: string(doc), dir: t.TempDir(), procs: map[int]*proctest.Proc{}, api: map[int]string{}, raft: map[int]string{}}
	bin := proctest.Build(t, binPkg)
	w.path = filepath.Join(w.dir, "bin")
	for _, d := range []string{w.path, filepath.Join(w.dir, "etc")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bin, filepath.Join(w.path, "rafting")); err != nil {
		t.Fatal(err)
	}
	w.bin = bin
	for id := 1; id <= 5; id++ {
		w.api[id], w.raft[id] = proctest.FreePort(t), proctest.FreePort(t)
	}
	w.env = map[string]string{}

	// A cluster of three: the block for node 1, and for nodes 2 and 3 the
	// same with their ID and addresses.
	first := w.block("A cluster of three", 0)
	for id := 1; id <= 3; id++ {
		w.run(strings.NewReplacer("--id 1 ", fmt.Sprintf("--id %d ", id),
			"--api 10.0.0.1:7070", fmt.Sprintf("--api 10.0.0.%d:7070", id),
			"--raft 10.0.0.1:7071", fmt.Sprintf("--raft 10.0.0.%d:7071", id)).Replace(first), id == 1)
	}
	for id := 1; id <= 3; id++ {
		w.ready(id)
	}
	token, err := os.ReadFile(filepath.Join(w.dir, "etc", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	w.admin = strings.TrimSpace(string(token))
	w.env["RAFTING_ADMIN_TOKEN"] = w.admin
	w.env["RAFTING_SERVERS"] = w.api[1]

	// The clients: a tenant of their own, a writer and a watcher.
	out := w.sh("rafting tenant create load -o json | sed -n 's/.*\"token\": \"\\(.*\\)\".*/\\1/p'")
	loadToken := strings.TrimSpace(out)
	if !strings.HasPrefix(loadToken, "rft_load_") {
		t.Fatalf("tenant create load: %q", out)
	}
	load := startLoad(t, loadToken, "load", w.servers)
	defer func() {
		if load != nil {
			load.Stop()
		}
	}()
	w.progress(load)

	w.run(w.block("Tenants", 0), false)
	w.progress(load)

	w.run(w.block("Adding a node", 0), false)
	w.ready(4)
	w.progress(load)

	// Stopping and restarting: one at a time, SIGTERM, only --data, /readyz.
	for _, id := range w.running() {
		w.restart(id)
		w.progress(load)
	}
	w.run(strings.ReplaceAll(w.block("Stopping and restarting", 0), "acme", "load"), false)
	w.progress(load)

	// Upgrading's order, to the same build: its block around each restart.
	up := strings.Split(w.block("Upgrading", 0), "\n")
	for _, id := range w.running() {
		w.run(up[0], false) // rafting cluster
		w.restart(id)       // "on one node: stop it (SIGTERM), … start it with the same --data"
		w.run(strings.ReplaceAll(up[2], "10.0.0.1", fmt.Sprintf("10.0.0.%d", id)), false)
		w.run(up[3], false)
		w.progress(load)
	}

	// Replacing a lost node: node 3's machine is gone (kill -9); the
	// replacement is node 5 here (the docs' --id 4 was taken by Adding a
	// node), with the addresses the docs leave to "...".
	w.procs[3].Kill()
	delete(w.procs, 3)
	replace := strings.NewReplacer("--id 4 ", "--id 5 ",
		"--join 10.0.0.1:7070 ...", "--join 10.0.0.1:7070 --api 10.0.0.5:7070 --raft 10.0.0.5:7071 --admin-token-file /etc/rafting/admin.token --insecure").
		Replace(w.block("Replacing a lost node", 0))
	w.run(replace, false)
	w.ready(5)
	w.progress(load)

	w.keys(loadToken)
	w.progress(load)

	backup := strings.Split(w.block("Backup and restore", 0), "\n")
	w.run(backup[0], false)
	files, _ := filepath.Glob(filepath.Join(w.dir, "rafting-*.backup"))
	if len(files) != 1 {
		t.Fatalf("the backup's file is not there: %v", files)
	}
	w.progress(load)
	load.Stop()
	load.checkAll(w.api[1])
	load = nil
	for _, id := range w.running() {
		stop(t, w.procs[id])
	}

	// The restore's line, into a new cluster of three started as the docs
	// say (A cluster of three, with --await-restore): the tenants come back
	// with their tokens and their keys.
	n := &walk{t: t, doc: w.doc, dir: filepath.Join(w.dir, "new"), path: w.path, bin: w.bin,
		procs: map[int]*proctest.Proc{}, api: map[int]string{}, raft: map[int]string{}, env: map[string]string{}}
	if err := os.MkdirAll(filepath.Join(n.dir, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 3; id++ {
		n.api[id], n.raft[id] = proctest.FreePort(t), proctest.FreePort(t)
	}
	for id := 1; id <= 3; id++ {
		n.run(strings.NewReplacer("--id 1 ", fmt.Sprintf("--id %d ", id),
			"--api 10.0.0.1:7070", fmt.Sprintf("--api 10.0.0.%d:7070", id),
			"--raft 10.0.0.1:7071", fmt.Sprintf("--raft 10.0.0.%d:7071", id),
			"--insecure", "--insecure --await-restore").Replace(first), id == 1)
	}
	for id := 1; id <= 3; id++ {
		n.ready(id)
	}
	newToken, err := os.ReadFile(filepath.Join(n.dir, "etc", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	n.env["RAFTING_ADMIN_TOKEN"] = strings.TrimSpace(string(newToken))
	n.env["RAFTING_SERVERS"] = n.api[1]
	if err := os.Rename(files[0], filepath.Join(n.dir, "rafting-2026-11-26.backup")); err != nil {
		t.Fatal(err)
	}
	n.run(backup[1], false)
	n.env["RAFTING_TOKEN"] = loadToken
	if got := strings.TrimSpace(n.sh("rafting kv get app/db/url")); got != "postgres://db:5432/app" {
		t.Fatalf("after the restore, tenant load's key app/db/url = %q", got)
	}
	for _, id := range n.running() {
		stop(t, n.procs[id])
	}
}

// keys runs the Configuration keys block for tenant load (token): each
// line as written but `watch`, which runs until interrupted; the CAS line
// with the docs' example --if-index (41), which is not app/flag's
// mod_index, must exit 3 (a compare failed), as the docs say.
func (w *walk) keys(token string) {
	w.t.Helper()
	for name, body := range map[string]string{
		"cert.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"txn.json": `{"compare":[{"key":"app/db/url","exists":true}],"put":[{"key":"app/old/x","text":"1"}],"delete":[{"key":"app/tls/cert"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(body), 0o600); err != nil {
			w.t.Fatal(err)
		}
	}
	saved := w.env["RAFTING_TOKEN"]
	defer func() { w.env["RAFTING_TOKEN"] = saved }()
	for _, line := range strings.Split(w.block("Configuration keys", 0), "\n") {
		if i := strings.Index(line, "  #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(strings.ReplaceAll(line, "rft_acme_...", token))
		switch {
		case line == "" || strings.Contains(line, "kv watch"):
		case strings.HasPrefix(line, "export "):
			w.run(line, false)
		case strings.Contains(line, "--if-index 41"):
			out, err := w.try(line)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				w.t.Fatalf("%s: %v, want exit status 3 (a compare failed)\n%s", line, err, out)
			}
		default:
			w.sh(w.subst(line))
		}
	}
}

// walk runs docs/OPERATIONS.md's shell blocks.
type walk struct {
	t         *testing.T
	doc       string
	dir, path string // the walk's working dir; where `rafting` is
	bin       string
	api, raft map[int]string // node ID -> the port the docs' 10.0.0.N stands for
	procs     map[int]*proctest.Proc
	env       map[string]string
	admin     string
}

// block is the n-th ```sh block of the section titled title.
func (w *walk) block(title string, n int) string {
	w.t.Helper()
	i := strings.Index(w.doc, "\n## "+title+"\n")
	if i < 0 {
		w.t.Fatalf("docs/OPERATIONS.md has no section %q", title)
	}
	sec := w.doc[i+1:]
	if j := strings.Index(sec[3:], "\n## "); j >= 0 {
		sec = sec[:j+3]
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(sec, -1)
	if n >= len(blocks) {
		w.t.Fatalf("section %q has %d sh blocks, want block %d", title, len(blocks), n)
	}
	return strings.TrimRight(blocks[n][1], "\n")
}

// subst puts this walk's addresses and dirs in a line of the docs.
func (w *walk) subst(line string) string {
	for id := 1; id <= 5; id++ {
		line = strings.ReplaceAll(line, fmt.Sprintf("10.0.0.%d:7070", id), w.api[id])
		line = strings.ReplaceAll(line, fmt.Sprintf("10.0.0.%d:7071", id), w.raft[id])
	}
	line = strings.ReplaceAll(line, "/etc/rafting/", filepath.Join(w.dir, "etc")+"/")
	if m := regexp.MustCompile(`--id (\d+)`).FindStringSubmatch(line); m != nil {
		line = strings.ReplaceAll(line, "/var/lib/rafting", filepath.Join(w.dir, "n"+m[1]))
	}
	return line
}

// run runs a block's lines in order: `rafting server` starts a process,
// `export` sets the environment, a `curl …/readyz` is tried until it
// answers 200, anything else runs in sh and must succeed. A first block
// also runs its set-up lines (the admin token's file).
func (w *walk) run(block string, setup bool) {
	w.t.Helper()
	block = strings.ReplaceAll(block, "\\\n", " ")
	for _, line := range strings.Split(block, "\n") {
		if i := strings.Index(line, "  #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "rafting server "):
			line = w.subst(line)
			args := strings.Fields(line)[1:]
			id, _ := strconv.Atoi(regexp.MustCompile(`--id (\d+)`).FindStringSubmatch(line)[1])
			w.procs[id] = proctest.Start(w.t, fmt.Sprintf("server%d", id), w.bin, nil, args...)
		case strings.HasPrefix(line, "export "):
			for _, kv := range strings.Fields(line)[1:] {
				k, v, _ := strings.Cut(kv, "=")
				if k == "RAFTING_ADMIN_TOKEN" && v == "..." {
					v = w.admin
				}
				w.env[k] = w.subst(v)
			}
		case strings.HasPrefix(line, "curl ") && strings.Contains(line, "/readyz"):
			deadline := time.Now().Add(60 * time.Second)
			for {
				if _, err := w.try(w.subst(line)); err == nil {
					break
				}
				if time.Now().After(deadline) {
					w.t.Fatalf("%s: no 200 in 60s", line)
				}
				time.Sleep(100 * time.Millisecond)
			}
		case strings.HasPrefix(line, "head -c") || strings.HasPrefix(line, "install "):
			if setup {
				w.sh(w.subst(line))
			}
		default:
			w.sh(w.subst(line))
		}
	}
}

// try runs a line in sh in the walk's dir, with its environment and
// `rafting` first on PATH.
func (w *walk) try(line string) (string, error) {
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), "PATH="+w.path+":"+os.Getenv("PATH"))
	for k, v := range w.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sh runs a line and fails the test unless it succeeds.
func (w *walk) sh(line string) string {
	w.t.Helper()
	out, err := w.try(line)
	if err != nil {
		w.t.Fatalf("%s: %v\n%s", line, err, out)
	}
	w.t.Logf("$ %s\n%s", line, out)
	return out
}

// ready waits until node id answers /readyz.
func (w *walk) ready(id int) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _, err := proctest.Call(http.MethodGet, "http://"+w.api[id]+"/readyz", "", nil); err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("node %d not ready after 60s:\n%s", id, w.procs[id].Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart stops node id (SIGTERM), starts it again with only --data, as
// the docs say, and waits for its /readyz.
func (w *walk) restart(id int) {
	w.t.Helper()
	p := w.procs[id]
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		w.t.Fatalf("node %d did not stop within 20s of SIGTERM", id)
	}
	if err := p.ExitErr(); err != nil {
		w.t.Fatalf("node %d stopped with %v:\n%s", id, err, p.Stderr())
	}
	w.procs[id] = proctest.Start(w.t, fmt.Sprintf("server%d", id), w.bin, nil, "server", "--data", filepath.Join(w.dir, fmt.Sprintf("n%d", id)))
	w.ready(id)
}

// running is the IDs of the nodes running, in order.
func (w *walk) running() []int {
	var ids []int
	for id := 1; id <= 5; id++ {
		if _, ok := w.procs[id]; ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// servers is the API addresses of the walk's nodes, started or not: a
// client's list, stale and future ones included (a refused connection
// moves it on at once).
func (w *walk) servers() []string {
	var out []string
	for id := 1; id <= 5; id++ {
		out = append(out, w.api[id])
	}
	return out
}

// progress waits until the writer has made ten more writes.
func (w *walk) progress(l *clientLoad) {
	w.t.Helper()
	want := l.Acked() + 10
	deadline := time.Now().Add(30 * time.Second)
	for l.Acked() < want {
		if time.Now().After(deadline) {
			w.t.Fatalf("the writer made no progress for 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

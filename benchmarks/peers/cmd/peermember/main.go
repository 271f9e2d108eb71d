// Command peermember is one member process of a master election on etcd or
// ZooKeeper, the idiomatic way for each, as benchmarks/peers runs it for the
// handover and failover workloads:
//
//   - etcd: a concurrency.Session (a lease with TTL -ttl, kept alive every
//     TTL/3 by the client) and concurrency.Election.Campaign on -election;
//   - zookeeper: Curator's LeaderLatch recipe — an ephemeral sequential
//     znode under /latch/<election>, the lowest sequence is the leader and
//     every other member watches its predecessor (ExistsW) — on a session
//     with timeout -ttl.
//
// It prints one JSON line on stdout per role change, flushed at once:
//
//	{"ev":"role","id":"m1","role":"standby","at":1700000000000000000}
//	{"ev":"role","id":"m1","role":"master","at":1700000000123456789}
//
// where at is the wall clock in Unix nanoseconds when the member knew. On
// SIGTERM or SIGINT it resigns (etcd: Election.Resign then the lease is
// revoked; ZooKeeper: its latch znode is deleted, as LeaderLatch.close does,
// then the session is closed) and exits 0. If its session or lease is lost
// it prints {"ev":"lost",...} and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

var (
	system    = flag.String("system", "etcd", "etcd or zookeeper")
	endpoints = flag.String("endpoints", "", "comma-separated client endpoints (etcd: http://host:port, zookeeper: host:port)")
	id        = flag.String("id", "", "this member's id")
	ttl       = flag.Duration("ttl", 60*time.Second, "etcd: session lease TTL (whole seconds); zookeeper: session timeout requested")
	election  = flag.String("election", "peers", "election name")
)

var outMu sync.Mutex

// emit prints one JSON line on stdout; os.Stdout is unbuffered, so each
// line is written (flushed) by the one Write call.
func emit(ev, role string, extra map[string]any) {
	m := map[string]any{"ev": ev, "id": *id, "at": time.Now().UnixNano()}
	if role != "" {
		m["role"] = role
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func main() {
	flag.Parse()
	if *endpoints == "" || *id == "" {
		fmt.Fprintln(os.Stderr, "peermember: -endpoints and -id are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch *system {
	case "etcd":
		err = runEtcd(ctx)
	case "zookeeper", "zk":
		err = runZK(ctx)
	default:
		err = fmt.Errorf("unknown -system %q (etcd or zookeeper)", *system)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peermember %s: %v\n", *id, err)
		os.Exit(1)
	}
}

var errLost = errors.New("session lost")

func runEtcd(ctx context.Context) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	secs := int(ttl.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(secs))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	defer s.Close() // revokes the lease
	e := concurrency.NewElection(s, "/election/"+*election)
	emit("role", "standby", nil)

	won := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { won <- e.Campaign(cctx, *id) }()
	select {
	case err := <-won:
		if err != nil {
			if ctx.Err() != nil {
				return nil // SIGTERM while standby: Campaign cleaned up its key
			}
			return fmt.Errorf("campaign: %w", err)
		}
	case <-s.Done():
		emit("lost", "", nil)
		return errLost
	case <-ctx.Done():
		cancel()
		<-won // Campaign resigns its key on cancel
		return nil
	}
	emit("role", "master", nil)
	select {
	case <-ctx.Done():
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		if err := e.Resign(rctx); err != nil {
			return fmt.Errorf("resign: %w", err)
		}
		emit("resigned", "", nil)
		return nil
	case <-s.Done():
		emit("lost", "", nil)
		return errLost
	}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func runZK(ctx context.Context) error {
	conn, events, err := zk.Connect(strings.Split(*endpoints, ","), *ttl,
		zk.WithLogger(nopLogger{}), zk.WithLogInfo(false))
	if err != nil {
		return err
	}
	defer conn.Close()
	// The session's events: wait for it to be established, then watch for
	// its expiry.
	expired := make(chan struct{})
	connected := make(chan struct{})
	go func() {
		var once, onceC sync.Once
		for ev := range events {
			switch ev.State {
			case zk.StateHasSession:
				onceC.Do(func() { close(connected) })
			case zk.StateExpired:
				once.Do(func() { close(expired) })
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		return errors.New("zookeeper: no session after 10s")
	case <-ctx.Done():
		return nil
	}

	latch := "/latch/" + *election
	if err := mkdirs(conn, latch); err != nil {
		return err
	}
	emit("role", "standby", nil)
	// LeaderLatch.start: a protected ephemeral sequential node.
	ours, err := conn.CreateProtectedEphemeralSequential(latch+"/latch-", []byte(*id), zk.WorldACL(zk.PermAll))
	if err != nil {
		return fmt.Errorf("create latch node: %w", err)
	}
	ourName := ours[strings.LastIndexByte(ours, '/')+1:]
	resign := func() error {
		// LeaderLatch.close: delete our node, then close the session.
		if err := conn.Delete(ours, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("delete latch node: %w", err)
		}
		return nil
	}

	// LeaderLatch.checkLeadership: the lowest sequence leads; every other
	// node watches the one just before it.
	for {
		children, _, err := conn.Children(latch)
		if err != nil {
			return fmt.Errorf("children %s: %w", latch, err)
		}
		sortBySequence(children)
		idx := -1
		for i, c := range children {
			if c == ourName {
				idx = i
			}
		}
		if idx < 0 {
			emit("lost", "", map[string]any{"why": "latch node gone"})
			return errLost
		}
		if idx == 0 {
			break
		}
		exists, _, w, err := conn.ExistsW(latch + "/" + children[idx-1])
		if err != nil {
			return fmt.Errorf("watch predecessor: %w", err)
		}
		if !exists {
			continue
		}
		select {
		case <-w:
		case <-expired:
			emit("lost", "", nil)
			return errLost
		case <-ctx.Done():
			return resign()
		}
	}
	emit("role", "master", nil)
	select {
	case <-ctx.Done():
		if err := resign(); err != nil {
			return err
		}
		emit("resigned", "", nil)
		return nil
	case <-expired:
		emit("lost", "", nil)
		return errLost
	}
}

// mkdirs creates path and its parents as persistent znodes.
func mkdirs(conn *zk.Conn, path string) error {
	p := ""
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		p += "/" + part
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	return nil
}

// sortBySequence orders latch node names by their 10-digit sequence suffix
// (protected names start with a random _c_<guid>- prefix, so the name
// itself does not sort).
func sortBySequence(names []string) {
	seq := func(n string) int64 {
		if len(n) < 10 {
			return -1
		}
		v, err := strconv.ParseInt(n[len(n)-10:], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	sort.Slice(names, func(i, j int) bool { return seq(names[i]) < seq(names[j]) })
}

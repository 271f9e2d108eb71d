// Package peers measures Rafting against etcd and ZooKeeper side by side, on
// the same machine, in one run: the same workloads, each implemented the
// idiomatic way for its system.
//
//	make bench-peers        # the whole run (≤ 20 min), rewrites RESULTS.md's peers section
//	make bench-peers-quick  # the -quick mode (≤ 3 min)
package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Target is one system under comparison: a 3-member cluster on loopback,
// data in a temporary directory, every process it starts ended by its PID.
type Target interface {
	// Name is "rafting", "etcd" or "zookeeper".
	Name() string
	// Start starts a fresh 3-member cluster (new data directory under dir)
	// with setting s and returns once it serves. A Target runs one cluster
	// at a time: Start after Start stops the previous one first.
	Start(ctx context.Context, dir string, s Setting) error
	// Stop ends every process this Target started, by PID, and waits for
	// them. It is safe to call when nothing runs.
	Stop() error
	// Settings are the failover settings to measure: the system's
	// defaults, the shortest its default server accepts, its shortest
	// tuned setting, and the common lease length shared by all three.
	Settings() []Setting

	// Register runs clients concurrent clients registering and updating
	// service instances for d; it returns the operations completed and
	// each one's latency.
	Register(ctx context.Context, clients int, d time.Duration) (Sample, error)
	// Propagation starts watchers clients watching one service, then adds
	// a new instance rounds times; each sample is the time from the add
	// (the call's start) until a watcher saw it, one per watcher per round.
	Propagation(ctx context.Context, watchers, rounds int) (Sample, error)
	// KVPut runs clients concurrent clients writing the values of
	// configuration keys for d, each client its own kvKeys keys in turn
	// (keys that exist: a put replaces a value); it returns the writes
	// completed and each one's latency. The keys are deleted afterwards.
	KVPut(ctx context.Context, clients int, d time.Duration) (Sample, error)
	// KVWatch starts watchers clients following one configuration key,
	// then writes a new value to it rounds times; each sample is the time
	// from the write (the call's start) until a watcher saw that value,
	// one per watcher per round.
	KVWatch(ctx context.Context, watchers, rounds int) (Sample, error)
	// Handover runs three member processes; rounds times the master
	// resigns and the sample is the time until a standby knows it is master.
	Handover(ctx context.Context, rounds int) (Sample, error)
	// Failover runs three member processes; rounds times, after a random
	// delay of at least one keepalive period, the master's process gets
	// kill -9 and the sample is the time until a standby knows it is
	// master. The cluster runs with setting s (Start was called with it).
	Failover(ctx context.Context, s Setting, rounds int) (Sample, error)
	// Idle registers shape's live instances (with their sessions or
	// leases kept alive), lets the cluster settle, and measures the CPU
	// and resident memory of the cluster's server processes over d, and
	// the CPU of this process (the clients) apart from them.
	Idle(ctx context.Context, shape IdleShape, d time.Duration) (IdleCost, error)
}

// IdleShape is how the live instances of an idle-cost workload are spread
// over clients.
type IdleShape struct {
	Clients   int // SDK Clients, clientv3 clients, ZooKeeper sessions: see PerSession
	PerClient int // the instances each client registers
	// PerSession: each client stands for one process with one connection
	// and one session (etcd: one lease; ZooKeeper: one session) that all
	// its instances are registered under. Else each instance has a session
	// (lease) of its own and the clients are connections the instances
	// share (ZooKeeper, whose session is its connection, then holds one
	// session per instance). A Rafting instance is always one member with
	// its own session; its Client is the connection.
	PerSession bool
}

// Instances are all the shape's instances.
func (s IdleShape) Instances() int { return s.Clients * s.PerClient }

// half is s with half as many instances, for a cluster that cannot hold
// s: half as many clients when each client is a process of its own, else
// half as many instances on each connection.
func (s IdleShape) half() IdleShape {
	if s.PerSession {
		s.Clients /= 2
	} else {
		s.PerClient /= 2
	}
	return s
}

// String is "10 clients × 1,000 instances".
func (s IdleShape) String() string {
	return fmt.Sprintf("%s clients × %s instances", thousands(s.Clients), thousands(s.PerClient))
}

// Setting is one failover configuration of a system.
type Setting struct {
	Name  string        // "default", "shortest-default-server", "tuned", "same-lease"
	Lease time.Duration // session TTL / lease / session timeout that decides failover
	Note  string        // the exact settings, as printed in RESULTS.md
	// Server and Client hold the system's own knobs (flags, zoo.cfg keys,
	// SDK options) as name → value; each Target reads its own.
	Server map[string]string
	Client map[string]string
}

// Sample is a set of measured latencies.
type Sample struct {
	Ops       int             // operations completed (throughput workloads)
	Elapsed   time.Duration   // wall time the operations took
	Latencies []time.Duration // one per operation or per observation
}

// IdleCost is what a cluster at rest costs, summed over its 3 members.
// The JSON names are those of results saved before Clients, Sessions and
// ClientCPUPct were measured (they read as zero: not measured).
type IdleCost struct {
	Instances int
	Clients   int     `json:",omitempty"` // client connections (ZooKeeper: sessions) opened
	Sessions  int     `json:",omitempty"` // sessions, or etcd leases, kept alive
	CPUPct    float64 // % of one core, all members together, averaged over the window
	RSSBytes  int64   // resident memory, all members together, at the end
	// ClientCPUPct is this process's CPU (the clients' keepalives) over
	// the same window, in % of one core: what the shape costs the client
	// side on the same machine, not counted in CPUPct.
	ClientCPUPct float64 `json:",omitempty"`
}

// kvKeys is how many configuration keys each KVPut client writes in turn
// (as many as each Register client's instances).
const kvKeys = 20

// kvValue is the n-th value a KVPut client writes: a connection setting
// of about 100 bytes, as a service's configuration holds.
func kvValue(client, n int) string {
	return fmt.Sprintf(`{"endpoint":"db-%d.internal:5432","pool":{"max":%d,"idle":8},"timeout_ms":2500,"rev":%d}`, client%100, 16+n%48, n)
}

// closedLoop runs the throughput workload what ("etcd register"): one
// closed loop per client for d, client i doing op(ctx, i, n) for n =
// from, from+1, … one at a time, each with 10 s at most, and keeping each
// one's latency. An error ends that client's loop and is returned (all of
// them, joined) with the sample of what was done.
func closedLoop(ctx context.Context, what string, clients int, d time.Duration, from int, op func(ctx context.Context, i, n int) error) (Sample, error) {
	lats := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range clients {
		wg.Go(func() {
			for n := from; ; n++ {
				t0 := time.Now()
				if t0.After(end) || ctx.Err() != nil {
					return
				}
				octx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := op(octx, i, n)
				cancel()
				if err != nil {
					errs[i] = err
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return sampleOf(start, lats), fmt.Errorf("%s: %w", what, err)
	}
	return sampleOf(start, lats), nil
}

// sampleOf gathers the latencies that concurrent clients kept, one slice
// each, into the Sample of a throughput workload that began at start.
func sampleOf(start time.Time, lats [][]time.Duration) Sample {
	s := Sample{Elapsed: time.Since(start)}
	for _, l := range lats {
		s.Latencies = append(s.Latencies, l...)
	}
	s.Ops = len(s.Latencies)
	return s
}

// seen is one watcher's observation of a change, by name: the instance
// a propagation round added, or the value a configuration round wrote.
type seen struct {
	name string
	at   time.Time
}

// watchRounds runs the rounds of a fan-out workload (what names it in
// errors: "etcd propagation"): change makes change number r, named
// round-r, and every one of watchers must report it on obs within 10 s;
// each sample is the time from change's call to a watcher's observation.
// Observations of other names (a watcher's first read) are dropped.
func watchRounds(ctx context.Context, what string, watchers, rounds int, obs <-chan seen, change func(name string) error) (Sample, error) {
	var s Sample
	start := time.Now()
	for r := 0; r < rounds; r++ {
		name := fmt.Sprintf("round-%d", r)
		t0 := time.Now()
		if err := change(name); err != nil {
			return s, fmt.Errorf("%s: round %d: %w", what, r+1, err)
		}
		timeout := time.After(10 * time.Second)
		for got := 0; got < watchers; {
			select {
			case o := <-obs:
				if o.name == name {
					s.Latencies = append(s.Latencies, o.at.Sub(t0))
					got++
				}
			case <-timeout:
				return s, fmt.Errorf("%s: round %d: %d of %d watchers saw the change within 10s", what, r+1, got, watchers)
			case <-ctx.Done():
				return s, ctx.Err()
			}
		}
		s.Ops++
		ezSleep(ctx, 20*time.Millisecond)
	}
	s.Elapsed = time.Since(start)
	return s, nil
}

// thousands prints n with a comma between thousands: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

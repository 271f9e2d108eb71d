// Command masterstandby shows Rafting's single master with standbys: three
// instances of a service join "ledger" in master-standby mode; the master
// appends to a fenced ledger (a file that refuses any write under a fencing
// token lower than the highest it has seen); the standbys wait. Kill the
// master and a standby takes over in about a second; stop it gracefully
// and the handover is immediate.
//
// With a cluster running (make run) and its settings exported:
//
//	export RAFTING_SERVERS=127.0.0.1:7070,127.0.0.1:7170,127.0.0.1:7270 RAFTING_TOKEN=...
//	go run ./examples/masterstandby
//
// runs the whole demo. The members also run alone, one per terminal:
//
//	go run ./examples/masterstandby -role member -id ms-1 -priority 3
//
// Each member prints one JSON object per line on stdout (role changes,
// writes, refusals), which the failover tests and benchmarks read.
//
// A member is the pattern to copy for a job that must run on one instance
// only: Join under signal.NotifyContext, put the job in Member.RunAsMaster,
// and Leave when it returns. SIGTERM ends the job's term and RunAsMaster,
// and Leave hands the mastership over at once.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rafting/rafting/sdk"
)

const service = "ledger"

// Event is one line a member prints on stdout.
type Event struct {
	Ev    string `json:"ev"` // role, write, fenced, left
	ID    string `json:"id"`
	Role  string `json:"role,omitempty"`
	Token uint64 `json:"token,omitempty"`
	At    int64  `json:"at"` // Unix nanoseconds
	Err   string `json:"err,omitempty"`
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(e Event) {
	if e.At == 0 {
		e.At = time.Now().UnixNano()
	}
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(e)
}

func main() {
	role := flag.String("role", "demo", "demo (three members and a kill) or member")
	id := flag.String("id", "", "member: instance ID (default: generated)")
	priority := flag.Int("priority", 0, "member: election priority (highest wins a vacancy)")
	lease := flag.Duration("lease", time.Second, "member: lease; crash failover takes about this long")
	ttl := flag.Duration("ttl", 5*time.Second, "member: session TTL; a silent (paused) host is replaced after it")
	ledger := flag.String("ledger", filepath.Join(os.TempDir(), "rafting-ledger"), "the fenced ledger file")
	every := flag.Duration("every", 50*time.Millisecond, "member: how often the master writes")
	coldMin := flag.Int("cold-start-min", 1, "member: cold start: elect once this many are ready")
	coldSettle := flag.Duration("cold-start-settle", 0, "member: cold start: or once this long passed")
	debug := flag.Bool("debug", false, "member: the SDK's debug log on stderr")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if os.Getenv(sdk.EnvServers) == "" {
		log.Fatalf("set %s, %s and %s (make run prints them)", sdk.EnvServers, sdk.EnvTenant, sdk.EnvToken)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "member":
		err = member(ctx, memberConfig{id: *id, priority: *priority, lease: *lease, ttl: *ttl,
			ledger: fencedFile{path: *ledger}, every: *every, coldMin: *coldMin, coldSettle: *coldSettle, debug: *debug})
	case "demo":
		err = demo(ctx)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

type memberConfig struct {
	id         string
	priority   int
	lease, ttl time.Duration
	ledger     fencedFile
	every      time.Duration
	coldMin    int
	coldSettle time.Duration
	debug      bool
}

// member joins, writes to the ledger while it is master, and leaves
// gracefully on SIGTERM (handing the mastership over at once). SIGUSR1
// makes it resign.
//
// The master's work runs in RunAsMaster: it starts when the member is
// elected, stops when its term ends (the Term's Ctx), and starts again in
// the member's next term. SIGTERM ends ctx, which ends the term's Ctx and
// RunAsMaster; Leave then hands the mastership over in its drain.
func member(ctx context.Context, c memberConfig) error {
	opts := []sdk.Option{sdk.WithLease(c.lease), sdk.WithTTL(c.ttl), sdk.WithColdStart(c.coldMin, c.coldSettle),
		sdk.WithRoleChange(func(rc sdk.RoleChange) {
			// Called from the first role on, before Join returns: the
			// change carries its member (never read m here).
			emit(Event{Ev: "role", ID: rc.Member.ID(), Role: rc.Role.String(), Token: rc.Token, At: rc.At.UnixNano()})
		})}
	if c.debug {
		opts = append(opts, sdk.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	m, err := sdk.Join(ctx, sdk.Instance{Service: service, ID: c.id, Address: "127.0.0.1:0", Mode: sdk.MasterStandby, Priority: c.priority}, opts...)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	self := m.ID()
	log.Printf("%s joined %s (priority %d)", self, service, c.priority)

	// SIGUSR1: resign, until the member stops.
	rctx, stopResign := context.WithCancel(ctx)
	var resigner sync.WaitGroup
	resign := make(chan os.Signal, 1)
	signal.Notify(resign, syscall.SIGUSR1)
	resigner.Go(func() {
		for {
			select {
			case <-rctx.Done():
				return
			case <-resign:
				if err := m.Resign(rctx); err != nil {
					log.Printf("%s: resign: %v", self, err)
				}
			}
		}
	})

	seq := 0
	err = m.RunAsMaster(ctx, func(t sdk.Term) error {
		tick := time.NewTicker(c.every)
		defer tick.Stop()
		for {
			select {
			case <-t.Ctx.Done():
				return nil // the term is over: RunAsMaster waits for the next
			case <-tick.C:
			}
			// Act only under a live term, with its token: Err looks at the
			// promise now.
			if t.Ctx.Err() != nil {
				return nil
			}
			seq++
			err := c.ledger.write(t.Token, fmt.Sprintf("%s %d %d", self, seq, time.Now().UnixNano()))
			switch {
			case errors.Is(err, errFenced):
				emit(Event{Ev: "fenced", ID: self, Token: t.Token, Err: err.Error()})
			case err != nil:
				return err
			default:
				emit(Event{Ev: "write", ID: self, Token: t.Token})
			}
		}
	})
	signal.Stop(resign)
	stopResign()
	resigner.Wait()

	// Stopped (SIGTERM), lost, or the ledger failed: hand over and go.
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lerr := m.Leave(lctx)
	emit(Event{Ev: "left", ID: self})
	switch {
	case errors.Is(err, context.Canceled):
		return lerr
	case errors.Is(err, sdk.ErrSessionLost):
		return fmt.Errorf("member ended: %w", err) // Leave says the same
	}
	return errors.Join(err, lerr)
}

// demo starts three members, kills the master with SIGKILL, then stops the
// next one gracefully, and prints how long each takeover took.
func demo(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "rafting-masterstandby-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ledger := filepath.Join(dir, "ledger")
	events := make(chan Event, 1024)
	procs := map[string]*exec.Cmd{}
	for i, prio := range []int{3, 2, 1} {
		id := fmt.Sprintf("ms-%d", i+1)
		// A cold start waits for all three (or 2 s) so the highest priority wins.
		cmd := exec.CommandContext(ctx, self, "-role", "member", "-id", id, "-priority", fmt.Sprint(prio), "-ledger", ledger,
			"-cold-start-min", "3", "-cold-start-settle", "2s")
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		procs[id] = cmd
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var e Event
				if json.Unmarshal(sc.Bytes(), &e) == nil {
					events <- e
				}
			}
		}()
	}
	defer func() {
		for _, cmd := range procs {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	}()
	master := func(timeout time.Duration) (Event, error) {
		deadline := time.After(timeout)
		for {
			select {
			case e := <-events:
				if e.Ev == "role" && e.Role == sdk.Master.String() {
					return e, nil
				}
			case <-deadline:
				return Event{}, errors.New("no master")
			case <-ctx.Done():
				return Event{}, ctx.Err()
			}
		}
	}
	first, err := master(30 * time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("master: %s (fencing token %d); the standbys wait\n", first.ID, first.Token)
	time.Sleep(2 * time.Second)

	fmt.Printf("kill -9 %s (pid %d)\n", first.ID, procs[first.ID].Process.Pid)
	killed := time.Now()
	_ = procs[first.ID].Process.Kill()
	_ = procs[first.ID].Wait()
	delete(procs, first.ID)
	next, err := master(30 * time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("master: %s (token %d), %v after the kill\n", next.ID, next.Token, time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second)

	fmt.Printf("stop %s gracefully (SIGTERM: Leave)\n", next.ID)
	stopped := time.Now()
	_ = procs[next.ID].Process.Signal(syscall.SIGTERM)
	last, err := master(30 * time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("master: %s (token %d), %v after the stop began\n", last.ID, last.Token, time.Since(stopped).Round(time.Millisecond))
	_ = procs[next.ID].Wait()
	delete(procs, next.ID)
	time.Sleep(500 * time.Millisecond)

	b, _ := os.ReadFile(ledger)
	fmt.Printf("the ledger holds %d writes; its tokens only increase: %v\n", countLines(b), increasing(b))
	return nil
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// increasing reports whether the ledger's tokens never decrease.
func increasing(b []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var last uint64
	for sc.Scan() {
		var tok uint64
		if _, err := fmt.Sscan(sc.Text(), &tok); err != nil || tok < last {
			return false
		}
		last = tok
	}
	return true
}

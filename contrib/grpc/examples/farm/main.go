// Command farm is a gRPC farm on Rafting: three gRPC servers join the
// "grpc-demo" service, and a gRPC client dials rafting:///grpc-demo,
// balanced by LeastLoaded, with four goroutines calling. Then one server
// is killed with SIGKILL and another stopped gracefully (SIGTERM: Leave,
// then GracefulStop), and the client counts what each cost.
//
// With a cluster running (make run at the repository root) and its
// settings exported:
//
//	export RAFTING_SERVERS=127.0.0.1:7070,127.0.0.1:7170,127.0.0.1:7270 RAFTING_TOKEN=...
//	cd contrib/grpc && go run ./examples/farm
//
// The parts also run alone, in separate terminals:
//
//	go run ./examples/farm -role instance -id grpc-1
//	go run ./examples/farm -role caller
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rafting/rafting/balancer"
	raftinggrpc "github.com/rafting/rafting/contrib/grpc"
	"github.com/rafting/rafting/contrib/grpc/internal/echo"
	"github.com/rafting/rafting/sdk"
)

const service = "grpc-demo"

func main() {
	role := flag.String("role", "demo", "demo (everything), instance or caller")
	id := flag.String("id", "", "instance: its ID (default: generated)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if os.Getenv(sdk.EnvServers) == "" {
		log.Fatalf("set %s and %s (make run prints them)", sdk.EnvServers, sdk.EnvToken)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "instance":
		err = instance(ctx, *id)
	case "caller":
		err = caller(ctx, nil)
	case "demo":
		err = demo(ctx)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// server answers Echo with its instance ID.
type server struct{ id string }

func (s server) Echo(context.Context, string) (string, error) { return s.id, nil }

// instance serves gRPC on a free port, joined as a farm member until told
// to stop (SIGTERM, Ctrl-C): then it leaves, and stops serving gracefully.
func instance(ctx context.Context, id string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m, err := sdk.Join(ctx, sdk.Instance{Service: service, ID: id, Address: ln.Addr().String()})
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	echo.Register(srv, server{m.ID()})
	go srv.Serve(ln)
	log.Printf("instance %s: serving gRPC on %s", m.ID(), ln.Addr())
	<-ctx.Done()
	err = m.Leave(context.Background()) // drained: callers stop picking it first
	srv.GracefulStop()                  // then the calls in flight finish
	log.Printf("instance %s: left", m.ID())
	return err
}

// caller calls rafting:///grpc-demo from four goroutines until ctx ends,
// printing each second where the calls went; tick, if not nil, gets each
// second's counts, for the demo to act on.
func caller(ctx context.Context, tick chan<- map[string]int64) error {
	c, err := sdk.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	conn, err := grpc.NewClient("rafting:///"+service,
		grpc.WithResolvers(raftinggrpc.NewBuilder(c, balancer.LeastLoaded())),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	var mu sync.Mutex
	by := map[string]int64{}
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				id, err := echo.Call(cctx, conn, "hi", grpc.WaitForReady(true))
				cancel()
				mu.Lock()
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					log.Printf("caller: a call failed: %v", err)
				} else if err == nil {
					by[id]++
				}
				mu.Unlock()
			}
		}()
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-t.C:
		}
		mu.Lock()
		snap := map[string]int64{}
		ids := make([]string, 0, len(by))
		for id, n := range by {
			snap[id] = n
			ids = append(ids, id)
			by[id] = 0
		}
		mu.Unlock()
		sort.Strings(ids)
		line := ""
		for _, id := range ids {
			line += fmt.Sprintf(" %s=%d", id, snap[id])
		}
		log.Printf("caller: calls in the last second:%s; failed so far: %d", line, failed.Load())
		if tick != nil {
			select {
			case tick <- snap:
			default:
			}
		}
	}
}

// demo starts three instances as child processes, calls them, kills one
// with SIGKILL, stops another with SIGTERM, and stops.
func demo(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var kids []*exec.Cmd
	for i := 1; i <= 3; i++ {
		cmd := exec.Command(self, "-role", "instance", "-id", fmt.Sprintf("grpc-%d", i))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		kids = append(kids, cmd)
	}
	defer func() {
		for _, k := range kids {
			k.Process.Signal(syscall.SIGTERM)
			k.Wait()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	tick := make(chan map[string]int64, 1)
	done := make(chan error, 1)
	go func() { done <- caller(ctx, tick) }()
	seconds := 0
	for {
		select {
		case err := <-done:
			cancel()
			return err
		case snap := <-tick:
			seconds++
			switch {
			case seconds == 3 && len(snap) < 3:
				seconds = 2 // wait until all three answer
			case seconds == 3:
				log.Print("demo: kill -9 grpc-1: its calls in flight fail, the next ones go to the others")
				kids[0].Process.Kill()
				kids[0].Wait()
				kids = kids[1:]
			case seconds == 6:
				log.Print("demo: SIGTERM grpc-2: drained, then stopped gracefully: no call fails")
				kids[0].Process.Signal(syscall.SIGTERM)
				kids[0].Wait()
				kids = kids[1:]
			case seconds == 9:
				cancel()
				<-done
				return nil
			}
		}
	}
}

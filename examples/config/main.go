// Command config shows Rafting's configuration store: three instances
// follow a feature flag and compete for one job's ownership. The demo
// flips the flag (as `rafting kv put` would) and every instance reports
// the new value within milliseconds; then it kills the job's owner with
// SIGKILL, and another instance takes the job once the servers end the
// dead one's session (drop_grace, about half a second).
//
// With a cluster running (make run) and its settings exported:
//
//	export RAFTING_SERVERS=127.0.0.1:7070,127.0.0.1:7170,127.0.0.1:7270 RAFTING_TOKEN=...
//	go run ./examples/config
//
// An instance also runs alone, and the flag flips from the CLI:
//
//	go run ./examples/config -role instance -id cfg-1
//	rafting kv put flags/greeting '{"text":"hello","loud":true}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rafting/rafting/sdk"
)

const (
	flagKey  = "flags/greeting"
	ownerKey = "jobs/report/owner"
)

type greeting struct {
	Text string `json:"text"`
	Loud bool   `json:"loud"`
}

func main() {
	role := flag.String("role", "demo", "demo or instance")
	id := flag.String("id", "", "the instance's ID (role instance)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "instance":
		err = instance(ctx, *id)
	case "demo":
		err = demo(ctx)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// instance joins, follows the flag, and runs the report job whenever it
// holds the owner key, trying to take it when nobody does.
func instance(ctx context.Context, id string) error {
	m, err := sdk.Join(ctx, sdk.Instance{Service: "config-demo", ID: id})
	if err != nil {
		return err
	}
	defer m.Leave(context.Background()) // deletes the owner key with the session
	flags, err := m.Client().Config(ctx, "flags")
	if err != nil {
		return err
	}
	stopFlags := flags.OnChange(func(s sdk.ConfigSnapshot) {
		kv, ok := s.Get(flagKey)
		if !ok {
			fmt.Printf("%s %s: flag unset\n", stamp(), id)
			return
		}
		g, err := sdk.Decode[greeting](kv)
		if err != nil {
			fmt.Printf("%s %s: flag at %d is not valid: %v\n", stamp(), id, kv.ModIndex, err)
			return
		}
		if g.Loud {
			g.Text = strings.ToUpper(g.Text)
		}
		fmt.Printf("%s %s: flag %q (mod_index %d)\n", stamp(), id, g.Text, kv.ModIndex)
	})
	defer stopFlags()

	jobs, err := m.Client().Config(ctx, "jobs/report")
	if err != nil {
		return err
	}
	owned := false
	for snap := range jobs.Watch(ctx) {
		if _, held := snap.Get(ownerKey); held || owned {
			continue
		}
		_, err := m.PutEphemeral(ctx, ownerKey, []byte(id))
		switch {
		case err == nil:
			owned = true
			fmt.Printf("%s %s: owns the report job\n", stamp(), id)
		case errors.Is(err, sdk.ErrConflict):
			// another instance took it first
		default:
			return err
		}
	}
	return ctx.Err()
}

// demo runs three instances as child processes, flips the flag twice,
// then kills the job's owner.
func demo(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c, err := sdk.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Put(ctx, flagKey, []byte(`{"text":"hello"}`)); err != nil {
		return err
	}
	children := map[string]*exec.Cmd{}
	defer func() {
		for _, cmd := range children {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, cmd := range children {
			cmd.Wait()
		}
	}()
	for _, id := range []string{"cfg-1", "cfg-2", "cfg-3"} {
		cmd := exec.Command(self, "-role", "instance", "-id", id)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		children[id] = cmd
	}
	jobs, err := c.Config(ctx, "jobs/report")
	if err != nil {
		return err
	}
	owner, err := waitOwner(ctx, jobs, "")
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let every instance report the first value

	fmt.Printf("\n== %s flipping the flag (as: rafting kv put %s '{\"text\":\"hello\",\"loud\":true}')\n", stamp(), flagKey)
	if _, err := c.Put(ctx, flagKey, []byte(`{"text":"hello","loud":true}`)); err != nil {
		return err
	}
	time.Sleep(time.Second)

	fmt.Printf("\n== %s kill -9 %s, the report job's owner: its key goes with its session\n", stamp(), owner)
	start := time.Now()
	if err := children[owner].Process.Kill(); err != nil {
		return err
	}
	children[owner].Wait()
	delete(children, owner)
	next, err := waitOwner(ctx, jobs, owner)
	if err != nil {
		return err
	}
	fmt.Printf("== %s owns the job %v after the kill\n", next, time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	return nil
}

// waitOwner waits until the job's owner is someone other than not.
func waitOwner(ctx context.Context, jobs *sdk.Config, not string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for snap := range jobs.Watch(ctx) {
		if kv, ok := snap.Get(ownerKey); ok && string(kv.Value) != not {
			return string(kv.Value), nil
		}
	}
	return "", fmt.Errorf("no new owner of %s: %w", ownerKey, ctx.Err())
}

func stamp() string { return time.Now().Format("15:04:05.000") }

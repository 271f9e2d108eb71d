package sdk_test

import (
	"context"
	"errors"
	"log"
	"sync/atomic"

	"github.com/rafting/rafting/sdk"
)

// A feature flag that every instance follows: the view of the "flags"
// subtree is filled by a consistent read, then kept current; OnChange
// calls back at once with the current value, then at each change, and
// while the servers are unreachable the view keeps the last known values
// (marked Stale) instead of falling back to defaults. An operator flips
// the flag with `rafting kv put flags/checkout '{"enabled":true,"percent":10}'`,
// or a program with Put.
func ExampleClient_Config() {
	ctx := context.Background()
	c, err := sdk.Connect(ctx) // RAFTING_SERVERS, RAFTING_TOKEN
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	flags, err := c.Config(ctx, "flags")
	if err != nil {
		log.Fatal(err)
	}
	type checkout struct {
		Enabled bool `json:"enabled"`
		Percent int  `json:"percent"`
	}
	var current atomic.Pointer[checkout] // read per request, lock-free
	current.Store(&checkout{})
	stop := flags.OnChange(func(s sdk.ConfigSnapshot) {
		kv, ok := s.Get("flags/checkout")
		if !ok {
			current.Store(&checkout{}) // deleted: off
			return
		}
		f, err := sdk.Decode[checkout](kv)
		if err != nil {
			log.Printf("flags/checkout at %d: %v: keeping the last good value", kv.ModIndex, err)
			return
		}
		current.Store(&f)
	})
	defer stop()

	// Elsewhere: a rollout step that holds only if nobody changed the flag
	// since it was read.
	kv, _ := flags.Get("flags/checkout")
	_, err = c.CompareAndSet(ctx, "flags/checkout", []byte(`{"enabled":true,"percent":50}`), kv.ModIndex)
	if errors.Is(err, sdk.ErrConflict) {
		log.Print("someone else changed the flag: read it again")
	}
}

// A job that one instance runs at a time: the instance that creates the
// ephemeral key holds it until its process goes (Leave, or its session's
// end after a crash); the others see it held and wait for it to go.
func ExampleMember_PutEphemeral() {
	ctx := context.Background()
	m, err := sdk.Join(ctx, sdk.Instance{Service: "reports"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Leave(context.Background()) // deletes the key with the session
	_, err = m.PutEphemeral(ctx, "jobs/nightly-report/owner", []byte(m.ID()))
	switch {
	case errors.Is(err, sdk.ErrConflict):
		log.Print("another instance holds the job")
	case err != nil:
		log.Fatal(err)
	default:
		runReport(ctx)
		_ = m.DeleteEphemeral(ctx, "jobs/nightly-report/owner") // done: let another take it
	}
}

func runReport(ctx context.Context) {}

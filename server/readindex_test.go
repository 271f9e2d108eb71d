package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestReadIndexRightAfterElection: a read on a shard whose leader was
// elected a moment ago (before it committed an entry of its term, when
// Dragonboat drops a ReadIndex) waits for that entry within its bound
// instead of failing at once: the first read of a new tenant on every
// node succeeds. It flaked TestReadOnlyToken as a 503 "catching up".
func TestReadIndexRightAfterElection(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	for i := range 6 {
		name := fmt.Sprintf("t%d", i)
		c.CreateTenant(name, api.Quotas{})
		for id := 1; id <= 3; id++ {
			tr, ok := c.Server(id).Node().Tenant(name)
			if !ok {
				t.Fatalf("node %d does not run %s", id, name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := tr.ReadIndex(ctx)
			cancel()
			if err != nil {
				t.Fatalf("first ReadIndex of %s on node %d: %v", name, id, err)
			}
		}
	}
}

package httpapi_test

import (
	"testing"

	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam2PublicRoutesAreUnlimited: "requests without a valid token
// share one small per-address bucket" (DESIGN.md; 5 a second, burst 10),
// and a refusal of it is held. The routes that need no token skipped it
// whole: GET /v1/openapi.json answers 72 KB to anyone, as often as asked,
// and so did a path no route matches (404). From one address, on 8
// keep-alive connections, a client without a token had all 800 of its
// requests answered in 91 ms (57.7 MB of OpenAPI document; 404s likewise
// in 63 ms): a tiny request for a 72 KB answer, as fast as the node could
// write them, no hold, no 429. /healthz and /readyz stay unlimited (peers,
// probes and load balancers ask them often from few addresses; their
// answers are small).
func TestRedTeam2PublicRoutesAreUnlimited(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	for _, path := range []string{"/v1/openapi.json", "/v1/no-such-route"} {
		c.RequireAnonymousLimited(t, 1, path)
	}
}

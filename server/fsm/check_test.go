package fsm

import (
	"testing"

	"github.com/rafting/rafting/api"
)

// TestCheckRegisterNamesFirstBadMeta: a registration with several bad meta
// entries is refused naming the first in key order, every time, so every
// replica refuses the entry alike (it named a random one: the map's order).
func TestCheckRegisterNamesFirstBadMeta(t *testing.T) {
	meta := map[string]string{}
	for _, k := range []string{"k5", "k3", "k8", "k2", "k6", "k4", "k7"} {
		meta[k] = "bad\x01"
	}
	c := Register{Service: "web", ID: "w1", Instance: api.RegisterRequest{Address: "a:1", Meta: meta}}
	const want = "meta.k2: control character U+0001 at byte 3"
	for i := range 50 {
		if err := CheckCommand(c, api.Quotas{}, "acme"); err == nil || err.Code != api.CodeBadRequest || err.Message != want {
			t.Fatalf("try %d: CheckCommand() = %v, want bad_request %q", i, err, want)
		}
	}
	meta[""] = "x"
	if err := CheckCommand(c, api.Quotas{}, "acme"); err == nil || err.Message != "meta: keys must not be empty" {
		t.Fatalf("with an empty key: CheckCommand() = %v, want the empty key named", err)
	}
}

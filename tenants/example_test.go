package tenants_test

import (
	"fmt"
	"time"

	"github.com/rafting/rafting/tenants"
)

// A token is printed and logged redacted; only Reveal gives the secret.
func ExampleFormatToken() {
	tok := tenants.FormatToken("acme", "q0uNHbkX2o_2VRrk4Ouv1BtpQcDh-qmIHkmsVfE7cZQ")
	fmt.Println(tok)
	fmt.Printf("%q %#v\n", tok, tok)
	tenant, ok := tenants.ParseToken(tok.Reveal())
	fmt.Println(tenant, ok)
	// Output:
	// rft_acme_…
	// "rft_acme_…" tenants.Token(rft_acme_…)
	// acme true
}

// The meta shard stores only hashes; a rotation keeps the old token working
// for a while, and a retried rotation is a no-op.
func ExampleRotate() {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	oldTok := tenants.FormatToken("acme", tenants.NewSecret())
	newTok := tenants.FormatToken("acme", tenants.NewSecret())

	creds := tenants.Credentials{Current: tenants.HashToken(oldTok.Reveal())}
	creds, changed := tenants.Rotate(creds, tenants.HashToken(newTok.Reveal()), now, 10*time.Minute)
	fmt.Println("rotated:", changed)
	_, changed = tenants.Rotate(creds, tenants.HashToken(newTok.Reveal()), now, 10*time.Minute)
	fmt.Println("retry rotated:", changed)

	for _, at := range []time.Duration{0, 10 * time.Minute} {
		fmt.Printf("+%v old=%v new=%v\n", at,
			creds.Match(tenants.HashToken(oldTok.Reveal()), now.Add(at)),
			creds.Match(tenants.HashToken(newTok.Reveal()), now.Add(at)))
	}
	// Output:
	// rotated: true
	// retry rotated: false
	// +0s old=true new=true
	// +10m0s old=false new=true
}

// The server keeps one Limiters per use and asks it before doing any work.
func ExampleLimiters() {
	var requests tenants.Limiters
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	q := tenants.DefaultQuotas()
	q.RequestsPerSecond, q.Burst = 2, 3

	for i := range 4 {
		ok, retryAfter := requests.Allow("acme", float64(q.RequestsPerSecond), int(q.Burst), now)
		fmt.Println(i, ok, retryAfter)
	}
	// Output:
	// 0 true 0s
	// 1 true 0s
	// 2 true 0s
	// 3 false 500ms
}

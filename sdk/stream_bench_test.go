package sdk_test

import (
	"testing"

	"github.com/rafting/rafting/sdk"
)

// BenchmarkPropagationStream is BenchmarkPropagation with the 100 Clients
// on the client stream (WithClientStream): one watch per Client, changes
// as deltas.
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./sdk/
func BenchmarkPropagationStream(b *testing.B) { benchPropagation(b, sdk.WithClientStream(true)) }

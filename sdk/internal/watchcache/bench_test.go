package watchcache

import (
	"fmt"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// BenchmarkApplyDelta measures the cache's hot path: an answer that
// differs from a 100-instance view in one instance (as a watch's changes
// frame makes it), applied with the SDK's default quarantine, without a
// listener and with one that counts the instances not ready (a
// Balancer's).
func BenchmarkApplyDelta(b *testing.B) {
	for _, listen := range []bool{false, true} {
		b.Run(fmt.Sprint("listener=", listen), func(b *testing.B) {
			var x, y []api.Instance
			for i := range 100 {
				x = append(x, ready(fmt.Sprintf("i%03d", i)))
			}
			y = append(y, x...)
			y[50].Weight = 50
			c := New(Config{Service: "s", Quarantine: 10 * time.Second})
			c.Apply(&api.ServiceResponse{Index: 1, ModifyIndex: 1, Service: "s", Instances: x}, 1)
			notReady := 0
			if listen {
				c.Listen(func(v *View) {
					notReady = 0
					for _, in := range v.Instances {
						if !Pickable(in) {
							notReady++
						}
					}
				})
			}
			b.ReportAllocs()
			idx := uint64(1)
			for b.Loop() {
				idx++
				ins := x
				if idx%2 == 0 {
					ins = y
				}
				if got := c.Apply(&api.ServiceResponse{Index: idx, ModifyIndex: idx, Service: "s", Instances: ins}, 1); got != Applied {
					b.Fatalf("Apply() = %v", got)
				}
			}
		})
	}
}

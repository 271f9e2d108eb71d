package metrics

import (
	"io"
	"strconv"
	"testing"
)

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().NewCounterVec("c_total", "C.", "route").With("renew")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkCounterAddFloat(b *testing.B) {
	c := NewRegistry().NewCounter("c_total", "C.")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(0.5)
		}
	})
}

func BenchmarkGaugeAdd(b *testing.B) {
	g := NewRegistry().NewGauge("g", "G.")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Add(1)
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogramVec("h_seconds", "H.", DefBuckets, "route").With("renew")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := 0.0001
		for pb.Next() {
			h.Observe(v)
			if v *= 1.7; v > 20 {
				v = 0.0001
			}
		}
	})
}

func BenchmarkCounterVecWith(b *testing.B) {
	for _, labels := range [][]string{{"acme"}, {"acme", "renew", "200"}} {
		b.Run(strconv.Itoa(len(labels))+"labels", func(b *testing.B) {
			names := []string{"a", "b", "c"}[:len(labels)]
			v := NewRegistry().NewCounterVec("c_total", "C.", names...)
			v.With(labels...)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if len(labels) == 1 {
						v.With("acme").Inc()
					} else {
						v.With("acme", "renew", "200").Inc()
					}
				}
			})
		})
	}
}

// BenchmarkWriteText scrapes 1000 counter series and 100 histogram series.
func BenchmarkWriteText(b *testing.B) {
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "C.", "tenant", "code")
	h := r.NewHistogramVec("h_seconds", "H.", nil, "tenant")
	for i := range 1000 {
		c.With("tenant-"+strconv.Itoa(i/10), strconv.Itoa(200+i%10)).Add(float64(i))
	}
	for i := range 100 {
		h.With("tenant-" + strconv.Itoa(i)).Observe(float64(i) / 1000)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

package metrics

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestConcurrent runs writers of every kind against concurrent scrapes and
// series deletion; under -race it finds unsynchronised access, and at the end
// every increment must be accounted for.
func TestConcurrent(t *testing.T) {
	const writers, perWriter = 8, 2000
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "C.", "w")
	total := r.NewCounter("total", "Total.")
	g := r.NewGauge("g", "G.")
	h := r.NewHistogramVec("h", "H.", []float64{0.25, 0.5, 0.75}, "w")
	churn := r.NewGaugeVec("churn", "Created and deleted.", "id")
	r.NewGaugeFunc("f", "F.", []string{"id"}, func(emit func(float64, ...string)) {
		emit(total.Value(), "total")
	})

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 2; i++ {
		wg.Go(func() {
			var last float64
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Not scrape: t.Fatal may not be called off the test goroutine.
				var b strings.Builder
				if err := r.WriteText(&b); err != nil {
					t.Error(err)
					return
				}
				fams, err := parseText(b.String())
				if err != nil {
					t.Error(err)
					return
				}
				for _, f := range fams {
					if f.name == "total" {
						if v := f.samples[0].value; v < last {
							t.Errorf("total went down: %v after %v", v, last)
						} else {
							last = v
						}
					}
				}
			}
		})
	}
	var writersWG sync.WaitGroup
	for w := 0; w < writers; w++ {
		writersWG.Go(func() {
			label := strconv.Itoa(w % 3)
			for i := 0; i < perWriter; i++ {
				c.With(label).Inc()
				total.Inc()
				g.Add(1)
				h.With(label).Observe(float64(i%4) / 4)
				id := strconv.Itoa(i % 5)
				churn.With(id).Set(1)
				churn.DeleteLabelValues(id)
			}
		})
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()

	if got, want := total.Value(), float64(writers*perWriter); got != want {
		t.Errorf("total = %v, want %v", got, want)
	}
	if got, want := g.Value(), float64(writers*perWriter); got != want {
		t.Errorf("gauge = %v, want %v", got, want)
	}
	var sum float64
	for _, l := range []string{"0", "1", "2"} {
		sum += c.With(l).Value()
	}
	if sum != writers*perWriter {
		t.Errorf("sum of c_total = %v, want %v", sum, writers*perWriter)
	}
	fams, err := parseText(scrape(t, r))
	if err != nil {
		t.Fatal(err)
	}
	var count float64
	for _, f := range fams {
		if f.name != "h" {
			continue
		}
		for _, s := range f.samples {
			if s.name == "h_count" {
				count += s.value
			}
		}
	}
	if count != writers*perWriter {
		t.Errorf("sum of h_count = %v, want %v", count, writers*perWriter)
	}
}

package metrics

import (
	"slices"
	"strings"
	"sync"
)

// seriesMap holds the series of one labelled family, keyed by their label
// values joined with labelSep. Lookups take a read lock; only the first With
// of a label set takes the write lock.
type seriesMap[T any] struct {
	labelNames []string
	errs       *usageErrors
	newMetric  func() *T

	mu     sync.RWMutex
	series map[string]*series[T]
}

type series[T any] struct {
	values []string // as written, for sorting
	pairs  string   // escaped name="value" pairs without braces
	metric *T
}

func newSeriesMap[T any](labelNames []string, errs *usageErrors, newMetric func() *T) *seriesMap[T] {
	return &seriesMap[T]{
		labelNames: slices.Clone(labelNames),
		errs:       errs,
		newMetric:  newMetric,
		series:     make(map[string]*series[T]),
	}
}

// keyBuf is the stack buffer for series keys; longer keys allocate.
const keyBuf = 256

// with returns the metric for values, creating it on first use. The wrong
// number of values is padded with "" or truncated, and invalid UTF-8 is
// replaced with U+FFFD; either is counted as a usage error.
func (s *seriesMap[T]) with(values []string) *T {
	values = normaliseLabels(values, len(s.labelNames), s.errs)
	var buf [keyBuf]byte
	var key []byte
	if len(values) > 1 {
		key = appendKey(buf[:0], values)
	}
	var e *series[T]
	s.mu.RLock()
	switch len(values) {
	case 0:
		e = s.series[""]
	case 1:
		e = s.series[values[0]]
	default:
		e = s.series[string(key)] // no allocation: the compiler elides the conversion
	}
	s.mu.RUnlock()
	if e != nil {
		return e.metric
	}
	return s.create(values)
}

// create is the slow path of with. It copies values so that the caller's
// variadic slice does not escape.
func (s *seriesMap[T]) create(values []string) *T {
	key := string(appendKey(nil, values))
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.series[key]; e != nil {
		return e.metric
	}
	// A new variable: escape analysis is flow-insensitive, and storing a
	// reassigned values would make every caller's variadic slice escape.
	owned := slices.Clone(values)
	e := &series[T]{
		values: owned,
		pairs:  string(appendLabelPairs(nil, s.labelNames, owned)),
		metric: s.newMetric(),
	}
	s.series[key] = e
	return e.metric
}

// delete removes the series of values and reports whether it existed. The
// wrong number of values matches nothing.
func (s *seriesMap[T]) delete(values []string) bool {
	if len(values) != len(s.labelNames) {
		return false
	}
	values = normaliseLabels(values, len(s.labelNames), s.errs)
	key := string(appendKey(nil, values))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.series[key]
	delete(s.series, key)
	return ok
}

// sorted returns a snapshot of the series sorted by label values.
func (s *seriesMap[T]) sorted() []*series[T] {
	s.mu.RLock()
	list := make([]*series[T], 0, len(s.series))
	for _, e := range s.series {
		list = append(list, e)
	}
	s.mu.RUnlock()
	slices.SortFunc(list, func(a, b *series[T]) int { return slices.Compare(a.values, b.values) })
	return list
}

// normaliseLabels returns values with exactly n elements, all valid UTF-8,
// counting each correction in errs. It returns values itself when nothing
// needs correcting, and a new slice otherwise.
func normaliseLabels(values []string, n int, errs *usageErrors) []string {
	if len(values) != n {
		errs.count(usageLabelCount)
		fixed := make([]string, n)
		copy(fixed, values)
		values = fixed
	}
	if !validUTF8(values) {
		errs.count(usageInvalidLabelValue)
		fixed := make([]string, n)
		for i, v := range values {
			fixed[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
		values = fixed
	}
	return values
}

// funcFamily is a family whose series a collector emits at scrape time.
type funcFamily struct {
	name       string
	labelNames []string
	counter    bool // reject negative and NaN values
	errs       *usageErrors
	collect    func(emit func(value float64, labelValues ...string))
}

type funcSample struct {
	values []string
	value  float64
}

func (f *funcFamily) appendSamples(b []byte) []byte {
	var samples []funcSample
	f.collect(func(value float64, labelValues ...string) {
		if f.counter && !(value >= 0) {
			f.errs.count(usageInvalidValue)
			return
		}
		labelValues = normaliseLabels(labelValues, len(f.labelNames), f.errs)
		samples = append(samples, funcSample{values: slices.Clone(labelValues), value: value})
	})
	// Stable, so that of duplicates the last emitted is kept.
	slices.SortStableFunc(samples, func(a, b funcSample) int { return slices.Compare(a.values, b.values) })
	for i, s := range samples {
		if i+1 < len(samples) && slices.Equal(s.values, samples[i+1].values) {
			f.errs.count(usageDuplicateSeries)
			continue
		}
		b = append(b, f.name...)
		if len(f.labelNames) > 0 {
			b = append(b, '{')
			b = appendLabelPairs(b, f.labelNames, s.values)
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = appendFloat(b, s.value)
		b = append(b, '\n')
	}
	return b
}

// newFunc registers a funcFamily.
func (r *Registry) newFunc(name, help, typ string, labelNames []string, collect func(emit func(value float64, labelValues ...string))) {
	if collect == nil {
		panic("metrics: " + name + ": nil collect function")
	}
	f := &funcFamily{
		name:       name,
		labelNames: slices.Clone(labelNames),
		counter:    typ == "counter",
		errs:       &r.errs,
		collect:    collect,
	}
	r.register(name, help, typ, f.labelNames, nil, f.appendSamples)
}

package metrics

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// ContentType is the Content-Type of the text exposition format 0.0.4, which
// WriteText produces and Handler serves.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// UsageErrorsName is the counter every Registry exports for misuse it
// corrected at run time instead of panicking, by kind; see the package doc.
const UsageErrorsName = "metrics_usage_errors_total"

// A Registry holds metric families and writes them in the text format. Create
// one with NewRegistry; the zero value is not usable. All methods are safe for
// concurrent use.
type Registry struct {
	mu    sync.Mutex        // serialises registration
	names map[string]string // every name a family writes -> the family's name

	// families is sorted by name and replaced whole on registration, so a
	// scrape reads it without locking.
	families atomic.Pointer[[]*family]
	// sizeHint is the length of the last scrape, to size the next buffer.
	sizeHint atomic.Int64

	errs usageErrors
}

// family is one registered metric family: its # HELP and # TYPE lines and a
// function that appends its samples.
type family struct {
	name          string
	header        string
	appendSamples func(b []byte) []byte
}

// NewRegistry returns an empty Registry, but for its own
// metrics_usage_errors_total counter.
func NewRegistry() *Registry {
	r := &Registry{names: make(map[string]string)}
	r.families.Store(new([]*family))
	r.register(UsageErrorsName,
		"Misuses of the metrics API corrected at run time instead of panicking, by kind.",
		"counter", []string{"kind"}, nil, r.errs.appendSamples)
	return r
}

// register adds a family or panics on a programmer error: an invalid name,
// help text or label name, or a name clash with a registered family.
// suffixes are the extra sample names the family writes (name+suffix).
func (r *Registry) register(name, help, typ string, labelNames, suffixes []string, appendSamples func([]byte) []byte) {
	if !validMetricName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q: want [a-zA-Z_:][a-zA-Z0-9_:]*", name))
	}
	if help == "" || !utf8.ValidString(help) {
		panic(fmt.Sprintf("metrics: %s: help must be non-empty UTF-8", name))
	}
	for i, l := range labelNames {
		if !validLabelName(l) {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q: want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __", name, l))
		}
		if typ == "histogram" && l == "le" {
			panic(fmt.Sprintf("metrics: %s: label name \"le\" is reserved in histograms", name))
		}
		if slices.Contains(labelNames[:i], l) {
			panic(fmt.Sprintf("metrics: %s: duplicate label name %q", name, l))
		}
	}

	header := make([]byte, 0, 2*len(name)+len(help)+len(typ)+16)
	header = append(header, "# HELP "...)
	header = append(header, name...)
	header = append(header, ' ')
	header = appendHelp(header, help)
	header = append(header, "\n# TYPE "...)
	header = append(header, name...)
	header = append(header, ' ')
	header = append(header, typ...)
	header = append(header, '\n')
	f := &family{name: name, header: string(header), appendSamples: appendSamples}

	r.mu.Lock()
	defer r.mu.Unlock()
	written := append([]string{name}, suffixes...)
	for i, s := range written {
		if i > 0 {
			written[i] = name + s
		}
		if owner, ok := r.names[written[i]]; ok {
			panic(fmt.Sprintf("metrics: %s: name %q is already written by family %s", name, written[i], owner))
		}
	}
	for _, s := range written {
		r.names[s] = name
	}
	old := *r.families.Load()
	i, _ := slices.BinarySearchFunc(old, name, func(f *family, name string) int { return strings.Compare(f.name, name) })
	fams := slices.Insert(slices.Clip(old), i, f)
	r.families.Store(&fams)
}

// WriteText writes every family, sorted by name, in the text exposition
// format 0.0.4: # HELP and # TYPE lines, then the samples sorted by label
// values. A family with no series writes only its two comment lines.
//
// The text is built in memory and written with a single Write. Collectors of
// NewGaugeFunc and NewCounterFunc run during the call, on its goroutine.
func (r *Registry) WriteText(w io.Writer) error {
	if _, err := w.Write(r.appendText()); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// appendText returns the whole exposition.
func (r *Registry) appendText() []byte {
	b := make([]byte, 0, r.sizeHint.Load()+r.sizeHint.Load()/8)
	usageAt := -1
	for _, f := range *r.families.Load() {
		b = append(b, f.header...)
		if f.name == UsageErrorsName {
			usageAt = len(b)
			continue
		}
		b = f.appendSamples(b)
	}
	// The usage errors go in last, so that they include those that the
	// collectors of this scrape made.
	if usageAt >= 0 {
		var buf [512]byte
		b = slices.Insert(b, usageAt, r.errs.appendSamples(buf[:0])...)
	}
	r.sizeHint.Store(int64(len(b)))
	return b
}

// Handler returns an http.Handler that answers GET and HEAD with the
// registry's text exposition (Content-Type ContentType) and any other method
// with 405 Method Not Allowed.
//
// The handler does no authentication or authorisation: metrics name tenants
// and shards, so the caller decides who may scrape, by wrapping the handler
// or by serving it on a separate listener.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b := r.appendText()
		h := w.Header()
		h.Set("Content-Type", ContentType)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if req.Method == http.MethodGet {
			// An error here means the scraper went away; there is no one to tell.
			_, _ = w.Write(b)
		}
	})
}

// usageKind indexes usageErrors; the order is the sorted order of the names.
type usageKind int

const (
	usageDuplicateSeries   usageKind = iota // a func collector emitted one label set twice
	usageInvalidLabelValue                  // a label value was not valid UTF-8
	usageInvalidValue                       // a negative or NaN counter increment, a NaN observation
	usageLabelCount                         // the wrong number of label values
	numUsageKinds
)

var usageKindNames = [numUsageKinds]string{
	usageDuplicateSeries:   "duplicate_series",
	usageInvalidLabelValue: "invalid_label_value",
	usageInvalidValue:      "invalid_value",
	usageLabelCount:        "label_count",
}

// usageErrors counts misuse by kind. A nil *usageErrors counts nothing.
type usageErrors [numUsageKinds]atomic.Uint64

func (u *usageErrors) count(k usageKind) {
	if u != nil {
		u[k].Add(1)
	}
}

func (u *usageErrors) appendSamples(b []byte) []byte {
	for k, name := range usageKindNames {
		b = append(b, UsageErrorsName...)
		b = append(b, `{kind="`...)
		b = append(b, name...)
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, u[k].Load(), 10)
		b = append(b, '\n')
	}
	return b
}

package metrics

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// scrape returns the registry's text and fails t if it does not parse.
func scrape(t testing.TB, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatalf("WriteText() = %v", err)
	}
	if _, err := parseText(b.String()); err != nil {
		t.Fatalf("parseText() = %v\n%s", err, b.String())
	}
	return b.String()
}

// usageLines is the metrics_usage_errors_total family with the given counts
// for duplicate_series, invalid_label_value, invalid_value and label_count.
func usageLines(dup, utf, value, count string) string {
	return `# HELP metrics_usage_errors_total Misuses of the metrics API corrected at run time instead of panicking, by kind.
# TYPE metrics_usage_errors_total counter
metrics_usage_errors_total{kind="duplicate_series"} ` + dup + `
metrics_usage_errors_total{kind="invalid_label_value"} ` + utf + `
metrics_usage_errors_total{kind="invalid_value"} ` + value + `
metrics_usage_errors_total{kind="label_count"} ` + count + `
`
}

func TestGolden(t *testing.T) {
	r := NewRegistry()
	reqs := r.NewCounterVec("http_requests_total", "HTTP requests by route and code.", "route", "code")
	reqs.With("renew", "200").Add(3)
	reqs.With("join", "409").Inc()
	reqs.With("join", "200").Add(2.5)
	r.NewCounterVec("unused_total", "A family with no series yet.", "tenant")
	up := r.NewCounter("restarts_total", "Restarts.")
	up.Inc()
	g := r.NewGaugeVec("sessions", "Open sessions by tenant.", "tenant")
	g.With("acme").Set(7)
	g.With("beta").Set(-0.25)
	r.NewGauge("is_leader", "1 if this node leads shard 0.").Set(1)
	h := r.NewHistogram("latency_seconds", "Request latency.", []float64{0.01, 0.1, 1})
	for _, v := range []float64{0.005, 0.01, 0.05, 2} {
		h.Observe(v)
	}
	hv := r.NewHistogramVec("op_seconds", "Operation latency by op.", []float64{0.5, 1}, "op")
	hv.With("put").Observe(0.75)
	r.NewGaugeFunc("applied_index", "Last applied index per shard.", []string{"shard"},
		func(emit func(float64, ...string)) {
			emit(120, "2")
			emit(7, "10")
		})
	r.NewCounterFunc("raft_messages_total", "Raft messages sent.", nil,
		func(emit func(float64, ...string)) { emit(1e21) })

	got := scrape(t, r)
	want := `# HELP applied_index Last applied index per shard.
# TYPE applied_index gauge
applied_index{shard="10"} 7
applied_index{shard="2"} 120
# HELP http_requests_total HTTP requests by route and code.
# TYPE http_requests_total counter
http_requests_total{route="join",code="200"} 2.5
http_requests_total{route="join",code="409"} 1
http_requests_total{route="renew",code="200"} 3
# HELP is_leader 1 if this node leads shard 0.
# TYPE is_leader gauge
is_leader 1
# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.01"} 2
latency_seconds_bucket{le="0.1"} 3
latency_seconds_bucket{le="1"} 3
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_sum 2.065
latency_seconds_count 4
` + usageLines("0", "0", "0", "0") + `# HELP op_seconds Operation latency by op.
# TYPE op_seconds histogram
op_seconds_bucket{op="put",le="0.5"} 0
op_seconds_bucket{op="put",le="1"} 1
op_seconds_bucket{op="put",le="+Inf"} 1
op_seconds_sum{op="put"} 0.75
op_seconds_count{op="put"} 1
# HELP raft_messages_total Raft messages sent.
# TYPE raft_messages_total counter
raft_messages_total 1e+21
# HELP restarts_total Restarts.
# TYPE restarts_total counter
restarts_total 1
# HELP sessions Open sessions by tenant.
# TYPE sessions gauge
sessions{tenant="acme"} 7
sessions{tenant="beta"} -0.25
# HELP unused_total A family with no series yet.
# TYPE unused_total counter
`
	if got != want {
		t.Errorf("WriteText() =\n%s\nwant\n%s", got, want)
	}
}

func TestEscaping(t *testing.T) {
	r := NewRegistry()
	const value = "back\\slash \"quoted\"\nnew line\ttab"
	const help = "Help with back\\slash, \"quotes\"\nand a new line."
	r.NewCounterVec("escaped_total", help, "v").With(value).Inc()
	got := scrape(t, r)
	for _, want := range []string{
		`# HELP escaped_total Help with back\\slash, "quotes"\nand a new line.` + "\n",
		`escaped_total{v="back\\slash \"quoted\"\nnew line` + "\t" + `tab"} 1` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteText() =\n%s\nwant it to contain\n%s", got, want)
		}
	}
	fams, _ := parseText(got)
	if fams[0].help != help || fams[0].samples[0].labels[0].value != value {
		t.Errorf("parsed help %q, value %q; want %q, %q", fams[0].help, fams[0].samples[0].labels[0].value, help, value)
	}
}

func TestLabelCount(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"exact", []string{"a", "b"}, `c_total{x="a",y="b"} 1`},
		{"none", nil, `c_total{x="",y=""} 1`},
		{"too few", []string{"a"}, `c_total{x="a",y=""} 1`},
		{"too many", []string{"a", "b", "c"}, `c_total{x="a",y="b"} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			r.NewCounterVec("c_total", "C.", "x", "y").With(tt.values...).Inc()
			got := scrape(t, r)
			if !strings.Contains(got, tt.want+"\n") {
				t.Errorf("WriteText() =\n%s\nwant it to contain %s", got, tt.want)
			}
			errs := "0"
			if len(tt.values) != 2 {
				errs = "1"
			}
			if !strings.Contains(got, usageLines("0", "0", "0", errs)) {
				t.Errorf("WriteText() =\n%s\nwant label_count %s", got, errs)
			}
		})
	}
}

func TestLabelCountUnlabelled(t *testing.T) {
	r := NewRegistry()
	v := r.NewGaugeVec("g", "G.")
	v.With("surplus").Set(2)
	if got := v.With().Value(); got != 2 {
		t.Errorf("With().Value() = %v, want 2 (the surplus value dropped)", got)
	}
	if got := scrape(t, r); !strings.Contains(got, "\ng 2\n") || !strings.Contains(got, usageLines("0", "0", "0", "1")) {
		t.Errorf("WriteText() =\n%s", got)
	}
}

func TestInvalidUTF8(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("c_total", "C.", "x")
	v.With("a\xffb").Inc()
	v.With("a\xfeb").Inc() // the same series once replaced
	got := scrape(t, r)
	if !strings.Contains(got, "c_total{x=\"a\uFFFDb\"} 2\n") || !strings.Contains(got, usageLines("0", "2", "0", "0")) {
		t.Errorf("WriteText() =\n%s", got)
	}
	if !v.DeleteLabelValues("a\xffb") {
		t.Errorf("DeleteLabelValues(invalid) = false, want true")
	}
}

func TestSeriesOrder(t *testing.T) {
	r := NewRegistry()
	v := r.NewGaugeVec("g", "G.", "a", "b")
	// Sorted by values element-wise: ("a","z") < ("ab","a") though "a\xffz" > "ab\xffa".
	for _, vs := range [][2]string{{"b", "a"}, {"ab", "a"}, {"a", "z"}, {"", "x"}, {"a", "y"}} {
		v.With(vs[0], vs[1]).Inc()
	}
	got := scrape(t, r)
	want := `g{a="",b="x"} 1
g{a="a",b="y"} 1
g{a="a",b="z"} 1
g{a="ab",b="a"} 1
g{a="b",b="a"} 1
`
	if !strings.Contains(got, want) {
		t.Errorf("WriteText() =\n%s\nwant series\n%s", got, want)
	}
}

func TestDeleteLabelValues(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "C.", "tenant")
	g := r.NewGaugeVec("g", "G.", "tenant")
	h := r.NewHistogramVec("h", "H.", []float64{1}, "tenant")
	for _, tenant := range []string{"acme", "beta"} {
		c.With(tenant).Inc()
		g.With(tenant).Inc()
		h.With(tenant).Observe(1)
	}
	held := c.With("acme")
	if !c.DeleteLabelValues("acme") || !g.DeleteLabelValues("acme") || !h.DeleteLabelValues("acme") {
		t.Fatalf("DeleteLabelValues(acme) = false, want true")
	}
	if c.DeleteLabelValues("acme") {
		t.Errorf("second DeleteLabelValues(acme) = true, want false")
	}
	if c.DeleteLabelValues("beta", "extra") || c.DeleteLabelValues() {
		t.Errorf("DeleteLabelValues(wrong count) = true, want false")
	}
	held.Inc() // still works, no longer exported
	got := scrape(t, r)
	if strings.Contains(got, "acme") || !strings.Contains(got, `c_total{tenant="beta"} 1`) {
		t.Errorf("WriteText() after delete =\n%s", got)
	}
	if v := c.With("acme").Value(); v != 0 {
		t.Errorf("With(acme).Value() after delete = %v, want 0", v)
	}
}

func TestCounterAdd(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("c_total", "C.")
	c.Inc()
	c.Add(2)
	c.Add(0.5)
	c.Add(0)
	c.Add(-1)
	c.Add(math.NaN())
	c.Add(1 << 60) // integral but not exact below 2^53: the float path
	if got, want := c.Value(), 3.5+(1<<60); got != want {
		t.Errorf("Value() = %v, want %v", got, want)
	}
	if got := scrape(t, r); !strings.Contains(got, usageLines("0", "0", "2", "0")) {
		t.Errorf("WriteText() =\n%s\nwant invalid_value 2", got)
	}
}

func TestGauge(t *testing.T) {
	r := NewRegistry()
	g := r.NewGauge("g", "G.")
	g.Set(10)
	g.Add(-2.5)
	g.Inc()
	g.Dec()
	g.Dec()
	if got := g.Value(); got != 6.5 {
		t.Errorf("Value() = %v, want 6.5", got)
	}
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{math.NaN(), "g NaN"},
		{math.Inf(+1), "g +Inf"},
		{math.Inf(-1), "g -Inf"},
		{-3, "g -3"},
		{1e-7, "g 1e-07"},
		{123456789, "g 123456789"},
		{1 << 53, "g 9.007199254740992e+15"},
		{0.1, "g 0.1"},
	} {
		g.Set(tt.v)
		if got := scrape(t, r); !strings.Contains(got, "\n"+tt.want+"\n") {
			t.Errorf("Set(%v): WriteText() =\n%s\nwant %s", tt.v, got, tt.want)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	tests := []struct {
		name    string
		observe []float64
		want    []float64 // cumulative, for le 1, 2, 5, +Inf
		sum     float64
	}{
		{"empty", nil, []float64{0, 0, 0, 0}, 0},
		{"bounds are inclusive", []float64{1, 2, 5}, []float64{1, 2, 3, 3}, 8},
		{"just above", []float64{1.0000001, 5.5}, []float64{0, 1, 1, 2}, 6.5000001},
		{"negative and zero", []float64{-3, 0}, []float64{2, 2, 2, 2}, -3},
		{"overflow", []float64{100, math.Inf(+1)}, []float64{0, 0, 0, 2}, math.Inf(+1)},
		{"NaN ignored", []float64{math.NaN(), 3}, []float64{0, 0, 1, 1}, 3},
		{"spread", []float64{0.5, 1.5, 1.5, 3, 4, 9}, []float64{1, 3, 5, 6}, 19.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			h := r.NewHistogram("h", "H.", []float64{1, 2, 5, math.Inf(+1)})
			for _, v := range tt.observe {
				h.Observe(v)
			}
			fams, err := parseText(scrape(t, r))
			if err != nil {
				t.Fatal(err)
			}
			s := fams[0].samples
			if len(s) != 6 {
				t.Fatalf("got %d samples, want 6: %v", len(s), s)
			}
			for i, want := range tt.want {
				if s[i].value != want {
					t.Errorf("bucket le=%s = %v, want %v", s[i].labels[0].value, s[i].value, want)
				}
			}
			if s[4].value != tt.sum || s[5].value != tt.want[3] {
				t.Errorf("_sum, _count = %v, %v; want %v, %v", s[4].value, s[5].value, tt.sum, tt.want[3])
			}
		})
	}
}

func TestDefBuckets(t *testing.T) {
	r := NewRegistry()
	r.NewHistogram("h_seconds", "H.", nil).Observe(0.003)
	got := scrape(t, r)
	want := `h_seconds_bucket{le="0.0005"} 0
h_seconds_bucket{le="0.001"} 0
h_seconds_bucket{le="0.0025"} 0
h_seconds_bucket{le="0.005"} 1
h_seconds_bucket{le="0.01"} 1
h_seconds_bucket{le="0.025"} 1
h_seconds_bucket{le="0.05"} 1
h_seconds_bucket{le="0.1"} 1
h_seconds_bucket{le="0.25"} 1
h_seconds_bucket{le="0.5"} 1
h_seconds_bucket{le="1"} 1
h_seconds_bucket{le="2.5"} 1
h_seconds_bucket{le="5"} 1
h_seconds_bucket{le="10"} 1
h_seconds_bucket{le="+Inf"} 1
h_seconds_sum 0.003
h_seconds_count 1
`
	if !strings.Contains(got, want) {
		t.Errorf("WriteText() =\n%s\nwant\n%s", got, want)
	}
}

func TestFuncs(t *testing.T) {
	r := NewRegistry()
	r.NewGaugeFunc("leader", "Leader per shard.", []string{"shard"}, func(emit func(float64, ...string)) {
		emit(1, "1")
		emit(3, "2")
		emit(2, "1") // duplicate: the last wins
		emit(4)      // too few: padded
		emit(5, "3", "extra")
	})
	r.NewCounterFunc("sent_total", "Sent.", []string{"peer"}, func(emit func(float64, ...string)) {
		emit(-1, "a")
		emit(math.NaN(), "b")
		emit(2, "c")
	})
	got := scrape(t, r)
	want := `# HELP leader Leader per shard.
# TYPE leader gauge
leader{shard=""} 4
leader{shard="1"} 2
leader{shard="2"} 3
leader{shard="3"} 5
` + usageLines("1", "0", "2", "2") + `# HELP sent_total Sent.
# TYPE sent_total counter
sent_total{peer="c"} 2
`
	if got != want {
		t.Errorf("WriteText() =\n%s\nwant\n%s", got, want)
	}
}

// TestFuncMayRegister checks that a collector runs without the registry's
// lock held: it can register (here, once) and scrape is not deadlocked.
func TestFuncMayRegister(t *testing.T) {
	r := NewRegistry()
	var once sync.Once
	r.NewGaugeFunc("a", "A.", nil, func(emit func(float64, ...string)) {
		once.Do(func() { r.NewGauge("b", "B.").Set(1) })
		emit(1)
	})
	scrape(t, r)
	if got := scrape(t, r); !strings.Contains(got, "\nb 1\n") {
		t.Errorf("second WriteText() =\n%s\nwant b 1", got)
	}
}

func TestRegistrationPanics(t *testing.T) {
	collect := func(func(float64, ...string)) {}
	tests := []struct {
		name     string
		register func(r *Registry)
	}{
		{"empty name", func(r *Registry) { r.NewCounter("", "H.") }},
		{"name with dash", func(r *Registry) { r.NewCounter("a-b", "H.") }},
		{"name starts with digit", func(r *Registry) { r.NewGauge("1a", "H.") }},
		{"empty help", func(r *Registry) { r.NewGauge("a", "") }},
		{"help not UTF-8", func(r *Registry) { r.NewGauge("a", "\xff") }},
		{"label with dot", func(r *Registry) { r.NewCounterVec("a", "H.", "x.y") }},
		{"reserved label", func(r *Registry) { r.NewGaugeVec("a", "H.", "__name") }},
		{"duplicate label", func(r *Registry) { r.NewGaugeVec("a", "H.", "x", "x") }},
		{"le in histogram", func(r *Registry) { r.NewHistogramVec("a", "H.", nil, "le") }},
		{"duplicate family", func(r *Registry) { r.NewGauge("a", "H."); r.NewCounter("a", "H.") }},
		{"histogram suffix taken", func(r *Registry) { r.NewCounter("a_count", "H."); r.NewHistogram("a", "H.", nil) }},
		{"suffix of histogram", func(r *Registry) { r.NewHistogram("a", "H.", nil); r.NewGauge("a_sum", "H.") }},
		{"usage errors name", func(r *Registry) { r.NewCounter(UsageErrorsName, "H.") }},
		{"unsorted buckets", func(r *Registry) { r.NewHistogram("a", "H.", []float64{1, 0.5}) }},
		{"equal buckets", func(r *Registry) { r.NewHistogram("a", "H.", []float64{1, 1}) }},
		{"NaN bucket", func(r *Registry) { r.NewHistogram("a", "H.", []float64{math.NaN()}) }},
		{"-Inf bucket", func(r *Registry) { r.NewHistogram("a", "H.", []float64{math.Inf(-1), 1}) }},
		{"nil collect", func(r *Registry) { r.NewGaugeFunc("a", "H.", nil, nil) }},
		{"func bad label", func(r *Registry) { r.NewCounterFunc("a", "H.", []string{"a b"}, collect) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			defer func() {
				p := recover()
				if s, _ := p.(string); !strings.HasPrefix(s, "metrics: ") {
					t.Errorf("register: recovered %v, want a panic starting \"metrics: \"", p)
				}
				scrape(t, r) // the registry still works
			}()
			tt.register(r)
		})
	}
}

func TestRegistrationOK(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("a:b_c1", "Colons are allowed.")
	r.NewHistogram("only_inf", "Only +Inf.", []float64{math.Inf(+1)}).Observe(3)
	r.NewHistogram("empty_buckets", "No bounds.", []float64{}).Observe(3)
	r.NewGaugeVec("g", "G.", "_x", "y1")
	got := scrape(t, r)
	if !strings.Contains(got, "only_inf_bucket{le=\"+Inf\"} 1\nonly_inf_sum 3\nonly_inf_count 1\n") {
		t.Errorf("WriteText() =\n%s", got)
	}
}

func TestZeroValues(t *testing.T) {
	var c Counter
	c.Inc()
	c.Add(-1)
	var g Gauge
	g.Dec()
	var h Histogram
	h.Observe(1)
	h.Observe(math.NaN())
	if c.Value() != 1 || g.Value() != -1 {
		t.Errorf("Counter, Gauge = %v, %v; want 1, -1", c.Value(), g.Value())
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("c_total", "C.").Inc()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("GET = %d %q, want 200 %q", resp.StatusCode, resp.Header.Get("Content-Type"), ContentType)
	}
	if want := scrape(t, r); string(body) != want {
		t.Errorf("GET body =\n%s\nwant\n%s", body, want)
	}

	resp, err = http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		t.Errorf("HEAD = %d, length %d; want 200 and a length", resp.StatusCode, resp.ContentLength)
	}

	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST = %d, Allow %q; want 405, \"GET, HEAD\"", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteTextError(t *testing.T) {
	if err := NewRegistry().WriteText(failWriter{}); !errors.Is(err, errWrite) {
		t.Errorf("WriteText() = %v, want %v", err, errWrite)
	}
}

func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"", "plain", `a\b"c` + "\nd", "\xff", "\\n", `\"`, "é€😀", "}{,=\" "} {
		f.Add(s, "Help.")
	}
	f.Add("x", "help \\ with \n newline and \"quotes\"")
	f.Fuzz(func(t *testing.T, value, help string) {
		r := NewRegistry()
		if help == "" || !utf8.ValidString(help) {
			help = "Help."
		}
		r.NewCounterVec("c_total", help, "v").With(value).Inc()
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		fams, err := parseText(b.String())
		if err != nil {
			t.Fatalf("parseText() = %v\n%s", err, b.String())
		}
		want := strings.ToValidUTF8(value, "\uFFFD")
		if got := fams[0].samples[0].labels[0].value; got != want {
			t.Errorf("label value = %q, want %q", got, want)
		}
		if fams[0].help != help {
			t.Errorf("help = %q, want %q", fams[0].help, help)
		}
	})
}

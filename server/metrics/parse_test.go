package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// This file is a strict reader of the text exposition format 0.0.4, used to
// check that everything the registry writes is well formed. It is stricter
// than Prometheus where the registry promises more: families sorted and
// unique, HELP before TYPE before samples, series sorted by label values,
// no duplicate series, histograms complete and cumulative.

type parsedFamily struct {
	name, help, typ string
	samples         []parsedSample
}

type parsedSample struct {
	name   string
	labels []labelPair
	value  float64
}

type labelPair struct{ name, value string }

// parseText parses and checks an exposition.
func parseText(text string) ([]parsedFamily, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("text does not end in a line feed")
	}
	var fams []parsedFamily
	seen := make(map[string]bool) // series, as name{labels}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if text == "" {
		lines = nil
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		lineErr := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, ok := strings.Cut(rest, " ")
			if !ok || !validMetricName(name) {
				return nil, lineErr("bad HELP")
			}
			h, err := unescape(help, false)
			if err != nil {
				return nil, lineErr("%v", err)
			}
			if n := len(fams); n > 0 && fams[n-1].name >= name {
				return nil, lineErr("family %s not after %s", name, fams[n-1].name)
			}
			if i+1 >= len(lines) {
				return nil, lineErr("HELP without TYPE")
			}
			i++
			line = lines[i]
			typ, ok := strings.CutPrefix(line, "# TYPE "+name+" ")
			if !ok || !slices.Contains([]string{"counter", "gauge", "histogram"}, typ) {
				return nil, lineErr("want # TYPE %s counter|gauge|histogram", name)
			}
			fams = append(fams, parsedFamily{name: name, help: h, typ: typ})
			continue
		}
		if strings.HasPrefix(line, "#") {
			return nil, lineErr("unexpected comment")
		}
		if len(fams) == 0 {
			return nil, lineErr("sample before any family")
		}
		f := &fams[len(fams)-1]
		s, err := parseSample(line)
		if err != nil {
			return nil, lineErr("%v", err)
		}
		want := []string{f.name}
		if f.typ == "histogram" {
			want = []string{f.name + "_bucket", f.name + "_sum", f.name + "_count"}
		}
		if !slices.Contains(want, s.name) {
			return nil, lineErr("sample of family %s must be named one of %v", f.name, want)
		}
		id := s.name + fmt.Sprint(s.labels)
		if seen[id] {
			return nil, lineErr("duplicate series")
		}
		seen[id] = true
		if f.typ == "counter" && !(s.value >= 0) {
			return nil, lineErr("counter value %v", s.value)
		}
		f.samples = append(f.samples, s)
	}
	for _, f := range fams {
		if err := checkOrder(f); err != nil {
			return nil, fmt.Errorf("family %s: %w", f.name, err)
		}
		if f.typ == "histogram" {
			if err := checkHistogram(f); err != nil {
				return nil, fmt.Errorf("histogram %s: %w", f.name, err)
			}
		}
	}
	return fams, nil
}

// parseSample parses name{l="v",...} value.
func parseSample(line string) (parsedSample, error) {
	var s parsedSample
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.name, line = line[:i], line[i:]
	if !validMetricName(s.name) {
		return s, fmt.Errorf("bad name %q", s.name)
	}
	if line[0] == '{' {
		line = line[1:]
		for {
			eq := strings.IndexByte(line, '=')
			if eq < 0 || !validLabelName(line[:eq]) && line[:eq] != "le" {
				return s, fmt.Errorf("bad label name in %q", line)
			}
			name := line[:eq]
			if line = line[eq+1:]; line == "" || line[0] != '"' {
				return s, fmt.Errorf("label %s: no opening quote", name)
			}
			// Find the closing quote: the first '"' not escaped.
			end := -1
			for j := 1; j < len(line); j++ {
				if line[j] == '\\' {
					j++
				} else if line[j] == '"' {
					end = j
					break
				}
			}
			if end < 0 {
				return s, fmt.Errorf("label %s: no closing quote", name)
			}
			value, err := unescape(line[1:end], true)
			if err != nil {
				return s, fmt.Errorf("label %s: %w", name, err)
			}
			for _, p := range s.labels {
				if p.name == name {
					return s, fmt.Errorf("duplicate label %s", name)
				}
			}
			s.labels = append(s.labels, labelPair{name, value})
			line = line[end+1:]
			if strings.HasPrefix(line, ",") {
				line = line[1:]
				continue
			}
			if !strings.HasPrefix(line, "}") {
				return s, fmt.Errorf("want , or } after label %s", name)
			}
			line = line[1:]
			break
		}
	}
	v, ok := strings.CutPrefix(line, " ")
	if !ok || strings.Contains(v, " ") {
		return s, fmt.Errorf("want one space and a value (no timestamp), got %q", line)
	}
	f, err := parseValue(v)
	if err != nil {
		return s, err
	}
	s.value = f
	return s, nil
}

func parseValue(v string) (float64, error) {
	switch v {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(+1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("bad value %q", v)
	}
	return f, nil
}

// unescape undoes label value escaping (quote allowed) or HELP escaping.
func unescape(s string, quote bool) (string, error) {
	if !strings.Contains(s, `\`) {
		if quote && strings.ContainsAny(s, "\"\n") || !quote && strings.Contains(s, "\n") {
			return "", fmt.Errorf("unescaped special character in %q", s)
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && quote || c == '\n' {
			return "", fmt.Errorf("unescaped special character in %q", s)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", fmt.Errorf("trailing backslash in %q", s)
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !quote {
				return "", fmt.Errorf(`\" in help %q`, s)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("bad escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

// seriesValues returns the label values of s other than le.
func seriesValues(s parsedSample) []string {
	var vs []string
	for _, p := range s.labels {
		if p.name != "le" {
			vs = append(vs, p.value)
		}
	}
	return vs
}

// checkOrder checks that the series of f come sorted by label values.
func checkOrder(f parsedFamily) error {
	for i := 1; i < len(f.samples); i++ {
		a, b := seriesValues(f.samples[i-1]), seriesValues(f.samples[i])
		if slices.Compare(a, b) > 0 {
			return fmt.Errorf("series %v before %v", a, b)
		}
	}
	return nil
}

// checkHistogram checks every series of f: buckets with increasing le up to
// +Inf and non-decreasing counts, then _sum, then _count equal to +Inf.
func checkHistogram(f parsedFamily) error {
	ss := f.samples
	for len(ss) > 0 {
		values := seriesValues(ss[0])
		prevLE, prevCount := math.Inf(-1), 0.0
		i := 0
		for ; i < len(ss) && ss[i].name == f.name+"_bucket"; i++ {
			s := ss[i]
			if !slices.Equal(seriesValues(s), values) {
				return fmt.Errorf("series %v: bucket of %v interleaved", values, seriesValues(s))
			}
			p := s.labels[len(s.labels)-1]
			if p.name != "le" {
				return fmt.Errorf("series %v: le is not the last label", values)
			}
			le, err := parseValue(p.value)
			if err != nil || le <= prevLE {
				return fmt.Errorf("series %v: le %q not increasing", values, p.value)
			}
			if s.value < prevCount {
				return fmt.Errorf("series %v: le %q count %v below %v", values, p.value, s.value, prevCount)
			}
			prevLE, prevCount = le, s.value
		}
		if i == 0 || !math.IsInf(prevLE, +1) {
			return fmt.Errorf("series %v: no +Inf bucket", values)
		}
		if i+1 >= len(ss) || ss[i].name != f.name+"_sum" || ss[i+1].name != f.name+"_count" {
			return fmt.Errorf("series %v: want _sum then _count after the buckets", values)
		}
		if !slices.Equal(seriesValues(ss[i]), values) || !slices.Equal(seriesValues(ss[i+1]), values) {
			return fmt.Errorf("series %v: _sum or _count of another series", values)
		}
		if ss[i+1].value != prevCount {
			return fmt.Errorf("series %v: _count %v != +Inf bucket %v", values, ss[i+1].value, prevCount)
		}
		ss = ss[i+2:]
	}
	return nil
}

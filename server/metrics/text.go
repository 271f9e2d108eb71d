package metrics

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds the byte-level rules of the text exposition format 0.0.4:
// name checks, escaping and number formatting. Everything appends to a
// caller's buffer and allocates nothing.

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and does
// not start with "__", which Prometheus reserves for itself.
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// appendLabelValue appends s escaped for use between the double quotes of a
// label value: backslash, double quote and line feed are escaped.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendHelp appends s escaped for a # HELP line: backslash and line feed are
// escaped; double quotes are not.
func appendHelp(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendLabelPairs appends name="value" pairs separated by commas, without
// braces, so a histogram can add its le pair inside the same braces.
func appendLabelPairs(b []byte, names, values []string) []byte {
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
		b = append(b, '=', '"')
		b = appendLabelValue(b, values[i])
		b = append(b, '"')
	}
	return b
}

// maxExactInt is 2^53: every integer of smaller magnitude is exact in a float64.
const maxExactInt = 1 << 53

// appendFloat appends v as Prometheus reads it: integers of magnitude below
// 2^53 in plain decimal, NaN and ±Inf by name, anything else in the shortest
// form that parses back to the same float64.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v > -maxExactInt && v < maxExactInt && v == math.Trunc(v):
		return strconv.AppendInt(b, int64(v), 10)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendSample appends one sample line: name+suffix, the label pairs and an
// optional extra pair (le for histogram buckets) in braces, a space, v.
func appendSample(b []byte, name, suffix, pairs, extraName, extraValue string, v float64) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if pairs != "" || extraName != "" {
		b = append(b, '{')
		b = append(b, pairs...)
		if extraName != "" {
			if pairs != "" {
				b = append(b, ',')
			}
			b = append(b, extraName...)
			b = append(b, '=', '"')
			b = append(b, extraValue...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// validUTF8 reports whether every value is valid UTF-8.
func validUTF8(values []string) bool {
	for _, v := range values {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// labelSep joins label values into a series key. The byte 0xff never occurs
// in valid UTF-8, and label values are made valid before they are joined, so
// the key is unambiguous.
const labelSep = '\xff'

// appendKey appends the series key of values to b.
func appendKey(b []byte, values []string) []byte {
	for i, v := range values {
		if i > 0 {
			b = append(b, labelSep)
		}
		b = append(b, v...)
	}
	return b
}

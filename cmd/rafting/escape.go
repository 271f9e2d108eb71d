package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// printable returns s with everything a terminal could act on written out
// as an escape: control characters (C0, DEL, C1) as \x1b or \u009b,
// invisible format characters (bidirectional overrides, zero widths) as
// \u202e, bytes that are not UTF-8 as \xff, and the backslash itself as
// \\, so an escaped value cannot pass for another. Every value the CLI
// prints in table and text output goes through it: a tenant can put
// anything in an instance's address or zone, and the admin reading it
// must see bytes, not a retitled window or a cleared screen. The
// characters in keep are written as they are (an error message's own
// newlines).
func printable(s string, keep ...rune) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r == '\\' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case slices.Contains(keep, r):
			b.WriteRune(r)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// pathSeg is s as one segment of an API path: escaped (a "/" or "?" in a
// name stays inside its segment), and never "." or "..", which no
// escaping keeps from walking up the path. what names the argument in
// the error.
func pathSeg(what, s string) (string, error) {
	switch s {
	case "":
		return "", usageError{what + " is empty"}
	case ".", "..":
		return "", usageError{fmt.Sprintf("%s %q: not a name", what, s)}
	}
	return url.PathEscape(s), nil
}

// jsonPrintable escapes, in JSON that encoding/json wrote, the characters
// a terminal could act on that it leaves raw: DEL, C1 controls and
// format characters (C0 controls it escapes already). Outside strings
// JSON is ASCII, so every such character is inside a string, where
// \uXXXX means the same character: the document decodes as before.
func jsonPrintable(b []byte) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == 0x7f || r >= 0x80 && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			break
		}
		i += n
	}
	if i == len(b) {
		return b
	}
	out := append([]byte(nil), b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == 0x7f || r >= 0x80 && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

package ui_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestAssetsNoHTMLSinks: the page's script never turns a string into HTML
// or code (innerHTML and its kin, document.write, eval, new Function, a
// string timer), and the page itself holds no inline script, handler or
// style: what a tenant wrote can only ever be text, and the CSP needs no
// exception. TestDashboard checks the same in a browser; this names the
// line that would break it.
func TestAssetsNoHTMLSinks(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function|setTimeout\s*\(\s*["'` + "`" + `]|setInterval\s*\(\s*["'` + "`" + `]|\.srcdoc|javascript:`)
	b, err := os.ReadFile("assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		code, _, _ := strings.Cut(line, "//")
		if m := sinks.FindString(code); m != "" {
			t.Errorf("assets/app.js:%d uses %s: build elements and text nodes instead", i+1, m)
		}
	}
	page, err := os.ReadFile("assets/index.html")
	if err != nil {
		t.Fatal(err)
	}
	inline := regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|\sstyle\s*=|<style`)
	for i, line := range strings.Split(string(page), "\n") {
		if m := inline.FindString(line); m != "" {
			t.Errorf("assets/index.html:%d holds inline %q: the CSP forbids it", i+1, m)
		}
	}
}

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

// TestActionsTakeTheirCardsTenant: drain, undrain and resign act on the
// tenant whose card holds the button, passed in when the card was drawn,
// never on the tenant the page follows when the button is clicked: an
// admin's feed that reconnects to another tenant (the first by name
// changed) while a confirmation is open would send the action there,
// with the first tenant's instance (red team 3).
func TestActionsTakeTheirCardsTenant(t *testing.T) {
	b, err := os.ReadFile("assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, fn := range []string{"async function setState(tenant, ", "async function resign(tenant, "} {
		i := strings.Index(src, fn)
		if i < 0 {
			t.Fatalf("app.js has no %q...: the action does not take its card's tenant", fn)
		}
		body := src[i:]
		if end := strings.Index(body, "\n  }\n"); end > 0 {
			body = body[:end]
		}
		if strings.Contains(body, "state.tenant") {
			t.Errorf("%s...: reads state.tenant, the tenant followed when clicked", fn)
		}
	}
}

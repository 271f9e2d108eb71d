package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestDocumentedCommandLines: every command line of the binary written in
// the README, the docs and the commands' own examples names a command of
// the tree, with flags it has and a count of arguments it takes (parsed,
// not run: TestOperationsWalk runs the operator's procedures).
func TestDocumentedCommandLines(t *testing.T) {
	type line struct{ where, text string }
	var lines []line
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ") // continued lines
		for _, l := range strings.Split(text, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "rafting ") {
				lines = append(lines, line{filepath.Base(f), l})
			}
		}
	}
	for _, p := range commandPaths() {
		c, _, _ := (&app{}).root().Find(p)
		for _, l := range strings.Split(c.Example, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "rafting ") {
				lines = append(lines, line{"rafting " + strings.Join(p, " ") + " --help", l})
			}
		}
	}
	if len(lines) < 40 {
		t.Fatalf("found %d command lines", len(lines))
	}
	for _, l := range lines {
		words := shellWords(l.text)
		root := (&app{}).root()
		c, args, err := root.Find(words[1:])
		if err == nil {
			err = c.ParseFlags(args)
		}
		if err == nil {
			err = c.ValidateArgs(c.Flags().Args())
		}
		if err == nil && c.Name() != "rafting" && c.RunE == nil && !c.HasSubCommands() {
			err = errNotRunnable(c)
		}
		if err != nil {
			t.Errorf("%s: %q: %v", l.where, l.text, err)
		}
	}
}

func errNotRunnable(c *cobra.Command) error { return usageError{c.CommandPath() + " does not run"} }

// shellWords splits a documented command line into its words, as far as
// a shell would before running the binary: a comment, a pipe or a
// redirection ends it, and so does "..." (what the text leaves out);
// quotes group, and a command substitution is one word.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord, quote, depth := false, byte(0), 0
	flush := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
scan:
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				w.WriteByte(ch)
			}
		case depth > 0:
			w.WriteByte(ch)
			if ch == '(' {
				depth++
			} else if ch == ')' {
				depth--
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == '$' && i+1 < len(s) && s[i+1] == '(':
			w.WriteString("$(")
			depth, inWord = 1, true
			i++
		case ch == ' ' || ch == '\t':
			flush()
		case ch == '#' && !inWord, ch == '|', ch == '<', ch == '>', ch == ';', ch == '&':
			break scan
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	flush()
	for i, w := range words {
		if w == "..." || w == "…" {
			return words[:i]
		}
	}
	return words
}

// TestDocLinks: every relative link of the README, the docs and the
// examples' READMEs names a file of the repository, and the README links
// the REST API's two descriptions (docs/API.md, the human one, and
// api/openapi.yaml) and the dashboard's screenshots; docs/API.md links
// the OpenAPI document it is the human version of.
func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	more, _ := filepath.Glob("../../examples/*/README.md")
	files = append(append(files, more...), "../../README.md", "../../contrib/grpc/doc.go")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	linked := map[string][]string{} // file -> its relative links, cleaned
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := filepath.Join(filepath.Dir(f), target)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links %s: %v", f, m[1], err)
			}
			rel, _ := filepath.Rel("../..", p)
			linked[filepath.Base(f)] = append(linked[filepath.Base(f)], rel)
		}
	}
	for _, tt := range []struct{ file, want string }{
		{"README.md", "api/openapi.yaml"}, {"README.md", "docs/API.md"}, {"README.md", "docs/DEPLOY.md"},
		{"README.md", "docs/ui"}, {"API.md", "api/openapi.yaml"},
	} {
		if !slices.Contains(linked[tt.file], tt.want) {
			t.Errorf("%s does not link %s (its links: %v)", tt.file, tt.want, linked[tt.file])
		}
	}
}

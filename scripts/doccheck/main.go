// Command doccheck checks the Markdown documents a reader clicks through: every relative
// link resolves to a file of the repository and, when it names an anchor, to a heading
// (or an explicit id) of that file, with GitHub's anchor rules; and the README stays a
// front door, at most -max-readme bytes. `make docs-check` runs it; CI runs that.
//
// Usage: go run ./scripts/doccheck [-max-readme N] file.md...
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

func main() {
	maxReadme := flag.Int("max-readme", 15*1024, "the most bytes README.md may have")
	flag.Parse()
	var problems []string
	for _, f := range flag.Args() {
		problems = append(problems, check(f, *maxReadme)...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "doccheck:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("doccheck: %d files, every relative link and anchor resolves\n", len(flag.Args()))
}

// check returns what is wrong with the document at path.
func check(path string, maxReadme int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if filepath.Base(path) == "README.md" && filepath.Dir(path) == "." && len(b) > maxReadme {
		problems = append(problems, fmt.Sprintf("%s is %d bytes, more than %d", path, len(b), maxReadme))
	}
	for _, l := range links(b) {
		if p := resolve(path, l.target); p != "" {
			problems = append(problems, fmt.Sprintf("%s:%d: link %q: %s", path, l.line, l.target, p))
		}
	}
	return problems
}

type link struct {
	line   int
	target string
}

var (
	linkRe   = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan = regexp.MustCompile("`[^`]*`")
)

// links lists the link targets of a Markdown document outside code blocks and spans.
func links(b []byte) []link {
	var out []link
	fenced := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range linkRe.FindAllStringSubmatch(line, -1) {
			out = append(out, link{line: n, target: m[1]})
		}
	}
	return out
}

// resolve says what is wrong with a link target found in the document at from, or "".
func resolve(from, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "not a URL"
	}
	if u.Scheme != "" || u.Host != "" {
		return "" // outside the repository: not checked here
	}
	file := from
	if u.Path != "" {
		file = filepath.Join(filepath.Dir(from), u.Path)
	}
	st, err := os.Stat(file)
	if err != nil {
		return "no such file " + file
	}
	if u.Fragment == "" {
		return ""
	}
	if st.IsDir() || !strings.HasSuffix(file, ".md") {
		return "an anchor into something that is not a Markdown file"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if !anchors(b)[u.Fragment] {
		return fmt.Sprintf("no heading or id %q in %s", u.Fragment, file)
	}
	return ""
}

var (
	headingRe = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	idRe      = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	mdLinkRe  = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// anchors lists the fragments a document answers to on GitHub: one per heading (with
// -1, -2, ... for repeats) and each explicit <a id> or <a name>.
func anchors(b []byte) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		for _, m := range idRe.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		m := headingRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := Slug(m[1])
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// Slug is the anchor GitHub gives a heading: its text without Markdown (links keep their
// text), lower case, spaces as hyphens, everything but letters, digits, hyphens and
// underscores dropped.
func Slug(heading string) string {
	heading = mdLinkRe.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

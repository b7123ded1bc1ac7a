package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Exactly once: `customBizId`":               "exactly-once-custombizid",
		"Importing a backlog: `esign-import`":       "importing-a-backlog-esign-import",
		"Call it from your language":                "call-it-from-your-language",
		"The e签宝 side":                              "the-e签宝-side",
		"Stores, quota, retention and keys":         "stores-quota-retention-and-keys",
		"[OPERATIONS.md](OPERATIONS.md) in a title": "operationsmd-in-a-title",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// A link to a missing file, a missing heading or a README over the limit is reported;
// links in code, to other sites and to existing headings (repeats numbered) are not.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write := func(name, text string) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/ref.md", "# Ref\n\n## Fields\n\n## Fields\n\n<a id=\"custom\"></a>\n")
	write("README.md", strings.Join([]string{
		"# Title", "", "## Errors", "",
		"[ok](docs/ref.md#fields) [ok](docs/ref.md#fields-1) [ok](docs/ref.md#custom) [ok](#errors)",
		"[ok](https://example.com/x#y) `[code](missing.md)`",
		"```", "[fenced](missing.md)", "```",
		"[bad file](missing.md) [bad anchor](docs/ref.md#nope) [bad local](#nope)",
	}, "\n"))
	problems := check("README.md", 1000)
	want := []string{"missing.md", "\"nope\" in docs/ref.md", "\"nope\" in README.md"}
	if len(problems) != len(want) {
		t.Fatalf("problems %q, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %q does not name %s", problems[i], w)
		}
	}
	if p := check("README.md", 10); len(p) != 4 || !strings.Contains(p[0], "more than 10") {
		t.Errorf("a README over the limit: %q", p)
	}
}

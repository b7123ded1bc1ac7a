package main

import (
	"slices"
	"strings"
	"testing"
)

const mod = "example.com/m"

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"./server/...", mod + "/server", true},
		{"./server/...", mod + "/server/auth", true},
		{"./server/...", mod + "/serverless", false},
		{"./internal/config", mod + "/internal/config", true},
		{"./internal/config", mod + "/internal/configx", false},
		{"./...", mod, true},
		{"./...", mod + "/a/b", true},
		{"./...", "example.com/other", false},
		{"net/http", "net/http", true},
		{"net/http", "net/http/pprof", false},
		{"google.golang.org/grpc/...", "google.golang.org/grpc", true},
		{"google.golang.org/grpc/...", "google.golang.org/grpc/codes", true},
	} {
		if got := match(mod, c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}

// graph builds go list output: each entry is "pkg: imp imp ..."; paths starting with "./"
// are the module's, others outside packages listed as dependencies only.
func graph(lines ...string) []pkg {
	abs := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "./"); ok {
			return mod + "/" + rest
		}
		return p
	}
	var out []pkg
	seen := map[string]bool{}
	for _, l := range lines {
		name, imps, _ := strings.Cut(l, ":")
		p := pkg{ImportPath: abs(strings.TrimSpace(name))}
		for _, i := range strings.Fields(imps) {
			p.Imports = append(p.Imports, abs(i))
		}
		seen[p.ImportPath] = true
		out = append(out, p)
	}
	for _, p := range slices.Clone(out) {
		for _, i := range p.Imports {
			if !seen[i] {
				seen[i] = true
				out = append(out, pkg{ImportPath: i, DepOnly: true})
			}
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	rules := []rule{
		{From: []string{"./upstream/..."}, Forbid: []string{"./server/...", "google.golang.org/grpc/..."}, Why: "up"},
		{From: []string{"./..."}, Forbid: []string{"./cmd/..."}, Except: []string{"./cmd/..."}, Why: "cmd"},
	}
	for _, c := range []struct {
		name  string
		graph []pkg
		want  []string
	}{
		{"clean", graph(
			"./server: ./upstream google.golang.org/grpc",
			"./upstream: net/http",
			"./cmd/x: ./server",
		), nil},
		{"direct back-import", graph(
			"./server/apierror:",
			"./upstream: ./server/apierror",
		), []string{"upstream imports server/apierror (upstream → server/apierror): up"}},
		{"back-import through a helper, shortest chain named", graph(
			"./server/observe:",
			"./upstream/util: ./upstream/deep ./server/observe",
			"./upstream/deep: ./server/observe",
			"./upstream: ./upstream/util",
		), []string{
			"upstream/util imports server/observe (upstream/util → server/observe): up",
			"upstream/deep imports server/observe (upstream/deep → server/observe): up",
			"upstream imports server/observe (upstream → upstream/util → server/observe): up",
		}},
		{"outside package: direct import only", graph(
			"./gen: google.golang.org/grpc",
			"./upstream/sim: ./gen",
			"./upstream: google.golang.org/grpc/codes",
		), []string{"upstream imports google.golang.org/grpc/codes: up"}},
		{"a package outside the rule may import", graph(
			"./server: ./server/x",
			"./server/x:",
		), nil},
		{"nothing imports a command but a command", graph(
			"./cmd/a: ./cmd/b",
			"./cmd/b:",
			"./server: ./cmd/b",
		), []string{"server imports cmd/b (server → cmd/b): cmd"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := check(mod, c.graph, rules)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("violations:\n got %q\nwant %q", got, want)
			}
		})
	}
}

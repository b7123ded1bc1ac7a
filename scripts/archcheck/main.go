// Command archcheck enforces ARCHITECTURE.md's "Who owns what" table as import rules: it
// reads the module's import graph from `go list -deps -json ./...` and fails, naming the
// chain of imports, when a package reaches one it must know nothing of. `make lint` runs it.
//
// A rule on a package of this module holds for everything the package depends on, directly
// or through others (upstream must not reach server/apierror through a helper either). A
// rule on an outside package (gRPC, net/http) holds for direct imports only: the generated
// contract itself imports gRPC, so everything that uses the contract depends on it.
// Only production code is checked; a test may import what it needs.
//
// Usage: go run ./scripts/archcheck [packages] (default ./...)
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// rule says that no package matching From may import one matching Forbid. A pattern is a
// package path, "p/..." for p and everything below it; one starting with "./" is inside
// this module. Forbidden packages of this module are looked for among all dependencies,
// outside ones among direct imports (see the package comment).
type rule struct {
	From   []string
	Forbid []string
	// Except lists packages the rule does not apply to even though From matches them.
	Except []string
	// Why is the sentence of ARCHITECTURE.md the rule encodes, printed with a violation.
	Why string
}

// rules is ARCHITECTURE.md's ownership table as imports. Keep the two in step.
var rules = []rule{
	{
		From:   []string{"./upstream/...", "./validation/..."},
		Forbid: []string{"./server/...", "./internal/config", "./cmd/..."},
		Why:    "upstream and validation import nothing of server: no package reaches up into its caller",
	},
	{
		From:   []string{"./upstream/..."},
		Forbid: []string{"./gen/...", "google.golang.org/grpc/..."},
		Why:    "upstream knows nothing of gRPC or the contract",
	},
	{
		From:   []string{"./validation/..."},
		Forbid: []string{"./upstream/...", "google.golang.org/grpc/..."},
		Why:    "validation knows nothing of gRPC or e签宝",
	},
	{
		From:   []string{"./gen/..."},
		Forbid: []string{"./upstream/...", "./server/...", "./validation/...", "./internal/..."},
		Why:    "the contract knows nothing of e签宝's JSON or of the service",
	},
	{
		From:   []string{"./internal/..."},
		Forbid: []string{"./server/...", "./cmd/..."},
		Why:    "internal packages serve server and cmd, never import them: settings live with the package they configure",
	},
	{
		From:   []string{"./internal/setting"},
		Forbid: []string{"./..."},
		Why:    "internal/setting is how every package declares its settings; it knows none of them",
	},
	{
		From:   []string{"./server/..."},
		Forbid: []string{"./internal/config"},
		Why:    "server takes its settings as values; cmd wires configuration into it",
	},
	{
		From:   []string{"./internal/submission/...", "./internal/guard/...", "./internal/clock/..."},
		Forbid: []string{"./server/...", "./gen/...", "./upstream/esignsim/...", "google.golang.org/grpc/..."},
		Why:    "exactly-once and the e签宝 guard know nothing of which operation they guard, of the contract or of gRPC",
	},
	{
		From:   []string{"./internal/guard/..."},
		Forbid: []string{"./internal/submission/..."},
		Why:    "the guard knows nothing of records: the exactly-once layer uses the guard, never the reverse",
	},
	{
		From:   []string{"./internal/clock/..."},
		Forbid: []string{"./..."},
		Why:    "internal/clock is the one time source below everything; it imports nothing of the service",
	},
	{
		From:   []string{"./server/translate/..."},
		Forbid: []string{"google.golang.org/grpc/...", "net/http", "github.com/grpc-ecosystem/grpc-gateway/..."},
		Why:    "server/translate maps the contract to e签宝's wire and knows nothing of transports",
	},
	{
		From:   []string{"./server/service/..."},
		Forbid: []string{"net/http", "github.com/grpc-ecosystem/grpc-gateway/..."},
		Why:    "server/service never formats an HTTP answer",
	},
	{
		From:   []string{"./..."},
		Forbid: []string{"./internal/pgtest/..."},
		Why:    "no test-tree packages in production code",
	},
	{
		From:   []string{"./..."},
		Forbid: []string{"./cmd/..."},
		Except: []string{"./cmd/..."},
		Why:    "a command only wires; nothing imports it",
	},
}

// pkg is the part of `go list -json` output the check reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
	DepOnly    bool
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

func main() {
	patterns := os.Args[1:]
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json"}, patterns...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "archcheck: go list:", err)
		os.Exit(2)
	}
	pkgs, err := decode(bytes.NewReader(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "archcheck:", err)
		os.Exit(2)
	}
	module := ""
	for _, p := range pkgs {
		if !p.DepOnly && p.Module != nil {
			module = p.Module.Path
			break
		}
	}
	if module == "" {
		fmt.Fprintln(os.Stderr, "archcheck: no package of the module matched", patterns)
		os.Exit(2)
	}
	violations := check(module, pkgs, rules)
	for _, v := range violations {
		fmt.Fprintln(os.Stderr, v)
	}
	if len(violations) > 0 {
		fmt.Fprintf(os.Stderr, "archcheck: %d import(s) against ARCHITECTURE.md's \"Who owns what\" (rules in scripts/archcheck)\n", len(violations))
		os.Exit(1)
	}
}

// decode reads the stream of JSON objects `go list -json` prints.
func decode(r io.Reader) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(r)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
}

// match reports whether path matches pattern (see rule).
func match(module, pattern, path string) bool {
	if rest, ok := strings.CutPrefix(pattern, "./"); ok {
		if rest == "..." {
			return inModule(module, path)
		}
		pattern = module + "/" + rest
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(module string, patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(module, p, path) })
}

// inModule reports whether path is a package of the module.
func inModule(module, path string) bool {
	return path == module || strings.HasPrefix(path, module+"/")
}

// check returns one line per (package, forbidden package, rule): the chain of imports that
// reaches the forbidden package and the rule's reason. Only the module's own packages that
// were asked for (not DepOnly) are checked.
func check(module string, pkgs []pkg, rules []rule) []string {
	imports := map[string][]string{}
	for _, p := range pkgs {
		imports[p.ImportPath] = p.Imports
	}
	short := func(path string) string {
		if path == module {
			return "."
		}
		return strings.TrimPrefix(path, module+"/")
	}
	var out []string
	for _, p := range pkgs {
		if p.DepOnly || !inModule(module, p.ImportPath) {
			continue
		}
		for _, r := range rules {
			if !matchAny(module, r.From, p.ImportPath) || matchAny(module, r.Except, p.ImportPath) {
				continue
			}
			// Outside packages: direct imports only.
			for _, imp := range p.Imports {
				if !inModule(module, imp) && matchAny(module, r.Forbid, imp) {
					out = append(out, fmt.Sprintf("%s imports %s: %s", short(p.ImportPath), imp, r.Why))
				}
			}
			// The module's packages: everything reached through the module's packages, by
			// breadth-first search so the chain printed is a shortest one.
			prev := map[string]string{p.ImportPath: ""}
			queue := []string{p.ImportPath}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, imp := range imports[cur] {
					if !inModule(module, imp) {
						continue
					}
					if _, seen := prev[imp]; seen {
						continue
					}
					prev[imp] = cur
					if matchAny(module, r.Forbid, imp) {
						chain := []string{short(imp)}
						for at := cur; at != ""; at = prev[at] {
							chain = append(chain, short(at))
						}
						slices.Reverse(chain)
						out = append(out, fmt.Sprintf("%s imports %s (%s): %s", short(p.ImportPath), short(imp),
							strings.Join(chain, " → "), r.Why))
						continue
					}
					queue = append(queue, imp)
				}
			}
		}
	}
	return out
}

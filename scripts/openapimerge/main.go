// Command openapimerge adds hand-described REST routes to the OpenAPI (Swagger 2.0)
// document protoc-gen-openapiv2 generated, in place. `make generate` runs it.
//
// protoc-gen-openapiv2 describes only methods with a google.api.http binding. The REST
// upload route (POST /v1/files, raw bytes in, UploadFileResponse out) is served by the
// service's own handler in front of the client-streamed UploadFile, so it has no binding;
// openapi/upload.swagger.json describes it, and this command merges that fragment's paths
// and definitions into the generated document. Each merged operation also gets the error
// responses every generated operation shares (the contract's google.rpc.Status ones), so
// the whole document documents errors alike. A path or definition the generator already
// wrote is an error, never silently replaced.
//
// Usage: go run ./scripts/openapimerge <generated.swagger.json> <fragment.swagger.json>...
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: openapimerge <generated.swagger.json> <fragment.swagger.json>...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "openapimerge:", err)
		os.Exit(1)
	}
}

type object = map[string]any

func run(target string, fragments []string) error {
	doc, err := readObject(target)
	if err != nil {
		return err
	}
	paths, _ := doc["paths"].(object)
	defs, _ := doc["definitions"].(object)
	if paths == nil || defs == nil {
		return fmt.Errorf("%s: no paths or definitions", target)
	}
	shared := sharedErrorResponses(paths)
	for _, f := range fragments {
		frag, err := readObject(f)
		if err != nil {
			return err
		}
		fpaths, _ := frag["paths"].(object)
		for p, item := range fpaths {
			if _, ok := paths[p]; ok {
				return fmt.Errorf("%s: path %s is generated already", f, p)
			}
			ops, _ := item.(object)
			for _, op := range ops {
				responses, _ := op.(object)["responses"].(object)
				if responses == nil {
					return fmt.Errorf("%s: %s: an operation without responses", f, p)
				}
				for code, r := range shared {
					if _, ok := responses[code]; !ok {
						responses[code] = r
					}
				}
			}
			paths[p] = item
		}
		fdefs, _ := frag["definitions"].(object)
		for name, d := range fdefs {
			if _, ok := defs[name]; ok {
				return fmt.Errorf("%s: definition %s is generated already", f, name)
			}
			defs[name] = d
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return os.WriteFile(target, out.Bytes(), 0o644)
}

// sharedErrorResponses returns the non-2xx responses (and "default") that every operation
// in paths declares identically.
func sharedErrorResponses(paths object) object {
	var shared object
	for _, p := range sortedKeys(paths) {
		ops, _ := paths[p].(object)
		for _, m := range sortedKeys(ops) {
			responses, _ := ops[m].(object)["responses"].(object)
			if shared == nil {
				shared = object{}
				for code, r := range responses {
					if !strings.HasPrefix(code, "2") {
						shared[code] = r
					}
				}
				continue
			}
			for code, r := range shared {
				if other, ok := responses[code]; !ok || !sameJSON(other, r) {
					delete(shared, code)
				}
			}
		}
	}
	return shared
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func sortedKeys(m object) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readObject(path string) (object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

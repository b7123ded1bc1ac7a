// Command openapiexamples sends every operation's documented example request to a running
// service and checks that it succeeds and that the answer matches the documented schema.
// `make openapi-check` runs it against the demo (bin/esign-evidence -simulate).
//
// The document is the one the service serves (GET /openapi.json), loaded with go-openapi.
// An operation's example is the x-example of each path and query parameter and the
// example of its body's schema (raw bytes for a binary body). An operation without a
// complete example fails the check: a documented route must be callable as documented.
// POSTs run before GETs, so a lookup example can find what a create example made.
//
// Usage: go run ./scripts/openapiexamples [-base http://localhost:8080] [-token T]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-openapi/loads"
	"github.com/go-openapi/spec"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
)

func main() {
	base := flag.String("base", "http://localhost:8080", "the service's REST address")
	token := flag.String("token", "", "bearer token to send (the demo needs none)")
	flag.Parse()
	n, err := run(strings.TrimSuffix(*base, "/"), *token)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapi-examples:", err)
		os.Exit(1)
	}
	fmt.Printf("openapi-examples: %d passed, 0 failed\n", n)
}

type operation struct {
	method, path string
	op           *spec.Operation
}

func run(base, token string) (int, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	raw, err := get(client, base+"/openapi.json")
	if err != nil {
		return 0, err
	}
	doc, err := loads.Analyzed(json.RawMessage(raw), "2.0")
	if err != nil {
		return 0, fmt.Errorf("loading the served document: %w", err)
	}
	expanded, err := doc.Expanded()
	if err != nil {
		return 0, fmt.Errorf("expanding the served document: %w", err)
	}
	sw := expanded.Spec()

	var ops []operation
	for path, item := range sw.Paths.Paths {
		for method, op := range map[string]*spec.Operation{"POST": item.Post, "PUT": item.Put, "PATCH": item.Patch, "GET": item.Get, "DELETE": item.Delete} {
			if op != nil {
				ops = append(ops, operation{method, path, op})
			}
		}
	}
	if len(ops) == 0 {
		return 0, fmt.Errorf("the document has no operations")
	}
	order := map[string]int{"POST": 0, "PUT": 1, "PATCH": 2, "GET": 3, "DELETE": 4}
	slices.SortFunc(ops, func(a, b operation) int {
		if d := order[a.method] - order[b.method]; d != 0 {
			return d
		}
		return strings.Compare(a.path, b.path)
	})

	for _, o := range ops {
		req, err := buildRequest(base, sw, o)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", o.method, o.path, err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		fmt.Printf("$ %s %s\n", req.Method, req.URL.RequestURI())
		resp, err := client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", o.method, o.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("%s %s: reading the answer: %w", o.method, o.path, err)
		}
		fmt.Printf("%d %s\n", resp.StatusCode, truncate(body, 300))
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s %s: the documented example got HTTP %d", o.method, o.path, resp.StatusCode)
		}
		ok := o.op.Responses.StatusCodeResponses[http.StatusOK]
		if ok.Schema == nil {
			return 0, fmt.Errorf("%s %s: no documented 200 schema", o.method, o.path)
		}
		var data any
		if err := json.Unmarshal(body, &data); err != nil {
			return 0, fmt.Errorf("%s %s: the answer is not JSON: %w", o.method, o.path, err)
		}
		if err := validate.AgainstSchema(ok.Schema, data, strfmt.Default); err != nil {
			return 0, fmt.Errorf("%s %s: the answer does not match the documented schema: %w", o.method, o.path, err)
		}
	}
	return len(ops), nil
}

// buildRequest makes the operation's example request from the document alone.
func buildRequest(base string, sw *spec.Swagger, o operation) (*http.Request, error) {
	path := o.path
	query := url.Values{}
	var body []byte
	contentType := ""
	for _, p := range o.op.Parameters {
		switch p.In {
		case "path", "query":
			ex, ok := p.Extensions["x-example"]
			if !ok {
				if p.In == "query" && !p.Required {
					continue
				}
				return nil, fmt.Errorf("parameter %s has no x-example", p.Name)
			}
			v := fmt.Sprint(ex)
			if p.In == "path" {
				path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(v))
			} else {
				query.Set(p.Name, v)
			}
		case "body":
			if p.Schema == nil || p.Schema.Example == nil {
				return nil, fmt.Errorf("body %s has no example", p.Name)
			}
			if p.Schema.Format == "binary" {
				s, ok := p.Schema.Example.(string)
				if !ok {
					return nil, fmt.Errorf("binary body %s: example is not a string", p.Name)
				}
				body = []byte(s)
			} else {
				b, err := json.Marshal(p.Schema.Example)
				if err != nil {
					return nil, err
				}
				body = b
			}
			consumes := o.op.Consumes
			if len(consumes) == 0 {
				consumes = sw.Consumes
			}
			if len(consumes) > 0 {
				contentType = consumes[0]
			}
		default:
			return nil, fmt.Errorf("parameter %s in %s is not supported by this check", p.Name, p.In)
		}
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(o.method, u, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

func get(client *http.Client, u string) ([]byte, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

func truncate(b []byte, n int) string {
	s := strings.ReplaceAll(string(b), "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

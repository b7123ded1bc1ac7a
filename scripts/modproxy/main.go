// Command modproxy lays out the modules `go mod download -json` reports (read from
// standard input) as a file-based Go module proxy in the directory it is given:
// <module>/@v/<version>.info, .mod and .zip, and a list file per module; and, for every
// other module version of `go mod graph` (whose go.mod the go command reads to select
// versions), its .mod from the module cache. scripts/image.sh uses it to build the image's
// Go stage offline.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
)

type download struct {
	Path, Version    string
	Info, GoMod, Zip string
	Error            string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go mod download -json | modproxy DIR")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, dir string) error {
	done := map[string]bool{}
	dec := json.NewDecoder(in)
	for {
		var d download
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		done[d.Path+"@"+d.Version] = true
		if d.Error != "" {
			return fmt.Errorf("%s@%s: %s", d.Path, d.Version, d.Error)
		}
		ver := escape(d.Version)
		v := filepath.Join(dir, escape(d.Path), "@v")
		if err := os.MkdirAll(v, 0o755); err != nil {
			return err
		}
		for ext, src := range map[string]string{".info": d.Info, ".mod": d.GoMod, ".zip": d.Zip} {
			if src == "" {
				continue
			}
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(v, ver+ext), b, 0o644); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(filepath.Join(v, "list"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, d.Version)
		if err := f.Close(); err != nil {
			return err
		}
	}
	return graphMods(dir, done)
}

// graphMods copies the .mod and .info of every module version in `go mod graph` not laid
// out yet, from the module cache's download directory, where the go command left those it
// read.
func graphMods(dir string, done map[string]bool) error {
	out, err := exec.Command("go", "mod", "graph").Output()
	if err != nil {
		return fmt.Errorf("go mod graph: %w", err)
	}
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	from := filepath.Join(strings.TrimSpace(string(cache)), "cache", "download")
	for _, node := range strings.Fields(string(out)) {
		path, version, ok := strings.Cut(node, "@")
		if !ok || done[node] || path == "go" || path == "toolchain" { // the language and toolchain versions are not modules
			continue
		}
		done[node] = true
		rel := filepath.Join(escape(path), "@v", escape(version))
		for _, ext := range []string{".mod", ".info"} {
			b, err := os.ReadFile(filepath.Join(from, rel+ext))
			if errors.Is(err, os.ErrNotExist) {
				// Beyond the pruned module graph: the go command never reads it here
				// either.
				continue
			} else if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(dir, escape(path), "@v"), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, rel+ext), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// escape is the module proxy protocol's case encoding of a module path or version: each
// upper-case letter becomes "!" and its lower case (go help goproxy).
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

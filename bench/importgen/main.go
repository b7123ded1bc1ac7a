// Command importgen writes a synthetic import file for cmd/esign-import: n made-up people
// (internal/synthetic) whose rows name the two sample images of testdata/import, which it
// copies beside the file.
//
//	go run ./bench/importgen -n 10000 -o /tmp/import/rows.jsonl
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/esign-evidence/esign-evidence/internal/synthetic"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "importgen:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 10000, "rows")
	out := flag.String("o", "rows.jsonl", "output file; the sample images are copied into its folder")
	prefix := flag.String("prefix", "bench", "customBizId prefix (each row's is <prefix>-<row>)")
	images := flag.String("images", "testdata/import", "folder holding sample-portrait.png and sample-emblem.png")
	flag.Parse()
	dir := filepath.Dir(*out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"sample-portrait.png", "sample-emblem.png"} {
		b, err := os.ReadFile(filepath.Join(*images, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	img := synthetic.Images{CardPortrait: "sample-portrait.png", CardNationalEmblem: "sample-emblem.png", Face: "sample-portrait.png"}
	for i := 1; i <= *n; i++ {
		w.Write(synthetic.Line(i, fmt.Sprintf("%s-%07d", *prefix, i), img))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

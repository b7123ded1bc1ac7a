package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/internal/synthetic"
	"github.com/esign-evidence/esign-evidence/validation"
)

func newTestParser(t *testing.T) (*parser, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "front.png"), []byte("not empty"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newParser(filepath.Join(dir, "rows.jsonl"), v)
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

// line builds row i with edits applied to its JSON object.
func line(t *testing.T, i int, edit func(m map[string]any)) []byte {
	t.Helper()
	m := synthetic.Row(i, "k-"+string(rune('a'+i)), synthetic.Images{})
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fieldsRules(r *row) []string {
	var out []string
	for _, v := range r.violations {
		out = append(out, v.Field+" "+v.Rule)
	}
	return out
}

func TestParseLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		i    int
		edit func(m map[string]any)
		raw  string
		want []string // "field rule" of each violation, in order; nil: valid
	}{
		{name: "valid, three elements", i: 3},
		{name: "valid, face", i: 2},
		{name: "image instead of the file ID", i: 3, edit: func(m map[string]any) {
			delete(m, "cardPortrait")
			m["cardPortraitFile"] = "front.png"
		}},
		{name: "face image from a file", i: 2, edit: func(m map[string]any) {
			delete(m["face"].(map[string]any), "faceImage")
			m["faceImageFile"] = "front.png"
		}},
		{name: "image and file ID both", i: 3, edit: func(m map[string]any) { m["cardPortraitFile"] = "front.png" },
			want: []string{"cardPortraitFile image.conflict"}},
		{name: "face image without a face block", i: 3, edit: func(m map[string]any) { m["faceImageFile"] = "front.png" },
			want: []string{"faceImageFile image.needs_face"}},
		{name: "missing image", i: 3, edit: func(m map[string]any) {
			delete(m, "cardNationalEmblem")
			m["cardNationalEmblemFile"] = "张三.png"
		}, want: []string{"cardNationalEmblemFile image.unreadable"}},
		{name: "image without an extension", i: 3, edit: func(m map[string]any) {
			delete(m, "cardPortrait")
			m["cardPortraitFile"] = "front"
		}, want: []string{"cardPortraitFile image.unreadable"}},
		{name: "image name not a string", i: 3, edit: func(m map[string]any) {
			delete(m, "cardPortrait")
			m["cardPortraitFile"] = 7
		}, want: []string{"cardPortraitFile image.type"}},
		{name: "no customBizId", i: 3, edit: func(m map[string]any) { delete(m, "customBizId") },
			want: []string{"customBizId customBizId.required"}},
		{name: "the server's Go-only rule", i: 3, edit: func(m map[string]any) {
			m["cardNo"] = m["cardNo"].(string)[:17] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(m["cardNo"].(string), "0")]
		}, want: []string{"cardNo cardNo.idcard_check_digit"}},
		{name: "unknown field", i: 3, edit: func(m map[string]any) { m["nickname"] = "x" },
			want: []string{"nickname json.unknown_field"}},
		{name: "two blocks", i: 3, edit: func(m map[string]any) { m["face"] = map[string]any{"faceImage": "x"} },
			want: []string{"threeElements json.oneof"}},
		{name: "repeated key", raw: `{"customBizId": "a", "customBizId": "b"}`,
			want: []string{"customBizId json.duplicate_field"}},
		{name: "not JSON", raw: `name,cardNo`, want: []string{" json.syntax"}},
		{name: "not an object", raw: `["x"]`, want: []string{" json.type"}},
		{name: "two objects", raw: `{} {}`, want: []string{" json.syntax"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTestParser(t)
			text := []byte(tc.raw)
			if tc.raw == "" {
				text = line(t, tc.i, tc.edit)
			}
			r := p.parse(5, text)
			got := fieldsRules(r)
			if tc.want == nil {
				if r.invalid() {
					t.Fatalf("invalid: %v", got)
				}
				return
			}
			// The decoding and the contract's rules may add more (a repeated key's line
			// also lacks every required field): the expected ones come first.
			if len(got) < len(tc.want) || !slices.Equal(got[:len(tc.want)], tc.want) {
				t.Fatalf("violations %v, want %v first", got, tc.want)
			}
			for _, v := range r.violations {
				if strings.Contains(v.Description, "张三") || strings.Contains(v.Description, "front") {
					t.Errorf("description quotes the input: %q", v.Description)
				}
			}
		})
	}
}

// A file ID filled from an image waits as a placeholder until the upload, and the image's
// path is resolved against the input's folder.
func TestParseResolvesImages(t *testing.T) {
	p, dir := newTestParser(t)
	r := p.parse(1, line(t, 3, func(m map[string]any) {
		delete(m, "cardPortrait")
		m["cardPortraitFile"] = "front.png"
	}))
	if r.invalid() {
		t.Fatal(fieldsRules(r))
	}
	if r.req.GetCardPortrait() != pendingFileID || r.images[0] != filepath.Join(dir, "front.png") {
		t.Errorf("cardPortrait %q, images %v", r.req.GetCardPortrait(), r.images)
	}
}

func TestParseRefusesARepeatedCustomBizID(t *testing.T) {
	p, _ := newTestParser(t)
	if r := p.parse(1, line(t, 3, nil)); r.invalid() {
		t.Fatal(fieldsRules(r))
	}
	r := p.parse(9, line(t, 3, nil))
	if got := fieldsRules(r); !slices.Equal(got, []string{"customBizId customBizId.unique"}) {
		t.Fatalf("violations %v", got)
	}
	if !strings.Contains(r.violations[0].Description, "line 1") {
		t.Errorf("description %q does not name the first line", r.violations[0].Description)
	}
}

// Lines are numbered as an editor numbers them; blank ones are skipped, an over-long one
// is flagged and reading goes on after it.
func TestLineReader(t *testing.T) {
	long := bytes.Repeat([]byte("x"), maxLineBytes+10)
	in := "{\"a\":1}\n\n  \r\n" + string(long) + "\n{\"b\":2}\r\n{\"c\":3}"
	lr := newLineReader(strings.NewReader(in))
	type got struct {
		n       int
		text    string
		tooLong bool
	}
	var all []got
	for {
		n, text, tooLong, err := lr.next()
		if err != nil {
			break
		}
		if tooLong {
			text = nil
		}
		all = append(all, got{n, string(text), tooLong})
	}
	want := []got{{1, `{"a":1}`, false}, {4, "", true}, {5, `{"b":2}`, false}, {6, `{"c":3}`, false}}
	if !slices.Equal(all, want) {
		t.Errorf("lines %v, want %v", all, want)
	}
}

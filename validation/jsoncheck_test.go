package validation_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

// unknownKeys is a JSON object of n unknown keys, k00000 onwards.
func unknownKeys(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%05d":{"x":[1,2]}`, i)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// TestCheckJSONListsAtMostTheCap: a body of nothing but mistakes gets the first
// MaxJSONViolations, then one violation saying the list stops; below the cap every
// mistake is listed and nothing more.
func TestCheckJSONListsAtMostTheCap(t *testing.T) {
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	for _, n := range []int{1, validation.MaxJSONViolations, validation.MaxJSONViolations + 1, 90000} {
		vs := validation.CheckJSON(unknownKeys(n), md)
		want := min(n, validation.MaxJSONViolations)
		truncated := n > validation.MaxJSONViolations
		if truncated {
			want++
		}
		if len(vs) != want {
			t.Errorf("%d unknown keys: %d violations, want %d", n, len(vs), want)
			continue
		}
		if vs[0].Field != "k00000" || vs[0].Rule != "json.unknown_field" {
			t.Errorf("%d unknown keys: first violation %+v", n, vs[0])
		}
		if last := vs[len(vs)-1]; (last.Rule == "json.too_many_problems") != truncated {
			t.Errorf("%d unknown keys: last violation %+v", n, last)
		}
	}
}

// BenchmarkCheckJSONUnknownKeys: the work for a 1 MiB body of unknown keys stops at the
// cap (compare with a body of MaxJSONViolations keys).
func BenchmarkCheckJSONUnknownKeys(b *testing.B) {
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	for _, n := range []int{validation.MaxJSONViolations, 50000} {
		body := unknownKeys(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				validation.CheckJSON(body, md)
			}
		})
	}
}

// Broken JSON is reported where it breaks, by line and column (characters) and byte,
// without quoting what is there.
func TestCheckJSONSyntaxErrorPosition(t *testing.T) {
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	for _, c := range []struct {
		name, body, want string
	}{
		{"a bare word", `{"eviName": 证据x}`, "line 1, column 13 (byte 13)"},
		{"a missing comma on line 3", "{\n  \"eviName\": \"证据\"\n  \"cardNo\": \"130401199601018395\"}", "line 3, column 3 (byte 27)"},
		{"a trailing comma (Go's decoder names the comma)", `{"eviName": "a",}`, "line 1, column 16 (byte 16)"},
		{"cut short", "{\n\"cardNo\": \"1304011996", "the body ends at line 2, column 22"},
		{"empty", ``, "the body ends at line 1, column 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := validation.CheckJSON([]byte(c.body), md)
			if len(vs) != 1 || vs[0].Rule != "json.syntax" || !strings.Contains(vs[0].Description, c.want) {
				t.Fatalf("got %+v, want one json.syntax at %q", vs, c.want)
			}
			if strings.Contains(vs[0].Description, "1304") || strings.Contains(vs[0].Description, "证") {
				t.Errorf("the description quotes the body: %q", vs[0].Description)
			}
		})
	}
}

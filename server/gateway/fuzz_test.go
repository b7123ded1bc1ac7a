package gateway

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

var fuzzValidator = func() *validation.Validator {
	v, err := validation.New()
	if err != nil {
		panic(err)
	}
	return v
}()

func seedBytes(tb testing.TB) []byte {
	b, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRESTBody runs a REST body through what the gateway does before the handler:
// protojson decoding, the strict JSON check that describes a refused body, and
// validation. Nothing panics; a body the check refuses is one protojson refuses too (the
// gateway runs the check only after protojson failed, so the check must never be
// stricter); a body the check passes is one protojson decodes (or, rarely, refuses in a
// way the check leaves to it); and no violation ever quotes a value from the body.
func FuzzRESTBody(f *testing.F) {
	seed := seedBytes(f)
	f.Add(seed)
	f.Add([]byte(strings.Replace(string(seed), `"CRED_PSN_CH_IDCARD"`, `"FOO"`, 1)))
	f.Add([]byte(strings.Replace(string(seed), `"threeElements"`, `"face": {"faceImage": "x"}, "threeElements"`, 1)))
	f.Add([]byte(strings.Replace(string(seed), `"1742809059000"`, `1742809059000`, 1)))
	f.Add([]byte(`{"eviName": 12, "cardNo": {"a": [1, 2]}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"eviName": "x"`))
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, body []byte) {
		vs := validation.CheckJSON(body, md)
		for _, v := range vs {
			assertNoEcho(t, body, v.Description)
		}
		if len(vs) > 0 {
			if protojson.Unmarshal(body, &evidencev1.CreatePersonalEvidencePointRequest{}) == nil {
				t.Fatalf("the check refuses a body protojson accepts: %v", vs)
			}
			return
		}
		req := &evidencev1.CreatePersonalEvidencePointRequest{}
		if err := protojson.Unmarshal(body, req); err != nil {
			return // left to protojson; the gateway answers a generic 400
		}
		err := fuzzValidator.Validate(req)
		var verr *validation.Error
		if err != nil && !errors.As(err, &verr) {
			t.Fatalf("validation failed to run: %v", err)
		}
		if verr != nil {
			for _, v := range verr.Violations {
				assertNoEcho(t, body, v.Description)
			}
		}
	})
}

// contractWords are the words descriptions may contain legitimately: the contract's enum
// value names (listed when a value is unknown) and field names.
var contractWords = func() string {
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	var b strings.Builder
	for _, ed := range []protoreflect.EnumDescriptor{evidencev1.CardType(0).Descriptor(), evidencev1.RealNameMethod(0).Descriptor()} {
		for i := 0; i < ed.Values().Len(); i++ {
			b.WriteString(string(ed.Values().Get(i).Name()) + " ")
		}
	}
	for i := 0; i < md.Fields().Len(); i++ {
		b.WriteString(md.Fields().Get(i).JSONName() + " ")
	}
	return b.String()
}()

// assertNoEcho fails if desc contains a JSON string value of body at least 8 characters
// long (short values such as "x" occur in descriptions by chance) that is not a word of
// the contract itself.
func assertNoEcho(t *testing.T, body []byte, desc string) {
	t.Helper()
	var v any
	if json.Unmarshal(body, &v) != nil {
		return
	}
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case string:
			if len(x) >= 8 && strings.Contains(desc, x) && !strings.Contains(contractWords, x) {
				t.Fatalf("description %q quotes the input %q", desc, x)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
}

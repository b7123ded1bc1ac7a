package gateway

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// The gateway's decoder decodes, or refuses, every body as runtime.JSONPb's does: the
// same message, the same error.
func TestBodyDecoderAgreesWithJSONPb(t *testing.T) {
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	bodies := [][]byte{
		seed,
		append(append([]byte{}, seed...), " \n\t"...),
		append(append([]byte{}, seed...), " trailing"...),
		append(append([]byte{}, seed...), seed...),
		[]byte(`{}`), []byte(`{} {}`), []byte(``), []byte(`   `), []byte(`{`), []byte(`[]`), []byte(`null`),
		[]byte(`{"eviName": "a", "unknown": 1}`), []byte(`{"cardType": "FOO"}`), []byte(`{"timeStamp": "12x"}`),
		[]byte(`{"eviName": "a"} {"name": "b"}`), []byte("\xff"),
	}
	codec := newMarshaler()
	for _, b := range bodies {
		for i, readErr := range []error{nil, errors.New("connection reset"), nil} {
			src := func() io.Reader {
				switch {
				case readErr != nil:
					return io.MultiReader(bytes.NewReader(b), errReader{readErr})
				case i == 2:
					return newHeldBody(b) // as strictBodies hands it on
				}
				return bytes.NewReader(b)
			}
			got, want := &evidencev1.CreatePersonalEvidencePointRequest{}, &evidencev1.CreatePersonalEvidencePointRequest{}
			gotErr := codec.NewDecoder(src()).Decode(got)
			wantErr := codec.JSONPb.NewDecoder(src()).Decode(want)
			if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("%q (read error %v): error %v, runtime.JSONPb's %v", b, readErr, gotErr, wantErr)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%q (read error %v): decoded %v, runtime.JSONPb's %v", b, readErr, got, want)
			}
		}
	}
}

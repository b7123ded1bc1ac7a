package gateway

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// heldBodiesAgree fails t unless the gateway's decoder, given body as strictBodies hands
// it on, decodes it, or refuses it, exactly as runtime.JSONPb's decoder does: the same
// message, the same error.
func heldBodiesAgree(t *testing.T, body []byte) {
	t.Helper()
	codec := newMarshaler()
	got, want := &evidencev1.CreatePersonalEvidencePointRequest{}, &evidencev1.CreatePersonalEvidencePointRequest{}
	gotErr := codec.NewDecoder(newHeldBody(body)).Decode(got)
	wantErr := codec.JSONPb.NewDecoder(bytes.NewReader(body)).Decode(want)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q: error %v, runtime.JSONPb's %v", body, gotErr, wantErr)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%q: decoded %v, runtime.JSONPb's %v", body, got, want)
	}
}

// The gateway's decoder decodes, or refuses, every body as runtime.JSONPb's does.
func TestHeldBodyDecoderAgreesWithJSONPb(t *testing.T) {
	seed := string(seedBytes(t))
	for _, b := range []string{
		seed,
		seed + " \n\t",
		" \n" + seed,
		seed + " trailing",
		seed + seed,
		seed + "}",
		`{}`, `{} {}`, `{}x`, ``, `   `, `{`, `[]`, `null`, `"x"`, `1`,
		`{"eviName": "a", "unknown": 1}`, `{"cardType": "FOO"}`, `{"timeStamp": "12x"}`,
		`{"eviName": "a"} {"name": "b"}`, `{"eviName": "a", "eviName": "b"}`, "\xff",
		`{"eviName": "` + "\xff" + `"}`, `{"eviName": "\ud800"}`, `{"timeStamp": 1e3}`,
		strings.Replace(seed, `"THREEELEMENTS"`, `2`, 1),
		strings.Replace(seed, `"threeElements"`, `"threeElements": null, "x"`, 1),
	} {
		heldBodiesAgree(t, []byte(b))
	}
}

// A body already partly read, and a reader that is not a held body, are decoded by
// runtime.JSONPb's decoder.
func TestDecoderOfOtherReaders(t *testing.T) {
	seed := seedBytes(t)
	codec := newMarshaler()
	held := newHeldBody(append(append([]byte{}, seed...), seed...))
	if _, err := held.Seek(int64(len(seed)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := codec.NewDecoder(held).Decode(got); err != nil || got.GetEviName() == "" {
		t.Fatalf("the second value of a partly read body: %v, %v", got, err)
	}
	got.Reset()
	if err := codec.NewDecoder(io.MultiReader(bytes.NewReader(seed), strings.NewReader(" x"))).Decode(got); err != nil || got.GetEviName() == "" {
		t.Fatalf("another reader: %v, %v", got, err)
	}
}

// FuzzHeldBodyDecoder: whatever the body, the gateway's decoder agrees with
// runtime.JSONPb's.
func FuzzHeldBodyDecoder(f *testing.F) {
	seed := seedBytes(f)
	f.Add(seed)
	f.Add(append(append([]byte{}, seed...), " x"...))
	f.Add([]byte(`{"eviName": "a"} {}`))
	f.Add([]byte(` `))
	f.Add([]byte(`{"eviName": "a", "eviName": "b"}`))
	f.Fuzz(func(t *testing.T, body []byte) { heldBodiesAgree(t, body) })
}

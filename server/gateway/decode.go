package gateway

import (
	"bytes"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
)

// jsonCodec is the gateway's JSON marshaler (runtime.JSONPb) with a quicker request
// decoder: runtime.JSONPb's first reads the body's first JSON value into a
// json.RawMessage with encoding/json, then hands it to protojson; this hands the whole
// body to protojson at once, which gives the same message whenever it succeeds (the body
// is then one JSON value), and falls back to runtime.JSONPb's own decoder otherwise, so
// every other body (trailing data, bad JSON, a read error) is decoded, or refused, as it
// was. The encoding/json pass was a third of the gateway's decoding cost.
type jsonCodec struct{ *runtime.JSONPb }

// NewDecoder returns the quicker decoder for r.
func (j jsonCodec) NewDecoder(r io.Reader) runtime.Decoder { return bodyDecoder{r: r, j: j.JSONPb} }

type bodyDecoder struct {
	r io.Reader
	j *runtime.JSONPb
}

func (d bodyDecoder) Decode(v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return d.j.NewDecoder(d.r).Decode(v)
	}
	var b []byte
	if h, ok := d.r.(*heldBody); ok && h.Len() == len(h.b) {
		// The body strictBodies read (no copy).
		b = h.b
		_, _ = h.Seek(0, io.SeekEnd)
	} else {
		var err error
		if b, err = io.ReadAll(d.r); err != nil {
			// The same bytes, then the same error, to runtime.JSONPb's decoder.
			return d.j.NewDecoder(io.MultiReader(bytes.NewReader(b), errReader{err})).Decode(v)
		}
	}
	if d.j.UnmarshalOptions.Unmarshal(b, m) == nil {
		return nil
	}
	proto.Reset(m)
	return d.j.NewDecoder(bytes.NewReader(b)).Decode(v)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// heldBody is a request body strictBodies has read whole: the decoder takes its bytes as
// they are.
type heldBody struct {
	*bytes.Reader
	b []byte
}

func newHeldBody(b []byte) *heldBody { return &heldBody{Reader: bytes.NewReader(b), b: b} }

func (*heldBody) Close() error { return nil }

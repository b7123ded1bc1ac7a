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
	b, err := io.ReadAll(d.r)
	if err != nil {
		// The same bytes, then the same error, to runtime.JSONPb's decoder.
		return d.j.NewDecoder(io.MultiReader(bytes.NewReader(b), errReader{err})).Decode(v)
	}
	if d.j.UnmarshalOptions.Unmarshal(b, m) == nil {
		return nil
	}
	proto.Reset(m)
	return d.j.NewDecoder(bytes.NewReader(b)).Decode(v)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

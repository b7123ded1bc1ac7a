package gateway

import (
	"bytes"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonCodec is the gateway's JSON marshaler (runtime.JSONPb) with a quicker decoder for
// the bodies strictBodies has read whole. runtime.JSONPb's decoder first copies the
// body's first JSON value into a json.RawMessage with encoding/json, then hands that to
// protojson; a held body in the plain forms quickDecode takes is decoded by it (a third
// of protojson's cost, the same message), any other held body is handed to protojson at
// once (no encoding/json pass, no copy). Whenever protojson accepts the whole body, the body is
// that one JSON value and runtime.JSONPb's decoder gives the same message; any body
// protojson refuses (trailing data after the first value, blank, bad JSON, an unknown
// field) is handed to runtime.JSONPb's decoder from its first byte, so it is decoded, or
// refused, exactly as it was. Any other reader goes to runtime.JSONPb's decoder as it is.
// The encoding/json pass was a third of a REST call's decoding cost.
type jsonCodec struct{ *runtime.JSONPb }

// Marshal writes v as runtime.JSONPb does; a plain message (see quickEncode) is written
// by quickEncode, byte for byte as protojson writes it.
func (j jsonCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok && j.MarshalOptions == (protojson.MarshalOptions{EmitUnpopulated: true}) {
		if b, ok := quickEncode(m.ProtoReflect(), make([]byte, 0, 128), 0); ok {
			return b, nil
		}
	}
	return j.JSONPb.Marshal(v)
}

// NewDecoder returns the decoder for r.
func (j jsonCodec) NewDecoder(r io.Reader) runtime.Decoder {
	if h, ok := r.(*heldBody); ok {
		return heldDecoder{h: h, j: j.JSONPb}
	}
	return j.JSONPb.NewDecoder(r)
}

// heldDecoder decodes a held body (see jsonCodec).
type heldDecoder struct {
	h *heldBody
	j *runtime.JSONPb
}

func (d heldDecoder) Decode(v any) error {
	m, ok := v.(proto.Message)
	if !ok || d.h.Len() != len(d.h.b) {
		// Not a message, or part of the body read already: as runtime.JSONPb decodes it.
		return d.j.NewDecoder(d.h).Decode(v)
	}
	if o := d.j.UnmarshalOptions; !o.AllowPartial && !o.DiscardUnknown && o.Resolver == nil {
		if quickDecode(d.h.b, m) {
			_, _ = d.h.Seek(0, io.SeekEnd) // read: what follows sees its end
			return nil
		}
		proto.Reset(m)
	}
	if d.j.UnmarshalOptions.Unmarshal(d.h.b, m) == nil {
		_, _ = d.h.Seek(0, io.SeekEnd) // read: what follows sees its end
		return nil
	}
	proto.Reset(m)
	return d.j.NewDecoder(d.h).Decode(v)
}

// heldBody is a request body strictBodies has read whole, handed on as the request's
// body: jsonCodec's decoder takes its bytes as they are.
type heldBody struct {
	*bytes.Reader
	b []byte
}

func newHeldBody(b []byte) *heldBody { return &heldBody{Reader: bytes.NewReader(b), b: b} }

func (*heldBody) Close() error { return nil }

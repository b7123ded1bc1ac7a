package validate

import (
	"context"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/validation"
)

// wireCodec is gRPC's protobuf codec, plus: when a request cannot be decoded (malformed
// protobuf, invalid UTF-8 in a string field) it works out which field is at fault, so
// the call can be answered INVALID_ARGUMENT with a BadRequest naming that field. A codec
// error would make gRPC answer INTERNAL at once, before any interceptor runs, so the
// codec reports success with an empty message and hands the fault over beside it, keyed
// by the message; the code that asked for the decoding takes it back (takeWireFault):
// the unary interceptors and the stream wrapper, before anything reads the message.
type wireCodec struct {
	base encoding.CodecV2
}

// NewCodec returns the server's codec (grpc.ForceServerCodecV2).
func NewCodec() encoding.CodecV2 {
	return &wireCodec{base: encoding.GetCodecV2(encproto.Name)}
}

func (c *wireCodec) Name() string { return c.base.Name() }

func (c *wireCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c *wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	fault := locateWireFault(data.Materialize(), m.ProtoReflect().Descriptor())
	proto.Reset(m) // nothing half-decoded is ever read
	wireFaults.Store(v, fault)
	return nil
}

// wireFaults holds, per message being decoded, where its bytes went wrong.
var wireFaults sync.Map

// takeWireFault returns (and forgets) the status for what the codec found wrong with
// the bytes decoded into m, or nil when decoding m did not fail.
func takeWireFault(m any) error {
	f, ok := wireFaults.LoadAndDelete(m)
	if !ok {
		return nil
	}
	fault := f.(validation.FieldViolation)
	if fault.Field == "" {
		return apierror.WithDetails(status.New(codes.InvalidArgument, "the request message is not valid protobuf"),
			apierror.Info(apierror.ReasonInvalidRequest, nil)).Err()
	}
	return apierror.Invalid(&validation.Error{Violations: []validation.FieldViolation{fault}}).Err()
}

// locateWireFault walks protobuf wire data against md and describes the first fault:
// the field (by its JSON name path) whose bytes are malformed or whose string is not
// UTF-8. Field is "" when the fault lies outside any known field.
func locateWireFault(b []byte, md protoreflect.MessageDescriptor) validation.FieldViolation {
	if v, found := walkWire(b, md, ""); found {
		return v
	}
	return validation.FieldViolation{Rule: "proto.wire", Description: "the message is not valid protobuf"}
}

func walkWire(b []byte, md protoreflect.MessageDescriptor, path string) (validation.FieldViolation, bool) {
	malformed := func(field string) (validation.FieldViolation, bool) {
		return validation.FieldViolation{Field: field, Rule: "proto.wire", Description: "is not valid protobuf"}, true
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed(path)
		}
		b = b[n:]
		var fd protoreflect.FieldDescriptor
		if md != nil {
			fd = md.Fields().ByNumber(num)
		}
		field := path
		if fd != nil {
			field = fd.JSONName()
			if path != "" {
				field = path + "." + field
			}
		}
		vlen := protowire.ConsumeFieldValue(num, typ, b)
		if vlen < 0 {
			return malformed(field)
		}
		val := b[:vlen]
		b = b[vlen:]
		if fd == nil {
			continue // unknown fields are kept, not refused
		}
		if typ == protowire.BytesType && !fd.IsMap() {
			content, _ := protowire.ConsumeBytes(val)
			switch {
			case fd.Kind() == protoreflect.StringKind && fd.Syntax() == protoreflect.Proto3 && !utf8.Valid(content):
				return validation.FieldViolation{Field: field, Rule: "string.utf8", Description: "is not valid UTF-8"}, true
			case fd.Kind() == protoreflect.MessageKind:
				if v, found := walkWire(content, fd.Message(), field); found {
					return v, true
				}
			}
		}
	}
	return validation.FieldViolation{}, false
}

// requestReadError turns a failure of gRPC to read a request message into the status
// this service reports for it: a message above the size limit is RESOURCE_EXHAUSTED, a
// broken gRPC frame INVALID_ARGUMENT; the end of the stream and the caller's own
// cancellation pass unchanged. (gRPC has already answered such a call itself, before
// any of this service's code ran; this is what the access log and the metrics say.)
func requestReadError(err error) error {
	if errors.Is(err, io.EOF) {
		return err
	}
	st := status.Convert(err)
	switch {
	case st.Code() == codes.ResourceExhausted:
		return apierror.WithDetails(st, apierror.Info(apierror.ReasonRequestTooLarge, nil)).Err()
	case st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded:
		return err
	}
	return apierror.WithDetails(status.New(codes.InvalidArgument, "the request message could not be read: its gRPC framing is broken"),
		apierror.Info(apierror.ReasonInvalidRequest, nil)).Err()
}

// decodeFault carries a unary request's read failure from the method handler, where
// gRPC decodes the request before any interceptor runs, to UnaryServerInterceptor, so that
// the failure is answered, logged and counted by the same chain as every other call.
type decodeFault struct{ err error }

type decodeFaultKey struct{}

// WithDecodeFaults returns desc with each unary method's decoding deferred: a request
// that cannot be read reaches the interceptors as an empty message, with its failure
// beside it in the context.
func WithDecodeFaults(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		h := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			df := &decodeFault{}
			return h(srv, context.WithValue(ctx, decodeFaultKey{}, df), func(v any) error {
				if err := dec(v); err != nil {
					df.err = requestReadError(err)
					if pm, ok := v.(proto.Message); ok {
						proto.Reset(pm) // nothing half-decoded reaches the log
					}
					return nil
				}
				df.err = takeWireFault(v)
				return nil
			}, ic)
		}
		d.Methods[i] = m
	}
	return &d
}

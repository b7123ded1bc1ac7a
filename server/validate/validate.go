// Package validate runs the contract's validator, built once at start-up, on every message
// a caller sends, unary or streamed. A message that breaks the contract never reaches a
// handler.
package validate

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/observe"
	"github.com/esign-evidence/esign-evidence/validation"
)

// Messages validates what callers send with v.
type Messages struct{ v *validation.Validator }

// New returns the interceptors validating with v.
func New(v *validation.Validator) *Messages { return &Messages{v: v} }

// check is the one rule both interceptors apply: a message breaking the contract is
// InvalidArgument with a BadRequest naming each field.
func (m *Messages) check(msg any) error {
	pm, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	if err := m.v.Validate(pm); err != nil {
		var verr *validation.Error
		if errors.As(err, &verr) {
			return apierror.Invalid(verr).Err()
		}
		return status.Error(codes.Internal, "request could not be validated")
	}
	return nil
}

// UnaryServerInterceptor validates the request of a unary call, after answering one whose
// bytes could not be read (WithDecodeFaults, NewCodec).
func (m *Messages) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if df, ok := ctx.Value(decodeFaultKey{}).(*decodeFault); ok && df.err != nil {
			return nil, df.err
		}
		if err := takeWireFault(req); err != nil {
			return nil, err
		}
		if err := m.check(req); err != nil {
			return nil, err
		}
		observe.MarkValidated(ctx)
		return handler(ctx, req)
	}
}

// StreamServerInterceptor validates every message a client streams in.
func (m *Messages) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{ServerStream: ss, m: m})
	}
}

type validatingStream struct {
	grpc.ServerStream
	m *Messages
}

func (s *validatingStream) RecvMsg(msg any) error {
	if err := s.ServerStream.RecvMsg(msg); err != nil {
		return requestReadError(err)
	}
	if err := takeWireFault(msg); err != nil {
		return err
	}
	return s.m.check(msg)
}

package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/esign-evidence/esign-evidence/validation"
)

// recoverInterceptor turns a panic in a handler into Internal. Neither the panic value
// nor the request is logged or returned: either may hold personal data. The stack trace
// holds code locations and pointers, not field values.
func recoverInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.LogAttrs(ctx, slog.LevelError, "panic recovered",
					slog.String("method", info.FullMethod),
					slog.String("stack", string(debug.Stack())))
				resp = nil
				err = withDetails(status.New(codes.Internal, "internal error"), errorInfo(ReasonInternal, nil)).Err()
			}
		}()
		return handler(ctx, req)
	}
}

// validationInterceptor validates every request message with the one validator built at
// start-up. A request that breaks the contract never reaches a handler.
func validationInterceptor(v *validation.Validator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m, ok := req.(proto.Message); ok {
			if err := v.Validate(m); err != nil {
				var verr *validation.Error
				if errors.As(err, &verr) {
					return nil, validationStatus(verr).Err()
				}
				return nil, status.Error(codes.Internal, "request could not be validated")
			}
		}
		return handler(ctx, req)
	}
}

package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/esign-evidence/esign-evidence/validation"
)

// ctxStream is a ServerStream with a context of our own.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// observeStreamInterceptor is observeInterceptor for streaming calls (uploads, health
// watches, reflection): request ID, in-flight count, access line, metrics.
func observeStreamInterceptor(log *slog.Logger, m *metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ci := &callInfo{requestID: requestID(ss.Context())}
		ctx := context.WithValue(ss.Context(), callInfoKey{}, ci)
		_ = ss.SetHeader(metadata.Pairs(requestIDKey, ci.requestID))
		m.inFlight.Inc()
		err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		m.inFlight.Dec()
		elapsed := time.Since(start)
		code := status.Code(err)
		caller := ci.caller
		if caller == "" {
			caller = "unauthenticated"
		}
		m.calls.WithLabelValues(info.FullMethod, code.String(), caller).Inc()
		m.latency.WithLabelValues(info.FullMethod, code.String()).Observe(elapsed.Seconds())
		log.LogAttrs(ctx, slog.LevelInfo, "call", slog.String("method", info.FullMethod), slog.String("caller", caller),
			slog.String("request_id", ci.requestID), slog.String("code", code.String()),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000))
		return err
	}
}

// recoverStreamInterceptor is recoverInterceptor for streaming calls.
func recoverStreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.LogAttrs(ss.Context(), slog.LevelError, "panic recovered",
					slog.String("method", info.FullMethod), slog.String("stack", string(debug.Stack())))
				err = withDetails(status.New(codes.Internal, "internal error"), errorInfo(ReasonInternal, nil)).Err()
			}
		}()
		return handler(srv, ss)
	}
}

// validatingStream validates every message a client streams in.
type validatingStream struct {
	grpc.ServerStream
	v *validation.Validator
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if err := s.v.Validate(msg); err != nil {
		var verr *validation.Error
		if errors.As(err, &verr) {
			return validationStatus(verr).Err()
		}
		return status.Error(codes.Internal, "request could not be validated")
	}
	return nil
}

// validationStreamInterceptor is validationInterceptor for streaming calls.
func validationStreamInterceptor(v *validation.Validator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{ServerStream: ss, v: v})
	}
}

package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
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

// logInterceptor writes one access line per call with identifiers that are not personal
// data: the method, the caller's customBizId, the code, the latency, and on success the
// eviPointId. Request and response messages are never logged.
func logInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		st := status.Convert(err)
		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("code", st.Code().String()),
			slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000),
		}
		if r, ok := req.(*evidencev1.CreatePersonalEvidencePointRequest); ok && r.GetCustomBizId() != "" {
			attrs = append(attrs, slog.String("custom_biz_id", r.GetCustomBizId()))
		}
		if r, ok := resp.(*evidencev1.CreatePersonalEvidencePointResponse); ok {
			attrs = append(attrs, slog.String("evi_point_id", r.GetEviPointId()), slog.Bool("replayed", r.GetReplayed()))
		}
		for _, d := range st.Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				attrs = append(attrs, slog.String("reason", ei.GetReason()))
				if c := ei.GetMetadata()["esign_code"]; c != "" {
					attrs = append(attrs, slog.String("esign_code", c))
				}
				if t := ei.GetMetadata()["esign_trace_id"]; t != "" {
					attrs = append(attrs, slog.String("esign_trace_id", t))
				}
			}
		}
		level := slog.LevelInfo
		if st.Code() == codes.Internal || st.Code() == codes.Unknown {
			level = slog.LevelError
		}
		log.LogAttrs(ctx, level, "call", attrs...)
		return resp, err
	}
}

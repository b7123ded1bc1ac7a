package observe

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tracerName names this instrumentation.
const tracerName = "github.com/esign-evidence/esign-evidence/server/observe"

// Tracing returns interceptors that give each call a server span, for calls that reach
// the handlers without the gRPC server's stats handler (REST calls, in process). A span
// carries the method and the status code, never a message or a value.
func Tracing(tp trace.TracerProvider) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	tracer := tp.Tracer(tracerName)
	start := func(ctx context.Context, method string) (context.Context, trace.Span) {
		service, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
		return tracer.Start(ctx, strings.TrimPrefix(method, "/"), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service),
				attribute.String("rpc.method", name)))
	}
	end := func(span trace.Span, err error) {
		code := status.Code(err)
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", int64(code)))
		if code != codes.OK {
			span.SetStatus(otelcodes.Error, code.String())
		}
		span.End()
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, span := start(ctx, info.FullMethod)
		resp, err := handler(ctx, req)
		end(span, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, span := start(ss.Context(), info.FullMethod)
		err := handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		end(span, err)
		return err
	}
	return unary, stream
}

// ctxStream is a ServerStream with a context of its own.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

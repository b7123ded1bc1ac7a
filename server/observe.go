package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"regexp"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// requestIDKey is the metadata key (and, over REST, the X-Request-Id header) of the
// request ID.
const requestIDKey = "x-request-id"

// validRequestID accepts a caller's request ID only if it is short and plain; anything
// else is replaced, so a request ID can carry nothing into the logs.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// callInfo collects what the access line reports about one call.
type callInfo struct {
	requestID string
	caller    string
}

type callInfoKey struct{}

func setCaller(ctx context.Context, id string) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.caller = id
	}
}

// RequestID returns the call's request ID.
func RequestID(ctx context.Context) string {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		return ci.requestID
	}
	return ""
}

func requestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestIDKey); len(v) > 0 && validRequestID.MatchString(v[0]) {
		return v[0]
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// observeInterceptor is the outermost interceptor: it takes or makes the request ID and
// returns it to the caller, counts the call in flight, and after it writes the access
// line and the call metrics. It logs identifiers only, never a request or response.
func observeInterceptor(log *slog.Logger, m *metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ci := &callInfo{requestID: requestID(ctx)}
		ctx = context.WithValue(ctx, callInfoKey{}, ci)
		_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDKey, ci.requestID))
		m.inFlight.Inc()
		resp, err := handler(ctx, req)
		m.inFlight.Dec()
		elapsed := time.Since(start)

		st := status.Convert(err)
		caller := ci.caller
		if caller == "" {
			caller = "unauthenticated"
		}
		m.calls.WithLabelValues(info.FullMethod, st.Code().String(), caller).Inc()
		m.latency.WithLabelValues(info.FullMethod, st.Code().String()).Observe(elapsed.Seconds())

		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("caller", caller),
			slog.String("request_id", ci.requestID),
			slog.String("code", st.Code().String()),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
		}
		switch r := req.(type) {
		case *evidencev1.CreatePersonalEvidencePointRequest:
			if r.GetCustomBizId() != "" {
				attrs = append(attrs, slog.String("custom_biz_id", r.GetCustomBizId()))
			}
		case *evidencev1.GetSubmissionRequest:
			attrs = append(attrs, slog.String("custom_biz_id", r.GetCustomBizId()))
		}
		if r, ok := resp.(*evidencev1.CreatePersonalEvidencePointResponse); ok {
			attrs = append(attrs, slog.String("evi_point_id", r.GetEviPointId()), slog.Bool("replayed", r.GetReplayed()))
			if r.GetReplayed() {
				m.replays.Inc()
			}
		}
		for _, d := range st.Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				attrs = append(attrs, slog.String("reason", ei.GetReason()))
				for _, k := range []string{"esign_code", "esign_trace_id", "esign_reason", "cause"} {
					if v := ei.GetMetadata()[k]; v != "" {
						attrs = append(attrs, slog.String(k, v))
					}
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

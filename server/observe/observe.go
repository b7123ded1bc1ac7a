// Package observe is what the service reports about its calls: the request ID, the access
// line, the call and e签宝 metrics, and the record of a recovered panic. It reports
// identifiers only, never a request's or a response's values.
package observe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/apierror"
)

// RequestIDKey is the metadata key (and, over REST, the X-Request-Id header) of the
// request ID.
const RequestIDKey = "x-request-id"

// healthService prefixes the gRPC health methods' names; their calls are logged at debug.
const healthService = "/grpc.health.v1.Health/"

// validRequestID accepts a caller's request ID only if it is short and plain; anything
// else is replaced, so a request ID can carry nothing into the logs.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// callInfo collects what the access line reports about one call; the interceptors inside
// the observing one fill it in.
type callInfo struct {
	requestID string
	caller    string
	// customBizID, eviPointID and replayed are read from the request and the response.
	customBizID string
	eviPointID  string
	replayed    bool
	hasResult   bool
}

type callInfoKey struct{}

// SetCaller records the authenticated caller of the call for its access line and metrics.
func SetCaller(ctx context.Context, id string) {
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
	if v := md.Get(RequestIDKey); len(v) > 0 && validRequestID.MatchString(v[0]) {
		return v[0]
	}
	return newRequestID()
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Calls observes every call, unary or streaming, through one reporter: it takes or makes
// the request ID and returns it to the caller, counts the call in flight, and after it
// writes the access line and the call metrics. It must be the outermost interceptor.
type Calls struct {
	log *slog.Logger
	m   *Metrics
}

// NewCalls returns the call observer writing to log and m.
func NewCalls(log *slog.Logger, m *Metrics) *Calls { return &Calls{log: log, m: m} }

// UnaryServerInterceptor observes unary calls.
func (c *Calls) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return interceptors.UnaryServerInterceptor(c)
}

// StreamServerInterceptor observes streaming calls.
func (c *Calls) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return interceptors.StreamServerInterceptor(c)
}

// ServerReporter starts observing one call (interceptors.ServerReportable).
func (c *Calls) ServerReporter(ctx context.Context, meta interceptors.CallMeta) (interceptors.Reporter, context.Context) {
	method, ok := grpc.Method(ctx)
	if !ok {
		method = meta.FullMethod()
	}
	ci := &callInfo{requestID: requestID(ctx)}
	ctx = context.WithValue(ctx, callInfoKey{}, ci)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, ci.requestID))
	c.m.inFlight.Inc()
	return &report{c: c, ctx: ctx, ci: ci, method: c.m.methodLabel(method)}, ctx
}

// report is the observation of one call.
type report struct {
	c      *Calls
	ctx    context.Context
	ci     *callInfo
	method string
}

// PostMsgReceive notes the identifiers of a request (never its values).
func (r *report) PostMsgReceive(msg any, _ error, _ time.Duration) {
	switch m := msg.(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest:
		r.ci.customBizID = m.GetCustomBizId()
	case *evidencev1.GetSubmissionRequest:
		r.ci.customBizID = m.GetCustomBizId()
	}
}

// PostMsgSend notes the identifiers of a response.
func (r *report) PostMsgSend(msg any, _ error, _ time.Duration) {
	if m, ok := msg.(*evidencev1.CreatePersonalEvidencePointResponse); ok && m != nil {
		r.ci.eviPointID, r.ci.replayed, r.ci.hasResult = m.GetEviPointId(), m.GetReplayed(), true
	}
}

// PostCall writes the access line and the call metrics.
func (r *report) PostCall(err error, elapsed time.Duration) {
	m, ci := r.c.m, r.ci
	m.inFlight.Dec()
	st := status.Convert(err)
	code := st.Code().String()
	caller := ci.caller
	if caller == "" {
		caller = "unauthenticated"
	}
	m.calls.WithLabelValues(r.method, code, caller).Inc()
	m.latency.WithLabelValues(r.method, code).Observe(elapsed.Seconds())

	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", r.method),
		slog.String("caller", caller),
		slog.String("request_id", ci.requestID),
		slog.String("code", code),
		slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
	)
	if ci.customBizID != "" {
		attrs = append(attrs, slog.String("custom_biz_id", ci.customBizID))
	}
	if ci.hasResult {
		attrs = append(attrs, slog.String("evi_point_id", ci.eviPointID), slog.Bool("replayed", ci.replayed))
		if ci.replayed {
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
	switch {
	case strings.HasPrefix(r.method, healthService):
		level = slog.LevelDebug // probes every few seconds; only interesting when debugging
	case st.Code() == codes.Internal || st.Code() == codes.Unknown:
		level = slog.LevelError
	}
	r.c.log.LogAttrs(r.ctx, level, "call", attrs...)
}

// Recovered is the recovery interceptors' handler: it logs that a handler panicked, with
// the stack (code locations and pointers, not field values), and answers Internal.
// Neither the panic value nor the request is logged or returned: either may hold
// personal data.
func Recovered(log *slog.Logger) func(ctx context.Context, p any) error {
	return func(ctx context.Context, _ any) error {
		method, _ := grpc.Method(ctx)
		log.LogAttrs(ctx, slog.LevelError, "panic recovered",
			slog.String("method", method), slog.String("stack", string(debug.Stack())))
		return apierror.Internal().Err()
	}
}

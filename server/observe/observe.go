// Package observe is what the service reports about its calls: the request ID, the access
// line, the call and e签宝 metrics, and the record of a recovered panic. It reports
// identifiers only, never a request's or a response's values.
package observe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/proto"

	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/operation"
)

// RequestIDKey is the metadata key (and, over REST, the X-Request-Id header) of the
// request ID.
const RequestIDKey = "x-request-id"

// healthService prefixes the gRPC health methods' names; their calls are logged at debug.
const healthService = "/grpc.health.v1.Health/"

// validRequestID accepts a caller's request ID only if it is short and plain (1 to 128
// of A-Z a-z 0-9 . _ : -); anything else is replaced, so a request ID can carry nothing
// into the logs. (A loop: the regular expression it replaces was 1 % of a REST call.)
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// callInfo collects what the access line reports about one call; the interceptors inside
// the observing one fill it in.
type callInfo struct {
	requestID string
	caller    string
	// op is the call's registered operation, nil for the other RPCs.
	op operation.Descriptor
	// customBizID is the request's key; validated says it passed the contract's rules
	// (only then is it logged whole).
	customBizID string
	validated   bool
	// result holds the response's identifiers (its operation's ResponseAttrs).
	result    []slog.Attr
	replayed  bool
	hasResult bool
}

type callInfoKey struct{}

// SetCaller records the authenticated caller of the call for its access line and metrics.
func SetCaller(ctx context.Context, id string) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.caller = id
	}
}

// MarkValidated records that the call's request passed the contract's rules, so its
// access line may show the request's key whole.
func MarkValidated(ctx context.Context) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.validated = true
	}
}

// RequestID returns the call's request ID.
func RequestID(ctx context.Context) string {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		return ci.requestID
	}
	return ""
}

// requestID is the caller's request ID, or a new one. It reads the one key it needs
// (metadata.FromIncomingContext would copy every key and value of the call's metadata).
func requestID(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDKey); len(v) > 0 && validRequestID(v[0]) {
		return v[0]
	}
	return newRequestID()
}

// newRequestID is 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// Calls observes every call, unary or streaming, through one reporter: it takes or makes
// the request ID and returns it to the caller, counts the call in flight, and after it
// writes the access line and the call metrics. It must be the outermost interceptor.
type Calls struct {
	log *slog.Logger
	m   *Metrics
	// pc is where the access line is written from (its source, for a handler that
	// reports one); 0 until the first line.
	pc atomic.Uintptr
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
	// One allocation holds the report and the call's info.
	r := &report{c: c}
	r.ci = &r.info
	r.method, r.info.op = c.m.method(method)
	r.info.requestID = requestID(ctx)
	ctx = context.WithValue(ctx, callInfoKey{}, r.ci)
	r.ctx = ctx
	_ = grpc.SetHeader(ctx, metadata.MD{RequestIDKey: {r.info.requestID}})
	c.m.inFlight.Inc()
	return r, ctx
}

// report is the observation of one call.
type report struct {
	c      *Calls
	ctx    context.Context
	ci     *callInfo
	method string
	info   callInfo
}

// keyed is a request that carries the caller's key (customBizId).
type keyed interface{ GetCustomBizId() string }

// replayable is an answer that says whether it was replayed from the record.
type replayable interface{ GetReplayed() bool }

// PostMsgReceive notes the identifiers of a request (never its values).
func (r *report) PostMsgReceive(msg any, _ error, _ time.Duration) {
	if m, ok := msg.(keyed); ok {
		r.ci.customBizID = m.GetCustomBizId()
	}
}

// PostMsgSend notes the identifiers of a response, as its operation's descriptor names
// them.
func (r *report) PostMsgSend(msg any, _ error, _ time.Duration) {
	m, ok := msg.(proto.Message)
	if !ok || r.ci.op == nil || reflectNil(m) {
		return
	}
	r.ci.result, r.ci.hasResult = r.ci.op.ResponseAttrs(m), true
	if rp, ok := msg.(replayable); ok {
		r.ci.replayed = rp.GetReplayed()
	}
}

// reflectNil reports a typed nil message (a handler's answer beside an error).
func reflectNil(m proto.Message) bool { return !m.ProtoReflect().IsValid() }

// loggedKeyPrefix is how much of a key that did not pass validation its access line
// shows: enough to find the caller's request, never the megabyte an attacker sent.
const loggedKeyPrefix = 36

// appendKeyAttrs appends the access line's attributes of the request's key: whole once
// it passed validation (at most 36 printable characters then), else a marked prefix of
// at most loggedKeyPrefix bytes with its length.
func appendKeyAttrs(attrs []slog.Attr, ci *callInfo) []slog.Attr {
	switch {
	case ci.customBizID == "":
		return attrs
	case ci.validated:
		return append(attrs, slog.String("custom_biz_id", ci.customBizID))
	}
	prefix := ci.customBizID
	if len(prefix) > loggedKeyPrefix {
		prefix = strings.ToValidUTF8(prefix[:loggedKeyPrefix], "")
	}
	return append(attrs, slog.String("custom_biz_id_unvalidated", prefix), slog.Int("custom_biz_id_bytes", len(ci.customBizID)))
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
	series := m.callSeries(r.method, code, caller)
	series.calls.Inc()
	series.latency.Observe(elapsed.Seconds())

	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", r.method),
		slog.String("caller", caller),
		slog.String("request_id", ci.requestID),
		slog.String("code", code),
		slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
	)
	attrs = appendKeyAttrs(attrs, ci)
	if ci.hasResult {
		attrs = append(attrs, ci.result...)
		attrs = append(attrs, slog.Bool("replayed", ci.replayed))
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
	r.c.logCall(r.ctx, level, attrs)
	markCallLogged(r.ctx)
}

// logCall writes an access line as log.LogAttrs would, with the source location of its
// first call kept instead of walking the stack for every line.
func (c *Calls) logCall(ctx context.Context, level slog.Level, attrs []slog.Attr) {
	h := c.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	pc := c.pc.Load()
	if pc == 0 {
		var pcs [1]uintptr
		runtime.Callers(2, pcs[:]) // logCall's caller
		pc = pcs[0]
		c.pc.Store(pc)
	}
	rec := slog.NewRecord(time.Now(), level, "call", pc)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
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

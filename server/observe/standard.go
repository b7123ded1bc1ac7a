package observe

import (
	"context"
	"errors"
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
)

// NewGRPCMetrics registers the standard gRPC server metrics with reg, from
// go-grpc-middleware's Prometheus provider: grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total, grpc_server_msg_sent_total and
// the grpc_server_handling_seconds histogram, labelled grpc_type, grpc_service,
// grpc_method (and grpc_code). These are the series the common gRPC Grafana dashboards and
// alerting rules query. OpenTelemetry's rpc.server.* semantic conventions were the other
// candidate; they reach Prometheus under other names (rpc_server_duration_*) that those
// dashboards do not read, and this service exports Prometheus directly. Labels are method
// names and codes only.
//
// Chain its interceptors right after the access log's, so calls refused by
// authentication or validation are counted too, and call InitializeMetrics once every
// service is registered, so each method's series exist from the start.
func NewGRPCMetrics(reg prometheus.Registerer) *grpcprom.ServerMetrics {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(prometheus.DefBuckets)))
	reg.MustRegister(m)
	return m
}

// RegisterRuntime registers the Go runtime collector (go_goroutines, go_memstats_*, …) and
// the process collector (process_resident_memory_bytes, process_cpu_seconds_total, …) with
// reg, unless reg has them already (a registry shared by several servers in one process).
func RegisterRuntime(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
		}
	}
	return nil
}

// WithTraceIDs wraps a log handler so that every line logged with a context carrying a
// span (an access line, an e签宝 call, a recovered panic) names its trace_id and span_id:
// a line can be found from the caller's trace, and the trace from the line.
func WithTraceIDs(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ next slog.Handler }

func (t traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return t.next.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{t.next.WithAttrs(as)}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{t.next.WithGroup(name)}
}

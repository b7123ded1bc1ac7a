package observe

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Metrics are the service's Prometheus metrics. No label ever holds personal data: the
// labels are methods, codes, outcomes, e签宝's numeric codes and configured caller names.
type Metrics struct {
	calls           *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	replays         prometheus.Counter
	upstreamCalls   *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	limiterWait     prometheus.Histogram
	limiterRefusals prometheus.Counter
	breakerState    prometheus.Gauge
}

// NewMetrics registers the service's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "esign_evidence"
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "calls_total",
			Help: "Calls by gRPC method, status code and authenticated caller."}, []string{"method", "code", "caller"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "call_duration_seconds",
			Help: "Call latency by gRPC method and status code.", Buckets: prometheus.DefBuckets}, []string{"method", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "calls_in_flight",
			Help: "Calls being handled now."}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "replays_total",
			Help: "Calls answered from the record of an earlier call with the same customBizId."}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "esign_calls_total",
			Help: "e签宝 calls by outcome and e签宝 business code."}, []string{"outcome", "esign_code"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "esign_call_duration_seconds",
			Help: "e签宝 call latency by outcome.", Buckets: prometheus.DefBuckets}, []string{"outcome"}),
		limiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "ratelimit_wait_seconds",
			Help: "Time spent waiting for the e签宝 quota.", Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}),
		limiterRefusals: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "ratelimit_refusals_total",
			Help: "Calls refused because the e签宝 quota left no room within their deadline."}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "circuit_breaker_state",
			Help: "The e签宝 circuit breaker: 0 closed, 1 half-open, 2 open."}),
	}
	reg.MustRegister(m.calls, m.latency, m.inFlight, m.replays, m.upstreamCalls, m.upstreamLatency,
		m.limiterWait, m.limiterRefusals, m.breakerState)
	return m
}

// GuardConfig is the e签宝 guard's configuration with its hooks feeding these metrics.
func (m *Metrics) GuardConfig(qps float64, openFor time.Duration) submission.GuardConfig {
	return submission.GuardConfig{
		QPS:            qps,
		BreakerOpenFor: openFor,
		OnLimiter: func(waited time.Duration, refused bool) {
			m.limiterWait.Observe(waited.Seconds())
			if refused {
				m.limiterRefusals.Inc()
			}
		},
		OnBreakerChange: func(_, to string) {
			m.breakerState.Set(map[string]float64{"closed": 0, "half-open": 1, "open": 2}[to])
		},
	}
}

// Instrument wraps next so that every e签宝 call is measured and gets a debug line
// (outcome, code, trace ID, latency: never the request or e签宝's message).
func Instrument(next submission.Sender, m *Metrics, log *slog.Logger) submission.Sender {
	return instrumented{next: next, m: m, log: log}
}

type instrumented struct {
	next submission.Sender
	m    *Metrics
	log  *slog.Logger
}

func (i instrumented) CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error) {
	start := time.Now()
	res, err := i.next.CreatePsnEvidencePoint(ctx, p)
	elapsed := time.Since(start)
	outcome, code := upstreamOutcome(err)
	i.m.upstreamCalls.WithLabelValues(outcome, code).Inc()
	i.m.upstreamLatency.WithLabelValues(outcome).Observe(elapsed.Seconds())
	trace := ""
	var ue upstream.Error
	switch {
	case res != nil:
		trace = res.TraceID
	case errors.As(err, &ue):
		trace = ue.TraceID()
	}
	i.log.LogAttrs(ctx, slog.LevelDebug, "e签宝 call", slog.String("outcome", outcome), slog.String("esign_code", code),
		slog.String("esign_trace_id", trace), slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
		slog.String("request_id", RequestID(ctx)))
	return res, err
}

// upstreamOutcome names an e签宝 call's outcome for metrics: the error's own Kind, and
// e签宝's code when it answered with one.
func upstreamOutcome(err error) (outcome, code string) {
	if err == nil {
		return "success", "0"
	}
	var be *upstream.BusinessError
	if errors.As(err, &be) {
		return be.Kind(), strconv.Itoa(be.Code)
	}
	var ue upstream.Error
	if errors.As(err, &ue) {
		return ue.Kind(), ""
	}
	return "error", ""
}

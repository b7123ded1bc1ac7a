package observe

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/operation"
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
	duplicates      *prometheus.CounterVec
	// methods are the served methods, by full name, with their operations (nil for
	// methods that are not operations); any other name a caller sends is counted and
	// logged as UnknownMethodLabel, so callers cannot grow the label set.
	methods map[string]operation.Descriptor
	// series holds each call's series once made, by method label, code and caller (the
	// same bounded set as calls_total's), so that a call finds both with one lookup.
	seriesMu sync.RWMutex
	series   map[seriesKey]*callSeries
}

type seriesKey struct{ method, code, caller string }

// callSeries are the series a call with one method, code and caller counts in.
type callSeries struct {
	calls   prometheus.Counter
	latency prometheus.Observer
}

// callSeries returns the series of calls to method ending with code, from caller.
func (m *Metrics) callSeries(method, code, caller string) *callSeries {
	k := seriesKey{method, code, caller}
	m.seriesMu.RLock()
	s := m.series[k]
	m.seriesMu.RUnlock()
	if s != nil {
		return s
	}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	if s = m.series[k]; s == nil {
		s = &callSeries{calls: m.calls.WithLabelValues(method, code, caller), latency: m.latency.WithLabelValues(method, code)}
		m.series[k] = s
	}
	return s
}

// UnknownMethodLabel stands, in metrics and the access log, for every method name the
// server does not serve.
const UnknownMethodLabel = "(unknown)"

// method returns the label of the method called full and its operation (nil if it is
// none), from the served methods once they are known.
func (m *Metrics) method(full string) (label string, op operation.Descriptor) {
	if m.methods == nil {
		return full, operation.ByFullMethod(full)
	}
	if op, ok := m.methods[full]; ok {
		return full, op
	}
	return UnknownMethodLabel, operation.ByFullMethod(full)
}

// KnowMethods records the methods g serves; call it once every service is registered.
func (m *Metrics) KnowMethods(g interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) {
	methods := map[string]operation.Descriptor{}
	for svc, info := range g.GetServiceInfo() {
		for _, md := range info.Methods {
			full := "/" + svc + "/" + md.Name
			methods[full] = operation.ByFullMethod(full)
		}
	}
	m.methods = methods
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
		series: map[seriesKey]*callSeries{},
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "duplicate_results_total",
			Help: "Extra e签宝 results (evidence points) created for a customBizId that already had one; callers were told the first."}, []string{"operation"}),
	}
	reg.MustRegister(m.calls, m.latency, m.inFlight, m.replays, m.upstreamCalls, m.upstreamLatency,
		m.limiterWait, m.limiterRefusals, m.breakerState, m.duplicates)
	// The series the alerting rules (deploy/prometheus) watch exist at 0 from start-up: a
	// series that first appears at 1 gives increase() nothing to compare, so a rare event
	// such as one duplicate would never alert.
	for _, outcome := range []string{"credentials_rejected", "outcome_unknown", "http_429"} {
		m.upstreamCalls.WithLabelValues(outcome, "")
	}
	for _, d := range operation.All() {
		if d.ExactlyOnce() {
			m.duplicates.WithLabelValues(d.Upstream().Name)
		}
	}
	return m
}

// RegisterStoreUp exports whether the submission store answered its last operation.
func (m *Metrics) RegisterStoreUp(reg prometheus.Registerer, up func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "esign_evidence", Name: "store_up",
		Help: "1 when the submission store answered its last operation, 0 when it failed."}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// RegisterPendingResults exports how many e签宝 results wait (in the journal) to be
// recorded in the submission store.
func (m *Metrics) RegisterPendingResults(reg prometheus.Registerer, pending func() int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "esign_evidence", Name: "pending_results",
		Help: "e签宝 results held in this replica's journal, not yet recorded in the submission store."}, func() float64 {
		return float64(pending())
	}))
}

// Duplicate counts an extra e签宝 result created for a key that already had one.
func (m *Metrics) Duplicate(op submission.Op) { m.duplicates.WithLabelValues(string(op)).Inc() }

// GuardConfig is the e签宝 guard's configuration cfg with hooks reporting its work:
// quota waits, breaker changes, and each e签宝 call as metrics and a debug line
// (operation, outcome, code, trace ID, latency: never the request or e签宝's message).
func (m *Metrics) GuardConfig(cfg guard.Config, log *slog.Logger) guard.Config {
	cfg.OnCall = func(ctx context.Context, c guard.CallInfo) {
		code := ""
		switch {
		case c.Kind == "success":
			code = "0"
		case c.EsignCode != 0:
			code = strconv.Itoa(c.EsignCode)
		}
		m.upstreamCalls.WithLabelValues(c.Kind, code).Inc()
		m.upstreamLatency.WithLabelValues(c.Kind).Observe(c.Elapsed.Seconds())
		log.LogAttrs(ctx, slog.LevelDebug, "e签宝 call", slog.String("operation", string(c.Op)), slog.String("outcome", c.Kind),
			slog.String("esign_code", code), slog.String("esign_trace_id", c.TraceID),
			slog.Float64("latency_ms", float64(c.Elapsed.Microseconds())/1000), slog.String("request_id", RequestID(ctx)))
	}
	cfg.OnLimiter = func(waited time.Duration, refused bool) {
		m.limiterWait.Observe(waited.Seconds())
		if refused {
			m.limiterRefusals.Inc()
		}
	}
	cfg.OnBreakerChange = func(_, to string) {
		m.breakerState.Set(map[string]float64{"closed": 0, "half-open": 1, "open": 2}[to])
	}
	return cfg
}

package observe

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/felixge/httpsnoop"
	"github.com/prometheus/client_golang/prometheus"
)

// unmatchedRoute is the route label of a request no route serves (a 404 or a 405).
const unmatchedRoute = "unmatched"

// HTTP is the REST listener's edge: it sees every response, including those refused before
// the call reaches gRPC (an undecodable body's 400, a 413, a 404), gives each the request
// ID the gRPC call will carry and counts it. It writes an access line only for a request
// that reached no RPC: a call's own access line ("call", written by Calls) is the one line
// of a request that did, so that a REST call is logged once, as a gRPC call is. Health
// checks are logged at debug. It logs the route, never the raw path or query: those can hold a
// customBizId's neighbours or a file name.
type HTTP struct {
	log      *slog.Logger
	routes   *http.ServeMux
	health   map[string]bool
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series holds each response's series once made, by route, method and status (the
	// same bounded set as http_requests_total's), so that a response finds both with one
	// lookup.
	seriesMu sync.RWMutex
	series   map[httpKey]*httpSeries
}

type httpKey struct {
	route, method string
	code          int
}

// httpSeries are the series a response with one route, method and status counts in.
type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// seriesOf returns the series of responses to method on route with status code.
func (h *HTTP) seriesOf(route, method string, code int) *httpSeries {
	k := httpKey{route, method, code}
	h.seriesMu.RLock()
	s := h.series[k]
	h.seriesMu.RUnlock()
	if s != nil {
		return s
	}
	h.seriesMu.Lock()
	defer h.seriesMu.Unlock()
	if s = h.series[k]; s == nil {
		s = &httpSeries{requests: h.requests.WithLabelValues(route, method, strconv.Itoa(code)),
			duration: h.duration.WithLabelValues(route, method)}
		h.series[k] = s
	}
	return s
}

// NewHTTP registers the REST metrics with reg. routes are the REST routes as ServeMux
// patterns ("POST /v1/files", "GET /v1/submissions/{custom_biz_id}"); health are those of
// them that are health checks.
func NewHTTP(log *slog.Logger, reg prometheus.Registerer, routes, health []string) *HTTP {
	const ns = "esign_evidence"
	h := &HTTP{
		log:    log,
		routes: http.NewServeMux(),
		health: map[string]bool{},
		series: map[httpKey]*httpSeries{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
			Help: "REST responses by route, HTTP method and HTTP status, including requests refused before they reach gRPC."},
			[]string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
			Help: "REST response latency by route and HTTP method.", Buckets: prometheus.DefBuckets},
			[]string{"route", "method"}),
	}
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, r := range routes {
		h.routes.Handle(r, noop)
	}
	for _, r := range health {
		h.health[r] = true
	}
	reg.MustRegister(h.requests, h.duration)
	return h
}

// Route names the route r is for, or "unmatched".
func (h *HTTP) Route(r *http.Request) string {
	if t, ok := r.Context().Value(tracedURLKey{}).(*tracedURL); ok {
		return t.route
	}
	if _, pattern := h.routes.Handler(r); pattern != "" {
		return pattern
	}
	return unmatchedRoute
}

// Handler wraps the REST handler.
func (h *HTTP) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		// The gateway forwards X-Request-Id into the call's metadata: the gRPC access line
		// and this one carry the same ID.
		r.Header.Set("X-Request-Id", id)
		w.Header().Set("X-Request-Id", id)
		route := h.Route(r)
		logged := new(atomic.Bool)
		r = r.WithContext(context.WithValue(r.Context(), callLoggedKey{}, logged))

		m := httpsnoop.CaptureMetrics(next, w, r)

		method := knownMethod(r.Method)
		series := h.seriesOf(route, method, m.Code)
		series.requests.Inc()
		series.duration.Observe(m.Duration.Seconds())
		if logged.Load() {
			return // the call's access line is this request's
		}
		level := slog.LevelInfo
		switch {
		case h.health[route]:
			level = slog.LevelDebug
		case m.Code == http.StatusInternalServerError:
			level = slog.LevelError
		}
		h.log.LogAttrs(r.Context(), level, "http",
			slog.String("http_method", method),
			slog.String("route", route),
			slog.Int("status", m.Code),
			slog.Int64("bytes", m.Written),
			slog.String("request_id", id),
			slog.Float64("latency_ms", float64(m.Duration.Microseconds())/1000),
		)
	})
}

// TraceByRoute wraps next in trace (the tracing middleware) so that trace sees the
// request's path as its route's pattern ("/v1/submissions/{custom_biz_id}"; no path
// when no route matches), no query and none of the headers in untracedHeaders: the REST
// span then holds nothing the caller wrote in the URL (GetSubmission's customBizId,
// before any check; an upload's file name) or in those headers. next gets the request as
// it came.
func (h *HTTP) TraceByRoute(next http.Handler, trace func(http.Handler) http.Handler) http.Handler {
	traced := trace(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, ok := r.Context().Value(tracedURLKey{}).(*tracedURL); ok {
			r = r.WithContext(context.WithValue(r.Context(), tracedURLKey{}, nil))
			r.URL, r.Header = t.url, t.header
		}
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := h.Route(r)
		t := &tracedURL{url: r.URL, header: r.Header, route: route}
		r = r.WithContext(context.WithValue(r.Context(), tracedURLKey{}, t))
		u := *r.URL
		u.Path, u.RawPath, u.RawQuery, u.ForceQuery = "", "", "", false
		if _, pattern, ok := strings.Cut(route, " "); ok {
			u.Path = pattern
		}
		r.URL = &u
		r.Header = r.Header.Clone()
		for _, k := range untracedHeaders {
			r.Header.Del(k)
		}
		traced.ServeHTTP(w, r)
	})
}

// untracedHeaders are the caller's headers HTTP tracing would record as they are
// (user_agent.original, client.address): free text the caller writes.
var untracedHeaders = []string{"User-Agent", "X-Forwarded-For"}

// tracedURLKey holds, while TraceByRoute's trace runs, the request's URL, headers and
// route.
type tracedURLKey struct{}

type tracedURL struct {
	url    *url.URL
	header http.Header
	route  string
}

// callLoggedKey holds, in a REST request's context, the flag Calls sets once the request's
// RPC has written its access line.
type callLoggedKey struct{}

// markCallLogged tells the REST edge, if the call came through it, that the call's access
// line is written.
func markCallLogged(ctx context.Context) {
	if f, ok := ctx.Value(callLoggedKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// knownMethod bounds the method label: a client can send any token as a method.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

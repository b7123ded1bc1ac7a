// Package server assembles the esign-evidence service and runs it: the gRPC server with
// its interceptors, the REST facade, health, reflection, the admin endpoints and graceful
// shutdown. Each concern lives in its own package below this one: apierror (statuses),
// auth, observe (access log, metrics), validate, service (handlers), translate (contract
// to e签宝 wire) and gateway (REST).
//
// A request flows one way: REST gateway → gRPC server → interceptors (observe, recovery,
// auth, validate) → handler → translation → upstream client → e签宝, and back.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/gateway"
	"github.com/esign-evidence/esign-evidence/server/inprocess"
	"github.com/esign-evidence/esign-evidence/server/observe"
	"github.com/esign-evidence/esign-evidence/server/service"
	"github.com/esign-evidence/esign-evidence/server/validate"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/validation"
)

// Defaults, with the reason for each.
const (
	// DefaultMaxRequestBytes caps a request on both listeners. A real request is under
	// 2 KiB (file IDs, not images, travel in it); 1 MiB is generous and keeps a flood of
	// large bodies from costing memory.
	DefaultMaxRequestBytes = 1 << 20
	// DefaultShutdownTimeout bounds the drain at shutdown. It exceeds the upstream call
	// timeout (15 s), so a call in flight can finish.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultReadHeaderTimeout bounds how long a client may take to send its headers
	// (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultMaxConcurrentStreams caps concurrent calls on one gRPC connection, so one
	// client cannot take every goroutine; clients open more connections for more.
	DefaultMaxConcurrentStreams = 1000
	// maxHeaderBytes caps REST request headers.
	maxHeaderBytes = 64 << 10
	// DefaultIdleTimeout closes a REST keep-alive connection that has carried no request
	// for this long.
	DefaultIdleTimeout = 120 * time.Second
)

// Options configures a Server: its settings and what it is built from.
type Options struct {
	// Settings are the listeners' bounds and the handlers' (DefaultSettings, or as
	// configured); New refuses one outside its bounds.
	Settings
	// Upstream is the e签宝 client. Required.
	Upstream *upstream.Client
	// Submitter makes submissions exactly-once per customBizId. Required.
	Submitter *submission.Submitter
	// Quota, when set, hands out the quota's slots instead of an in-process limiter at
	// Settings.Guard.QPS (a quota every replica shares).
	Quota guard.Quota
	// Auth configures caller authentication. The zero value refuses every call but the
	// public ones: authentication is off only when Auth.Disabled says so.
	Auth auth.Config
	// TLS, when set, serves both listeners over TLS with this configuration (its
	// certificates may be reloaded through GetCertificate; client certificates are
	// verified when it asks for them).
	TLS *tls.Config
	// Registry receives the service's metrics; a new registry when nil.
	Registry *prometheus.Registry
	// TracerProvider traces gRPC calls when set (OpenTelemetry); no tracing when nil.
	TracerProvider trace.TracerProvider
	// BreakerOpenFor is how long the e签宝 circuit breaker fails fast once open; 10 s
	// when 0.
	BreakerOpenFor time.Duration
	// Logger receives the access log and errors; slog.Default() when nil.
	Logger *slog.Logger
	// Backup, when set, serves a consistent copy of the embedded store at GET /backup on
	// the admin listener: it writes the copy to w, telling size its length first.
	Backup func(w io.Writer, size func(int64)) error
	// OpenAPI is the document served at OpenAPIPath.
	OpenAPI []byte
}

// Server is one instance of the service. Build it with New, run it with Serve.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	rest    *inprocess.Channel
	metrics *observe.Metrics
	edge    *observe.HTTP
	// enter authenticates and admits a REST call before its body is read.
	enter func(ctx context.Context, method string) (context.Context, func(), error)
	conns *connLimiter
	// backupToken is the SHA-256 of the token GET /backup asks for; nil: no /backup.
	backupToken *[32]byte
}

// propagator reads and writes W3C trace context (traceparent, tracestate): a REST or gRPC
// caller's trace continues into this service's spans.
var propagator = propagation.TraceContext{}

// Listeners are where a Server serves. Admin (metrics, profiling) is optional.
type Listeners struct {
	GRPC, HTTP, Admin net.Listener
}

// New builds the gRPC server, its interceptors and the validator (built once, here).
func New(opts Options) (*Server, error) {
	if err := opts.Settings.check(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if opts.Upstream == nil {
		return nil, errors.New("server: Options.Upstream is required")
	}
	if opts.Submitter == nil {
		return nil, errors.New("server: Options.Submitter is required")
	}
	var backupToken *[32]byte
	if opts.BackupTokenFile != "" {
		var err error
		if backupToken, err = readBackupToken(opts.BackupTokenFile); err != nil {
			return nil, err
		}
	}

	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// "auto" (0): sized from the descriptor limit.
	if opts.MaxConcurrentUploads == 0 {
		opts.MaxConcurrentUploads = DefaultMaxConcurrentUploads()
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = DefaultMaxConnections()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.TracerProvider != nil {
		opts.Logger = slog.New(observe.WithTraceIDs(opts.Logger.Handler()))
	}
	m := observe.NewMetrics(opts.Registry)
	grpcMetrics := observe.NewGRPCMetrics(opts.Registry)
	if err := observe.RegisterRuntime(opts.Registry); err != nil {
		return nil, err
	}
	edge := observe.NewHTTP(opts.Logger, opts.Registry, gateway.Routes(), []string{"GET " + gateway.HealthPath})
	v, err := validation.New()
	if err != nil {
		return nil, err
	}
	authn := opts.Auth
	calls := observe.NewCalls(opts.Logger, m)
	recovered := recovery.WithRecoveryHandlerContext(observe.Recovered(opts.Logger))
	valid := validate.New(v)
	// The same chain, in the same order, for unary and streaming calls, over gRPC and over
	// REST; each concern is written once for both kinds of call.
	// The bound on calls in progress is one for both transports, and so is each caller's
	// share of it. Calls are authenticated
	// and admitted at the edge of each transport (gatekeeper), before their message is read;
	// the interceptors keep what the edge established.
	if opts.MaxCallsInFlightPerCaller == 0 {
		opts.MaxCallsInFlightPerCaller = DefaultMaxCallsInFlightPerCaller(opts.MaxCallsInFlight)
	}
	inFlight := newGate(opts.MaxCallsInFlight, opts.MaxCallsInFlightPerCaller)
	keeper := &gatekeeper{auth: &authn, gate: inFlight, calls: calls}
	unary := []grpc.UnaryServerInterceptor{
		calls.UnaryServerInterceptor(),
		grpcMetrics.UnaryServerInterceptor(),
		apierror.UnaryServerInterceptor(),
		recovery.UnaryServerInterceptor(recovered),
		admitInterceptor(inFlight),
		authn.UnaryServerInterceptor(),
		valid.UnaryServerInterceptor(),
	}
	stream := []grpc.StreamServerInterceptor{
		calls.StreamServerInterceptor(),
		grpcMetrics.StreamServerInterceptor(),
		apierror.StreamServerInterceptor(),
		recovery.StreamServerInterceptor(recovered),
		admitStreamInterceptor(inFlight),
		authn.StreamServerInterceptor(),
		valid.StreamServerInterceptor(),
	}
	// REST calls reach the handlers in process; the gRPC server's stats handler does not
	// see them, so they are traced by an interceptor of their own.
	restUnary, restStream := unary, stream
	if opts.TracerProvider != nil {
		tu, ts := observe.Tracing(opts.TracerProvider)
		restUnary = append([]grpc.UnaryServerInterceptor{tu}, unary...)
		restStream = append([]grpc.StreamServerInterceptor{ts}, stream...)
	}
	rest := inprocess.New(restUnary, restStream)
	gopts := []grpc.ServerOption{
		// Authentication and admission before a stream's message is read.
		grpc.InTapHandle(keeper.tap),
		grpc.MaxRecvMsgSize(opts.MaxRequestBytes),
		// Metadata is capped as REST's headers are.
		grpc.MaxHeaderListSize(maxHeaderBytes),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		// Requests that cannot be decoded are answered INVALID_ARGUMENT naming the field.
		grpc.ForceServerCodecV2(validate.NewCodec()),
		grpc.UnknownServiceHandler(apierror.UnknownMethod),
		// A client that has not sent its HTTP/2 preface within READ_HEADER_TIMEOUT is
		// dropped, as a REST client that has not sent its headers.
		grpc.ConnectionTimeout(opts.ReadHeaderTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: opts.GRPCMaxConnectionIdle,
			Time:              opts.GRPCKeepaliveTime,
			Timeout:           opts.GRPCKeepaliveTimeout,
		}),
		// Reuse a pool of goroutines for calls: their stacks stay grown, instead of every
		// call growing a fresh one (copystack was a tenth of the CPU profile under load).
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	if opts.TracerProvider != nil {
		gopts = append(gopts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(opts.TracerProvider), otelgrpc.WithPropagators(propagator))))
	}
	g := grpc.NewServer(gopts...)
	esignGuard := guard.New(m.GuardConfig(guard.Config{
		Settings: opts.Guard, Quota: opts.Quota, BreakerOpenFor: opts.BreakerOpenFor,
		// Each caller holds at most its share of the quota ahead (ESIGN_CALLER_SHARE).
		CallerOf: auth.Caller,
	}, opts.Logger))
	m.RegisterStoreUp(opts.Registry, opts.Submitter.StoreUp)
	m.RegisterPendingResults(opts.Registry, opts.Submitter.Pending)
	opts.Submitter.OnDuplicate(m.Duplicate)
	// Upload temporary files have no name while in use; any named one was left by a
	// process that ended abnormally (or by an earlier version).
	if n := service.SweepSpools(); n > 0 {
		opts.Logger.Warn("removed upload temporary files left by an earlier process", "files", n)
	}
	evidence := service.New(service.Config{
		Revision:             opts.Upstream.Revision(),
		Guard:                esignGuard,
		Submitter:            opts.Submitter,
		Files:                opts.Upstream,
		Settings:             opts.Settings.Settings,
		MaxConcurrentUploads: opts.MaxConcurrentUploads,
	})
	hs := health.NewServer()
	// Every service with unary methods is registered through validate.WithDecodeFaults, so
	// that a request gRPC cannot read is answered by the interceptors.
	for _, r := range []grpc.ServiceRegistrar{g, rest} {
		r.RegisterService(validate.WithDecodeFaults(evidence.ServiceDesc()), evidence)
		r.RegisterService(validate.WithDecodeFaults(&grpc_health_v1.Health_ServiceDesc), hs)
	}
	hs.SetServingStatus(evidencev1.EvidenceService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	reflection.Register(g) // v1 and v1alpha
	grpcMetrics.InitializeMetrics(g)
	m.KnowMethods(g)
	return &Server{opts: opts, log: opts.Logger, grpc: g, rest: rest, health: hs, metrics: m, edge: edge, enter: keeper.enter,
		conns: newConnLimiter(opts.MaxConnections, opts.Registry, opts.Logger), backupToken: backupToken}, nil
}

// GRPCServer exposes the gRPC server, so tests and embedders can register more services.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Serve serves gRPC, REST and (when given) the admin endpoints until ctx is done, then
// shuts down gracefully: health goes NOT_SERVING, in-flight REST calls complete,
// in-flight gRPC calls complete, then everything stops. It returns nil after a clean
// shutdown.
func (s *Server) Serve(ctx context.Context, ls Listeners) error {
	grpcLis, httpLis := s.conns.wrap(ls.GRPC, "grpc"), s.conns.wrap(ls.HTTP, "http")
	gwCtx, cancelGW := context.WithCancel(context.Background())
	defer cancelGW()
	gw, err := gateway.New(gwCtx, s.rest, gateway.Options{
		MaxBody: int64(s.opts.MaxRequestBytes), MaxFile: s.opts.MaxFileBytes, OpenAPI: s.opts.OpenAPI, Enter: s.enter,
	})
	if err != nil {
		return err
	}
	// The edge sees every REST response; with tracing on, it runs inside the REST request's
	// span, started from the caller's traceparent when there is one.
	handler := s.edge.Handler(gw)
	if s.opts.TracerProvider != nil {
		handler = s.edge.TraceByRoute(handler, func(h http.Handler) http.Handler {
			return otelhttp.NewHandler(h, "rest",
				otelhttp.WithTracerProvider(s.opts.TracerProvider),
				otelhttp.WithPropagators(propagator),
				otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return s.edge.Route(r) }))
		})
	}
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         s.opts.TLS,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.opts.TLS != nil {
		httpLis = tls.NewListener(httpLis, s.opts.TLS)
	}
	adminSrv := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: s.opts.ReadHeaderTimeout}

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serve("grpc", func() error { return s.grpc.Serve(grpcLis) })
	serve("http", func() error { return httpSrv.Serve(httpLis) })
	adminAddr := ""
	if ls.Admin != nil {
		serve("admin", func() error { return adminSrv.Serve(ls.Admin) })
		adminAddr = ls.Admin.Addr().String()
	}
	s.log.Info("serving", "grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(),
		"admin_addr", adminAddr, "tls", s.opts.TLS != nil, "auth", !s.opts.Auth.Disabled)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown(httpSrv)
	_ = adminSrv.Close()
	wg.Wait()
	return serveErr
}

// shutdown turns health NOT_SERVING, keeps serving for DrainDelay, then drains REST,
// then gRPC, within ShutdownTimeout.
func (s *Server) shutdown(httpSrv *http.Server) {
	s.health.Shutdown()
	if s.opts.DrainDelay > 0 {
		s.log.Info("shutting down: health NOT_SERVING, still serving new calls until the drain delay ends",
			"drain_delay", s.opts.DrainDelay.String())
		time.Sleep(s.opts.DrainDelay)
	}
	s.log.Info("shutting down: draining in-flight calls", "timeout", s.opts.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(ctx); err != nil {
		s.log.Warn("REST drain incomplete; closing", "err", err.Error())
		_ = httpSrv.Close()
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("gRPC drain incomplete; stopping")
		s.grpc.Stop()
		<-done
	}
	s.opts.Upstream.CloseIdleConnections()
	s.log.Info("stopped")
}

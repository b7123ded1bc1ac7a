// Package server is the esign-evidence service: the gRPC server with its interceptors,
// the grpc-gateway REST facade, health, reflection and graceful shutdown.
//
// A request flows one way: REST gateway → gRPC server → interceptors (logging, panic
// recovery, validation) → handler → translation → upstream client → e签宝, and back.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/submission"
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
	// readHeaderTimeout bounds how long a client may take to send its headers
	// (slowloris).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes idle keep-alive connections.
	idleTimeout = 120 * time.Second
	// memListenerSize is the buffer of the in-memory connection from the gateway to the
	// gRPC server.
	memListenerSize = 1 << 20
)

// Options configures a Server.
type Options struct {
	// Upstream is the e签宝 client. Required.
	Upstream *upstream.Client
	// Submitter makes submissions exactly-once per customBizId. Required.
	Submitter *submission.Submitter
	// Sender is what sends to e签宝: Upstream behind the upstream policy (rate limiter,
	// circuit breaker). A Guard over Upstream with e签宝's default quota when nil.
	Sender submission.Sender
	// Logger receives the access log and errors; slog.Default() when nil.
	Logger *slog.Logger
	// MaxRequestBytes caps request size on gRPC and REST; DefaultMaxRequestBytes when 0.
	MaxRequestBytes int
	// ShutdownTimeout bounds the graceful drain; DefaultShutdownTimeout when 0.
	ShutdownTimeout time.Duration
	// OpenAPI is the document served at OpenAPIPath.
	OpenAPI []byte
}

// Server is one instance of the service. Build it with New, run it with Serve.
type Server struct {
	opts   Options
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	mem    *bufconn.Listener
}

// New builds the gRPC server, its interceptors and the validator (built once, here).
func New(opts Options) (*Server, error) {
	if opts.Upstream == nil {
		return nil, errors.New("server: Options.Upstream is required")
	}
	if opts.Submitter == nil {
		return nil, errors.New("server: Options.Submitter is required")
	}
	if opts.Sender == nil {
		opts.Sender = submission.NewGuard(opts.Upstream, submission.GuardConfig{})
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	v, err := validation.New()
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(opts.MaxRequestBytes),
		grpc.ChainUnaryInterceptor(
			logInterceptor(opts.Logger),
			recoverInterceptor(opts.Logger),
			validationInterceptor(v),
		),
	)
	evidencev1.RegisterEvidenceServiceServer(g, &evidenceService{
		revision:  opts.Upstream.Revision(),
		sender:    opts.Sender,
		submitter: opts.Submitter,
	})
	hs := health.NewServer()
	grpc_health_v1.RegisterHealthServer(g, hs)
	hs.SetServingStatus(evidencev1.EvidenceService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	reflection.Register(g) // v1 and v1alpha
	return &Server{opts: opts, log: opts.Logger, grpc: g, health: hs, mem: bufconn.Listen(memListenerSize)}, nil
}

// GRPCServer exposes the gRPC server, so tests and embedders can register more services.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Serve serves gRPC on grpcLis and REST on httpLis until ctx is done, then shuts down
// gracefully: health goes NOT_SERVING, in-flight REST calls complete, in-flight gRPC
// calls complete, then everything stops. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	// The gateway reaches the gRPC server over an in-memory connection: the same server,
	// the same interceptors, no network hop and nothing exposed.
	conn, err := grpc.NewClient("passthrough:///esign-evidence-inprocess",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.mem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(s.opts.MaxRequestBytes),
			grpc.MaxCallSendMsgSize(s.opts.MaxRequestBytes),
		),
	)
	if err != nil {
		return fmt.Errorf("server: gateway connection: %w", err)
	}
	defer conn.Close()

	gwCtx, cancelGW := context.WithCancel(context.Background())
	defer cancelGW()
	gw, err := newGateway(gwCtx, conn, int64(s.opts.MaxRequestBytes), s.opts.OpenAPI)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}

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
	serve("grpc (in-memory)", func() error { return s.grpc.Serve(s.mem) })
	serve("http", func() error { return httpSrv.Serve(httpLis) })
	s.log.Info("serving", "grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown(httpSrv)
	wg.Wait()
	return serveErr
}

// shutdown drains REST first (its calls travel over the in-memory gRPC connection, which
// must stay open until they finish), then gRPC, within ShutdownTimeout.
func (s *Server) shutdown(httpSrv *http.Server) {
	s.log.Info("shutting down: health NOT_SERVING, draining in-flight calls", "timeout", s.opts.ShutdownTimeout.String())
	s.health.Shutdown()
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

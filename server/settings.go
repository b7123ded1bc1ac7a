package server

import (
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/setting"
	"github.com/esign-evidence/esign-evidence/server/service"
)

// Defaults of the listeners.
const (
	DefaultGRPCAddr = ":9090"
	DefaultHTTPAddr = ":8080"
	// DefaultAdminAddr serves /metrics (and /debug/pprof with ADMIN_PPROF). It has no
	// credentials, so by default only this host reaches it.
	DefaultAdminAddr = "127.0.0.1:9091"
)

// Settings are the server's settings: where it listens and the bounds it keeps. Start from
// DefaultSettings; New refuses a value outside a setting's bounds, naming the setting.
type Settings struct {
	// GRPCAddr, HTTPAddr and AdminAddr are the listen addresses ("" AdminAddr: no admin
	// listener). The command listens; Serve takes the listeners.
	GRPCAddr, HTTPAddr, AdminAddr string
	// PlaintextAllowRemote lets gRPC and REST listen without TLS on an address other than
	// loopback (TLS terminated by a mesh or proxy in front); without it such a service is
	// refused at start (the command checks it, knowing the TLS settings).
	PlaintextAllowRemote bool
	// AdminPprof serves Go's profiler (/debug/pprof/) on the admin listener.
	AdminPprof bool
	// BackupTokenFile, when set, serves the embedded store's backup at GET /backup on the
	// admin listener to a caller presenting the token this file holds (as a bearer
	// token); unset, there is no /backup.
	BackupTokenFile string
	// MaxRequestBytes caps request size on gRPC and REST.
	MaxRequestBytes int
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	// DrainDelay is how long, once shutdown starts, health reports NOT_SERVING while the
	// listeners still accept and serve new calls, before the drain begins. Load balancers
	// (a Kubernetes Service's endpoints) take a moment to stop sending new calls to an
	// instance that is going away; 0 starts draining at once.
	DrainDelay time.Duration
	// MaxConcurrentStreams caps concurrent calls per gRPC connection.
	MaxConcurrentStreams uint32
	// ReadHeaderTimeout bounds how long a REST client may take to send its headers (and a
	// gRPC client its HTTP/2 preface).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole REST request, headers and body.
	ReadTimeout time.Duration
	// IdleTimeout closes a REST keep-alive connection without a request for this long.
	IdleTimeout time.Duration
	// MaxConcurrentUploads bounds the uploads in progress; 0 sizes it from the descriptor
	// limit (DefaultMaxConcurrentUploads).
	MaxConcurrentUploads int
	// MaxConnections bounds the connections open on the gRPC and REST listeners together;
	// 0 sizes it from the descriptor limit (DefaultMaxConnections).
	MaxConnections int
	// MaxCallsInFlight bounds the calls being handled at once (health checks aside).
	MaxCallsInFlight int
	// MaxCallsInFlightPerCaller bounds one caller's calls being handled at once; 0 is
	// half of MaxCallsInFlight (DefaultMaxCallsInFlightPerCaller).
	MaxCallsInFlightPerCaller int
	// GRPCMaxConnectionIdle closes a gRPC connection without calls for this long.
	GRPCMaxConnectionIdle time.Duration
	// GRPCKeepaliveTime and GRPCKeepaliveTimeout: a gRPC connection silent for the first is
	// pinged, and closed when no answer comes within the second.
	GRPCKeepaliveTime, GRPCKeepaliveTimeout time.Duration
	// Guard is the e签宝 guard's: the app's quota and the admission rule.
	Guard guard.Settings
	// Settings are the handlers' own (uploads), declared by package service.
	service.Settings
}

// DefaultSettings are the settings unless configured otherwise; the reason for each value
// is beside its constant.
func DefaultSettings() Settings {
	return Settings{
		GRPCAddr:              DefaultGRPCAddr,
		HTTPAddr:              DefaultHTTPAddr,
		AdminAddr:             DefaultAdminAddr,
		MaxRequestBytes:       DefaultMaxRequestBytes,
		ShutdownTimeout:       DefaultShutdownTimeout,
		MaxConcurrentStreams:  DefaultMaxConcurrentStreams,
		ReadHeaderTimeout:     DefaultReadHeaderTimeout,
		ReadTimeout:           DefaultReadTimeout,
		IdleTimeout:           DefaultIdleTimeout,
		MaxCallsInFlight:      DefaultMaxCallsInFlight,
		GRPCMaxConnectionIdle: DefaultGRPCMaxConnectionIdle,
		GRPCKeepaliveTime:     DefaultGRPCKeepaliveTime,
		GRPCKeepaliveTimeout:  DefaultGRPCKeepaliveTimeout,
		Guard:                 guard.DefaultSettings(),
		Settings:              service.DefaultSettings(),
	}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.Address(&s.GRPCAddr, "grpc-addr", false, "gRPC listen address")
	set.Address(&s.HTTPAddr, "http-addr", false, "REST (grpc-gateway) listen address")
	set.Bool(&s.PlaintextAllowRemote, "plaintext-allow-remote", "serve gRPC and REST without TLS on addresses other than loopback all the same (a mesh or proxy in front terminates TLS): tokens cross the network as sent")
	set.Address(&s.AdminAddr, "admin-addr", true, "admin listen address: /metrics, and /debug/pprof with ADMIN_PPROF (set but empty: none)")
	set.Bool(&s.AdminPprof, "admin-pprof", "serve Go's profiler (/debug/pprof/) on the admin listener")
	set.String(&s.BackupTokenFile, "admin-backup-token-file", "serve the embedded store's backup at /backup on the admin listener to the bearer of the token in this file (unset: no /backup)")
	setting.Bytes(set, &s.MaxRequestBytes, "max-request-bytes", 1024, 64<<20, "maximum request size on gRPC and REST")
	set.Duration(&s.ShutdownTimeout, "shutdown-timeout", "how long in-flight calls may take to finish at shutdown")
	set.DurationIn(&s.DrainDelay, "shutdown-drain-delay", 0, 5*time.Minute, "a duration from 0s to 5m",
		"on SIGTERM, how long to keep serving new calls after health turns NOT_SERVING, before draining (load balancers' time to notice; 5s under Kubernetes)")
	set.PositiveUint32(&s.MaxConcurrentStreams, "max-concurrent-streams", "concurrent calls per gRPC connection")
	set.Duration(&s.ReadHeaderTimeout, "read-header-timeout", "how long a REST client may take to send its headers")
	set.Duration(&s.ReadTimeout, "read-timeout", "how long a REST client may take to send a whole request, headers and body")
	set.Duration(&s.IdleTimeout, "idle-timeout", "a REST keep-alive connection without a request for this long is closed")
	set.Count(&s.MaxConcurrentUploads, "max-concurrent-uploads", true,
		"uploads in progress at once; more are refused (auto: from the descriptor limit)")
	set.Count(&s.MaxConnections, "max-connections", true,
		"connections open at once on the gRPC and REST listeners together; more are closed at once (auto: from the descriptor limit)")
	set.Count(&s.MaxCallsInFlight, "max-calls-in-flight", false,
		"calls in progress at once over gRPC and REST (health checks aside); more are refused")
	set.Count(&s.MaxCallsInFlightPerCaller, "max-calls-in-flight-per-caller", true,
		"one caller's calls in progress at once; more of its calls are refused while other callers are served (auto: half of MAX_CALLS_IN_FLIGHT)")
	set.Duration(&s.GRPCMaxConnectionIdle, "grpc-max-connection-idle", "a gRPC connection without calls for this long is closed")
	set.Duration(&s.GRPCKeepaliveTime, "grpc-keepalive-time", "a gRPC connection silent for this long is pinged")
	set.Duration(&s.GRPCKeepaliveTimeout, "grpc-keepalive-timeout", "a pinged gRPC connection that does not answer within this is closed")
	s.Guard.Bind(set)
	s.Settings.Bind(set)
}

// check refuses settings outside their bounds, by the rules and with the errors of Bind.
func (s Settings) check() error {
	return setting.Check(s.Bind)
}

package server

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/esign-evidence/esign-evidence/server/apierror"
)

// Bounds that keep one caller from taking the service down: past each the service
// refuses, cheaply and with an answer, instead of running out of descriptors or memory.
const (
	// DefaultReadTimeout bounds a whole REST request, headers and body. It leaves a
	// 20 MiB upload about 350 KB/s.
	DefaultReadTimeout = 60 * time.Second
	// DefaultMaxCallsInFlight bounds the calls being handled at once, over both
	// transports (health checks not counted). e签宝's default quota of 50 calls a second
	// with its 15 s timeout keeps at most 750 calls waiting on e签宝.
	DefaultMaxCallsInFlight = 1000
	// DefaultGRPCMaxConnectionIdle closes a gRPC connection without calls for this long.
	DefaultGRPCMaxConnectionIdle = 5 * time.Minute

	// keepaliveMinTime is the shortest interval at which a gRPC client may ping; a
	// client pinging more often is sent away (GOAWAY "too_many_pings"). Pings are
	// allowed without calls in progress, as common clients send them.
	keepaliveMinTime = 10 * time.Second
	// DefaultGRPCKeepaliveTime and DefaultGRPCKeepaliveTimeout: the server pings a gRPC
	// connection silent for the first and closes it when no answer comes within the
	// second, so a vanished or stalled peer does not hold a descriptor.
	DefaultGRPCKeepaliveTime    = time.Minute
	DefaultGRPCKeepaliveTimeout = 20 * time.Second

	// fdReserve is kept out of the descriptor budget for what is not a caller's: the
	// listeners, the store, logs, and the pool of connections to e签宝.
	fdReserve = 256
)

// fdLimit is the process's limit on open descriptors (Go raises the soft limit to the
// hard one at start-up).
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<24 {
		return 1 << 20
	}
	return int(rl.Cur)
}

// DefaultMaxConnections is the bound on open connections (gRPC and REST together) when
// none is configured: half the descriptors beyond fdReserve, at least 16, at most 4096
// (a connection costs about 64 KiB of buffers).
func DefaultMaxConnections() int {
	return clamp((fdLimit()-fdReserve)/2, 16, 4096)
}

// DefaultMaxConcurrentUploads is the bound on uploads in progress when none is
// configured: a quarter of the descriptors beyond fdReserve (an upload holds a
// temporary file, and over REST a connection too), at least 8, at most 1024.
func DefaultMaxConcurrentUploads() int {
	return clamp((fdLimit()-fdReserve)/4, 8, 1024)
}

func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}

// DefaultMaxCallsInFlightPerCaller is the bound on one caller's calls in progress when
// none is configured: half of MAX_CALLS_IN_FLIGHT (at least one), so that a busy caller
// leaves the other half to everyone else.
func DefaultMaxCallsInFlightPerCaller(maxCallsInFlight int) int {
	return max(1, maxCallsInFlight/2)
}

// gate admits at most its capacity at once, and at most perCaller of one caller's,
// refusing rather than waiting.
type gate struct {
	slots     chan struct{}
	perCaller int
	mu        sync.Mutex
	callers   map[string]int
}

func newGate(n, perCaller int) *gate {
	return &gate{slots: make(chan struct{}, n), perCaller: perCaller, callers: map[string]int{}}
}

// tryEnter admits a call of caller ("": a caller not known yet, bounded by the capacity
// alone), or returns the refusal: overloaded when the capacity is taken, callerOverloaded
// when caller already has perCaller calls in.
//
// The capacity is asked first: a full service is OVERLOADED for every caller, whatever
// its own count.
func (g *gate) tryEnter(caller string) error {
	select {
	case g.slots <- struct{}{}:
	default:
		return overloaded()
	}
	if caller == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.callers[caller] >= g.perCaller {
		<-g.slots
		return callerOverloaded()
	}
	g.callers[caller]++
	return nil
}

// leave gives back a slot of caller's taken by tryEnter.
func (g *gate) leave(caller string) {
	<-g.slots
	g.leaveCaller(caller)
}

func (g *gate) leaveCaller(caller string) {
	if caller == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.callers[caller]--; g.callers[caller] <= 0 {
		delete(g.callers, caller)
	}
}

// unbounded reports whether a method is outside the calls-in-flight bound: health
// checks, so that an overloaded instance still answers its probes.
func unbounded(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/")
}

func callerOverloaded() error {
	return apierror.WithDetails(status.New(codes.ResourceExhausted, "this caller has as many calls in progress as one caller may; retry shortly"),
		apierror.Info(apierror.ReasonCallerOverloaded, map[string]string{"retry_safe": "true"}),
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}).Err()
}

func overloaded() error {
	return apierror.WithDetails(status.New(codes.ResourceExhausted, "the service is handling as many calls as it allows; retry shortly"),
		apierror.Info(apierror.ReasonOverloaded, map[string]string{"retry_safe": "true"}),
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}).Err()
}

// connLimiter bounds the connections open at once over the listeners it wraps. A
// connection beyond the bound is accepted and closed at once (the peer learns at once,
// rather than waiting in the kernel's backlog as with netutil.LimitListener), counted,
// and logged at most once a second.
type connLimiter struct {
	max      int64
	open     atomic.Int64
	refused  *prometheus.CounterVec
	openNow  prometheus.GaugeFunc
	log      *slog.Logger
	lastWarn atomic.Int64
}

func newConnLimiter(max int, reg prometheus.Registerer, log *slog.Logger) *connLimiter {
	l := &connLimiter{max: int64(max), log: log}
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "esign_evidence", Name: "connections_refused_total",
		Help: "Connections closed at once because MAX_CONNECTIONS were open, by listener."}, []string{"listener"})
	l.openNow = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "esign_evidence", Name: "connections_open",
		Help: "Connections open on the gRPC and REST listeners."}, func() float64 { return float64(l.open.Load()) })
	reg.MustRegister(l.refused, l.openNow)
	return l
}

// wrap bounds lis by the limiter; name labels its refusals.
func (l *connLimiter) wrap(lis net.Listener, name string) net.Listener {
	return &limitedListener{Listener: lis, l: l, name: name}
}

type limitedListener struct {
	net.Listener
	l    *connLimiter
	name string
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.l.open.Add(1) <= ll.l.max {
			return &limitedConn{Conn: c, release: func() { ll.l.open.Add(-1) }}, nil
		}
		ll.l.open.Add(-1)
		_ = c.Close()
		ll.l.refused.WithLabelValues(ll.name).Inc()
		now := time.Now().Unix()
		if last := ll.l.lastWarn.Load(); now > last && ll.l.lastWarn.CompareAndSwap(last, now) {
			ll.l.log.Warn("connection refused: MAX_CONNECTIONS are open", "listener", ll.name, "max_connections", ll.l.max)
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

package server

import (
	"context"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"

	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/observe"
)

// gatekeeper authenticates and admits each call at the edge of its transport, before any of its
// message is read or decoded: gRPC's tap handle runs as a stream's headers arrive, and
// the REST facade asks it before reading a body. A call refused there has cost its
// headers and nothing more, whatever its body; it is answered with the same status as
// any refusal (ErrorInfo included) and gets its access line and its count in
// esign_evidence_calls_total. The interceptors take an admitted call's identity and slot
// as the edge left them.
type gatekeeper struct {
	auth  *auth.Config
	gate  *gate
	calls *observe.Calls
}

// ticket is an admitted call's slot among MAX_CALLS_IN_FLIGHT, given back once: when
// the call's handler returns (admitInterceptor), or, for a call that never reaches it,
// when the transport is done with the call.
type ticket struct {
	once   sync.Once
	g      *gate
	caller string
}

func (t *ticket) release() { t.once.Do(func() { t.g.leave(t.caller) }) }

type ticketKey struct{}

// ticketOf is the slot the edge gave the call, or nil.
func ticketOf(ctx context.Context) *ticket {
	t, _ := ctx.Value(ticketKey{}).(*ticket)
	return t
}

// enter authenticates a call to method (ctx carries its peer and incoming metadata),
// then admits it unless MAX_CALLS_IN_FLIGHT calls are in progress, or
// MAX_CALLS_IN_FLIGHT_PER_CALLER of its caller's. Authentication comes
// first, so that callers without credentials never hold a slot. On success it returns
// the call's context and the release of its slot (nil for health checks, which are not
// bounded); on refusal, the status, with the call logged and counted.
func (e *gatekeeper) enter(ctx context.Context, method string) (context.Context, func(), error) {
	start := time.Now()
	actx, err := e.auth.Authenticate(ctx, method)
	var release func()
	if err == nil && !unbounded(method) {
		caller := auth.Caller(actx)
		if err = e.gate.tryEnter(caller); err == nil {
			t := &ticket{g: e.gate, caller: caller}
			actx, release = context.WithValue(actx, ticketKey{}, t), t.release
		}
	}
	if err != nil {
		rep, rctx := e.calls.ServerReporter(ctx, interceptors.NewServerCallMeta(method, nil, nil))
		if actx != nil {
			observe.SetCaller(rctx, auth.Caller(actx))
		}
		rep.PostCall(err, time.Since(start))
		return nil, nil, err
	}
	return actx, release, nil
}

// tap is enter as gRPC's tap handle (grpc.InTapHandle): it runs on the connection's
// reader as a stream's headers arrive, and a refusal ends the stream before its message
// is read. The slot of an admitted call is given back when its stream ends at the
// latest.
func (e *gatekeeper) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	ctx, release, err := e.enter(ctx, info.FullMethodName)
	if err != nil {
		return nil, err
	}
	if release != nil {
		context.AfterFunc(ctx, release)
	}
	return ctx, nil
}

// admitInterceptor admits a call the edge has not admitted (calls that reach the
// handlers by another way), refusing it beyond the calls-in-flight bound, and gives the
// call's slot back when its handler returns. It runs inside the observing interceptor,
// so a refused call is logged and counted like any other.
func admitInterceptor(g *gate) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if t := ticketOf(ctx); t != nil {
			defer t.release()
			return handler(ctx, req)
		}
		if unbounded(info.FullMethod) {
			return handler(ctx, req)
		}
		// Its caller if it was authenticated already; "" (MAX_CALLS_IN_FLIGHT alone) if not.
		caller := auth.Caller(ctx)
		if err := g.tryEnter(caller); err != nil {
			return nil, err
		}
		defer g.leave(caller)
		return handler(ctx, req)
	}
}

// admitStreamInterceptor is admitInterceptor for streaming calls.
func admitStreamInterceptor(g *gate) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if t := ticketOf(ss.Context()); t != nil {
			defer t.release()
			return handler(srv, ss)
		}
		if unbounded(info.FullMethod) {
			return handler(srv, ss)
		}
		caller := auth.Caller(ss.Context())
		if err := g.tryEnter(caller); err != nil {
			return err
		}
		defer g.leave(caller)
		return handler(srv, ss)
	}
}

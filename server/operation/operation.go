// Package operation is the registry of the service's e签宝 operations: one descriptor per
// RPC of esign.evidence.v1.EvidenceService that makes an e签宝 call, registered once.
//
// A descriptor binds the RPC to its e签宝 operation (upstream.Operation: method, path,
// kind) and says everything the other layers need to know of it: how its request becomes
// e签宝's (the translator), whether and by which key it is exactly-once and what of the
// request identifies it (its canonical form), how a stored result becomes the RPC's answer
// again, and which identifiers of the answer its access line shows. Everything that lists
// operations reads this registry: the gRPC service's handlers (ServiceDesc), validation's
// request types, the series created at 0, GetSubmission, the access log.
//
// Adding an operation is one descriptor file here (see ARCHITECTURE.md).
package operation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Env is what an operation's handler calls e签宝 with.
type Env struct {
	// Revision is the e签宝 API revision requests are translated for.
	Revision upstream.Revision
	// Client signs and sends e签宝 calls, always through Guard.
	Client *upstream.Client
	// Guard makes every e签宝 call: admission, the app's quota, the breaker, metrics.
	Guard *guard.Guard
	// Submitter makes exactly-once operations exactly once per key.
	Submitter *submission.Submitter
	// Namespace returns the authenticated caller's namespace of a call's keys.
	Namespace func(ctx context.Context) string
}

// Descriptor is what every layer reads of one operation. Op is its one implementation.
type Descriptor interface {
	// RPC is the method's name in esign.evidence.v1.EvidenceService.
	RPC() string
	// FullMethod is the gRPC method name, /esign.evidence.v1.EvidenceService/<RPC>.
	FullMethod() string
	// Upstream is the e签宝 operation the RPC makes.
	Upstream() *upstream.Operation
	// ExactlyOnce reports whether the RPC is de-duplicated by the caller's key.
	ExactlyOnce() bool
	// NewRequest returns an empty request message.
	NewRequest() proto.Message
	// ResponseAttrs returns the identifiers of a response that its access line shows
	// (never personal data).
	ResponseAttrs(resp proto.Message) []slog.Attr
	// Recorded returns the RPC's answer for a result stored by the exactly-once layer,
	// marked replayed (for GetSubmission).
	Recorded(result string) (proto.Message, error)
	// Handle serves one validated call.
	Handle(ctx context.Context, env *Env, req proto.Message) (proto.Message, error)
}

// Op describes one operation. Req and Resp are the RPC's messages, Wire e签宝's request,
// Res (through PRes) e签宝's answer.
type Op[Req, Resp proto.Message, Wire upstream.Request, Res any, PRes interface {
	*Res
	upstream.Answer
}] struct {
	// Method is the RPC's name in the service, e.g. "CreatePersonalEvidencePoint".
	Method string
	// Esign is the e签宝 operation it makes.
	Esign *upstream.Operation
	// Translate turns a validated request into e签宝's, defaults applied. It is the one
	// place where the operation's contract meets e签宝's wire.
	Translate func(req Req, rev upstream.Revision) Wire
	// Key returns the caller's exactly-once key ("" for a call without one). Nil for an
	// operation that is never de-duplicated.
	Key func(req Req) string
	// Canonical returns the request's canonical bytes: two requests are the same
	// submission exactly when these are equal. Required with Key.
	Canonical func(req Req) []byte
	// Encode and Decode keep a result in a submission record and give it back; JSON of
	// Res when nil. Encoding never holds personal data (Res holds e签宝's IDs only).
	Encode func(res PRes) string
	Decode func(stored string) (PRes, error)
	// Respond builds the RPC's answer.
	Respond func(res PRes, replayed bool) Resp
	// Attrs returns the identifiers of an answer its access line shows.
	Attrs func(resp Resp) []slog.Attr
}

// RPC returns the method's name.
func (o *Op[Req, Resp, Wire, Res, PRes]) RPC() string { return o.Method }

// FullMethod returns the gRPC method name.
func (o *Op[Req, Resp, Wire, Res, PRes]) FullMethod() string {
	return "/" + evidencev1.EvidenceService_ServiceDesc.ServiceName + "/" + o.Method
}

// Upstream returns the e签宝 operation.
func (o *Op[Req, Resp, Wire, Res, PRes]) Upstream() *upstream.Operation { return o.Esign }

// ExactlyOnce reports whether calls are de-duplicated by key.
func (o *Op[Req, Resp, Wire, Res, PRes]) ExactlyOnce() bool { return o.Key != nil }

// NewRequest returns an empty request.
func (o *Op[Req, Resp, Wire, Res, PRes]) NewRequest() proto.Message {
	var req Req
	return req.ProtoReflect().New().Interface()
}

// ResponseAttrs returns the access-line identifiers of resp.
func (o *Op[Req, Resp, Wire, Res, PRes]) ResponseAttrs(resp proto.Message) []slog.Attr {
	r, ok := resp.(Resp)
	if !ok || o.Attrs == nil {
		return nil
	}
	return o.Attrs(r)
}

// Recorded decodes a stored result into the RPC's answer.
func (o *Op[Req, Resp, Wire, Res, PRes]) Recorded(stored string) (proto.Message, error) {
	res, err := o.decode(stored)
	if err != nil {
		return nil, err
	}
	return o.Respond(res, true), nil
}

// submission is the operation as the exactly-once layer sees it.
func (o *Op[Req, Resp, Wire, Res, PRes]) submission() submission.Operation[PRes] {
	return submission.Operation[PRes]{
		Name:   submission.Op(o.Esign.Name),
		Encode: o.encode,
		Decode: func(stored string) PRes {
			res, err := o.decode(stored)
			if err != nil {
				// A record this release cannot read: answer with what could be read
				// rather than nothing (a decode error is a bug, caught by the tests).
				return PRes(new(Res))
			}
			return res
		},
	}
}

func (o *Op[Req, Resp, Wire, Res, PRes]) encode(res PRes) string {
	if o.Encode != nil {
		return o.Encode(res)
	}
	b, err := json.Marshal(res)
	if err != nil {
		panic(fmt.Sprintf("operation %s: encoding a result: %v", o.Method, err))
	}
	return string(b)
}

func (o *Op[Req, Resp, Wire, Res, PRes]) decode(stored string) (PRes, error) {
	if o.Decode != nil {
		return o.Decode(stored)
	}
	res := PRes(new(Res))
	if err := json.Unmarshal([]byte(stored), res); err != nil {
		return nil, fmt.Errorf("operation %s: a stored result is not readable: %w", o.Method, err)
	}
	return res, nil
}

// Handle translates the validated request, checks it against e签宝's rules of the
// revision (before a key is claimed or a quota slot spent), and makes the call through
// the guard: exactly once per key when the operation has one.
func (o *Op[Req, Resp, Wire, Res, PRes]) Handle(ctx context.Context, env *Env, m proto.Message) (proto.Message, error) {
	req, ok := m.(Req)
	if !ok {
		return nil, fmt.Errorf("operation %s: request of type %T", o.Method, m)
	}
	wire := o.Translate(req, env.Revision)
	if err := wire.Check(env.Revision); err != nil {
		return nil, apierror.FromUpstream(ctx, err).Err()
	}
	send := func(ctx context.Context) (PRes, error) {
		return upstream.Send[Res, PRes](ctx, env.Client, o.Esign, wire)
	}
	if o.Key == nil {
		res, err := guard.Call(ctx, env.Guard, guard.Op(o.Esign.Name), send)
		if err != nil {
			return nil, apierror.FromSubmission(ctx, err).Err()
		}
		return o.Respond(res, false), nil
	}
	key := submission.Key{Namespace: env.Namespace(ctx), CustomBizID: o.Key(req)}
	var fp submission.Fingerprint
	if key.CustomBizID != "" {
		fp = env.Submitter.Fingerprint(o.Canonical(req))
	}
	res, err := submission.Submit(ctx, env.Submitter, env.Guard, o.submission(), key, fp, send)
	if err != nil {
		return nil, apierror.FromSubmission(ctx, err).Err()
	}
	return o.Respond(res.Value, res.Replayed), nil
}

var (
	mu       sync.RWMutex
	byMethod = map[string]Descriptor{}
)

// Register adds d to the registry and returns it. It panics when the RPC is not in the
// generated service, when a descriptor is incomplete, or on a second descriptor for one
// RPC or one e签宝 operation: programming errors, found when the package loads.
func Register[Req, Resp proto.Message, Wire upstream.Request, Res any, PRes interface {
	*Res
	upstream.Answer
}](o *Op[Req, Resp, Wire, Res, PRes]) *Op[Req, Resp, Wire, Res, PRes] {
	if o.Method == "" || o.Esign == nil || o.Translate == nil || o.Respond == nil || (o.Key != nil && o.Canonical == nil) {
		panic(fmt.Sprintf("operation %q is incomplete", o.Method))
	}
	found := false
	for _, m := range evidencev1.EvidenceService_ServiceDesc.Methods {
		found = found || m.MethodName == o.Method
	}
	if !found {
		panic(fmt.Sprintf("operation %q is not a unary RPC of %s", o.Method, evidencev1.EvidenceService_ServiceDesc.ServiceName))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range byMethod {
		if d.RPC() == o.Method || d.Upstream() == o.Esign {
			panic(fmt.Sprintf("operation %q registered twice", o.Method))
		}
	}
	byMethod[o.Method] = o
	return o
}

// All returns every registered descriptor, by RPC name.
func All() []Descriptor {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Descriptor, 0, len(byMethod))
	for _, d := range byMethod {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RPC() < out[j].RPC() })
	return out
}

// ByRPC returns the descriptor of the RPC called name, or nil.
func ByRPC(name string) Descriptor {
	mu.RLock()
	defer mu.RUnlock()
	return byMethod[name]
}

// ByFullMethod returns the descriptor of a gRPC full method name, or nil.
func ByFullMethod(fullMethod string) Descriptor {
	prefix := "/" + evidencev1.EvidenceService_ServiceDesc.ServiceName + "/"
	if len(fullMethod) <= len(prefix) || fullMethod[:len(prefix)] != prefix {
		return nil
	}
	return ByRPC(fullMethod[len(prefix):])
}

// RequestTypes returns an empty request of every registered operation (validation
// compiles their rules at start-up).
func RequestTypes() []proto.Message {
	all := All()
	out := make([]proto.Message, 0, len(all))
	for _, d := range all {
		out = append(out, d.NewRequest())
	}
	return out
}

// ServiceDesc returns base (the generated service description) with the handler of every
// registered operation bound to env; the other methods and streams stay srv's.
func ServiceDesc(base *grpc.ServiceDesc, env *Env) *grpc.ServiceDesc {
	desc := *base
	desc.Methods = make([]grpc.MethodDesc, 0, len(base.Methods))
	for _, m := range base.Methods {
		if d := ByRPC(m.MethodName); d != nil {
			m.Handler = unaryHandler(d, env)
		}
		desc.Methods = append(desc.Methods, m)
	}
	return &desc
}

// unaryHandler is a grpc.MethodDesc handler serving d: it decodes the request, runs the
// server's interceptor chain, then d's handler.
func unaryHandler(d Descriptor, env *Env) func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := d.NewRequest()
		if err := dec(in); err != nil {
			return nil, err
		}
		handle := func(ctx context.Context, req any) (any, error) {
			m, ok := req.(proto.Message)
			if !ok {
				return nil, fmt.Errorf("operation %s: request of type %T", d.RPC(), req)
			}
			return d.Handle(ctx, env, m)
		}
		if interceptor == nil {
			return handle(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: d.FullMethod()}, handle)
	}
}

// Package inprocess calls the service's gRPC handlers from inside the process, through the
// same interceptors a network call runs, without a second transport: no connection, no
// HTTP/2 framing, no TLS, no serialisation. The REST facade reaches the handlers this way.
//
// A Channel is a grpc.ServiceRegistrar (services are registered on it as on a
// grpc.Server) and a grpc.ClientConnInterface for unary calls (grpc-gateway's generated
// clients use it). Streaming handlers are served with ServeStream, given a
// grpc.ServerStream the caller builds from its own input. The caller puts the peer (TLS
// state included) into the context; the handlers see it as they see a network peer's.
package inprocess

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Channel dispatches calls to registered handlers through the interceptors.
type Channel struct {
	unary   grpc.UnaryServerInterceptor
	stream  grpc.StreamServerInterceptor
	methods map[string]unaryMethod
	streams map[string]streamMethod
}

type unaryMethod struct {
	impl    any
	handler grpc.MethodHandler
}

type streamMethod struct {
	impl    any
	handler grpc.StreamHandler
	info    grpc.StreamServerInfo
}

var (
	_ grpc.ServiceRegistrar    = (*Channel)(nil)
	_ grpc.ClientConnInterface = (*Channel)(nil)
)

// New returns a channel whose calls run through unary or stream, in order, as a
// grpc.Server's chained interceptors run.
func New(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) *Channel {
	return &Channel{
		unary:   chainUnary(unary),
		stream:  chainStream(stream),
		methods: map[string]unaryMethod{},
		streams: map[string]streamMethod{},
	}
}

// RegisterService registers a service implementation, as on a grpc.Server. Register
// services before the first call.
func (c *Channel) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = unaryMethod{impl: impl, handler: m.Handler}
	}
	for _, s := range desc.Streams {
		full := "/" + desc.ServiceName + "/" + s.StreamName
		c.streams[full] = streamMethod{impl: impl, handler: s.Handler, info: grpc.StreamServerInfo{
			FullMethod: full, IsClientStream: s.ClientStreams, IsServerStream: s.ServerStreams}}
	}
}

// serverContext turns a client's context into the handler's: the outgoing metadata
// becomes incoming, and a transport stream records the headers and trailers the handler
// sets (and answers grpc.Method).
func serverContext(ctx context.Context, method string) (context.Context, *TransportStream) {
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	ts := &TransportStream{method: method}
	return grpc.NewContextWithServerTransportStream(ctx, ts), ts
}

// Invoke makes a unary call (grpc.ClientConnInterface). The request is copied into the
// handler's own message and the response into reply, so neither side shares memory the
// other may change. Header and trailer call options receive what the handler set.
func (c *Channel) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "%s: the request is not a protobuf message", method)
	}
	ctx, ts := serverContext(ctx, method)
	dec := func(dst any) error {
		proto.Merge(dst.(proto.Message), in)
		return nil
	}
	resp, err := m.handler(m.impl, ctx, dec, c.unary)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = ts.Header()
		case grpc.TrailerCallOption:
			*o.TrailerAddr = ts.Trailer()
		}
	}
	if err != nil {
		return toStatus(err)
	}
	out, ok := resp.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "%s: the response is not a protobuf message", method)
	}
	proto.Merge(reply.(proto.Message), out)
	return nil
}

// NewStream is not supported: streaming handlers are served with ServeStream.
func (c *Channel) NewStream(_ context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Errorf(codes.Unimplemented, "%s: streaming calls are served with ServeStream", method)
}

// ServeStream runs the streaming handler of method through the stream interceptors, on
// ss. ss.Context() must come from StreamContext. It returns the handler's status.
func (c *Channel) ServeStream(method string, ss grpc.ServerStream) error {
	m, ok := c.streams[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	return toStatus(c.stream(m.impl, ss, &m.info, m.handler))
}

// StreamContext is the context of a server stream for method built from a client's
// context (see ServeStream), and the transport stream recording its headers.
func StreamContext(ctx context.Context, method string) (context.Context, *TransportStream) {
	return serverContext(ctx, method)
}

// toStatus is what a client of a grpc.Server would see: an error without a status is
// Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// TransportStream records the headers and trailers a handler sets
// (grpc.ServerTransportStream).
type TransportStream struct {
	method          string
	header, trailer metadata.MD
}

// Method is the full method name of the call.
func (t *TransportStream) Method() string { return t.method }

// SetHeader adds to the header.
func (t *TransportStream) SetHeader(md metadata.MD) error {
	t.header = metadata.Join(t.header, md)
	return nil
}

// SendHeader adds to the header (which is sent with the response).
func (t *TransportStream) SendHeader(md metadata.MD) error { return t.SetHeader(md) }

// SetTrailer adds to the trailer.
func (t *TransportStream) SetTrailer(md metadata.MD) error {
	t.trailer = metadata.Join(t.trailer, md)
	return nil
}

// Header is the header set so far.
func (t *TransportStream) Header() metadata.MD { return t.header }

// Trailer is the trailer set so far.
func (t *TransportStream) Trailer() metadata.MD { return t.trailer }

// chainUnary runs is in order around a handler, as grpc.ChainUnaryInterceptor does.
func chainUnary(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(is) {
				return handler
			}
			return func(ctx context.Context, req any) (any, error) { return is[i](ctx, req, info, next(i+1)) }
		}
		return next(0)(ctx, req)
	}
}

// chainStream runs is in order around a handler, as grpc.ChainStreamInterceptor does.
func chainStream(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		var next func(i int) grpc.StreamHandler
		next = func(i int) grpc.StreamHandler {
			if i == len(is) {
				return handler
			}
			return func(srv any, ss grpc.ServerStream) error { return is[i](srv, ss, info, next(i+1)) }
		}
		return next(0)(srv, ss)
	}
}

package gateway

import (
	"context"
	"net/http"
	"slices"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/esign-evidence/esign-evidence/server/observe"
)

// rpcRoute is a route of the contract (a google.api.http rule), as one lookup finds it.
type rpcRoute struct {
	method string                         // full gRPC method name
	body   protoreflect.MessageDescriptor // the request message when the rule takes the whole body; nil if not
}

// notARoute is a ServeMux entry for a route the front door leaves to the chain.
type notARoute struct{}

func (rpcRoute) ServeHTTP(http.ResponseWriter, *http.Request)  {}
func (notARoute) ServeHTTP(http.ResponseWriter, *http.Request) {}

// frontDoor serves a call to a contract route (the requests that carry the service's
// load) with one route lookup and one copy of the request, doing what the chain
// withPeer → methodNotAllowed → atTheEdge → the top ServeMux → strictBodies → the
// gateway's mux does for it, in the same order: the HTTP connection as the call's
// peer, authentication and admission (enter) before the body is read, the body capped
// and read whole, then the gateway's handler. Every other request (the upload route, the
// OpenAPI document, the health check, an unknown path or method, a path ServeMux would
// redirect) goes through chain as it is.
//
// The lookup is a ServeMux over all the facade's routes, as methodNotAllowed's: a request
// it matches to a contract route, with a method methodNotAllowed lets through at once,
// is matched to the same route by atTheEdge's routes (a subset holding that route) and to
// "/" by the top ServeMux (the two routes it serves itself are literal paths).
func frontDoor(chain, gw http.Handler, routes []string, methods *methodRoutes, bodies map[string]protoreflect.MessageDescriptor, enter EnterFunc, mux *runtime.ServeMux, maxBody int64) http.Handler {
	lookup := http.NewServeMux()
	for _, p := range routes {
		var h http.Handler = notARoute{}
		if m, ok := methods.methods[p]; ok && m != uploadMethod {
			h = rpcRoute{method: m, body: bodies[p]}
		}
		lookup.Handle(p, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(probedMethods, r.Method) {
			chain.ServeHTTP(w, r)
			return
		}
		h, _ := lookup.Handler(r)
		rt, ok := h.(rpcRoute)
		if !ok {
			chain.ServeHTTP(w, r)
			return
		}
		// withPeer
		ctx := peer.NewContext(r.Context(), peerOf(r))
		// atTheEdge
		ectx, release, err := enter(metadata.NewIncomingContext(ctx, edgeMetadata(r)), rt.method)
		if err != nil {
			r = r.WithContext(ctx)
			errorHandler(ctx, mux, nil, w, r, err)
			return
		}
		if release != nil {
			defer release()
		}
		ctx = ectx
		// strictBodies
		body, length := r.Body, r.ContentLength
		if body != nil && body != http.NoBody {
			body = http.MaxBytesReader(w, body, maxBody)
			if rt.body != nil {
				b := readJSONBody(w, body, length, rt.body, maxBody)
				if b == nil {
					return // answered
				}
				ctx = context.WithValue(ctx, bodyKey{}, &jsonBody{body: b, md: rt.body})
				body, length = newHeldBody(b), int64(len(b))
			}
		}
		r = r.WithContext(ctx)
		r.Body, r.ContentLength = body, length
		gw.ServeHTTP(w, r)
	})
}

// peerOf is the HTTP connection as a gRPC peer: the client's address and, over TLS, the
// connection's state with any verified client certificate.
func peerOf(r *http.Request) *peer.Peer {
	p := &peer.Peer{Addr: remoteAddr(r.RemoteAddr)}
	if r.TLS != nil {
		p.AuthInfo = tlsInfo(r)
	}
	return p
}

// edgeMetadata is the incoming metadata enter sees: authorization and x-request-id.
func edgeMetadata(r *http.Request) metadata.MD {
	md := metadata.MD{}
	if v := r.Header.Values("Authorization"); len(v) > 0 {
		md.Set("authorization", v...)
	}
	if v := r.Header.Get("X-Request-Id"); v != "" {
		md.Set(observe.RequestIDKey, v)
	}
	return md
}

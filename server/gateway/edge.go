package gateway

import (
	"context"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"google.golang.org/genproto/googleapis/api/annotations"
)

// EnterFunc authenticates and admits a call to the gRPC method method before its request
// is read. ctx carries the call's peer and its incoming metadata (authorization,
// x-request-id). It returns the call's context and a release to run when the call is
// done (nil when there is nothing to give back), or the status refusing the call.
type EnterFunc func(ctx context.Context, method string) (context.Context, func(), error)

// methodRoutes matches a request to the gRPC method its route maps to: every rule of the
// contract, and the upload route.
type methodRoutes struct {
	mux     *http.ServeMux
	methods map[string]string // ServeMux pattern → full gRPC method name
}

func newMethodRoutes(services protoreflect.ServiceDescriptors) *methodRoutes {
	mr := &methodRoutes{mux: http.NewServeMux(), methods: map[string]string{}}
	add := func(pattern, method string) {
		mr.mux.Handle(pattern, http.NotFoundHandler())
		mr.methods[pattern] = method
	}
	add("POST "+UploadPath, uploadMethod)
	for i := 0; i < services.Len(); i++ {
		sd := services.Get(i)
		for j := 0; j < sd.Methods().Len(); j++ {
			md := sd.Methods().Get(j)
			rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			if verb, path, ok := ruleRoute(rule); ok {
				add(verb+" "+path, "/"+string(sd.FullName())+"/"+string(md.Name()))
			}
		}
	}
	return mr
}

// method is the gRPC method r's route maps to, if any.
func (mr *methodRoutes) method(r *http.Request) (string, bool) {
	_, pattern := mr.mux.Handler(r)
	m, ok := mr.methods[pattern]
	return m, ok
}

// atTheEdge authenticates and admits every call to a service method (enter) before
// next reads its body: a refused call is answered at once, its body unread. A request
// for a route that maps to no method (the health check, the OpenAPI document, an
// unknown path) goes on without its body, so nothing decodes a body that was not
// admitted.
func atTheEdge(next http.Handler, mux *runtime.ServeMux, routes *methodRoutes, enter EnterFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, ok := routes.method(r)
		if !ok {
			r.Body, r.ContentLength = http.NoBody, 0
			next.ServeHTTP(w, r)
			return
		}
		ctx, release, err := enter(metadata.NewIncomingContext(r.Context(), edgeMetadata(r)), method)
		if err != nil {
			errorHandler(r.Context(), mux, nil, w, r, err)
			return
		}
		if release != nil {
			defer release()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

package gateway

import (
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/server/apierror"
)

// probedMethods are the methods a route of the facade may take.
var probedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// methodNotAllowed answers a request for a path the facade serves, with a method it does
// not serve there, with 405 and an Allow header naming the methods it does (RFC 9110
// section 15.5.6), as a google.rpc.Status with ErrorInfo UNKNOWN_METHOD. grpc-gateway
// itself would answer 501 Not Implemented, and a path the facade serves outside the
// gateway (the upload route, the OpenAPI document) 404. The paths are matched by
// net/http's ServeMux, from the same route list the access log labels calls with.
func methodNotAllowed(next http.Handler, routes []string) http.Handler {
	known := http.NewServeMux()
	for _, r := range routes {
		known.Handle(r, http.NotFoundHandler())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request for a route with its own method (every call) passes with one lookup:
		// the probe below would find its method allowed. Probing every method clones the
		// request five times (5 % of a REST call's CPU).
		if slices.Contains(probedMethods, r.Method) {
			if _, pattern := known.Handler(r); pattern != "" {
				next.ServeHTTP(w, r)
				return
			}
		}
		var allow []string
		for _, m := range probedMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := known.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 || slices.Contains(allow, r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		st := apierror.WithDetails(status.New(codes.Unimplemented, "this route takes "+strings.Join(allow, " or ")+", not "+knownMethodName(r.Method)),
			apierror.Info(apierror.ReasonUnknownMethod, nil))
		writeStatus(w, http.StatusMethodNotAllowed, st)
	})
}

// knownMethodName is the request's method when it is a standard one; anything else a
// caller sent is not repeated back.
func knownMethodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "this method"
}

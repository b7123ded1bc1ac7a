// Package gateway is the REST facade: grpc-gateway's mux over the gRPC service, with strict
// JSON bodies, the error format of the gRPC side, the OpenAPI document and raw-body uploads.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/inprocess"
	"github.com/esign-evidence/esign-evidence/server/observe"
	"github.com/esign-evidence/esign-evidence/validation"
)

// OpenAPIPath is where the REST facade serves its OpenAPI (Swagger 2.0) document.
const OpenAPIPath = "/openapi.json"

// newMarshaler is the gateway's JSON codec. Decoding is strict: an unknown field or an
// unknown enum value is an error rather than silently dropped (grpc-gateway's default
// would turn "cardType": "FOO" into a mainland ID card). Encoding uses the contract's
// JSON names and emits every field, so callers see `"replayed": false` as well as true.
// The body of a JSON route goes to protojson in one step (jsonCodec).
func newMarshaler() jsonCodec {
	return jsonCodec{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Options configures the REST facade.
type Options struct {
	// MaxBody caps a JSON request body.
	MaxBody int64
	// MaxFile caps an uploaded file.
	MaxFile int64
	// OpenAPI is the document served at OpenAPIPath.
	OpenAPI []byte
	// Enter authenticates and admits each call before its body is read; when nil, calls
	// are authenticated and admitted only by the interceptors, after decoding.
	Enter EnterFunc
}

// New builds the REST facade. It calls the gRPC handlers in process through ch, so every
// REST call runs the same interceptors as a gRPC call, with the HTTP connection as its
// peer (TLS state included: a verified client certificate identifies the caller).
func New(ctx context.Context, ch *inprocess.Channel, o Options) (http.Handler, error) {
	return newFacade(ctx, ch, o, true)
}

// newFacade is New; with frontDoorOn false, every request goes through the chain of
// handlers (as frontDoor's test compares).
func newFacade(ctx context.Context, ch *inprocess.Channel, o Options, frontDoorOn bool) (http.Handler, error) {
	maxBody, maxFile, openAPI := o.MaxBody, o.MaxFile, o.OpenAPI
	marshaler := newMarshaler()
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithHealthzEndpoint(grpc_health_v1.NewHealthClient(ch)),
		runtime.WithErrorHandler(errorHandler),
		// Only X-Request-Id travels from a REST request into gRPC metadata (Authorization
		// always does): a REST client cannot set any other metadata.
		runtime.WithIncomingHeaderMatcher(func(h string) (string, bool) {
			if strings.EqualFold(h, observe.RequestIDKey) {
				return observe.RequestIDKey, true
			}
			return "", false
		}),
		// No call metadata becomes a response header: the HTTP edge (observe) has set
		// X-Request-Id on every REST answer already, and the call's copy would repeat it.
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
	)
	if err := evidencev1.RegisterEvidenceServiceHandlerClient(ctx, mux, evidencev1.NewEvidenceServiceClient(ch)); err != nil {
		return nil, fmt.Errorf("registering the gateway: %w", err)
	}
	bodies := bodyRoutes(evidencev1.File_esign_evidence_v1_evidence_proto.Services())

	top := http.NewServeMux()
	top.HandleFunc("GET "+OpenAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	top.Handle("POST "+UploadPath, uploadHandler(mux, ch, maxFile))
	top.Handle("/", strictBodies(mux, bodies, maxBody))
	routes := Routes()
	if o.Enter == nil {
		return withPeer(methodNotAllowed(top, routes)), nil
	}
	// Calls to the contract's routes take the front door; it does what the chain does.
	methods := newMethodRoutes(evidencev1.File_esign_evidence_v1_evidence_proto.Services())
	chain := withPeer(methodNotAllowed(atTheEdge(top, mux, methods, o.Enter), routes))
	if !frontDoorOn {
		return chain, nil
	}
	return frontDoor(chain, mux, routes, methods, bodies, o.Enter, mux, maxBody), nil
}

// errorHandler writes errors as google.rpc.Status JSON with their details and the
// standard HTTP status. A body the gateway could not decode is described by
// validation.CheckJSON, field by field (see strictBodies); protojson's own text, which
// quotes the input, is never shown.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	if st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		if b, ok := ctx.Value(bodyKey{}).(*jsonBody); ok {
			if vs := validation.CheckJSON(b.body, b.md); len(vs) > 0 {
				writeStatus(w, http.StatusBadRequest, invalidBody(b.md, vs))
				return
			}
		}
		err = status.Error(codes.InvalidArgument, "the request body could not be decoded")
	}
	// Routing errors (404, 405) and errors of the gateway itself carry no ErrorInfo.
	err = apierror.InContract(err)
	st = status.Convert(err)
	switch {
	case st.Code() == codes.Unauthenticated:
		// grpc-gateway would put the status message here; RFC 6750 wants a challenge.
		w = &headerAtWrite{ResponseWriter: w, key: "WWW-Authenticate", value: bearerChallenge(r)}
	case apierror.ErrorInfoOf(st).GetReason() == apierror.ReasonUploadIdleTimeout:
		writeStatus(w, http.StatusRequestTimeout, st)
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, errorMarshaler, w, r, err)
}

// bearerChallenge is the WWW-Authenticate challenge of a 401 (RFC 6750 section 3): with
// error="invalid_token" when the request carried a bearer token, bare when it carried
// none (no Authorization header, or one of another scheme: section 3.1).
func bearerChallenge(r *http.Request) string {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return `Bearer realm="esign-evidence"`
	}
	return `Bearer realm="esign-evidence", error="invalid_token"`
}

// headerAtWrite sets one header just before the status is written, over whatever the
// handler set.
type headerAtWrite struct {
	http.ResponseWriter
	key, value string
}

func (h *headerAtWrite) WriteHeader(code int) {
	h.Header().Set(h.key, h.value)
	h.ResponseWriter.WriteHeader(code)
}

// errorMarshaler writes google.rpc.Status without unpopulated fields (no
// "localizedMessage": null in every field violation).
var errorMarshaler = &runtime.JSONPb{}

// bodyRoutes maps "METHOD /path" of every RPC whose HTTP rule takes the whole request as
// body to its request message, read from the contract's google.api.http options.
func bodyRoutes(services protoreflect.ServiceDescriptors) map[string]protoreflect.MessageDescriptor {
	routes := map[string]protoreflect.MessageDescriptor{}
	for i := 0; i < services.Len(); i++ {
		methods := services.Get(i).Methods()
		for j := 0; j < methods.Len(); j++ {
			md := methods.Get(j)
			rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			if rule == nil || rule.GetBody() != "*" {
				continue
			}
			verb, path, ok := ruleRoute(rule)
			if !ok || verb == http.MethodGet || verb == http.MethodDelete {
				continue // a whole-request body goes with POST, PUT or PATCH
			}
			if strings.Contains(path, "{") {
				continue // path variables: none in the contract so far
			}
			routes[verb+" "+path] = md.Input()
		}
	}
	return routes
}

// bodyKey carries a JSON body and its message type to errorHandler.
type bodyKey struct{}

type jsonBody struct {
	body []byte
	md   protoreflect.MessageDescriptor
}

// invalidBody is the answer to a body protojson refuses: a BadRequest naming each field.
func invalidBody(md protoreflect.MessageDescriptor, vs []validation.FieldViolation) *status.Status {
	return apierror.WithDetails(status.New(codes.InvalidArgument, "the request body is not a valid "+string(md.Name())),
		apierror.Info(apierror.ReasonInvalidRequest, nil), apierror.BadRequest(vs))
}

// strictBodies caps every body at maxBody bytes and keeps the JSON body of each RPC
// route, so that a body protojson refuses gets a 400 with a BadRequest naming the field
// (validation.CheckJSON, run by errorHandler only when decoding failed: a body protojson
// accepts is parsed once), and never an error quoting the body.
func strictBodies(next http.Handler, routes map[string]protoreflect.MessageDescriptor, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		md, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		body := readJSONBody(w, r.Body, r.ContentLength, md, maxBody)
		if body == nil {
			return // answered
		}
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, &jsonBody{body: body, md: md}))
		r.Body = newHeldBody(body)
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// readJSONBody reads the whole JSON body of a route whose request message is md (body
// capped at maxBody already; length is the request's Content-Length). When it cannot (too
// large, unreadable, empty) it answers the request and returns nil.
func readJSONBody(w http.ResponseWriter, body io.Reader, length int64, md protoreflect.MessageDescriptor, maxBody int64) []byte {
	b, err := readBody(body, length, maxBody)
	if err != nil {
		writeReadError(w, err, "the request body", apierror.ReasonRequestTooLarge, maxBody)
		return nil
	}
	if len(b) == 0 {
		// The gateway would take an empty body for an empty message.
		writeStatus(w, http.StatusBadRequest, invalidBody(md, validation.CheckJSON(b, md)))
		return nil
	}
	return b
}

// readBody reads a request's whole body: into a buffer of its declared length when it
// has one (within maxBody), so a large body is not copied through a growing buffer.
func readBody(r io.Reader, length, maxBody int64) ([]byte, error) {
	if length <= 0 || length > maxBody {
		return io.ReadAll(r)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	// net/http ends the body at its Content-Length; this read sees that end.
	if n, err := r.Read(make([]byte, 1)); n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		return nil, errors.Join(err, errors.New("the body is longer than its Content-Length"))
	}
	return body, nil
}

// writeReadError answers a request whose body could not be read: 413 when it went over
// its limit (what names the body in the message, reason is the ErrorInfo reason), 408
// when it did not arrive within the server's read timeout, else 400.
func writeReadError(w http.ResponseWriter, err error, what, reason string, limit int64) {
	var (
		tooBig *http.MaxBytesError
		netErr net.Error
	)
	switch {
	case errors.As(err, &tooBig):
		writeStatus(w, http.StatusRequestEntityTooLarge, apierror.WithDetails(
			status.New(codes.ResourceExhausted, fmt.Sprintf("%s is larger than %d bytes", what, limit)), apierror.Info(reason, nil)))
	case errors.As(err, &netErr) && netErr.Timeout():
		writeStatus(w, http.StatusRequestTimeout, apierror.WithDetails(
			status.New(codes.DeadlineExceeded, what+" did not arrive within the server's read timeout"), apierror.Info(apierror.ReasonRequestTimeout, nil)))
	default:
		writeStatus(w, http.StatusBadRequest, apierror.WithDetails(
			status.New(codes.InvalidArgument, what+" could not be read"), apierror.Info(apierror.ReasonInvalidRequest, nil)))
	}
}

// writeStatus writes st as google.rpc.Status JSON with the given HTTP status.
func writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	b, err := errorMarshaler.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"failed to marshal error message"}`)
		httpStatus = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(b)
}

// withPeer gives every REST call the HTTP connection as its gRPC peer: the client's
// address and, over TLS, the connection's state with any verified client certificate,
// which authentication reads as it reads a gRPC connection's.
func withPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(peer.NewContext(r.Context(), peerOf(r))))
	})
}

// tlsInfo is a TLS connection's state as gRPC's credentials report it.
func tlsInfo(r *http.Request) credentials.TLSInfo {
	return credentials.TLSInfo{State: *r.TLS, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
}

// remoteAddr is the client's TCP address as net/http reports it.
func remoteAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return httpAddr(s)
}

// httpAddr is a client address net/http reports in a form that is not ip:port.
type httpAddr string

func (a httpAddr) Network() string { return "tcp" }
func (a httpAddr) String() string  { return string(a) }

// HealthPath is grpc-gateway's health route, which asks the gRPC health service.
const HealthPath = "/healthz"

// Routes are every REST route the facade serves, as ServeMux patterns: the contract's
// google.api.http rules, the upload route, the OpenAPI document and the health check.
func Routes() []string {
	routes := []string{"GET " + OpenAPIPath, "POST " + UploadPath, "GET " + HealthPath}
	services := evidencev1.File_esign_evidence_v1_evidence_proto.Services()
	for i := 0; i < services.Len(); i++ {
		methods := services.Get(i).Methods()
		for j := 0; j < methods.Len(); j++ {
			rule, _ := proto.GetExtension(methods.Get(j).Options(), annotations.E_Http).(*annotations.HttpRule)
			if verb, path, ok := ruleRoute(rule); ok {
				routes = append(routes, verb+" "+path)
			}
		}
	}
	return routes
}

// ruleRoute returns the HTTP method and path template of a google.api.http rule; ok is
// false for a nil rule or a custom pattern.
func ruleRoute(rule *annotations.HttpRule) (verb, path string, ok bool) {
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get, true
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post, true
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put, true
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch, true
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete, true
	}
	return "", "", false
}

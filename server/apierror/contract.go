package apierror

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reasons of refusals made before or around a handler: the service's own bounds and
// what gRPC or the gateway refuse themselves.
const (
	// ReasonRequestTooLarge: a request (a message, a REST body) is above
	// MAX_REQUEST_BYTES.
	ReasonRequestTooLarge = "REQUEST_TOO_LARGE"
	// ReasonFileTooLarge: an uploaded file is above MAX_FILE_BYTES.
	ReasonFileTooLarge = "FILE_TOO_LARGE"
	// ReasonUnknownMethod: no such method or route.
	ReasonUnknownMethod = "UNKNOWN_METHOD"
	// ReasonUnauthenticated: no valid bearer token or client certificate.
	ReasonUnauthenticated = "UNAUTHENTICATED"
	// ReasonCancelled: the caller cancelled the call.
	ReasonCancelled = "CANCELLED"
	// ReasonDeadlineExceeded: the caller's deadline passed.
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	// ReasonUnavailable: the service is shutting down or the connection broke.
	ReasonUnavailable = "UNAVAILABLE"
	// ReasonRequestTimeout: a REST request did not arrive within READ_TIMEOUT.
	ReasonRequestTimeout = "REQUEST_TIMEOUT"
	// ReasonOverloaded: MAX_CALLS_IN_FLIGHT calls are being handled; retry shortly.
	ReasonOverloaded = "OVERLOADED"
	// ReasonCallerOverloaded: this caller has MAX_CALLS_IN_FLIGHT_PER_CALLER calls being
	// handled; retry shortly (other callers are still served).
	ReasonCallerOverloaded = "CALLER_OVERLOADED"
	// ReasonTooManyUploads: MAX_CONCURRENT_UPLOADS uploads are in progress.
	ReasonTooManyUploads = "TOO_MANY_UPLOADS"
	// ReasonUploadIdleTimeout: an upload sent nothing for UPLOAD_IDLE_TIMEOUT.
	ReasonUploadIdleTimeout = "UPLOAD_IDLE_TIMEOUT"
	// ReasonLocalFailure: this service ran short of a local resource (descriptors, disk,
	// memory). Nothing was sent to e签宝 and it counts as no e签宝 outcome; a retry is
	// safe.
	ReasonLocalFailure = "LOCAL_RESOURCES_EXHAUSTED"
)

// LocalFailure is the status of a call this service could not serve for want of a local
// resource.
func LocalFailure(msg string) error {
	return WithDetails(status.New(codes.Unavailable, msg+"; nothing was sent to e签宝 and a retry is safe"),
		Info(ReasonLocalFailure, map[string]string{"retry_safe": "true"})).Err()
}

// InContract returns err as a status inside the error contract: a google.rpc.Status with
// an ErrorInfo of this service's domain. A status without one (raised by gRPC, the
// gateway or a library rather than by this service) gets the reason its code implies; an
// error that is not a status is a bug and becomes INTERNAL, its text withheld (it may
// hold anything).
func InContract(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown {
		return Internal().Err()
	}
	if ErrorInfoOf(st) != nil {
		return err
	}
	msg := st.Message()
	var reason string
	switch st.Code() {
	case codes.Canceled:
		reason = ReasonCancelled
	case codes.DeadlineExceeded:
		reason = ReasonDeadlineExceeded
	case codes.ResourceExhausted:
		reason = ReasonRequestTooLarge
	case codes.InvalidArgument:
		reason = ReasonInvalidRequest
	case codes.Unimplemented, codes.NotFound:
		reason = ReasonUnknownMethod
	case codes.Unauthenticated:
		reason = ReasonUnauthenticated
	case codes.Unavailable:
		reason = ReasonUnavailable
	default:
		return Internal().Err()
	}
	return WithDetails(status.New(st.Code(), msg), Info(reason, nil)).Err()
}

// ErrorInfoOf is st's ErrorInfo of this service's domain, or nil.
func ErrorInfoOf(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == ErrorDomain {
			return ei
		}
	}
	return nil
}

// UnaryServerInterceptor puts every error a unary call returns inside the contract
// (InContract). It runs just inside the observing interceptor, so the access line and
// the metrics see what the caller sees.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, InContract(err)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return InContract(handler(srv, ss))
	}
}

// UnknownMethod answers a call to a method this server does not have. Registered as the
// server's unknown-service handler it runs through the stream interceptors, so the call
// is authenticated, logged and counted like any other.
func UnknownMethod(any, grpc.ServerStream) error {
	return WithDetails(status.New(codes.Unimplemented, "no such method"), Info(ReasonUnknownMethod, nil)).Err()
}

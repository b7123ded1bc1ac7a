// Package apierror is the service's one error vocabulary at the boundary: the ErrorInfo
// reasons callers branch on, and the table from upstream and exactly-once outcomes to gRPC
// statuses. Every error carries google.rpc.ErrorInfo; validation failures carry
// google.rpc.BadRequest. Messages never echo request values.
package apierror

import (
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/validation"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this service returns.
const ErrorDomain = "esign-evidence"

// ErrorInfo reasons. Callers branch on these (and on the gRPC code), never on messages.
const (
	// ReasonInvalidRequest: the request breaks the contract's rules; a BadRequest detail
	// names each field.
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonEsignParameterError: e签宝 rejected the request's content (code 1435002).
	ReasonEsignParameterError = "ESIGN_PARAMETER_ERROR"
	// ReasonEsignBusinessError: e签宝 refused with another business code (see the
	// esign_code metadata). The evidence point was not created.
	ReasonEsignBusinessError = "ESIGN_BUSINESS_ERROR"
	// ReasonEsignRateLimited: e签宝 refused because the app's quota was exceeded.
	ReasonEsignRateLimited = "ESIGN_RATE_LIMITED"
	// ReasonEsignUnreachable: e签宝 could not be reached; nothing was sent, a retry is safe.
	ReasonEsignUnreachable = "ESIGN_UNREACHABLE"
	// ReasonEsignOutcomeUnknown: the request was sent but no definite answer came back
	// (timeout, lost connection, e签宝 HTTP 5xx, an unreadable answer). The evidence point
	// may or may not exist.
	ReasonEsignOutcomeUnknown = "ESIGN_OUTCOME_UNKNOWN"
	// ReasonEsignCredentialsRejected: e签宝 refused this service's own credentials or
	// configuration (signature, app ID, clock, IP whitelist). An operator must fix the
	// service; the caller did nothing wrong.
	ReasonEsignCredentialsRejected = "ESIGN_CREDENTIALS_REJECTED"
	// ReasonEsignUnexpectedAnswer: e签宝 answered with an HTTP status it does not document.
	ReasonEsignUnexpectedAnswer = "ESIGN_UNEXPECTED_ANSWER"
	// ReasonInternal: a bug in this service (a recovered panic).
	ReasonInternal = "INTERNAL"

	// ReasonIdempotencyKeyReused: the customBizId was already used for a different
	// request. Nothing was sent.
	ReasonIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
	// ReasonSubmissionInProgress: another call with the same customBizId is still in
	// flight and did not finish within this call's deadline. Retry later: the retry gets
	// that call's result.
	ReasonSubmissionInProgress = "SUBMISSION_IN_PROGRESS"
	// ReasonUnknownRetryRefused: an earlier attempt's outcome is unknown and the service
	// is configured (UNKNOWN_OUTCOME_RETRY=refuse) not to send again.
	ReasonUnknownRetryRefused = "OUTCOME_UNKNOWN_RETRY_REFUSED"
	// ReasonRateLimited: e签宝's per-app quota leaves no room within the call's deadline.
	// Nothing was sent.
	ReasonRateLimited = "RATE_LIMITED"
	// ReasonEsignCircuitOpen: e签宝 kept failing, so calls fail fast for a while.
	// Nothing was sent.
	ReasonEsignCircuitOpen = "ESIGN_CIRCUIT_OPEN"
	// ReasonDeadlineTooShort: the call's remaining deadline was below the admission
	// minimum (ESIGN_MIN_REMAINING), so no e签宝 call was started for it. Nothing was sent.
	ReasonDeadlineTooShort = "DEADLINE_TOO_SHORT"
	// ReasonStoreUnavailable: the submission store cannot be reached. Nothing was sent.
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
	// ReasonSubmissionNotFound: no submission with that customBizId.
	ReasonSubmissionNotFound = "SUBMISSION_NOT_FOUND"
	// ReasonEsignUploadRejected: e签宝's file storage refused an upload's bytes.
	ReasonEsignUploadRejected = "ESIGN_UPLOAD_REJECTED"
	// ReasonEsignUploadFailed: an upload's bytes did not reach e签宝's file storage.
	ReasonEsignUploadFailed = "ESIGN_UPLOAD_FAILED"
)

// errorRule is one row of the table from upstream failures to gRPC statuses.
type errorRule struct {
	code   codes.Code
	reason string
	msg    string
}

// The one table from upstream outcomes to what the caller sees. e签宝's parameter error
// is the caller's problem (InvalidArgument); e签宝 refusing our own signature, app or IP
// is ours (Internal, never Unauthenticated or PermissionDenied: those would tell the
// caller its own credentials are wrong); an unknown outcome (Unavailable, reason
// ESIGN_OUTCOME_UNKNOWN) is kept apart from a definite failure that is safe to retry
// (Unavailable, reason ESIGN_UNREACHABLE).
var (
	ruleParameter    = errorRule{codes.InvalidArgument, ReasonEsignParameterError, "e签宝 rejected the request's content"}
	ruleBusiness     = errorRule{codes.FailedPrecondition, ReasonEsignBusinessError, "e签宝 refused the request"}
	ruleRateLimited  = errorRule{codes.ResourceExhausted, ReasonEsignRateLimited, "e签宝's request quota for this app is exhausted; retry later"}
	ruleLocal        = errorRule{codes.Unavailable, ReasonLocalFailure, "this service ran short of a local resource; nothing was sent to e签宝 and a retry is safe"}
	ruleUnreachable  = errorRule{codes.Unavailable, ReasonEsignUnreachable, "e签宝 could not be reached; nothing was sent and a retry is safe"}
	ruleUnknown      = errorRule{codes.Unavailable, ReasonEsignOutcomeUnknown, "the request reached e签宝 but no definite answer came back; the evidence point may exist"}
	ruleCredentials  = errorRule{codes.Internal, ReasonEsignCredentialsRejected, "e签宝 refused this service's credentials; an operator must fix its configuration"}
	ruleUnexpected   = errorRule{codes.Internal, ReasonEsignUnexpectedAnswer, "e签宝 answered in a way this service does not understand"}
	ruleFieldsNeeded = errorRule{codes.InvalidArgument, ReasonInvalidRequest, "the request cannot be sent to e签宝"}
	// An upload whose bytes e签宝's storage refused (4xx: the declared MD5 or type did
	// not match, the URL expired) is this service's failure; one that failed in transit
	// may be tried again.
	ruleUploadRejected = errorRule{codes.Internal, ReasonEsignUploadRejected, "e签宝's file storage refused the upload"}
	ruleUploadFailed   = errorRule{codes.Unavailable, ReasonEsignUploadFailed, "the upload to e签宝's file storage failed; uploading again is safe"}
)

// FromSubmission maps the outcome of a submission: the exactly-once layer's own answers,
// then everything from upstream.
func FromSubmission(ctx context.Context, err error) *status.Status {
	safe := map[string]string{"retry_safe": "true"}
	switch {
	case errors.Is(err, submission.ErrConflict):
		return WithDetails(status.New(codes.AlreadyExists, err.Error()), Info(ReasonIdempotencyKeyReused, nil))
	case errors.Is(err, submission.ErrInFlight):
		return WithDetails(status.New(codes.Aborted, err.Error()), Info(ReasonSubmissionInProgress, safe),
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, submission.ErrUnknownRefused):
		return WithDetails(status.New(codes.FailedPrecondition, err.Error()), Info(ReasonUnknownRetryRefused, nil))
	case errors.Is(err, guard.ErrRateLimited):
		return WithDetails(status.New(codes.ResourceExhausted, "e签宝's request quota leaves no room within this call's deadline; nothing was sent"),
			Info(ReasonRateLimited, safe), &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	case errors.Is(err, guard.ErrDeadlineTooShort):
		return WithDetails(status.New(codes.DeadlineExceeded, "the call's remaining deadline is too short for an e签宝 call; nothing was sent, retry with a longer deadline"),
			Info(ReasonDeadlineTooShort, safe))
	case errors.Is(err, guard.ErrCircuitOpen):
		return WithDetails(status.New(codes.Unavailable, "e签宝 keeps failing, so calls fail fast for a while; nothing was sent"),
			Info(ReasonEsignCircuitOpen, safe))
	case errors.Is(err, submission.ErrStoreUnavailable):
		return WithDetails(status.New(codes.Unavailable, "the submission store is unavailable; nothing was sent"),
			Info(ReasonStoreUnavailable, safe))
	}
	var lost *submission.LeaseLostError
	if errors.As(err, &lost) && upstream.OutcomeOf(err).Definite() {
		// Stopped before anything reached e签宝: the store, not e签宝 nor this process's
		// resources, is what failed. (Once the request may have arrived, the unknown
		// outcome below is what the caller must know.)
		return WithDetails(status.New(codes.Unavailable, "the submission store did not renew this customBizId's lease in time, so the call was stopped before it was sent; a retry is safe"),
			Info(ReasonStoreUnavailable, safe))
	}
	var ue upstream.Error
	if errors.As(err, &ue) {
		return FromUpstream(ctx, err)
	}
	// The caller's own context ended while waiting (for the store, the limiter, or the
	// answer of a call that goes on and will be recorded).
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "the call's deadline passed")
	}
	return FromUpstream(ctx, err)
}

// FromUpstream maps an error from the upstream client to the caller's status. The
// error's Outcome decides the kind of answer (unreachable, unknown, refused); the error's
// own data only adds detail. ctx is the call's context: when the caller's own deadline or
// cancellation ended the call, that is reported as such.
func FromUpstream(ctx context.Context, err error) *status.Status {
	meta := map[string]string{}
	var (
		rule errorRule
		msg  string
		ue   upstream.Error
		ire  *upstream.InvalidRequestError
		upe  *upstream.UploadError
	)
	switch {
	case !errors.As(err, &ue):
		return WithDetails(status.New(ruleUnexpected.code, ruleUnexpected.msg), Info(ruleUnexpected.reason, nil))
	case errors.As(err, &ire):
		rule = ruleFieldsNeeded
		return WithDetails(status.New(rule.code, ire.Error()), Info(rule.reason, meta), BadRequest(fieldViolations(ire)))
	case errors.As(err, &upe):
		rule = ruleUploadFailed
		if upe.Outcome() == upstream.OutcomeRefused {
			rule = ruleUploadRejected
		}
		if upe.Status != 0 {
			meta["esign_http_status"] = strconv.Itoa(upe.Status)
		}
	default:
		switch ue.Outcome() {
		case upstream.OutcomeNotSent, upstream.OutcomeLocal:
			rule = ruleUnreachable
			if ue.Outcome() == upstream.OutcomeLocal {
				// This service's own failure (out of descriptors, a temporary file): not
				// e签宝's, and not reported as an e签宝 outcome.
				rule = ruleLocal
			}
			if c := ctxCode(ctx); c != codes.OK {
				rule.code = c
				rule.msg = "the call ended before anything was sent to e签宝; a retry is safe"
			}
		case upstream.OutcomeUnknown:
			rule = ruleUnknown
			rule.msg = unknownMessage(err, ue)
			meta["cause"] = unknownCause(err)
			if c := ctxCode(ctx); c != codes.OK {
				rule.code = c
			}
		default:
			rule, msg = refusalRule(err, meta)
		}
	}
	if t := ue.TraceID(); t != "" {
		meta["esign_trace_id"] = t
	}
	meta["retry_safe"] = strconv.FormatBool(ue.RetrySafe())
	if msg == "" {
		msg = rule.msg
	}
	return WithDetails(status.New(rule.code, msg), Info(rule.reason, meta))
}

// unknownMessage says what an unknown outcome means for the operation that ended with
// it: what it may have created, or, for an operation that creates nothing twice, that a
// retry is safe.
func unknownMessage(err error, ue upstream.Error) string {
	const head = "the request reached e签宝 but no definite answer came back; "
	if ue.RetrySafe() {
		return head + "sending it again is safe"
	}
	what := upstream.MayHaveMade(err)
	if what == "" {
		what = "what it creates"
	}
	return head + what + " may exist"
}

// unknownCause names why an outcome is unknown: http_<status>, timeout,
// connection_lost or malformed_response.
func unknownCause(err error) string {
	var (
		uo *upstream.UnknownOutcomeError
		me *upstream.MalformedResponseError
	)
	switch {
	case errors.As(err, &me):
		return "malformed_response"
	case errors.As(err, &uo) && uo.Status != 0:
		return "http_" + strconv.Itoa(uo.Status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "connection_lost"
}

// refusalRule details a refusal by e签宝: of the service's credentials, a business
// error (e签宝's message, already masked of personal values, is passed on), or an HTTP
// status.
func refusalRule(err error, meta map[string]string) (errorRule, string) {
	var (
		ae  *upstream.AuthError
		be  *upstream.BusinessError
		ste *upstream.StatusError
	)
	switch {
	case errors.As(err, &ae):
		meta["esign_http_status"] = strconv.Itoa(ae.Status)
		if ae.Reason != "" {
			meta["esign_reason"] = ae.Reason
		}
		return ruleCredentials, ""
	case errors.As(err, &be):
		rule := ruleBusiness
		if be.IsParameterError() {
			rule = ruleParameter
		}
		meta["esign_code"] = strconv.Itoa(be.Code)
		if be.Message != "" {
			return rule, rule.msg + ": " + be.Message
		}
		return rule, ""
	case errors.As(err, &ste):
		meta["esign_http_status"] = strconv.Itoa(ste.Status)
		if ste.Status == 429 {
			return ruleRateLimited, ""
		}
	}
	return ruleUnexpected, ""
}

// ctxCode reports Canceled or DeadlineExceeded when the caller's context has ended.
func ctxCode(ctx context.Context) codes.Code {
	switch ctx.Err() {
	case context.Canceled:
		return codes.Canceled
	case context.DeadlineExceeded:
		return codes.DeadlineExceeded
	}
	return codes.OK
}

func fieldViolations(ire *upstream.InvalidRequestError) []validation.FieldViolation {
	out := make([]validation.FieldViolation, 0, len(ire.Fields))
	for _, f := range ire.Fields {
		out = append(out, validation.FieldViolation{Field: f, Rule: "esign.request", Description: ire.Reason})
	}
	return out
}

// Invalid is the InvalidArgument status for a request that breaks the contract.
func Invalid(verr *validation.Error) *status.Status {
	return WithDetails(status.New(codes.InvalidArgument, verr.Error()),
		Info(ReasonInvalidRequest, nil), BadRequest(verr.Violations))
}

// Info is the google.rpc.ErrorInfo of every error this service returns.
func Info(reason string, meta map[string]string) *errdetails.ErrorInfo {
	if len(meta) == 0 {
		meta = nil
	}
	return &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}
}

// BadRequest lists the violations as google.rpc.BadRequest field violations.
func BadRequest(vs []validation.FieldViolation) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, v := range vs {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
			Reason:      v.Rule,
		})
	}
	return br
}

// WithDetails attaches details to st. Attaching fails only for an OK status, which is
// never built here.
func WithDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	withD, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withD
}

// Field is the InvalidArgument error for one violation found outside the contract's
// validator (for instance the order of an upload's messages).
func Field(field, rule, desc string) error {
	return Invalid(&validation.Error{Violations: []validation.FieldViolation{{Field: field, Rule: rule, Description: desc}}}).Err()
}

// Internal is the status of a bug in this service (a recovered panic). It says nothing
// about the call.
func Internal() *status.Status {
	return WithDetails(status.New(codes.Internal, "internal error"), Info(ReasonInternal, nil))
}

package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Outcome is what the end of one e签宝 call says about e签宝's state. Every error of this
// package states its outcome once (Error.Outcome); everything that acts on a failure (the
// circuit breaker, the submission store, the mapping to gRPC statuses) reads it there
// instead of inspecting error types.
type Outcome uint8

// The outcomes of an e签宝 call.
const (
	// OutcomeOK: e签宝 acted and answered with its result.
	OutcomeOK Outcome = iota
	// OutcomeNotSent: the request never reached e签宝 (connection refused, DNS, TLS, the
	// connection failing before the request was written in full). Nothing exists at
	// e签宝 and a retry is safe; e签宝 (or the way to it) failed, which counts against
	// the circuit breaker.
	OutcomeNotSent
	// OutcomeRefused: e签宝 answered and did not act (a business error, a refusal of the
	// service's credentials, a 4xx). A retry is safe; e签宝 is up.
	OutcomeRefused
	// OutcomeUnknown: the request may have been acted on (sent, but no definite answer:
	// a timeout, a lost connection, a 5xx, an unreadable or undocumented answer). A blind
	// retry may create a second evidence point; e签宝 failed to answer, which counts
	// against the circuit breaker.
	OutcomeUnknown
	// OutcomeLocal: this service failed before anything was sent, for a reason of its own
	// (the request cannot be expressed, the caller's context ended, a local resource such
	// as file descriptors, memory, a temporary file or the submission store failed).
	// Nothing reached e签宝, so a retry is safe, and it says nothing about e签宝: the
	// circuit breaker ignores it.
	OutcomeLocal
)

var outcomeNames = [...]string{"ok", "not_sent", "refused", "unknown", "local"}

// String names the outcome: ok, not_sent, refused, unknown, local.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// RetrySafe reports whether sending the same request again cannot create a second
// evidence point: every outcome but OutcomeUnknown.
func (o Outcome) RetrySafe() bool { return o != OutcomeUnknown }

// UpstreamFailure reports whether the outcome means e签宝 (or the way to it) failed:
// OutcomeNotSent and OutcomeUnknown. The circuit breaker counts these, and only these.
func (o Outcome) UpstreamFailure() bool { return o == OutcomeNotSent || o == OutcomeUnknown }

// Definite reports whether e签宝's state is known after the call: it acted
// (OutcomeOK) or certainly did not (every other outcome but OutcomeUnknown).
func (o Outcome) Definite() bool { return o != OutcomeUnknown }

// OutcomeOf returns the outcome of a call that ended with err: OutcomeOK for nil, the
// outcome an Error states, and OutcomeUnknown for any other error, the only safe reading
// of a failure that does not say whether e签宝 acted.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	var e Error
	if errors.As(err, &e) {
		return e.Outcome()
	}
	return OutcomeUnknown
}

// Error is implemented by every error the client returns. None of them prints the app
// secret or any personal data from the request.
type Error interface {
	error
	// Outcome says what the failure means for e签宝's state; see Outcome.
	Outcome() Outcome
	// RetrySafe reports whether sending the same request again cannot create anything
	// twice: Outcome().RetrySafe(), except that an unknown outcome of an operation whose
	// Kind is Repeatable (a read, an upload) is safe.
	RetrySafe() bool
	// TraceID is e签宝's trace ID when a response carried one, else "".
	TraceID() string
	// Kind names the failure for metrics and logs: invalid_request, not_sent,
	// local_failure, outcome_unknown, credentials_rejected, business_error,
	// malformed_response, http_<status>, upload_failed.
	Kind() string
}

// LocalError: this service failed before sending, for a reason of its own (a local
// resource ran out, a temporary file or the submission store failed). Nothing reached
// e签宝; the circuit breaker ignores it.
type LocalError struct {
	// What says what failed, without personal data ("spooling the upload").
	What string
	Err  error
}

func (e *LocalError) Error() string {
	if e.Err == nil {
		return "e签宝 request not sent: " + e.What + " failed locally"
	}
	return "e签宝 request not sent: " + e.What + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *LocalError) Unwrap() error { return e.Err }

// Outcome is OutcomeLocal.
func (e *LocalError) Outcome() Outcome { return OutcomeLocal }

// RetrySafe is true: nothing was sent.
func (e *LocalError) RetrySafe() bool { return true }

// TraceID is always "": there was no response.
func (e *LocalError) TraceID() string { return "" }

// Kind names the failure.
func (e *LocalError) Kind() string { return "local_failure" }

// InvalidRequestError: the request was refused before anything was sent because it
// cannot be expressed in the configured API revision.
type InvalidRequestError struct {
	// Fields are the JSON names of the fields at fault, if any.
	Fields []string
	Reason string
}

func (e *InvalidRequestError) Error() string {
	if len(e.Fields) == 0 {
		return "e签宝 request not sent: " + e.Reason
	}
	return "e签宝 request not sent: " + strings.Join(e.Fields, ", ") + " missing: " + e.Reason
}

// Outcome is OutcomeLocal: the request could not be built, nothing was sent.
func (e *InvalidRequestError) Outcome() Outcome { return OutcomeLocal }

// RetrySafe is true: nothing was sent.
func (e *InvalidRequestError) RetrySafe() bool { return true }

// TraceID is always "": there was no response.
func (e *InvalidRequestError) TraceID() string { return "" }

// Kind names the outcome.
func (e *InvalidRequestError) Kind() string { return "invalid_request" }

// SendError: the call failed before the request was completely written, so e签宝 cannot
// have acted on it (connection refused, DNS failure, TLS failure, the caller's context
// ending before sending).
type SendError struct {
	Err error
	// Local is true when the failure was this service's own (the caller's context was
	// cancelled before sending, a local resource ran out): it says nothing about e签宝.
	Local bool
}

func (e *SendError) Error() string { return "e签宝 request not sent: " + e.Err.Error() }

// Unwrap returns the cause (a context error when the caller's context ended).
func (e *SendError) Unwrap() error { return e.Err }

// Outcome is OutcomeNotSent, or OutcomeLocal when the failure was this service's own.
func (e *SendError) Outcome() Outcome {
	if e.Local {
		return OutcomeLocal
	}
	return OutcomeNotSent
}

// RetrySafe is true: e签宝 never received the request.
func (e *SendError) RetrySafe() bool { return true }

// TraceID is always "": there was no response.
func (e *SendError) TraceID() string { return "" }

// Kind names the outcome.
func (e *SendError) Kind() string { return "not_sent" }

// UnknownOutcomeError: the request was sent but no definite answer came back (a timeout
// or a lost connection after writing, an HTTP 5xx from e签宝's side, or a 2xx/3xx status
// e签宝 does not document for the call). e签宝 may or may
// not have created the evidence point.
type UnknownOutcomeError struct {
	// Status is the HTTP status when one came back (5xx), else 0.
	Status int
	// Err is the cause when no response came back (a context error on a timeout).
	Err   error
	Trace string
	// Repeatable is set for an operation whose Kind is Repeatable (a read, an upload):
	// sending it again creates nothing twice.
	Repeatable bool
	// Makes names what the operation creates ("the evidence point"), for messages.
	Makes string
}

func (e *UnknownOutcomeError) Error() string {
	msg := "e签宝 outcome unknown"
	if e.Status != 0 {
		msg += ": HTTP " + strconv.Itoa(e.Status)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + traceSuffix(e.Trace)
}

// Unwrap returns the cause.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// Outcome is OutcomeUnknown.
func (e *UnknownOutcomeError) Outcome() Outcome { return OutcomeUnknown }

// RetrySafe is false unless the operation is Repeatable: a retry may create a second
// evidence point.
func (e *UnknownOutcomeError) RetrySafe() bool { return e.Repeatable }

// TraceID returns e签宝's trace ID, if a response carried one.
func (e *UnknownOutcomeError) TraceID() string { return e.Trace }

// Kind names the outcome.
func (e *UnknownOutcomeError) Kind() string { return "outcome_unknown" }

// AuthError: e签宝's gateway refused our credentials or configuration (HTTP 401, or 403
// for the IP whitelist). The service's own setup is at fault, not its caller.
type AuthError struct {
	Status int
	// Reason is the gateway's reason, e.g. INVALID_SIGNATURE, INVALID_TIMESTAMP, 无效的应用,
	// IP白名单不匹配; "" when the body could not be read.
	Reason string
	Trace  string
}

func (e *AuthError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("e签宝 refused the service's credentials: HTTP %d %s%s", e.Status, reason, traceSuffix(e.Trace))
}

// Outcome is OutcomeRefused.
func (e *AuthError) Outcome() Outcome { return OutcomeRefused }

// RetrySafe is true: the gateway refused the call before e签宝 acted on it.
func (e *AuthError) RetrySafe() bool { return true }

// TraceID returns e签宝's trace ID, if the response carried one.
func (e *AuthError) TraceID() string { return e.Trace }

// Kind names the outcome.
func (e *AuthError) Kind() string { return "credentials_rejected" }

// Known gateway reasons (e签宝's 401 and 403 bodies).
const (
	ReasonInvalidSignature = "INVALID_SIGNATURE"
	ReasonInvalidTimestamp = "INVALID_TIMESTAMP"
	ReasonMissingParameter = "缺少参数"
	ReasonAuthStrategy     = "AUTHSTRATEGY_NOT_FOUND"
	ReasonInvalidApp       = "无效的应用"
	ReasonTokenCantBeNull  = "TOKEN_CANT_BE_NULL"
	ReasonIPNotWhitelisted = "IP白名单不匹配"
)

// CodeParameterError is e签宝's business code for a request whose content it rejected
// ("参数错误: ...").
const CodeParameterError = 1435002

// BusinessError: e签宝 answered with a non-zero business code. The evidence point was not
// created.
type BusinessError struct {
	Code int
	// Message is e签宝's message with every personal value of the request replaced by
	// "***" (e签宝's messages may quote what they were sent). Decide by Code, not by
	// Message: e签宝 says messages may change.
	Message string
	Trace   string
}

func (e *BusinessError) Error() string {
	return fmt.Sprintf("e签宝 business error %d: %s%s", e.Code, e.Message, traceSuffix(e.Trace))
}

// Outcome is OutcomeRefused.
func (e *BusinessError) Outcome() Outcome { return OutcomeRefused }

// RetrySafe is true: e签宝 definitely did not create the evidence point.
func (e *BusinessError) RetrySafe() bool { return true }

// TraceID returns e签宝's trace ID, if the response carried one.
func (e *BusinessError) TraceID() string { return e.Trace }

// Kind names the outcome.
func (e *BusinessError) Kind() string { return "business_error" }

// IsParameterError reports whether e签宝 rejected the request's content (1435002).
func (e *BusinessError) IsParameterError() bool { return e.Code == CodeParameterError }

// MalformedResponseError: e签宝 answered, but not in a shape the client understands (not
// JSON, too large, success without an eviPointId). Whether it acted is unknown.
type MalformedResponseError struct {
	Status int
	Reason string
	Trace  string
	// Repeatable is set for an operation whose Kind is Repeatable.
	Repeatable bool
	// Makes names what the operation creates, for messages.
	Makes string
}

func (e *MalformedResponseError) Error() string {
	return fmt.Sprintf("e签宝 response malformed (HTTP %d): %s%s", e.Status, e.Reason, traceSuffix(e.Trace))
}

// Outcome is OutcomeUnknown.
func (e *MalformedResponseError) Outcome() Outcome { return OutcomeUnknown }

// RetrySafe is false unless the operation is Repeatable: e签宝 may have acted on the
// request.
func (e *MalformedResponseError) RetrySafe() bool { return e.Repeatable }

// TraceID returns e签宝's trace ID, if the response carried one.
func (e *MalformedResponseError) TraceID() string { return e.Trace }

// Kind names the outcome.
func (e *MalformedResponseError) Kind() string { return "malformed_response" }

// StatusError: e签宝 answered with a 4xx status other than 401 and 403 (for example when
// a quota is exceeded: e签宝 does not document that answer). The request was refused as
// a whole. (An undocumented 2xx or 3xx is no proof that nothing was created: it is an
// UnknownOutcomeError.)
type StatusError struct {
	Status int
	Trace  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("e签宝 answered HTTP %d%s", e.Status, traceSuffix(e.Trace))
}

// Outcome is OutcomeRefused: a 4xx answer means the request was refused, not acted on.
func (e *StatusError) Outcome() Outcome { return OutcomeRefused }

// RetrySafe is true: a 4xx answer means the request was refused, not acted on.
func (e *StatusError) RetrySafe() bool { return true }

// TraceID returns e签宝's trace ID, if the response carried one.
func (e *StatusError) TraceID() string { return e.Trace }

// Kind names the outcome.
func (e *StatusError) Kind() string { return "http_" + strconv.Itoa(e.Status) }

func traceSuffix(t string) string {
	if t == "" {
		return ""
	}
	return " (e签宝 trace " + t + ")"
}

// MayHaveMade names what an operation that ended with an unknown outcome may have
// created ("the evidence point"), or "" when err does not say.
func MayHaveMade(err error) string {
	var (
		uo *UnknownOutcomeError
		me *MalformedResponseError
	)
	switch {
	case errors.As(err, &uo):
		return uo.Makes
	case errors.As(err, &me):
		return me.Makes
	}
	return ""
}

// IsRetrySafe reports whether err is an upstream Error that is safe to retry.
func IsRetrySafe(err error) bool {
	var e Error
	return errors.As(err, &e) && e.RetrySafe()
}

// knownGatewayReason is the gateway's reason when it is one e签宝 documents (a code, not
// text), else "": the rest of a 401/403 body is free text and is never kept.
func knownGatewayReason(msg string) string {
	switch msg {
	case ReasonInvalidSignature, ReasonInvalidTimestamp, ReasonMissingParameter, ReasonAuthStrategy,
		ReasonInvalidApp, ReasonTokenCantBeNull, ReasonIPNotWhitelisted:
		return msg
	}
	return ""
}

// callerStrings are the string values of a request body (e签宝's JSON), each at least
// two characters: everything the caller wrote (eviName, mark, verifySerialNumber, the
// suppliers, scores, bank names, ...), so that an e签宝 message quoting one is masked
// whatever the operation. Keys are not values and are kept.
func callerStrings(body []byte) []string {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if len(strings.TrimSpace(v)) >= 2 {
				out = append(out, v)
			}
		case json.Number:
			if len(v) >= 2 {
				out = append(out, string(v))
			}
		}
	}
	var v any
	if dec.Decode(&v) == nil {
		walk(v)
	}
	// Longest first, so that a value containing another is masked whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// mask replaces every occurrence of each personal value in msg with "***", ignoring case
// (an ID number's X may come back as x).
func mask(msg string, personal []string) string {
	for _, v := range personal {
		if strings.TrimSpace(v) == "" {
			continue
		}
		msg = replaceFold(msg, v, "***")
	}
	return msg
}

func replaceFold(s, old, repl string) string {
	lower, lowerOld := strings.ToLower(s), strings.ToLower(old)
	if len(lower) != len(s) || len(lowerOld) != len(old) {
		// Case folding changed byte lengths: fall back to an exact replacement.
		return strings.ReplaceAll(s, old, repl)
	}
	var b strings.Builder
	for {
		i := strings.Index(lower, lowerOld)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(repl)
		s, lower = s[i+len(old):], lower[i+len(old):]
	}
}

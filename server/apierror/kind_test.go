package apierror_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// What an unknown outcome tells the caller follows the operation's kind, stamped on the
// error: a create names what may exist and is not retry-safe; a repeatable operation is.
func TestUnknownOutcomeFollowsTheKind(t *testing.T) {
	cases := []struct {
		err       error
		retrySafe string
		says      string
	}{
		{&upstream.UnknownOutcomeError{Status: 502, Makes: "the evidence chain"}, "false", "the evidence chain may exist"},
		{&upstream.MalformedResponseError{Status: 200, Makes: "the evidence point"}, "false", "the evidence point may exist"},
		{&upstream.UnknownOutcomeError{Status: 502, Makes: "the file", Repeatable: true}, "true", "sending it again is safe"},
	}
	for _, c := range cases {
		st := apierror.FromUpstream(context.Background(), c.err)
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info.GetReason() != apierror.ReasonEsignOutcomeUnknown || info.GetMetadata()["retry_safe"] != c.retrySafe || !strings.HasSuffix(st.Message(), c.says) {
			t.Errorf("%v: %q %v", c.err, st.Message(), info)
		}
	}
}

// A call the key's lease stopped before anything was sent is the store's failure
// (STORE_UNAVAILABLE, retry-safe), never LOCAL_RESOURCES_EXHAUSTED; one that may have
// reached e签宝 stays an unknown outcome.
func TestLeaseCutOffReported(t *testing.T) {
	unsent := apierror.FromSubmission(context.Background(), &submission.LeaseLostError{Err: &upstream.SendError{Err: context.Canceled, Local: true}})
	sent := apierror.FromSubmission(context.Background(), &submission.LeaseLostError{Err: &upstream.UnknownOutcomeError{Err: context.Canceled, Makes: "the evidence point"}})
	for _, c := range []struct {
		st        *status.Status
		reason    string
		retrySafe string
	}{{unsent, apierror.ReasonStoreUnavailable, "true"}, {sent, apierror.ReasonEsignOutcomeUnknown, "false"}} {
		var info *errdetails.ErrorInfo
		for _, d := range c.st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info.GetReason() != c.reason || info.GetMetadata()["retry_safe"] != c.retrySafe {
			t.Errorf("%q: %v", c.st.Message(), info)
		}
	}
}

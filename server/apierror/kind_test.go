package apierror_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

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

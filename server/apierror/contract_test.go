package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// A local failure is answered as this service's, never as an e签宝 outcome.
func TestLocalFailureIsNotAnEsignOutcome(t *testing.T) {
	for _, err := range []error{
		&upstream.SendError{Err: syscall.EMFILE, Local: true},
		&upstream.LocalError{What: "spooling the upload", Err: syscall.ENOSPC},
	} {
		st := apierror.FromUpstream(context.Background(), err)
		if ei := apierror.ErrorInfoOf(st); st.Code() != codes.Unavailable || ei == nil || ei.GetReason() != apierror.ReasonLocalFailure {
			t.Errorf("%v: %v %v", err, st.Code(), ei)
		}
	}
	// The caller leaving is still reported as its own cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if st := apierror.FromUpstream(ctx, &upstream.SendError{Err: context.Canceled, Local: true}); st.Code() != codes.Canceled {
		t.Errorf("cancelled: %v", st.Code())
	}
	// A send that failed on the way to e签宝 stays e签宝's.
	if ei := apierror.ErrorInfoOf(apierror.FromUpstream(context.Background(), &upstream.SendError{Err: syscall.ECONNREFUSED})); ei.GetReason() != apierror.ReasonEsignUnreachable {
		t.Errorf("refused connection: %v", ei)
	}
}

// Every status leaves InContract with an ErrorInfo of the service's domain; an error that
// is not a status is INTERNAL without its text.
func TestInContract(t *testing.T) {
	for _, err := range []error{
		status.Error(codes.ResourceExhausted, "grpc: received message larger than max"),
		status.Error(codes.Canceled, "context canceled"),
		status.Error(codes.Unimplemented, "unknown method"),
		errors.New("secret 130401199601018395"),
		fmt.Errorf("wrapped: %w", errors.New("x")),
	} {
		st := status.Convert(apierror.InContract(err))
		if apierror.ErrorInfoOf(st) == nil {
			t.Errorf("%v: no ErrorInfo", err)
		}
		if _, ok := status.FromError(err); !ok && (st.Code() != codes.Internal || st.Message() != "internal error") {
			t.Errorf("%v: %v %q", err, st.Code(), st.Message())
		}
	}
	if apierror.InContract(nil) != nil {
		t.Error("nil became an error")
	}
}

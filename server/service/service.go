// Package service serves esign.evidence.v1.EvidenceService. Requests reach it
// authenticated and validated (the interceptors). Every operation that makes one e签宝
// call is served by its descriptor (package operation: translate, then the call through
// the exactly-once layer and the guard); this package adds the RPCs that are not such an
// operation: GetSubmission and the UploadFile stream.
package service

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/operation"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Config is what the handlers need.
type Config struct {
	// Revision is the e签宝 API revision requests are translated for.
	Revision upstream.Revision
	// Guard makes every e签宝 call: admission, the app's quota, the circuit breaker,
	// metrics.
	Guard *guard.Guard
	// Submitter makes submissions exactly-once per customBizId.
	Submitter *submission.Submitter
	// Files uploads images to e签宝.
	Files *upstream.Client
	// Settings bound uploads: file size and idle time (DefaultSettings, or as configured).
	Settings
	// MaxConcurrentUploads bounds the uploads in progress (beyond it they are refused);
	// 1 when 0.
	MaxConcurrentUploads int
}

// Evidence implements esign.evidence.v1.EvidenceService.
type Evidence struct {
	evidencev1.UnimplementedEvidenceServiceServer
	revision  upstream.Revision
	guard     *guard.Guard
	submitter *submission.Submitter
	// files calls e签宝 (evidence points and uploads), always through guard.
	files        *upstream.Client
	maxFileBytes int64
	// uploads holds a slot per upload in progress; uploadIdle ends an upload that sends
	// nothing for that long.
	uploads    chan struct{}
	uploadIdle time.Duration
	// env is what the registered operations' handlers call e签宝 with.
	env *operation.Env
}

// New returns the handlers.
func New(c Config) *Evidence {
	return &Evidence{revision: c.Revision, guard: c.Guard, submitter: c.Submitter, files: c.Files, maxFileBytes: c.MaxFileBytes,
		uploads: make(chan struct{}, max(c.MaxConcurrentUploads, 1)), uploadIdle: c.UploadIdleTimeout,
		env: &operation.Env{Revision: c.Revision, Client: c.Files, Guard: c.Guard, Submitter: c.Submitter, Namespace: auth.Namespace}}
}

// ServiceDesc is the service to register with s: the generated description with every
// registered operation's handler bound (package operation), GetSubmission and UploadFile
// served by s.
func (s *Evidence) ServiceDesc() *grpc.ServiceDesc {
	return operation.ServiceDesc(&evidencev1.EvidenceService_ServiceDesc, s.env)
}

// GetSubmission returns the stored state of a submission of one exactly-once operation
// (the personal evidence point when the request names none).
func (s *Evidence) GetSubmission(ctx context.Context, req *evidencev1.GetSubmissionRequest) (*evidencev1.GetSubmissionResponse, error) {
	name := req.GetOperation()
	if name == "" {
		name = operation.PersonalEvidencePoint.RPC()
	}
	op := operation.ByRPC(name)
	if op == nil || !op.ExactlyOnce() {
		return nil, apierror.Field("operation", "operation.exactly_once",
			"must name an exactly-once operation of the service: "+strings.Join(exactlyOnceRPCs(), ", "))
	}
	rec, err := s.submitter.Lookup(ctx, submission.Key{Op: submission.Op(op.Upstream().Name), Namespace: auth.Namespace(ctx), CustomBizID: req.GetCustomBizId()})
	if err != nil {
		return nil, apierror.FromSubmission(ctx, err).Err()
	}
	if rec == nil {
		return nil, apierror.WithDetails(status.New(codes.NotFound, "no submission with this customBizId"), apierror.Info(apierror.ReasonSubmissionNotFound, nil)).Err()
	}
	resp := &evidencev1.GetSubmissionResponse{
		CustomBizId: rec.Key.CustomBizID,
		Operation:   op.RPC(),
		State:       submissionStates[rec.State],
		EsignCode:   int32(rec.EsignCode),
		Attempts:    int32(rec.Attempts),
		CreateTime:  timestamppb.New(rec.CreatedAt),
		UpdateTime:  timestamppb.New(rec.UpdatedAt),
	}
	if rec.State == submission.StateSucceeded {
		answer, err := op.Recorded(rec.Result)
		if err != nil {
			return nil, apierror.Internal().Err()
		}
		if resp.Result, err = anypb.New(answer); err != nil {
			return nil, apierror.Internal().Err()
		}
		if p, ok := answer.(*evidencev1.CreatePersonalEvidencePointResponse); ok {
			resp.EviPointId = p.GetEviPointId()
		}
	}
	return resp, nil
}

// exactlyOnceRPCs names the operations GetSubmission can look up.
func exactlyOnceRPCs() []string {
	var names []string
	for _, d := range operation.All() {
		if d.ExactlyOnce() {
			names = append(names, d.RPC())
		}
	}
	return names
}

var submissionStates = map[submission.State]evidencev1.SubmissionState{
	submission.StateInProgress:     evidencev1.SubmissionState_SUBMISSION_STATE_IN_PROGRESS,
	submission.StateSucceeded:      evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED,
	submission.StateFailed:         evidencev1.SubmissionState_SUBMISSION_STATE_FAILED,
	submission.StateOutcomeUnknown: evidencev1.SubmissionState_SUBMISSION_STATE_OUTCOME_UNKNOWN,
}

// Package service holds the handlers of esign.evidence.v1.EvidenceService. Requests reach
// them authenticated and validated (the interceptors); each handler translates its request
// (package translate) and makes the e签宝 call through the exactly-once layer and the guard.
package service

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/translate"
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
}

// New returns the handlers.
func New(c Config) *Evidence {
	return &Evidence{revision: c.Revision, guard: c.Guard, submitter: c.Submitter, files: c.Files, maxFileBytes: c.MaxFileBytes,
		uploads: make(chan struct{}, max(c.MaxConcurrentUploads, 1)), uploadIdle: c.UploadIdleTimeout}
}

// CreatePersonalEvidencePoint translates the request and submits it exactly once per
// customBizId: the signed e签宝 call is made only when no earlier call with the same key
// succeeded or is in flight.
func (s *Evidence) CreatePersonalEvidencePoint(ctx context.Context, req *evidencev1.CreatePersonalEvidencePointRequest) (*evidencev1.CreatePersonalEvidencePointResponse, error) {
	p := translate.ToUpstream(req, s.revision)
	// The whole contract is checked before a key is claimed or a quota token spent: the
	// validator ran the contract's rules; e签宝's revision-dependent ones run here.
	if err := p.Check(s.revision); err != nil {
		return nil, apierror.FromUpstream(ctx, err).Err()
	}
	key := submission.Key{Namespace: auth.Namespace(ctx), CustomBizID: req.GetCustomBizId()}
	var fp submission.Fingerprint
	if key.CustomBizID != "" {
		fp = s.submitter.Fingerprint(translate.Canonical(req))
	}
	res, err := submission.Submit(ctx, s.submitter, s.guard, PsnRealname, key, fp, func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		return s.files.CreatePsnEvidencePoint(ctx, p)
	})
	if err != nil {
		return nil, apierror.FromSubmission(ctx, err).Err()
	}
	return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: res.Value.EviPointID, Replayed: res.Replayed}, nil
}

// GetSubmission returns the stored state of a submission.
func (s *Evidence) GetSubmission(ctx context.Context, req *evidencev1.GetSubmissionRequest) (*evidencev1.GetSubmissionResponse, error) {
	rec, err := s.submitter.Lookup(ctx, submission.Key{Op: PsnRealname.Name, Namespace: auth.Namespace(ctx), CustomBizID: req.GetCustomBizId()})
	if err != nil {
		return nil, apierror.FromSubmission(ctx, err).Err()
	}
	if rec == nil {
		return nil, apierror.WithDetails(status.New(codes.NotFound, "no submission with this customBizId"), apierror.Info(apierror.ReasonSubmissionNotFound, nil)).Err()
	}
	return &evidencev1.GetSubmissionResponse{
		CustomBizId: rec.Key.CustomBizID,
		State:       submissionStates[rec.State],
		EviPointId:  rec.Result,
		EsignCode:   int32(rec.EsignCode),
		Attempts:    int32(rec.Attempts),
		CreateTime:  timestamppb.New(rec.CreatedAt),
		UpdateTime:  timestamppb.New(rec.UpdatedAt),
	}, nil
}

var submissionStates = map[submission.State]evidencev1.SubmissionState{
	submission.StateInProgress:     evidencev1.SubmissionState_SUBMISSION_STATE_IN_PROGRESS,
	submission.StateSucceeded:      evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED,
	submission.StateFailed:         evidencev1.SubmissionState_SUBMISSION_STATE_FAILED,
	submission.StateOutcomeUnknown: evidencev1.SubmissionState_SUBMISSION_STATE_OUTCOME_UNKNOWN,
}

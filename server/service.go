package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// evidenceService implements esign.evidence.v1.EvidenceService. Requests reach it
// validated (validationInterceptor).
type evidenceService struct {
	evidencev1.UnimplementedEvidenceServiceServer
	revision  upstream.Revision
	sender    submission.Sender
	submitter *submission.Submitter
	// files uploads images; limiter is the e签宝 quota it shares with evidence calls.
	files        *upstream.Client
	limiter      *submission.Guard
	maxFileBytes int64
}

// CreatePersonalEvidencePoint translates the request and submits it exactly once per
// customBizId: the signed e签宝 call is made only when no earlier call with the same key
// succeeded or is in flight.
func (s *evidenceService) CreatePersonalEvidencePoint(ctx context.Context, req *evidencev1.CreatePersonalEvidencePointRequest) (*evidencev1.CreatePersonalEvidencePointResponse, error) {
	p := toUpstream(req, s.revision)
	key := submission.Key{Namespace: namespace(ctx), CustomBizID: req.GetCustomBizId()}
	var fp []byte
	if key.CustomBizID != "" {
		fp = s.submitter.Fingerprint(canonical(req))
	}
	res, err := s.submitter.Submit(ctx, key, fp, func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		return s.sender.CreatePsnEvidencePoint(ctx, p)
	})
	if err != nil {
		return nil, submitStatus(ctx, err).Err()
	}
	return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: res.EviPointID, Replayed: res.Replayed}, nil
}

// GetSubmission returns the stored state of a submission.
func (s *evidenceService) GetSubmission(ctx context.Context, req *evidencev1.GetSubmissionRequest) (*evidencev1.GetSubmissionResponse, error) {
	rec, err := s.submitter.Lookup(ctx, submission.Key{Namespace: namespace(ctx), CustomBizID: req.GetCustomBizId()})
	if err != nil {
		return nil, submitStatus(ctx, err).Err()
	}
	if rec == nil {
		return nil, withDetails(status.New(codes.NotFound, "no submission with this customBizId"), errorInfo(ReasonSubmissionNotFound, nil)).Err()
	}
	return &evidencev1.GetSubmissionResponse{
		CustomBizId: rec.Key.CustomBizID,
		State:       submissionStates[rec.State],
		EviPointId:  rec.EviPointID,
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

// namespace is the caller's identity, which keeps callers' customBizIds apart. With
// authentication off, every caller shares the empty namespace.
func namespace(ctx context.Context) string {
	if c := Caller(ctx); c != anonymous {
		return c
	}
	return ""
}

// canonical is the request with every default applied, in deterministic protobuf bytes:
// two requests that mean the same thing (an omitted cardType and an explicit mainland
// ID card; timeStamp as a string or a number) give the same bytes. customBizId is the
// key, not part of the payload.
func canonical(req *evidencev1.CreatePersonalEvidencePointRequest) []byte {
	c := proto.CloneOf(req)
	c.CustomBizId = ""
	if c.GetCardType() == evidencev1.CardType_CARD_TYPE_UNSPECIFIED {
		c.CardType = evidencev1.CardType_CRED_PSN_CH_IDCARD
	}
	m, _ := evidencev1.RealNameMethod_value[realNameMethod(req)]
	c.RealNameMethod = evidencev1.RealNameMethod(m)
	// Marshalling a message that was just decoded and validated cannot fail.
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return b
}

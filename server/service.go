package server

import (
	"context"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// evidenceService implements esign.evidence.v1.EvidenceService. Requests reach it
// validated (validationInterceptor).
type evidenceService struct {
	evidencev1.UnimplementedEvidenceServiceServer
	client *upstream.Client
}

// CreatePersonalEvidencePoint translates the request, makes the signed e签宝 call, and
// maps its outcome to a response or a status.
func (s *evidenceService) CreatePersonalEvidencePoint(ctx context.Context, req *evidencev1.CreatePersonalEvidencePointRequest) (*evidencev1.CreatePersonalEvidencePointResponse, error) {
	res, err := s.client.CreatePsnEvidencePoint(ctx, toUpstream(req, s.client.Revision()))
	if err != nil {
		return nil, upstreamStatus(ctx, err).Err()
	}
	return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: res.EviPointID}, nil
}

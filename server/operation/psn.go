package operation

import (
	"log/slog"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/translate"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// PersonalEvidencePoint is CreatePersonalEvidencePoint: e签宝's personal real-name
// evidence point, exactly once per customBizId. Its record keeps the bare eviPointId (as
// every release has), not JSON.
var PersonalEvidencePoint = Register(&Op[*evidencev1.CreatePersonalEvidencePointRequest, *evidencev1.CreatePersonalEvidencePointResponse,
	*upstream.PsnEvidencePoint, upstream.PsnEvidencePointResult, *upstream.PsnEvidencePointResult]{
	Method:    "CreatePersonalEvidencePoint",
	Esign:     upstream.PsnRealname,
	Translate: translate.ToUpstream,
	Key:       (*evidencev1.CreatePersonalEvidencePointRequest).GetCustomBizId,
	Canonical: func(req *evidencev1.CreatePersonalEvidencePointRequest) []byte { return translate.Canonical(req) },
	Encode:    func(res *upstream.PsnEvidencePointResult) string { return res.EviPointID },
	Decode: func(stored string) (*upstream.PsnEvidencePointResult, error) {
		return &upstream.PsnEvidencePointResult{EviPointID: stored}, nil
	},
	Respond: func(res *upstream.PsnEvidencePointResult, replayed bool) *evidencev1.CreatePersonalEvidencePointResponse {
		return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: res.EviPointID, Replayed: replayed}
	},
	Attrs: func(resp *evidencev1.CreatePersonalEvidencePointResponse) []slog.Attr {
		return []slog.Attr{slog.String("evi_point_id", resp.GetEviPointId())}
	},
})

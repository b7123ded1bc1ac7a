package service

import (
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// PsnRealname is the personal real-name evidence point (POST
// /v3/evidence/evi-point/psn-realname) as an exactly-once Operation: its record keeps
// the eviPointId, and a replay returns it.
var PsnRealname = submission.Operation[*upstream.PsnEvidencePointResult]{
	Name:   "psn-realname",
	Encode: func(r *upstream.PsnEvidencePointResult) string { return r.EviPointID },
	Decode: func(id string) *upstream.PsnEvidencePointResult {
		return &upstream.PsnEvidencePointResult{EviPointID: id}
	},
}

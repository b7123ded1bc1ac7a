package submission

import "github.com/esign-evidence/esign-evidence/upstream"

// PsnRealname is the personal real-name evidence point as an Operation: its record keeps
// the eviPointId, and a replay returns it.
var PsnRealname = Operation[*upstream.PsnEvidencePointResult]{
	Name:   OpPsnRealname,
	Encode: func(r *upstream.PsnEvidencePointResult) string { return r.EviPointID },
	Decode: func(id string) *upstream.PsnEvidencePointResult {
		return &upstream.PsnEvidencePointResult{EviPointID: id}
	},
}

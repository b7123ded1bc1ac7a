package operation

import (
	"log/slog"

	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// EvidenceChain is CreateEvidenceChain: e签宝's evidence chain, exactly once per
// customBizId. e签宝's body has no key of its own (a repeat creates and bills a second
// chain), so the caller's key is the service's alone: it is never sent to e签宝.
var EvidenceChain = Register(&Op[*evidencev1.CreateEvidenceChainRequest, *evidencev1.CreateEvidenceChainResponse,
	*upstream.EvidenceChain, upstream.EvidenceChainResult, *upstream.EvidenceChainResult]{
	Method: "CreateEvidenceChain",
	Esign:  upstream.EviChainCreate,
	Translate: func(req *evidencev1.CreateEvidenceChainRequest, _ upstream.Revision) *upstream.EvidenceChain {
		c := &upstream.EvidenceChain{TemplateID: req.GetTemplateId(), Name: req.GetName(),
			Points: make([]upstream.ChainPoint, 0, len(req.GetPoints()))}
		for _, p := range req.GetPoints() {
			c.Points = append(c.Points, upstream.ChainPoint{EviPointType: int(p.GetEviPointType()), EviPointID: p.GetEviPointId()})
		}
		return c
	},
	Key: (*evidencev1.CreateEvidenceChainRequest).GetCustomBizId,
	Canonical: func(req *evidencev1.CreateEvidenceChainRequest) []byte {
		c := proto.CloneOf(req)
		c.CustomBizId = ""
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		return b
	},
	Respond: func(res *upstream.EvidenceChainResult, replayed bool) *evidencev1.CreateEvidenceChainResponse {
		out := &evidencev1.CreateEvidenceChainResponse{EviChainId: res.EviChainID, BillPointIdCount: int32(res.BillPointIDCount), Replayed: replayed}
		for _, p := range res.BillPoints {
			out.BillPoints = append(out.BillPoints, &evidencev1.EvidenceChainPoint{EviPointType: int32(p.EviPointType), EviPointId: p.EviPointID})
		}
		return out
	},
	Attrs: func(resp *evidencev1.CreateEvidenceChainResponse) []slog.Attr {
		return []slog.Attr{slog.String("evi_chain_id", resp.GetEviChainId()), slog.Int("bill_point_id_count", int(resp.GetBillPointIdCount()))}
	},
})

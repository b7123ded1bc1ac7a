package esignsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// The tallies the evidence-chain handler keeps (Simulator.Tally).
const (
	// TallyChains counts the evidence chains created.
	TallyChains = "evi-chain-create.chains"
	// TallyBilledPoints counts the points e签宝 billed for them (types 1, 3 and 5, once
	// per chain created: a repeat bills again).
	TallyBilledPoints = "evi-chain-create.billed_points"
)

func init() { simulates(upstream.EviChainCreate, (*Simulator).createEvidenceChain) }

// createEvidenceChain answers POST /v3/evidence/evi-chain/create: it checks the body by
// e签宝's rules (1435002 naming the problem), then creates a chain with a C… ID and bills
// its points of types 1, 3 and 5.
func (s *Simulator) createEvidenceChain(w http.ResponseWriter, _ *http.Request, body []byte, f *Fault, rec Received) {
	var c struct {
		TemplateID *string               `json:"templateId"`
		Name       *string               `json:"name"`
		Points     []upstream.ChainPoint `json:"points"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	msg := ""
	switch err := dec.Decode(&c); {
	case err != nil:
		msg = "请求体格式错误"
	default:
		msg = checkChain(c.TemplateID, c.Name, c.Points)
	}
	if msg != "" {
		rec.Status, rec.Code = http.StatusOK, upstream.CodeParameterError
		s.record(rec)
		writeJSON(w, http.StatusOK, map[string]any{"code": upstream.CodeParameterError, "message": "参数错误: " + msg, "data": nil})
		return
	}
	id := fmt.Sprintf("C%019d", s.idEpoch+uint64(s.tally(TallyChains, 1)))
	billed := []upstream.ChainPoint{}
	for _, p := range c.Points {
		if p.Billed() {
			billed = append(billed, p)
		}
	}
	s.tally(TallyBilledPoints, int64(len(billed)))
	rec.Status, rec.EviPointID = http.StatusOK, id
	s.record(rec)
	payload := map[string]any{"code": 0, "message": "成功", "data": map[string]any{
		"eviChainId": id, "billPointIdCount": len(billed), "billPoints": billed}}
	if f != nil && f.SlowBody > 0 {
		writeSlow(w, payload, f.SlowBody)
		return
	}
	writeJSON(w, http.StatusOK, payload)
}

// checkChain returns "" for a chain e签宝 accepts, else what it says is wrong.
func checkChain(templateID, name *string, points []upstream.ChainPoint) string {
	switch {
	case templateID == nil || strings.TrimSpace(*templateID) == "":
		return "templateId不能为空"
	case name == nil || strings.TrimSpace(*name) == "":
		return "name不能为空"
	case len(points) == 0:
		return "points不能为空"
	case len(points) > upstream.MaxChainPoints:
		return "points最多100个"
	}
	seen := map[string]bool{}
	for _, p := range points {
		switch p.EviPointType {
		case upstream.ChainPointEvidence:
			if !strings.HasPrefix(p.EviPointID, "P") && !strings.HasPrefix(p.EviPointID, "H") {
				return "证据点ID格式错误"
			}
		case upstream.ChainPointSignService, upstream.ChainPointIdentityFlow, upstream.ChainPointSignFlow:
		default:
			return "eviPointType不支持"
		}
		if strings.TrimSpace(p.EviPointID) == "" {
			return "eviPointId不能为空"
		}
		if seen[p.EviPointID] {
			return "eviPointId重复"
		}
		seen[p.EviPointID] = true
	}
	return ""
}

package upstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// PathEviChainCreate creates an evidence chain (创建证据链).
const PathEviChainCreate = "/v3/evidence/evi-chain/create"

// EviChainCreate groups evidence (an evidence point, a signing, an identity flow) into a
// new chain. Every call creates one and bills its points of types 1, 3 and 5 again;
// e签宝's body has no key it could de-duplicate on.
var EviChainCreate = Register(Operation{Name: "evi-chain-create", Method: http.MethodPost, Path: PathEviChainCreate,
	Kind: KindCreate, Makes: "the evidence chain"})

// The evidence-point types of a chain's points (eviPointType), as e签宝 documents them.
const (
	// ChainPointEvidence is an evidence point of the evi-point calls (P… or H…).
	ChainPointEvidence = 0
	// ChainPointSignService is a signServiceId of e签宝's signing SDK (billed).
	ChainPointSignService = 1
	// ChainPointIdentityFlow is an identity-verification flow's serviceId/flowId (billed).
	ChainPointIdentityFlow = 3
	// ChainPointSignFlow is a SaaS API flowId/signFlowId of a completed signing (billed).
	ChainPointSignFlow = 5
	// MaxChainPoints is how many points a chain holds at most.
	MaxChainPoints = 100
)

// ChainPoint is one point of an evidence chain.
type ChainPoint struct {
	EviPointType int    `json:"eviPointType"`
	EviPointID   string `json:"eviPointId"`
}

// Billed reports whether e签宝 bills the point when a chain is created with it.
func (p ChainPoint) Billed() bool {
	return p.EviPointType == ChainPointSignService || p.EviPointType == ChainPointIdentityFlow || p.EviPointType == ChainPointSignFlow
}

// EvidenceChain is the body of POST /v3/evidence/evi-chain/create.
type EvidenceChain struct {
	TemplateID string       `json:"templateId"`
	Name       string       `json:"name"`
	Points     []ChainPoint `json:"points"`
}

// Check applies e签宝's own rules, the same under every revision: a template and a name,
// 1 to 100 points of documented types, each with an ID.
func (c *EvidenceChain) Check(Revision) error {
	var fields []string
	if c.TemplateID == "" {
		fields = append(fields, "templateId")
	}
	if c.Name == "" {
		fields = append(fields, "name")
	}
	if len(c.Points) == 0 || len(c.Points) > MaxChainPoints {
		fields = append(fields, "points")
	}
	for i, p := range c.Points {
		switch p.EviPointType {
		case ChainPointEvidence, ChainPointSignService, ChainPointIdentityFlow, ChainPointSignFlow:
		default:
			fields = append(fields, "points["+strconv.Itoa(i)+"].eviPointType")
		}
		if p.EviPointID == "" {
			fields = append(fields, "points["+strconv.Itoa(i)+"].eviPointId")
		}
	}
	if len(fields) > 0 {
		return &InvalidRequestError{Fields: fields, Reason: "e签宝 requires a templateId, a name and 1 to 100 points of type 0, 1, 3 or 5, each with an ID"}
	}
	return nil
}

// Marshal encodes the body once, as it is signed and sent (Chinese text as UTF-8).
func (c *EvidenceChain) Marshal(Revision) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, &InvalidRequestError{Reason: "cannot encode the evidence chain"}
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// PersonalValues are the chain's caller-supplied texts, masked out of any e签宝 message
// that quotes them: its name may carry a person's name.
func (c *EvidenceChain) PersonalValues() []string {
	v := []string{c.Name, c.TemplateID}
	for _, p := range c.Points {
		v = append(v, p.EviPointID)
	}
	return v
}

// EvidenceChainResult is e签宝's answer to a created chain.
type EvidenceChainResult struct {
	// EviChainID is the chain's ID, starting with C.
	EviChainID string `json:"eviChainId"`
	// BillPointIDCount is how many points this call billed.
	BillPointIDCount int `json:"billPointIdCount"`
	// BillPoints are the points this call billed.
	BillPoints []ChainPoint `json:"billPoints"`
	// TraceID is e签宝's trace ID for the call, when it sent one.
	TraceID string `json:"-"`
}

// Complete reports a success that carries no chain ID.
func (r *EvidenceChainResult) Complete() string {
	if r.EviChainID == "" {
		return "success without an eviChainId"
	}
	return ""
}

// SetTrace keeps e签宝's trace ID of the call.
func (r *EvidenceChainResult) SetTrace(id string) { r.TraceID = id }

// EsignTraceID returns e签宝's trace ID of the call that created the chain.
func (r *EvidenceChainResult) EsignTraceID() string { return r.TraceID }

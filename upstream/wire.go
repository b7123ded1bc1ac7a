package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Revision selects which revision of e签宝's evidence-point API the client speaks.
type Revision string

const (
	// RevisionSeed is the revision of the API reference this project was built from:
	// timeStamp in epoch milliseconds, no certAgreementRead* fields. The default.
	RevisionSeed Revision = "seed"
	// Revision2025 is e签宝's 2025 revision of the same page: timeStamp as
	// "yyyy-MM-dd HH:mm:ss" Beijing time, and six certAgreementRead* fields required.
	Revision2025 Revision = "2025"
)

// ParseRevision accepts "seed" or "2025".
func ParseRevision(s string) (Revision, error) {
	switch Revision(s) {
	case RevisionSeed, Revision2025:
		return Revision(s), nil
	}
	return "", fmt.Errorf("unknown e签宝 API revision %q (want %q or %q)", s, RevisionSeed, Revision2025)
}

// beijing is China Standard Time. China has kept UTC+8 without daylight saving since
// 1991, so a fixed zone is exact and needs no tzdata on the machine.
var beijing = time.FixedZone("CST", 8*60*60)

// BeijingLayout is the 2025 revision's time format, "yyyy-MM-dd HH:mm:ss".
const BeijingLayout = "2006-01-02 15:04:05"

// Values of realNameMethod (实名方式).
const (
	MethodThreeElements = "THREEELEMENTS"
	MethodBankCardFour  = "BANKCARDFOUR"
	MethodFace          = "FACE"
)

// CardTypeMainlandID is e签宝's default card type, the mainland resident ID card.
const CardTypeMainlandID = "CRED_PSN_CH_IDCARD"

// PsnEvidencePoint is the body of POST /v3/evidence/evi-point/psn-realname, field for
// field as e签宝 documents it. Strings left empty are optional fields not given and are
// omitted from the JSON, never sent empty.
type PsnEvidencePoint struct {
	EviName        string
	CustomBizID    string
	RealNameMethod string
	// TimeStamp is when verification completed; it is sent in the revision's format.
	TimeStamp          time.Time
	Name               string
	CardNo             string
	CardType           string
	CardPortrait       string
	CardNationalEmblem string
	Mark               string
	// Exactly one of the three blocks is set.
	ThreeElements *ThreeElements
	BankCardFour  *BankCardFour
	Face          *Face
	// CertAgreementRead is required by Revision2025 and must be nil for RevisionSeed,
	// whose API knows no such fields.
	CertAgreementRead *CertAgreementRead
}

// ThreeElements is the operator three-factor block (运营商三要素实名信息).
type ThreeElements struct {
	InfoVerifySupplier string `json:"infoVerifySupplier"`
	VerifyTime         string `json:"verifyTime"`
	VerifySerialNumber string `json:"verifySerialNumber"`
	Mobile             string `json:"mobile"`
	SMSCode            string `json:"smsCode"`
	SMSSupplier        string `json:"smsSupplier"`
}

// BankCardFour is the bank-card four-factor block (银行卡四要素实名信息).
type BankCardFour struct {
	InfoVerifySupplier string `json:"infoVerifySupplier"`
	VerifyTime         string `json:"verifyTime"`
	VerifySerialNumber string `json:"verifySerialNumber"`
	OpeningBank        string `json:"openingBank"`
	BankCard           string `json:"bankCard"`
	Mobile             string `json:"mobile"`
	SMSCode            string `json:"smsCode"`
	SMSSupplier        string `json:"smsSupplier"`
}

// Face is the face-verification block (人脸认证实名信息).
type Face struct {
	InfoVerifySupplier    string `json:"infoVerifySupplier"`
	VerifyTime            string `json:"verifyTime"`
	VerifySerialNumber    string `json:"verifySerialNumber"`
	FaceImage             string `json:"faceImage"`
	FaceImageSimilarScore string `json:"faceImageSimilarScore"`
	FaceLiveDetectScore   string `json:"faceLiveDetectScore"`
}

// CertAgreementRead records that the person read e签宝's digital-certificate agreement
// (2025 revision).
type CertAgreementRead struct {
	Title   string `json:"certAgreementReadTitle,omitempty"`
	Version string `json:"certAgreementReadVersion,omitempty"`
	Hash    string `json:"certAgreementReadHash,omitempty"`
	// Time is "yyyy-MM-dd HH:mm:ss".
	Time string `json:"certAgreementReadTime,omitempty"`
	// Type is CHECK or CLICK.
	Type string `json:"certAgreementReadType,omitempty"`
	IP   string `json:"certAgreementReadIP,omitempty"`
}

// missing lists the JSON names of the fields left empty.
func (c *CertAgreementRead) missing() []string {
	if c == nil {
		c = &CertAgreementRead{}
	}
	var m []string
	for _, f := range []struct{ name, v string }{
		{"certAgreementReadTitle", c.Title},
		{"certAgreementReadVersion", c.Version},
		{"certAgreementReadHash", c.Hash},
		{"certAgreementReadTime", c.Time},
		{"certAgreementReadType", c.Type},
		{"certAgreementReadIP", c.IP},
	} {
		if strings.TrimSpace(f.v) == "" {
			m = append(m, f.name)
		}
	}
	return m
}

// psnBody is the JSON shape of PsnEvidencePoint, in e签宝's field order.
type psnBody struct {
	EviName            string         `json:"eviName"`
	CustomBizID        string         `json:"customBizId,omitempty"`
	RealNameMethod     string         `json:"realNameMethod"`
	TimeStamp          any            `json:"timeStamp"`
	Name               string         `json:"name"`
	CardNo             string         `json:"cardNo"`
	CardType           string         `json:"cardType"`
	CardPortrait       string         `json:"cardPortrait"`
	CardNationalEmblem string         `json:"cardNationalEmblem"`
	Mark               string         `json:"mark,omitempty"`
	ThreeElements      *ThreeElements `json:"threeElements,omitempty"`
	BankCardFour       *BankCardFour  `json:"bankCardFour,omitempty"`
	Face               *Face          `json:"face,omitempty"`
	*CertAgreementRead
}

// Check returns an *InvalidRequestError naming the fields if e签宝's revision rev needs
// what p lacks (the 2025 revision requires the six certAgreementRead* fields; the seed
// revision has none). It is the one place these rules live: the service runs it before
// it claims a customBizId or spends a quota token, and Marshal runs it again.
func (p *PsnEvidencePoint) Check(rev Revision) error {
	switch rev {
	case RevisionSeed, "":
		if p.CertAgreementRead != nil {
			return &InvalidRequestError{Reason: "the seed API revision has no certAgreementRead* fields; configure the 2025 revision to send them"}
		}
	case Revision2025:
		if m := p.CertAgreementRead.missing(); len(m) > 0 {
			return &InvalidRequestError{Fields: m, Reason: "required by e签宝's 2025 API revision"}
		}
	default:
		return &InvalidRequestError{Reason: fmt.Sprintf("unknown API revision %q", string(rev))}
	}
	return nil
}

// Marshal returns the exact JSON body sent for p under revision rev. It is called once
// per call: the bytes it returns are hashed, signed and sent as they are.
//
// Under RevisionSeed, timeStamp is sent as a JSON number. The reference declares the
// field `long`; its example happens to quote it as a string, which e签宝's Java
// deserialiser accepts only by coercing a string to a long, while a number is what a
// `long` is everywhere. Under Revision2025 it is the string "yyyy-MM-dd HH:mm:ss" in
// Beijing time, and the six certAgreementRead* fields are required: a body without them
// is refused (Check), before anything is sent, naming the missing fields.
func (p *PsnEvidencePoint) Marshal(rev Revision) ([]byte, error) {
	b := psnBody{
		EviName:            p.EviName,
		CustomBizID:        p.CustomBizID,
		RealNameMethod:     p.RealNameMethod,
		Name:               p.Name,
		CardNo:             p.CardNo,
		CardType:           p.CardType,
		CardPortrait:       p.CardPortrait,
		CardNationalEmblem: p.CardNationalEmblem,
		Mark:               p.Mark,
		ThreeElements:      p.ThreeElements,
		BankCardFour:       p.BankCardFour,
		Face:               p.Face,
	}
	if b.CardType == "" {
		b.CardType = CardTypeMainlandID
	}
	if err := p.Check(rev); err != nil {
		return nil, err
	}
	switch rev {
	case RevisionSeed, "":
		b.TimeStamp = p.TimeStamp.UnixMilli()
	case Revision2025:
		b.TimeStamp = p.TimeStamp.In(beijing).Format(BeijingLayout)
		b.CertAgreementRead = p.CertAgreementRead
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Send Chinese text and <>& as plain UTF-8, as every e签宝 client does; the bytes are
	// hashed after encoding, so either form would sign correctly, but plain is smaller.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, &InvalidRequestError{Reason: "cannot encode the body"}
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// PersonalValues returns the values in p that are personal data, so that an e签宝 error
// message quoting one of them can be masked before it goes anywhere.
func (p *PsnEvidencePoint) PersonalValues() []string {
	v := []string{p.Name, p.CardNo, p.CardPortrait, p.CardNationalEmblem}
	if t := p.ThreeElements; t != nil {
		v = append(v, t.Mobile, t.SMSCode)
	}
	if b := p.BankCardFour; b != nil {
		v = append(v, b.BankCard, b.Mobile, b.SMSCode)
	}
	if f := p.Face; f != nil {
		v = append(v, f.FaceImage)
	}
	if c := p.CertAgreementRead; c != nil {
		v = append(v, c.IP)
	}
	return v
}

// PsnEvidencePointResult is e签宝's answer to a successful call.
type PsnEvidencePointResult struct {
	// EviPointID is the evidence-point ID, starting with P or H.
	EviPointID string `json:"eviPointId"`
	// TraceID is e签宝's trace ID for the call, when it sent one.
	TraceID string `json:"-"`
}

// Complete reports a success that carries no evidence-point ID.
func (r *PsnEvidencePointResult) Complete() string {
	if r.EviPointID == "" {
		return "success without an eviPointId"
	}
	return ""
}

// SetTrace keeps e签宝's trace ID of the call.
func (r *PsnEvidencePointResult) SetTrace(id string) { r.TraceID = id }

// EsignTraceID returns e签宝's trace ID of the call that created the evidence point.
func (r *PsnEvidencePointResult) EsignTraceID() string { return r.TraceID }

// Package translate is the one place where the contract (esign.evidence.v1) meets e签宝's
// wire types (package upstream): contract requests become wire requests here, with the
// defaults applied, and nowhere else.
package translate

import (
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// ToUpstream translates a validated contract request into e签宝's wire type, field by
// field. It is the only place where the two meet.
//
// Defaults are applied here: an omitted realNameMethod follows from the block that is
// set, an omitted cardType is the mainland resident ID card. The certAgreementRead*
// fields go to e签宝 only under the 2025 revision; the seed revision has no such fields,
// so a caller that already sends them is not refused for it.
func ToUpstream(req *evidencev1.CreatePersonalEvidencePointRequest, rev upstream.Revision) *upstream.PsnEvidencePoint {
	p := &upstream.PsnEvidencePoint{
		EviName:            req.GetEviName(),
		CustomBizID:        req.GetCustomBizId(),
		RealNameMethod:     realNameMethod(req).String(),
		TimeStamp:          time.UnixMilli(req.GetTimeStamp()),
		Name:               req.GetName(),
		CardNo:             req.GetCardNo(),
		CardType:           cardType(req.GetCardType()),
		CardPortrait:       req.GetCardPortrait(),
		CardNationalEmblem: req.GetCardNationalEmblem(),
		Mark:               req.GetMark(),
	}
	switch b := req.GetVerification().(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest_ThreeElements:
		p.ThreeElements = &upstream.ThreeElements{
			InfoVerifySupplier: b.ThreeElements.GetInfoVerifySupplier(),
			VerifyTime:         b.ThreeElements.GetVerifyTime(),
			VerifySerialNumber: b.ThreeElements.GetVerifySerialNumber(),
			Mobile:             b.ThreeElements.GetMobile(),
			SMSCode:            b.ThreeElements.GetSmsCode(),
			SMSSupplier:        b.ThreeElements.GetSmsSupplier(),
		}
	case *evidencev1.CreatePersonalEvidencePointRequest_BankCardFour:
		p.BankCardFour = &upstream.BankCardFour{
			InfoVerifySupplier: b.BankCardFour.GetInfoVerifySupplier(),
			VerifyTime:         b.BankCardFour.GetVerifyTime(),
			VerifySerialNumber: b.BankCardFour.GetVerifySerialNumber(),
			OpeningBank:        b.BankCardFour.GetOpeningBank(),
			BankCard:           b.BankCardFour.GetBankCard(),
			Mobile:             b.BankCardFour.GetMobile(),
			SMSCode:            b.BankCardFour.GetSmsCode(),
			SMSSupplier:        b.BankCardFour.GetSmsSupplier(),
		}
	case *evidencev1.CreatePersonalEvidencePointRequest_Face:
		p.Face = &upstream.Face{
			InfoVerifySupplier:    b.Face.GetInfoVerifySupplier(),
			VerifyTime:            b.Face.GetVerifyTime(),
			VerifySerialNumber:    b.Face.GetVerifySerialNumber(),
			FaceImage:             b.Face.GetFaceImage(),
			FaceImageSimilarScore: b.Face.GetFaceImageSimilarScore(),
			FaceLiveDetectScore:   b.Face.GetFaceLiveDetectScore(),
		}
	}
	if rev == upstream.Revision2025 && hasCertAgreement(req) {
		p.CertAgreementRead = &upstream.CertAgreementRead{
			Title:   req.GetCertAgreementReadTitle(),
			Version: req.GetCertAgreementReadVersion(),
			Hash:    req.GetCertAgreementReadHash(),
			Time:    req.GetCertAgreementReadTime(),
			Type:    req.GetCertAgreementReadType(),
			IP:      req.GetCertAgreementReadIp(),
		}
	}
	return p
}

func hasCertAgreement(req *evidencev1.CreatePersonalEvidencePointRequest) bool {
	return req.GetCertAgreementReadTitle() != "" || req.GetCertAgreementReadVersion() != "" ||
		req.GetCertAgreementReadHash() != "" || req.GetCertAgreementReadTime() != "" ||
		req.GetCertAgreementReadType() != "" || req.GetCertAgreementReadIp() != ""
}

// realNameMethod is the request's method, or the one its block implies when omitted.
// The enum's value names are e签宝's own spellings.
func realNameMethod(req *evidencev1.CreatePersonalEvidencePointRequest) evidencev1.RealNameMethod {
	switch req.GetVerification().(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest_ThreeElements:
		return evidencev1.RealNameMethod_THREEELEMENTS
	case *evidencev1.CreatePersonalEvidencePointRequest_BankCardFour:
		return evidencev1.RealNameMethod_BANKCARDFOUR
	case *evidencev1.CreatePersonalEvidencePointRequest_Face:
		return evidencev1.RealNameMethod_FACE
	}
	// Unreachable for a validated request (a block is required); send what was given.
	return req.GetRealNameMethod()
}

// cardType is e签宝's spelling of t; the enum's value names are e签宝's own.
func cardType(t evidencev1.CardType) string {
	if t == evidencev1.CardType_CARD_TYPE_UNSPECIFIED {
		return upstream.CardTypeMainlandID
	}
	return t.String()
}

// Canonical is the request with every default applied, in deterministic protobuf bytes:
// two requests that mean the same thing (an omitted cardType and an explicit mainland
// ID card; timeStamp as a string or a number) give the same bytes. customBizId is the
// key, not part of the payload.
func Canonical(req *evidencev1.CreatePersonalEvidencePointRequest) []byte {
	c := proto.CloneOf(req)
	c.CustomBizId = ""
	if c.GetCardType() == evidencev1.CardType_CARD_TYPE_UNSPECIFIED {
		c.CardType = evidencev1.CardType_CRED_PSN_CH_IDCARD
	}
	c.RealNameMethod = realNameMethod(req)
	// Marshalling a message that was just decoded and validated cannot fail.
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return b
}

// ToFileUpload describes an upload to e签宝: the file's name, its declared content type
// (from the name when the caller gave none: .pdf is PDF, anything else octet-stream), and
// the size and MD5 of the bytes body reads.
func ToFileUpload(info *evidencev1.FileInfo, size int64, contentMD5 string, body io.Reader) upstream.FileUpload {
	contentType := info.GetContentType()
	if contentType == "" {
		contentType = upstream.ContentTypeFor(info.GetFileName())
	}
	return upstream.FileUpload{Name: info.GetFileName(), ContentType: contentType, Size: size, ContentMD5: contentMD5, Body: body}
}

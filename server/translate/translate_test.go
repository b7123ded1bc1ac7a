package translate

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/upstream"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func loadSeed(t testing.TB) *evidencev1.CreatePersonalEvidencePointRequest {
	t.Helper()
	b, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	req := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		t.Fatal(err)
	}
	return req
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\ngot  %s\nwant %s", name, got, want)
	}
}

// TestTranslateSeedGolden pins the exact bytes sent to e签宝 for the seed example.
func TestTranslateSeedGolden(t *testing.T) {
	body, err := ToUpstream(loadSeed(t), upstream.RevisionSeed).Marshal(upstream.RevisionSeed)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "seed_upstream_body.json", body)
}

func TestTranslate2025Golden(t *testing.T) {
	req := loadSeed(t)
	req.CertAgreementReadTitle = "《数字证书服务协议》"
	req.CertAgreementReadVersion = "20250801"
	req.CertAgreementReadHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	req.CertAgreementReadTime = "2025-03-24 17:30:00"
	req.CertAgreementReadType = "CHECK"
	req.CertAgreementReadIp = "203.0.113.10"
	body, err := ToUpstream(req, upstream.Revision2025).Marshal(upstream.Revision2025)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "seed_upstream_body_2025.json", body)
}

func TestTranslateDefaults(t *testing.T) {
	req := loadSeed(t)
	req.RealNameMethod = evidencev1.RealNameMethod_REAL_NAME_METHOD_UNSPECIFIED
	req.CardType = evidencev1.CardType_CARD_TYPE_UNSPECIFIED
	req.CertAgreementReadTitle = "under the seed revision these are not sent"
	p := ToUpstream(req, upstream.RevisionSeed)
	if p.RealNameMethod != "THREEELEMENTS" || p.CardType != "CRED_PSN_CH_IDCARD" || p.CertAgreementRead != nil {
		t.Errorf("defaults not applied: %+v", p)
	}
	if !p.TimeStamp.Equal(time.UnixMilli(1742809059000)) {
		t.Errorf("timeStamp %v", p.TimeStamp)
	}
	req.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: &evidencev1.Face{
		InfoVerifySupplier: "s", VerifyTime: "t", VerifySerialNumber: "n", FaceImage: "f", FaceImageSimilarScore: "1", FaceLiveDetectScore: "2",
	}}
	p = ToUpstream(req, upstream.RevisionSeed)
	if p.RealNameMethod != "FACE" || p.Face == nil || p.Face.FaceLiveDetectScore != "2" || p.ThreeElements != nil {
		t.Errorf("face block: %+v", p)
	}
	req.Verification = &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: &evidencev1.BankCardFour{
		InfoVerifySupplier: "s", VerifyTime: "t", VerifySerialNumber: "n", OpeningBank: "o", BankCard: "6222021234567890", Mobile: "13800001111", SmsCode: "1", SmsSupplier: "x",
	}}
	p = ToUpstream(req, upstream.RevisionSeed)
	if p.RealNameMethod != "BANKCARDFOUR" || p.BankCardFour.BankCard != "6222021234567890" || p.BankCardFour.OpeningBank != "o" {
		t.Errorf("bank block: %+v", p)
	}
}

package validation_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

// seedJSON is e签宝's request example, byte for byte as the API reference prints it.
func seedJSON(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seedRequest(t testing.TB) *evidencev1.CreatePersonalEvidencePointRequest {
	t.Helper()
	req := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(seedJSON(t), req); err != nil {
		t.Fatalf("the seed example does not decode: %v", err)
	}
	return req
}

func newValidator(t testing.TB) *validation.Validator {
	t.Helper()
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSeedExampleIsValid(t *testing.T) {
	req := seedRequest(t)
	if got := req.GetRealNameMethod(); got != evidencev1.RealNameMethod_THREEELEMENTS {
		t.Errorf("realNameMethod = %v", got)
	}
	if got := req.GetCardType(); got != evidencev1.CardType_CRED_PSN_CH_IDCARD {
		t.Errorf("cardType = %v", got)
	}
	if got := req.GetTimeStamp(); got != 1742809059000 {
		t.Errorf("timeStamp = %d", got)
	}
	if got := req.GetThreeElements().GetMobile(); got != "19800002222" {
		t.Errorf("threeElements.mobile = %q", got)
	}
	if err := newValidator(t).Validate(req); err != nil {
		t.Fatalf("seed example rejected: %v", err)
	}
}

type req = evidencev1.CreatePersonalEvidencePointRequest

func bankCardFour() *evidencev1.BankCardFour {
	return &evidencev1.BankCardFour{
		InfoVerifySupplier: "供应商", VerifyTime: "20240324", VerifySerialNumber: "No1",
		OpeningBank: "中国银行", BankCard: "6222021234567890123", Mobile: "13800001111",
		SmsCode: "8888", SmsSupplier: "短信商",
	}
}

func face() *evidencev1.Face {
	return &evidencev1.Face{
		InfoVerifySupplier: "供应商", VerifyTime: "20240324", VerifySerialNumber: "No1",
		FaceImage: "0123456789abcdef0123456789abcdef", FaceImageSimilarScore: "95.5", FaceLiveDetectScore: "99",
	}
}

func withCertAgreement(r *req) {
	r.CertAgreementReadTitle = "《数字证书服务协议》"
	r.CertAgreementReadVersion = "20250801"
	r.CertAgreementReadHash = strings.Repeat("ab", 32)
	r.CertAgreementReadTime = "2025-08-01 12:30:59"
	r.CertAgreementReadType = "CLICK"
	r.CertAgreementReadIp = "2001:db8::1"
}

// aValidIDWithX is a mainland ID number whose check character is X.
const aValidIDWithX = "11010519491231002X"

func TestValidRequests(t *testing.T) {
	cases := map[string]func(r *req){
		"eviName of 64 Chinese characters": func(r *req) { r.EviName = strings.Repeat("证", 64) },
		"eviName of 32 characters outside the BMP (64 UTF-16 units)": func(r *req) {
			r.EviName = strings.Repeat("𠀀", 32)
		},
		"customBizId of 36 characters":        func(r *req) { r.CustomBizId = strings.Repeat("a", 36) },
		"customBizId with spaces and Chinese": func(r *req) { r.CustomBizId = "订单 42/a_b-c.d:e" },
		"realNameMethod omitted":              func(r *req) { r.RealNameMethod = evidencev1.RealNameMethod_REAL_NAME_METHOD_UNSPECIFIED },
		"cardType omitted":                    func(r *req) { r.CardType = evidencev1.CardType_CARD_TYPE_UNSPECIFIED },
		"mainland ID with X check":            func(r *req) { r.CardNo = aValidIDWithX },
		"mainland ID with x check":            func(r *req) { r.CardNo = strings.ToLower(aValidIDWithX) },
		"legacy 15-digit mainland ID":         func(r *req) { r.CardNo = "130401960101839" },
		"Hong Kong permit, 8 digits": func(r *req) {
			r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_HONGKONG, "H12345678"
		},
		"Hong Kong permit, 10 digits": func(r *req) {
			r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_HONGKONG, "h1234567890"
		},
		"Macao permit": func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_MACAO, "M12345678" },
		"Taiwan permit": func(r *req) {
			r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_TWCARD, "1234567890"
		},
		"passport": func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_PASSPORT, "E12345678" },
		"foreign permanent residence card, not checked": func(r *req) {
			r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_FOREIGN, "USA-1234 56"
		},
		"bank-card four-factor block": func(r *req) {
			r.RealNameMethod = evidencev1.RealNameMethod_BANKCARDFOUR
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: bankCardFour()}
		},
		"face block": func(r *req) {
			r.RealNameMethod = evidencev1.RealNameMethod_FACE
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: face()}
		},
		"face block without method": func(r *req) {
			r.RealNameMethod = 0
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: face()}
		},
		"all six certAgreementRead fields":       withCertAgreement,
		"certAgreementRead with an IPv4 address": func(r *req) { withCertAgreement(r); r.CertAgreementReadIp = "203.0.113.9" },
		"timeStamp a minute in the future (clock skew)": func(r *req) {
			r.TimeStamp = time.Now().Add(time.Minute).UnixMilli()
		},
	}
	v := newValidator(t)
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := seedRequest(t)
			mutate(r)
			if err := v.Validate(r); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// A number outside an enum (what a gRPC caller with a newer or wrong contract sends) is
// refused naming the values the contract accepts, as REST's decoder does for a name.
func TestUnknownEnumNumberListsAcceptedValues(t *testing.T) {
	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	r := seedRequest(t)
	r.CardType = 99
	r.RealNameMethod = 42
	var verr *validation.Error
	if !errors.As(v.Validate(r), &verr) {
		t.Fatal("an unknown enum number passed")
	}
	want := map[string][]string{
		"cardType":       {"CRED_PSN_CH_IDCARD", "CRED_PSN_CH_HONGKONG", "CRED_PSN_CH_MACAO", "CRED_PSN_CH_TWCARD", "CRED_PSN_PASSPORT", "CRED_PSN_FOREIGN", "CRED_PSN_OTHER"},
		"realNameMethod": {"THREEELEMENTS", "BANKCARDFOUR", "FACE"},
	}
	for _, fv := range verr.Violations {
		names, ok := want[fv.Field]
		if !ok || fv.Rule != "enum.defined_only" {
			continue
		}
		delete(want, fv.Field)
		for _, n := range names {
			if !strings.Contains(fv.Description, n) {
				t.Errorf("%s: %q does not name %s", fv.Field, fv.Description, n)
			}
		}
		if strings.Contains(fv.Description, "UNSPECIFIED") {
			t.Errorf("%s: %q offers the UNSPECIFIED placeholder", fv.Field, fv.Description)
		}
	}
	for f := range want {
		t.Errorf("no enum.defined_only violation for %s: %+v", f, verr.Violations)
	}
}

func TestInvalidRequests(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(r *req)
		field  string // the field path the violation must name
		rule   string // the rule id it must report
		secret string // a value that must not appear in the error
	}{
		{"eviName of 65 Chinese characters", func(r *req) { r.EviName = strings.Repeat("证", 65) }, "eviName", "string.max_len", ""},
		{"eviName of 33 characters outside the BMP (66 UTF-16 units)", func(r *req) { r.EviName = strings.Repeat("𠀀", 33) }, "eviName", validation.RuleMaxLenUTF16, ""},
		{"eviName missing", func(r *req) { r.EviName = "" }, "eviName", "required", ""},
		{"eviName of ASCII spaces", func(r *req) { r.EviName = "   " }, "eviName", "string.not_blank", ""},
		{"eviName of ideographic spaces", func(r *req) { r.EviName = "\u3000\u3000" }, "eviName", "string.not_blank", ""},
		{"customBizId of 37 characters", func(r *req) { r.CustomBizId = strings.Repeat("a", 37) }, "customBizId", "string.max_len", ""},
		{"customBizId with NUL", func(r *req) { r.CustomBizId = "order\x0042" }, "customBizId", "string.printable", ""},
		{"customBizId with a newline", func(r *req) { r.CustomBizId = "order-42\n" }, "customBizId", "string.printable", ""},
		{"customBizId with DEL", func(r *req) { r.CustomBizId = "order\x7f42" }, "customBizId", "string.printable", ""},
		{"customBizId with a C1 control", func(r *req) { r.CustomBizId = "order\u008542" }, "customBizId", "string.printable", ""},
		{"name missing", func(r *req) { r.Name = "" }, "name", "required", ""},
		{"name blank", func(r *req) { r.Name = " \t" }, "name", "string.not_blank", ""},
		{"cardNo missing", func(r *req) { r.CardNo = "" }, "cardNo", "required", ""},
		{"cardPortrait missing", func(r *req) { r.CardPortrait = "" }, "cardPortrait", "required", ""},
		{"cardNationalEmblem missing", func(r *req) { r.CardNationalEmblem = "" }, "cardNationalEmblem", "required", ""},
		{"mainland ID with a wrong check digit", func(r *req) { r.CardNo = "130401199601018394" }, "cardNo", validation.RuleIDCardCheckDigit, "130401199601018394"},
		{"mainland ID with X where a digit belongs", func(r *req) { r.CardNo = "13040119960101839X" }, "cardNo", validation.RuleIDCardCheckDigit, "13040119960101839X"},
		{"mainland ID of 17 digits", func(r *req) { r.CardNo = "13040119960101839" }, "cardNo", "cardNo.format", "13040119960101839"},
		{"cardType omitted means mainland ID", func(r *req) { r.CardType = 0; r.CardNo = "H12345678" }, "cardNo", "cardNo.format", "H12345678"},
		{"Hong Kong permit of 9 digits", func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_HONGKONG, "H123456789" }, "cardNo", "cardNo.format", "H123456789"},
		{"Macao permit starting with H", func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_MACAO, "H12345678" }, "cardNo", "cardNo.format", "H12345678"},
		{"Taiwan permit of 7 digits", func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_CH_TWCARD, "1234567" }, "cardNo", "cardNo.format", "1234567"},
		{"passport with punctuation", func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_PASSPORT, "E-1234567" }, "cardNo", "cardNo.format", "E-1234567"},
		{"passport of 26 characters", func(r *req) { r.CardType, r.CardNo = evidencev1.CardType_CRED_PSN_PASSPORT, strings.Repeat("A", 26) }, "cardNo", "cardNo.format", ""},
		{"cardType out of range", func(r *req) { r.CardType = 99 }, "cardType", "enum.defined_only", ""},
		{"realNameMethod out of range", func(r *req) { r.RealNameMethod = 99 }, "realNameMethod", "enum.defined_only", ""},
		{"timeStamp missing", func(r *req) { r.TimeStamp = 0 }, "timeStamp", "required", ""},
		{"timeStamp in seconds", func(r *req) { r.TimeStamp = 1742809059 }, "timeStamp", "time_stamp.epoch_millis", ""},
		{"timeStamp an hour in the future", func(r *req) { r.TimeStamp = time.Now().Add(time.Hour).UnixMilli() }, "timeStamp", "time_stamp.not_future", ""},
		{"no verification block", func(r *req) { r.Verification = nil }, "verification", "required", ""},
		{"method disagrees with block", func(r *req) { r.RealNameMethod = evidencev1.RealNameMethod_FACE }, "realNameMethod", "realNameMethod.matches_block", ""},
		{"threeElements.mobile not a mainland number", func(r *req) { r.GetThreeElements().Mobile = "12800002222" }, "threeElements.mobile", "string.pattern", "12800002222"},
		{"threeElements.mobile too short", func(r *req) { r.GetThreeElements().Mobile = "1980000222" }, "threeElements.mobile", "string.pattern", "1980000222"},
		{"threeElements.smsCode not digits", func(r *req) { r.GetThreeElements().SmsCode = "12a456" }, "threeElements.smsCode", "string.pattern", "12a456"},
		{"threeElements.infoVerifySupplier missing", func(r *req) { r.GetThreeElements().InfoVerifySupplier = "" }, "threeElements.infoVerifySupplier", "required", ""},
		{"threeElements.verifyTime blank", func(r *req) { r.GetThreeElements().VerifyTime = "\u3000" }, "threeElements.verifyTime", "string.not_blank", ""},
		{"threeElements.verifySerialNumber missing", func(r *req) { r.GetThreeElements().VerifySerialNumber = "" }, "threeElements.verifySerialNumber", "required", ""},
		{"threeElements.smsSupplier missing", func(r *req) { r.GetThreeElements().SmsSupplier = "" }, "threeElements.smsSupplier", "required", ""},
		{"bankCardFour.bankCard with letters", func(r *req) {
			b := bankCardFour()
			b.BankCard = "6222O21234567890"
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: b}
		}, "bankCardFour.bankCard", "string.pattern", "6222O21234567890"},
		{"bankCardFour.bankCard of 20 digits", func(r *req) {
			b := bankCardFour()
			b.BankCard = strings.Repeat("6", 20)
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: b}
		}, "bankCardFour.bankCard", "string.pattern", ""},
		{"bankCardFour.openingBank missing", func(r *req) {
			b := bankCardFour()
			b.OpeningBank = ""
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: b}
		}, "bankCardFour.openingBank", "required", ""},
		{"bankCardFour.mobile invalid", func(r *req) {
			b := bankCardFour()
			b.Mobile = "+8613800001111"
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: b}
		}, "bankCardFour.mobile", "string.pattern", "+8613800001111"},
		{"bankCardFour.smsCode invalid", func(r *req) {
			b := bankCardFour()
			b.SmsCode = "12 34"
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: b}
		}, "bankCardFour.smsCode", "string.pattern", "12 34"},
		{"face.faceImageSimilarScore not a number", func(r *req) {
			f := face()
			f.FaceImageSimilarScore = "high"
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: f}
		}, "face.faceImageSimilarScore", "string.pattern", ""},
		{"face.faceLiveDetectScore not a number", func(r *req) {
			f := face()
			f.FaceLiveDetectScore = "9.9.9"
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: f}
		}, "face.faceLiveDetectScore", "string.pattern", ""},
		{"face.faceImage missing", func(r *req) {
			f := face()
			f.FaceImage = ""
			r.RealNameMethod, r.Verification = 0, &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: f}
		}, "face.faceImage", "required", ""},
		{"certAgreementReadHash not SHA-256", func(r *req) { withCertAgreement(r); r.CertAgreementReadHash = strings.Repeat("g", 64) }, "certAgreementReadHash", "string.pattern", ""},
		{"certAgreementReadTime not yyyy-MM-dd HH:mm:ss", func(r *req) { withCertAgreement(r); r.CertAgreementReadTime = "2025-08-01T12:30:59" }, "certAgreementReadTime", "string.pattern", ""},
		{"certAgreementReadTime month 13", func(r *req) { withCertAgreement(r); r.CertAgreementReadTime = "2025-13-01 12:30:59" }, "certAgreementReadTime", "string.pattern", ""},
		{"certAgreementReadType not CHECK or CLICK", func(r *req) { withCertAgreement(r); r.CertAgreementReadType = "TICK" }, "certAgreementReadType", "string.in", ""},
		{"certAgreementReadIP not an address", func(r *req) { withCertAgreement(r); r.CertAgreementReadIp = "300.1.1.1" }, "certAgreementReadIP", "string.ip", ""},
		{"certAgreementReadTitle blank", func(r *req) { withCertAgreement(r); r.CertAgreementReadTitle = "  " }, "certAgreementReadTitle", "string.not_blank", ""},
		{"certAgreementReadVersion missing from the set", func(r *req) { withCertAgreement(r); r.CertAgreementReadVersion = "" }, "certAgreementReadVersion", "certAgreementReadVersion.all_or_none", ""},
	}
	v := newValidator(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := seedRequest(t)
			tc.mutate(r)
			err := v.Validate(r)
			var verr *validation.Error
			if !errors.As(err, &verr) {
				t.Fatalf("want a validation error, got %v", err)
			}
			found := false
			for _, fv := range verr.Violations {
				if fv.Field == tc.field && fv.Rule == tc.rule {
					found = true
				}
				if fv.Field == "" {
					t.Errorf("violation without a field path: %+v", fv)
				}
			}
			if !found {
				t.Errorf("want violation %s at %q, got %+v", tc.rule, tc.field, verr.Violations)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q echoes the value", err)
			}
		})
	}
}

func TestPartialCertAgreementNamesEachMissingField(t *testing.T) {
	r := seedRequest(t)
	r.CertAgreementReadTitle = "《数字证书服务协议》"
	err := newValidator(t).Validate(r)
	var verr *validation.Error
	if !errors.As(err, &verr) {
		t.Fatalf("want a validation error, got %v", err)
	}
	got := map[string]bool{}
	for _, fv := range verr.Violations {
		got[fv.Field] = true
	}
	for _, f := range []string{"certAgreementReadVersion", "certAgreementReadHash", "certAgreementReadTime", "certAgreementReadType", "certAgreementReadIP"} {
		if !got[f] {
			t.Errorf("missing %s not reported; got %+v", f, verr.Violations)
		}
	}
	if got["certAgreementReadTitle"] {
		t.Errorf("the given field is reported as missing: %+v", verr.Violations)
	}
}

func TestRequiredFieldGetsOneViolation(t *testing.T) {
	r := seedRequest(t)
	r.EviName = ""
	err := newValidator(t).Validate(r)
	var verr *validation.Error
	if !errors.As(err, &verr) || len(verr.Violations) != 1 {
		t.Fatalf("want exactly one violation, got %v", err)
	}
}

func TestOneofDescriptionNamesTheBlocks(t *testing.T) {
	r := seedRequest(t)
	r.Verification = nil
	err := newValidator(t).Validate(r)
	if err == nil || !strings.Contains(err.Error(), "threeElements, bankCardFour or face") {
		t.Fatalf("got %v", err)
	}
}

// Decoding e签宝's JSON: what protojson itself refuses before validation runs.
func TestJSONDecoding(t *testing.T) {
	t.Run("timeStamp as a number", func(t *testing.T) {
		b := strings.Replace(string(seedJSON(t)), `"1742809059000"`, `1742809059000`, 1)
		r := &req{}
		if err := protojson.Unmarshal([]byte(b), r); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(r, seedRequest(t)) {
			t.Error("number and string timeStamp decode differently")
		}
	})
	t.Run("two verification blocks", func(t *testing.T) {
		b := strings.Replace(string(seedJSON(t)), `"threeElements"`, `"face": {"faceImage": "x"}, "threeElements"`, 1)
		if err := protojson.Unmarshal([]byte(b), &req{}); err == nil {
			t.Fatal("two blocks decoded")
		}
	})
	t.Run("unknown cardType", func(t *testing.T) {
		b := strings.Replace(string(seedJSON(t)), `"CRED_PSN_CH_IDCARD"`, `"FOO"`, 1)
		if err := protojson.Unmarshal([]byte(b), &req{}); err == nil {
			t.Fatal("unknown enum value decoded")
		}
	})
}

func TestIDCardCheckChar(t *testing.T) {
	cases := map[string]byte{
		"13040119960101839": '5', // the seed's example
		"11010519491231002": 'X',
	}
	for digits, want := range cases {
		if got := validation.IDCardCheckChar(digits); got != want {
			t.Errorf("IDCardCheckChar(%s) = %c, want %c", digits, got, want)
		}
	}
}

func BenchmarkValidateSeed(b *testing.B) {
	v := newValidator(b)
	r := seedRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(r); err != nil {
			b.Fatal(err)
		}
	}
}

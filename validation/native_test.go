package validation

import (
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// The Go path (native.go) must be in use for the contract as it is: if this fails, a rule
// the Go path implements was changed in the .proto; change personalMessageRules /
// timeStampRules and the Go code with it (the CEL is evaluated meanwhile).
func TestNativeRulesInUse(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if v.native == nil {
		t.Fatal("the personal request's rules in the contract differ from those native.go implements: the Go path is off")
	}
	// The string fields with a pattern it has a matcher for (all but certAgreementReadHash
	// and certAgreementReadTime, and those with other rules, cardType's and IP's), and the
	// UTF-16 length rule with them.
	var fields []string
	var walk func(p *messagePlan, prefix string)
	walk = func(p *messagePlan, prefix string) {
		for _, st := range p.steps {
			if st.nested != nil {
				walk(st.sub, prefix+st.nested.JSONName()+".")
			} else {
				fields = append(fields, prefix+st.str.fd.JSONName())
			}
		}
	}
	walk(v.native.plan, "")
	if len(fields) != 7+6+8+6+2 || !v.native.utf16 {
		t.Fatalf("the Go path's string rules cover %d fields (UTF-16 rule: %v): %v", len(fields), v.native.utf16, fields)
	}
}

// Any change to one of the rules turns the Go path off.
func TestNativeRulesOffWhenTheContractDiffers(t *testing.T) {
	mr := personalMessageRules()
	mr.GetCel()[1].SetExpression(mr.GetCel()[1].GetExpression() + " ")
	if proto.Equal(mr, personalMessageRules()) {
		t.Fatal("an edited rule compares equal")
	}
	fr := timeStampRules()
	fr.GetInt64().SetGte(0)
	if proto.Equal(fr, timeStampRules()) {
		t.Fatal("an edited bound compares equal")
	}
}

// twoPaths are a validator with the Go path and one where protovalidate evaluates the CEL,
// on the same clock: now has nanoseconds, so that int(now)'s truncation is exercised.
func twoPaths(t testing.TB, now time.Time) (native, cel *Validator) {
	t.Helper()
	clock := WithNow(func() *timestamppb.Timestamp { return timestamppb.New(now) })
	native, err := New(clock)
	if err != nil {
		t.Fatal(err)
	}
	cel, err = New(clock, withCEL())
	if err != nil {
		t.Fatal(err)
	}
	if native.native == nil || cel.native != nil {
		t.Fatal("the two paths are not what the test needs")
	}
	return native, cel
}

// sameViolations fails t unless both validators give r the same result, violations in
// the same order.
func sameViolations(t testing.TB, native, cel *Validator, r *evidencev1.CreatePersonalEvidencePointRequest) {
	t.Helper()
	got, want := native.Validate(r), cel.Validate(r)
	if !reflect.DeepEqual(got, want) {
		b, _ := protojson.Marshal(r)
		t.Fatalf("the Go path and protovalidate's CEL disagree on %s:\nGo:  %v\nCEL: %v", b, got, want)
	}
}

func pick[T any](rnd *rand.Rand, xs ...T) T { return xs[rnd.IntN(len(xs))] }

// randomString is up to n characters of alphabet.
func randomString(rnd *rand.Rand, alphabet []rune, n int) string {
	var b strings.Builder
	for range rnd.IntN(n + 1) {
		b.WriteRune(alphabet[rnd.IntN(len(alphabet))])
	}
	return b.String()
}

// randomCardNo is a number near one of the shapes the format rule tells apart.
func randomCardNo(rnd *rand.Rand) string {
	digits := func(n int) string { return fixedDigits(rnd, n) }
	switch rnd.IntN(8) {
	case 0:
		return ""
	case 1:
		return digits(17) + pick(rnd, "X", "x", "7", "Y", "")
	case 2:
		return digits(pick(rnd, 14, 15, 16))
	case 3:
		return pick(rnd, "H", "h", "M", "m", "A", "") + digits(pick(rnd, 7, 8, 9, 10, 11))
	case 4:
		return digits(pick(rnd, 7, 8, 9, 10, 11))
	case 5:
		return randomString(rnd, []rune("AZaz09Mm"), 27)
	case 6:
		// a valid shape with one character changed to something else
		s := []rune(digits(18))
		s[rnd.IntN(len(s))] = pick(rnd, ' ', '中', '\n', '-', 'X', '٣', '０')
		return string(s)
	default:
		return randomString(rnd, []rune("0123456789XxHhMm中 \n-_.９"), 26)
	}
}

func fixedDigits(rnd *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rnd.IntN(10))
	}
	return string(b)
}

// randomRequest starts from e签宝's example and changes what the four rules read (and,
// now and then, other fields, so that their violations come before and after
// timeStamp's).
func randomRequest(rnd *rand.Rand, seed *evidencev1.CreatePersonalEvidencePointRequest, now time.Time) *evidencev1.CreatePersonalEvidencePointRequest {
	r := proto.CloneOf(seed)
	r.RealNameMethod = evidencev1.RealNameMethod(pick(rnd, 0, 1, 2, 3, 4, -1, 99))
	switch rnd.IntN(6) {
	case 0:
		r.Verification = nil
	case 1:
		// the seed's threeElements
	case 2:
		r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: &evidencev1.BankCardFour{
			InfoVerifySupplier: "供应商", VerifyTime: "20240324", VerifySerialNumber: "No1", OpeningBank: "中国银行",
			BankCard: "6222021234567890123", Mobile: pick(rnd, "13800001111", "1380000111"), SmsCode: "8888", SmsSupplier: "短信商",
		}}
	case 3:
		r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: &evidencev1.Face{
			InfoVerifySupplier: "供应商", VerifyTime: "20240324", VerifySerialNumber: "No1",
			FaceImage: "0123456789abcdef0123456789abcdef", FaceImageSimilarScore: "95.5", FaceLiveDetectScore: pick(rnd, "99", "x"),
		}}
	case 4:
		switch rnd.IntN(3) {
		case 0:
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: &evidencev1.Face{}}
		case 1:
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{} // a wrapper holding nil
		default:
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_ThreeElements{}
		}
	case 5:
		r.GetThreeElements().Mobile = pick(rnd, "", "123")
	}
	r.CardType = evidencev1.CardType(pick(rnd, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, -3))
	r.CardNo = randomCardNo(rnd)
	cert := []*string{&r.CertAgreementReadTitle, &r.CertAgreementReadVersion, &r.CertAgreementReadHash,
		&r.CertAgreementReadTime, &r.CertAgreementReadType, &r.CertAgreementReadIp}
	values := []string{"《数字证书服务协议》", "20250801", strings.Repeat("ab", 32), "2025-08-01 12:30:59", "CLICK", "2001:db8::1"}
	all := rnd.IntN(3)
	for i, p := range cert {
		switch {
		case all == 0:
		case all == 1:
			*p = values[i]
		case rnd.IntN(2) == 0:
			*p = pick(rnd, values[i], " ", "x")
		}
	}
	nowMs := now.Unix() * 1000
	r.TimeStamp = pick(rnd, int64(0), -1, 1, 1742809059000, EpochMillisFloor-1, EpochMillisFloor, EpochMillisFloor+1,
		nowMs+300000, nowMs+300001, nowMs+300999, nowMs+301000, now.UnixMilli()+300000, math.MaxInt64, math.MinInt64,
		rnd.Int64(), -rnd.Int64(), nowMs+rnd.Int64N(600000)-300000)
	if rnd.IntN(4) == 0 {
		r.EviName = pick(rnd, "", " ", strings.Repeat("证", 65), "a\u202eb")
	}
	if rnd.IntN(4) == 0 {
		r.CustomBizId = pick(rnd, "a\x00", strings.Repeat("a", 37))
	}
	if rnd.IntN(4) == 0 {
		r.Name = pick(rnd, "", "\u3000", strings.Repeat("𠀀", 60))
	}
	if rnd.IntN(4) == 0 {
		r.Mark = pick(rnd, "\x01", strings.Repeat("m", 501))
	}
	// Any string field of the request or its block, now and then: what the patterns tell
	// apart, and lengths about each max_len in bytes and in characters.
	m := r.ProtoReflect()
	msgs := []protoreflect.Message{m}
	for _, f := range []string{"three_elements", "bank_card_four", "face"} {
		if fd := m.Descriptor().Fields().ByName(protoreflect.Name(f)); m.Has(fd) && m.Get(fd).Message().IsValid() {
			msgs = append(msgs, m.Get(fd).Message())
		}
	}
	for _, msg := range msgs {
		fields := msg.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			if fd.Kind() != protoreflect.StringKind || rnd.IntN(8) != 0 {
				continue
			}
			n := 1 + rnd.IntN(3)
			if rules, err := protovalidate.ResolveFieldRules(fd); err == nil && rules.GetString().HasMaxLen() {
				n = int(rules.GetString().GetMaxLen()) + rnd.IntN(3) - 1
			}
			v := pick(rnd, randomPatternInput(rnd), "", " ", "\u3000", strings.Repeat("证", n), strings.Repeat("9", n), strings.Repeat("a", n)+"\x01", "1.5")
			msg.Set(fd, protoreflect.ValueOfString(v))
		}
	}
	return r
}

func seed(t testing.TB) *evidencev1.CreatePersonalEvidencePointRequest {
	t.Helper()
	b, err := os.ReadFile("../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	r := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// The Go path and protovalidate's CEL give the same violations, in the same order, for
// 30,000 random requests (3,000 with -short or -race), and each rule is seen broken, so
// the comparison is not only of valid requests.
func TestNativeRulesAgreeWithCEL(t *testing.T) {
	now := time.Unix(1764700000, 999_999_999)
	native, cel := twoPaths(t, now)
	rnd := rand.New(rand.NewPCG(24, uint64(time.Now().UnixNano())))
	s := seed(t)
	seen := map[string]int{}
	n := 30_000
	if testing.Short() || raceEnabled {
		n = 3_000
	}
	for range n {
		r := randomRequest(rnd, s, now)
		sameViolations(t, native, cel, r)
		if err, ok := native.Validate(r).(*Error); ok {
			for _, v := range err.Violations {
				seen[v.Rule]++
			}
		}
	}
	for _, rule := range []string{"realNameMethod.matches_block", "cardNo.format", "certAgreementReadIP.all_or_none",
		"time_stamp.not_future", "time_stamp.epoch_millis", "required", "string.not_blank", "cardNo.idcard_check_digit",
		"string.max_len", "string.pattern", "string.printable", "string.in", "string.ip", "string.max_len_utf16", "enum.defined_only"} {
		if seen[rule] == 0 {
			t.Errorf("no request broke %s: the comparison does not cover it", rule)
		}
	}
	t.Logf("violations seen: %v", seen)
}

// FuzzNativeRulesAgreeWithCEL decodes any bytes as a request (protobuf wire format) and
// checks that both paths agree on it.
func FuzzNativeRulesAgreeWithCEL(f *testing.F) {
	now := time.Unix(1764700000, 999_999_999)
	native, cel := twoPaths(f, now)
	rnd := rand.New(rand.NewPCG(1, 2))
	s := seed(f)
	for range 64 {
		b, err := proto.Marshal(randomRequest(rnd, s, now))
		if err != nil {
			continue // invalid UTF-8, which the wire format refuses
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &evidencev1.CreatePersonalEvidencePointRequest{}
		if proto.Unmarshal(b, r) != nil {
			return
		}
		sameViolations(t, native, cel, r)
	})
}

// BenchmarkValidateSeedPaths measures e签宝's example through each path, side by side.
func BenchmarkValidateSeedPaths(b *testing.B) {
	native, cel := twoPaths(b, time.Now())
	r := seed(b)
	for _, p := range []struct {
		name string
		v    *Validator
	}{{"go", native}, {"cel", cel}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := p.v.Validate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package validation

import (
	"fmt"
	"regexp"
	"unicode/utf16"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// Rule ids of the rules enforced here rather than by protovalidate. They are documented
// in the contract, so callers see them as part of it.
const (
	// RuleMaxLenUTF16 applies every `string.max_len` of the contract a second time,
	// counting UTF-16 code units as Java's String.length() does: e签宝 is a Java service,
	// so a character outside the Basic Multilingual Plane (an emoji, a rare CJK ideograph
	// of Extension B) counts twice there, while protovalidate counts code points.
	RuleMaxLenUTF16 = "string.max_len_utf16"
	// RuleIDCardCheckDigit verifies the check character of an 18-character mainland ID
	// number (GB 11643-1999, ISO 7064 MOD 11-2). Portable CEL has no way to take a
	// string apart character by character, so this rule cannot live in the .proto.
	RuleIDCardCheckDigit = "cardNo.idcard_check_digit"
)

// extraRules holds what the Go-side rules need, worked out once from the descriptors.
type extraRules struct {
	// maxLen is the `string.max_len` of every string field that has one, by full name.
	maxLen map[protoreflect.FullName]uint64
}

func newExtraRules() *extraRules {
	r := &extraRules{maxLen: map[protoreflect.FullName]uint64{}}
	seen := map[protoreflect.FullName]bool{}
	for _, m := range requestTypes {
		r.collect(m.ProtoReflect().Descriptor(), seen)
	}
	return r
}

func (r *extraRules) collect(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() == protoreflect.StringKind {
			rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
			if rules.GetString().HasMaxLen() {
				r.maxLen[fd.FullName()] = rules.GetString().GetMaxLen()
			}
		}
		if fd.Message() != nil && !fd.IsMap() {
			r.collect(fd.Message(), seen)
		}
	}
}

// check appends the violations of the Go-side rules to vs.
func (r *extraRules) check(m protoreflect.Message, vs []FieldViolation) []FieldViolation {
	vs = r.checkMaxLenUTF16(m, "", vs)
	if req, ok := m.Interface().(*evidencev1.CreatePersonalEvidencePointRequest); ok {
		vs = checkIDCard(req, vs)
	}
	return vs
}

func (r *extraRules) checkMaxLenUTF16(m protoreflect.Message, prefix string, vs []FieldViolation) []FieldViolation {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + fd.JSONName()
		switch {
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap():
			max, ok := r.maxLen[fd.FullName()]
			if !ok {
				return true
			}
			s := v.String()
			// Only when protovalidate's own count passed: otherwise it already said so.
			if uint64(utf8.RuneCountInString(s)) <= max && uint64(utf16Len(s)) > max {
				vs = append(vs, FieldViolation{
					Field: path,
					Rule:  RuleMaxLenUTF16,
					Description: fmt.Sprintf("must be at most %d characters as e签宝 counts them "+
						"(UTF-16 code units: a character outside the Basic Multilingual Plane counts as 2)", max),
				})
			}
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			vs = r.checkMaxLenUTF16(v.Message(), path+".", vs)
		}
		return true
	})
	return vs
}

// utf16Len is the length Java's String.length() reports for s.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// idCard18 is the shape the contract's `cardNo.idcard_format` rule accepts for an
// 18-character number; only such numbers carry a check character.
var idCard18 = regexp.MustCompile(`^[0-9]{17}[0-9Xx]$`)

func checkIDCard(req *evidencev1.CreatePersonalEvidencePointRequest, vs []FieldViolation) []FieldViolation {
	switch req.GetCardType() {
	case evidencev1.CardType_CARD_TYPE_UNSPECIFIED, evidencev1.CardType_CRED_PSN_CH_IDCARD:
	default:
		return vs
	}
	no := req.GetCardNo()
	if !idCard18.MatchString(no) || IDCardCheckChar(no[:17]) == upper(no[17]) {
		return vs
	}
	return append(vs, FieldViolation{
		Field:       "cardNo",
		Rule:        RuleIDCardCheckDigit,
		Description: "must end in the correct check character (GB 11643): the number is mistyped",
	})
}

// idCardWeights are the ISO 7064 MOD 11-2 weights 2^(17-i) mod 11 of GB 11643-1999.
var idCardWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// IDCardCheckChar returns the check character ('0'-'9' or 'X') of the first 17 digits of
// a mainland resident ID number. It panics if digits17 is not 17 ASCII digits.
func IDCardCheckChar(digits17 string) byte {
	if len(digits17) != 17 {
		panic("validation: IDCardCheckChar needs 17 digits")
	}
	sum := 0
	for i := 0; i < 17; i++ {
		d := digits17[i]
		if d < '0' || d > '9' {
			panic("validation: IDCardCheckChar needs 17 digits")
		}
		sum += int(d-'0') * idCardWeights[i]
	}
	return "10X98765432"[sum%11]
}

func upper(c byte) byte {
	if c == 'x' {
		return 'X'
	}
	return c
}

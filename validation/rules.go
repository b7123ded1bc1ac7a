package validation

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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

// extraRules holds what the Go-side rules need, worked out once per message type from
// its descriptor: eagerly for the contract's request types, on first use for any other.
type extraRules struct {
	// plans says, per message type, which fields the UTF-16 length rule looks at: string
	// fields with a `string.max_len`, and message fields leading to some. Only those are
	// visited per request. It is copied on write: reads take no lock.
	plans atomic.Pointer[map[protoreflect.FullName][]lenCheck]
	mu    sync.Mutex // serialises writers
}

// lenPlans is the map plan works on while it is built.
type lenPlans = map[protoreflect.FullName][]lenCheck

// lenCheck is one field the UTF-16 length rule visits.
type lenCheck struct {
	fd  protoreflect.FieldDescriptor
	max uint64 // for a string field; 0 for a message field (or list of them) to descend into
}

func newExtraRules(types []proto.Message) *extraRules {
	r := &extraRules{}
	plans := lenPlans{}
	for _, m := range types {
		plan(plans, m.ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{})
	}
	r.plans.Store(&plans)
	return r
}

// planned returns the plans, with md's worked out if it was not yet.
func (r *extraRules) planned(md protoreflect.MessageDescriptor) lenPlans {
	plans := *r.plans.Load()
	if _, ok := plans[md.FullName()]; ok {
		return plans
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(lenPlans, len(plans)+1)
	for k, v := range *r.plans.Load() {
		next[k] = v
	}
	plan(next, md, map[protoreflect.FullName]bool{})
	r.plans.Store(&next)
	return next
}

// plan works out md's checks into plans and reports whether it has any.
func plan(plans lenPlans, md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) bool {
	if checks, ok := plans[md.FullName()]; ok {
		return len(checks) > 0
	}
	if visiting[md.FullName()] {
		return false
	}
	visiting[md.FullName()] = true
	var checks []lenCheck
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap() || (fd.IsList() && fd.Message() == nil):
		case fd.Kind() == protoreflect.StringKind:
			rules, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
			if rules.GetString().HasMaxLen() {
				checks = append(checks, lenCheck{fd: fd, max: rules.GetString().GetMaxLen()})
			}
		case fd.Message() != nil:
			if plan(plans, fd.Message(), visiting) {
				checks = append(checks, lenCheck{fd: fd})
			}
		}
	}
	plans[md.FullName()] = checks
	return len(checks) > 0
}

// check appends the violations of the Go-side rules to vs.
// utf16 is the UTF-16 length rule's violations when the caller has worked them out
// already (the Go path's string rules, see native_strings.go), else nil.
func (r *extraRules) check(m protoreflect.Message, vs []FieldViolation, utf16 *[]FieldViolation) []FieldViolation {
	if utf16 != nil {
		vs = append(vs, *utf16...)
	} else {
		vs = checkMaxLenUTF16(r.planned(m.Descriptor()), m, nil, vs)
	}
	if req, ok := m.Interface().(*evidencev1.CreatePersonalEvidencePointRequest); ok {
		vs = checkIDCard(req, vs)
	}
	return vs
}

// fieldPath is the JSON path of a message being checked, built only when a violation
// has to name it (a check that finds nothing allocates nothing).
type fieldPath struct {
	parent *fieldPath
	name   string
	index  int // for an element of a list; -1 otherwise
}

func (p *fieldPath) prefix() string {
	if p == nil {
		return ""
	}
	s := p.parent.prefix() + p.name
	if p.index >= 0 {
		s += "[" + strconv.Itoa(p.index) + "]"
	}
	return s + "."
}

func checkMaxLenUTF16(plans lenPlans, m protoreflect.Message, path *fieldPath, vs []FieldViolation) []FieldViolation {
	for _, c := range plans[m.Descriptor().FullName()] {
		if c.max == 0 && c.fd.IsList() {
			list := m.Get(c.fd).List()
			for i := 0; i < list.Len(); i++ {
				vs = checkMaxLenUTF16(plans, list.Get(i).Message(), &fieldPath{path, c.fd.JSONName(), i}, vs)
			}
			continue
		}
		if c.max == 0 {
			if m.Has(c.fd) {
				vs = checkMaxLenUTF16(plans, m.Get(c.fd).Message(), &fieldPath{path, c.fd.JSONName(), -1}, vs)
			}
			continue
		}
		// An unset string reads as "" (no Has: it costs more than the check).
		vs = appendMaxLenUTF16(vs, m.Get(c.fd).String(), c.max, path, c.fd)
	}
	return vs
}

// appendMaxLenUTF16 appends the UTF-16 length rule's violation for s, the value of fd
// under path, to vs, if it has one.
func appendMaxLenUTF16(vs []FieldViolation, s string, max uint64, path *fieldPath, fd protoreflect.FieldDescriptor) []FieldViolation {
	// UTF-16 units never outnumber UTF-8 bytes, so a short string needs no count; and
	// when protovalidate's own count failed, it already said so.
	if uint64(len(s)) <= max || uint64(utf8.RuneCountInString(s)) > max || uint64(utf16Len(s)) <= max {
		return vs
	}
	return append(vs, FieldViolation{
		Field: path.prefix() + fd.JSONName(),
		Rule:  RuleMaxLenUTF16,
		Description: fmt.Sprintf("must be at most %d characters as e签宝 counts them "+
			"(UTF-16 code units: a character outside the Basic Multilingual Plane counts as 2)", max),
	})
}

// utf16Fields lists, in the order checkMaxLenUTF16 visits them, the string fields under
// md it checks, or reports false when some are in lists (which the Go path's string
// rules leave to protovalidate).
func (r *extraRules) utf16Fields(md protoreflect.MessageDescriptor) ([]protoreflect.FieldDescriptor, bool) {
	plans := r.planned(md)
	var out []protoreflect.FieldDescriptor
	var walk func(md protoreflect.MessageDescriptor, depth int) bool
	walk = func(md protoreflect.MessageDescriptor, depth int) bool {
		if depth > 8 {
			return false
		}
		for _, c := range plans[md.FullName()] {
			switch {
			case c.max > 0:
				out = append(out, c.fd)
			case c.fd.IsList():
				return false
			default:
				if !walk(c.fd.Message(), depth+1) {
					return false
				}
			}
		}
		return true
	}
	return out, walk(md, 0)
}

// utf16Len is the length Java's String.length() reports for s.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// isIDCard18 reports whether no has the shape the contract's `cardNo.format` rule accepts
// for an 18-character number (17 digits, then a digit or X); only such numbers carry a
// check character. A loop, not a regular expression: it runs on every request.
func isIDCard18(no string) bool {
	if len(no) != 18 {
		return false
	}
	for i := 0; i < 17; i++ {
		if no[i] < '0' || no[i] > '9' {
			return false
		}
	}
	c := no[17]
	return c >= '0' && c <= '9' || c == 'X' || c == 'x'
}

func checkIDCard(req *evidencev1.CreatePersonalEvidencePointRequest, vs []FieldViolation) []FieldViolation {
	switch req.GetCardType() {
	case evidencev1.CardType_CARD_TYPE_UNSPECIFIED, evidencev1.CardType_CRED_PSN_CH_IDCARD:
	default:
		return vs
	}
	no := req.GetCardNo()
	if !isIDCard18(no) || IDCardCheckChar(no[:17]) == upper(no[17]) {
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

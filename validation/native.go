package validation

import (
	"slices"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// The personal evidence point request carries four CEL rules in the contract: three
// message-level rules (realNameMethod.matches_block, cardNo.format,
// certAgreementRead.all_or_none) and timeStamp's time_stamp.not_future. Every language's
// protovalidate evaluates them as CEL; cel-go spends 1.2-1.5 µs on each (attribute
// resolution through reflection, the activation), about half of the whole request's
// validation. This server evaluates exact Go equivalents of them instead, and keeps the
// contract as it is:
//
//   - protovalidate is run with a Filter (protovalidate.WithFilter) that skips the
//     request's message-level rules and timeStamp's rules, and the string fields whose
//     rules the Go path applies too (native_strings.go: `required`, `max_len` and a
//     pattern it has a matcher for), and nothing else;
//   - the Go code applies those rules (timeStamp's required and int64.gte included) and
//     reports them exactly as the converted protovalidate violations would read, in the
//     order protovalidate would report them (message-level rules first, then each field
//     in declaration order, nested messages at their field's place);
//   - at start-up the request's rules, as the compiled contract carries them, are
//     compared with the rules this code implements (personalMessageRules,
//     timeStampRules). Any difference (a rule edited, added or removed in the .proto)
//     turns the Go path off and protovalidate evaluates the CEL again, so the Go path can
//     never drift from the contract silently; TestNativeRulesInUse fails until the Go
//     code follows the change.
//
// TestNativeRulesAgreeWithCEL and FuzzNativeRulesAgreeWithCEL run both paths on random
// requests and compare the violations, order included.

// The contract's CEL rules the Go code below implements, word for word as the .proto
// states them.
const (
	celMatchesBlock = "this.real_name_method == 0" +
		" || (this.real_name_method == 1 && has(this.three_elements))" +
		" || (this.real_name_method == 2 && has(this.bank_card_four))" +
		" || (this.real_name_method == 3 && has(this.face))" +
		" || !(has(this.three_elements) || has(this.bank_card_four) || has(this.face))"
	msgMatchesBlock = "must agree with the verification block that is set (THREEELEMENTS with threeElements, " +
		"BANKCARDFOUR with bankCardFour, FACE with face), or be omitted"

	celCardNoFormat = "this.card_no == '' ? ''" +
		" : (this.card_type == 0 || this.card_type == 1) ? (this.card_no.matches('^([0-9]{17}[0-9Xx]|[0-9]{15})$') ? '' : '" + msgCardNoMainland + "')" +
		" : this.card_type == 2 ? (this.card_no.matches('^[Hh]([0-9]{8}|[0-9]{10})$') ? '' : '" + msgCardNoHongKong + "')" +
		" : this.card_type == 3 ? (this.card_no.matches('^[Mm]([0-9]{8}|[0-9]{10})$') ? '' : '" + msgCardNoMacao + "')" +
		" : this.card_type == 4 ? (this.card_no.matches('^([0-9]{8}|[0-9]{10})$') ? '' : '" + msgCardNoTaiwan + "')" +
		" : this.card_type == 5 ? (this.card_no.matches('^[A-Za-z0-9]{1,25}$') ? '' : '" + msgCardNoPassport + "')" +
		" : ''"
	msgCardNoMainland = "must be a mainland ID number: 17 digits and a check digit or X, or the legacy 15 digits"
	msgCardNoHongKong = "must be a Hong Kong permit number: H then 8 or 10 digits"
	msgCardNoMacao    = "must be a Macao permit number: M then 8 or 10 digits"
	msgCardNoTaiwan   = "must be a Taiwan permit number: 8 or 10 digits"
	msgCardNoPassport = "must be a passport number: 1 to 25 letters or digits"

	celCertAgreementAllOrNone = "!(has(this.cert_agreement_read_title) || has(this.cert_agreement_read_version) || has(this.cert_agreement_read_hash)" +
		" || has(this.cert_agreement_read_time) || has(this.cert_agreement_read_type) || has(this.cert_agreement_read_ip))" +
		" || (has(this.cert_agreement_read_title) && has(this.cert_agreement_read_version) && has(this.cert_agreement_read_hash)" +
		" && has(this.cert_agreement_read_time) && has(this.cert_agreement_read_type) && has(this.cert_agreement_read_ip)) ? ''" +
		" : 'all six certAgreementRead* fields are required when any is given; missing:'" +
		" + (has(this.cert_agreement_read_title) ? '' : ' certAgreementReadTitle')" +
		" + (has(this.cert_agreement_read_version) ? '' : ' certAgreementReadVersion')" +
		" + (has(this.cert_agreement_read_hash) ? '' : ' certAgreementReadHash')" +
		" + (has(this.cert_agreement_read_time) ? '' : ' certAgreementReadTime')" +
		" + (has(this.cert_agreement_read_type) ? '' : ' certAgreementReadType')" +
		" + (has(this.cert_agreement_read_ip) ? '' : ' certAgreementReadIP')"

	celNotFuture = "this <= int(now) * 1000 + 300000"
	msgNotFuture = "must not be more than 5 minutes in the future"
)

// personalMessageRules are the request's message-level rules the Go path implements.
func personalMessageRules() *validate.MessageRules {
	return validate.MessageRules_builder{Cel: []*validate.Rule{
		validate.Rule_builder{Id: proto.String("realNameMethod.matches_block"), Message: proto.String(msgMatchesBlock), Expression: proto.String(celMatchesBlock)}.Build(),
		validate.Rule_builder{Id: proto.String("cardNo.format"), Expression: proto.String(celCardNoFormat)}.Build(),
		validate.Rule_builder{Id: proto.String("certAgreementRead.all_or_none"), Expression: proto.String(celCertAgreementAllOrNone)}.Build(),
	}}.Build()
}

// timeStampRules are timeStamp's rules the Go path implements.
func timeStampRules() *validate.FieldRules {
	return validate.FieldRules_builder{
		Required: proto.Bool(true),
		Int64:    validate.Int64Rules_builder{Gte: proto.Int64(EpochMillisFloor)}.Build(),
		Cel: []*validate.Rule{
			validate.Rule_builder{Id: proto.String("time_stamp.not_future"), Message: proto.String(msgNotFuture), Expression: proto.String(celNotFuture)}.Build(),
		},
	}.Build()
}

// personalNative applies the personal request's CEL rules in Go; it is also the Filter
// that keeps protovalidate from applying them a second time.
type personalNative struct {
	msg       protoreflect.Descriptor // the request
	timeStamp protoreflect.Descriptor // its timeStamp field
	// tsIndex is timeStamp's place among the request's fields: protovalidate reports
	// fields in that order.
	tsIndex int
	// the verification blocks, for has() as protobuf (and CEL) see it
	threeElements, bankCardFour, face protoreflect.FieldDescriptor
	// plan is the string fields the Go path applies the rules of (native_strings.go);
	// skip says, per message type the plan covers, which of its fields (by index) the
	// Filter leaves to it.
	plan *messagePlan
	skip []skipFields
	// utf16 says the string rules visit exactly the fields the UTF-16 length rule does,
	// in its order, so that they apply it too.
	utf16 bool
}

type skipFields struct {
	md    protoreflect.MessageDescriptor
	index []bool
}

// newPersonalNative returns the Go path, or nil when the contract's rules for the
// request are not exactly the ones it implements, or the request is used as a field of
// another message (where the Filter would skip its rules without the Go path applying
// them).
func newPersonalNative() *personalNative {
	md := (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()
	ts := md.Fields().ByName("time_stamp")
	if ts == nil || ts.Kind() != protoreflect.Int64Kind || ts.HasPresence() {
		return nil
	}
	mr, err := protovalidate.ResolveMessageRules(md)
	if err != nil || !proto.Equal(mr, personalMessageRules()) {
		return nil
	}
	fr, err := protovalidate.ResolveFieldRules(ts)
	if err != nil || !proto.Equal(fr, timeStampRules()) {
		return nil
	}
	if embedded(md) {
		return nil
	}
	n := &personalNative{
		msg: md, timeStamp: ts, tsIndex: ts.Index(),
		threeElements: md.Fields().ByName("three_elements"),
		bankCardFour:  md.Fields().ByName("bank_card_four"),
		face:          md.Fields().ByName("face"),
	}
	if n.threeElements == nil || n.bankCardFour == nil || n.face == nil {
		return nil
	}
	plans, skip := map[protoreflect.FullName]*messagePlan{}, map[protoreflect.Descriptor]bool{}
	if planStrings(md, plans, skip) {
		n.plan = plans[md.FullName()]
	} else {
		n.plan = &messagePlan{}
	}
	bySkip := map[protoreflect.MessageDescriptor][]bool{}
	for d := range skip {
		fd := d.(protoreflect.FieldDescriptor)
		cm := fd.ContainingMessage()
		if bySkip[cm] == nil {
			bySkip[cm] = make([]bool, cm.Fields().Len())
			n.skip = append(n.skip, skipFields{md: cm})
		}
		bySkip[cm][fd.Index()] = true
	}
	for i := range n.skip {
		n.skip[i].index = bySkip[n.skip[i].md]
	}
	return n
}

// useUTF16 lets the string rules apply the UTF-16 length rule when they visit exactly the
// fields extra does for the request, in its order.
func (n *personalNative) useUTF16(extra *extraRules) {
	want, ok := extra.utf16Fields(n.msg.(protoreflect.MessageDescriptor))
	if !ok {
		return
	}
	var got []protoreflect.FieldDescriptor
	var walk func(p *messagePlan)
	walk = func(p *messagePlan) {
		for _, st := range p.steps {
			if st.nested != nil {
				walk(st.sub)
			} else if st.str.hasMax {
				got = append(got, st.str.fd)
			}
		}
	}
	walk(n.plan)
	n.utf16 = slices.Equal(got, want)
}

// embedded reports whether a message of the contract's file has a field of type md.
func embedded(md protoreflect.MessageDescriptor) bool {
	var walk func(protoreflect.MessageDescriptors) bool
	walk = func(msgs protoreflect.MessageDescriptors) bool {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			fields := m.Fields()
			for j := 0; j < fields.Len(); j++ {
				if f := fields.Get(j); f.Message() != nil && f.Message().FullName() == md.FullName() {
					return true
				}
			}
			if walk(m.Messages()) {
				return true
			}
		}
		return false
	}
	return walk(md.ParentFile().Messages())
}

// ShouldValidate skips the request's message-level rules and timeStamp's rules, which
// the Go path applies.
func (n *personalNative) ShouldValidate(_ protoreflect.Message, d protoreflect.Descriptor) bool {
	if d == n.msg || d == n.timeStamp {
		return false
	}
	if fd, ok := d.(protoreflect.FieldDescriptor); ok {
		cm := fd.ContainingMessage()
		for _, s := range n.skip {
			if s.md == cm {
				return !s.index[fd.Index()]
			}
		}
	}
	return true
}

// check returns the violations of every rule the Go path applies to req, each with its
// place in protovalidate's order, in that order.
func (n *personalNative) check(req *evidencev1.CreatePersonalEvidencePointRequest, m protoreflect.Message, now func() *timestamppb.Timestamp, utf16 *[]FieldViolation) []keyed {
	var out []keyed
	for _, fv := range n.messageRules(req, m, nil) {
		out = append(out, keyed{[]int{-2}, fv})
	}
	for _, fv := range n.timeStampRules(req.GetTimeStamp(), now, nil) {
		out = append(out, keyed{[]int{n.tsIndex}, fv})
	}
	out = checkStrings(n.plan, m, nil, nil, out, utf16)
	if len(out) > 1 {
		slices.SortStableFunc(out, func(a, b keyed) int { return slices.Compare(a.key, b.key) })
	}
	return out
}

// messageRules appends the violations of the request's message-level rules, as
// protovalidate reports them (in the contract's order), converted.
func (n *personalNative) messageRules(req *evidencev1.CreatePersonalEvidencePointRequest, m protoreflect.Message, vs []FieldViolation) []FieldViolation {
	// realNameMethod.matches_block
	// has() as protobuf reads it: the oneof holds the block's wrapper (whatever the
	// wrapper holds).
	var three, bank, face bool
	switch b := req.GetVerification().(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest_ThreeElements:
		three = b != nil
	case *evidencev1.CreatePersonalEvidencePointRequest_BankCardFour:
		bank = b != nil
	case *evidencev1.CreatePersonalEvidencePointRequest_Face:
		face = b != nil
	}
	switch method := req.GetRealNameMethod(); {
	case method == 0, method == 1 && three, method == 2 && bank, method == 3 && face, !(three || bank || face):
	default:
		vs = append(vs, FieldViolation{Field: "realNameMethod", Rule: "realNameMethod.matches_block", Description: msgMatchesBlock})
	}
	// cardNo.format
	if no := req.GetCardNo(); no != "" {
		msg := ""
		switch req.GetCardType() {
		case 0, 1:
			if !(len(no) == 18 && allDigits(no[:17]) && (isDigit(no[17]) || no[17] == 'X' || no[17] == 'x') || len(no) == 15 && allDigits(no)) {
				msg = msgCardNoMainland
			}
		case 2:
			if !permit(no, 'H', 'h') {
				msg = msgCardNoHongKong
			}
		case 3:
			if !permit(no, 'M', 'm') {
				msg = msgCardNoMacao
			}
		case 4:
			if !((len(no) == 8 || len(no) == 10) && allDigits(no)) {
				msg = msgCardNoTaiwan
			}
		case 5:
			if !passport(no) {
				msg = msgCardNoPassport
			}
		}
		if msg != "" {
			vs = append(vs, FieldViolation{Field: "cardNo", Rule: "cardNo.format", Description: msg})
		}
	}
	// certAgreementRead.all_or_none: reported as one violation per missing field, as
	// appendConverted reports the CEL rule's.
	given := 0
	for _, s := range [...]string{req.GetCertAgreementReadTitle(), req.GetCertAgreementReadVersion(), req.GetCertAgreementReadHash(),
		req.GetCertAgreementReadTime(), req.GetCertAgreementReadType(), req.GetCertAgreementReadIp()} {
		if s != "" {
			given++
		}
	}
	if given != 0 && given != 6 {
		vs = appendMissing(vs, m, "certAgreementRead")
	}
	return vs
}

// timeStampRules appends the violations of timeStamp's rules in protovalidate's order:
// required alone when it is unset; else its CEL rule, then its standard rule.
func (n *personalNative) timeStampRules(ts int64, now func() *timestamppb.Timestamp, vs []FieldViolation) []FieldViolation {
	if ts == 0 {
		return append(vs, FieldViolation{Field: "timeStamp", Rule: "required", Description: "value is required"})
	}
	var nowSec int64
	if now != nil {
		nowSec = now().AsTime().Unix()
	} else {
		nowSec = time.Now().Unix()
	}
	if !(ts <= nowSec*1000+300000) {
		vs = append(vs, FieldViolation{Field: "timeStamp", Rule: "time_stamp.not_future", Description: msgNotFuture})
	}
	if ts < EpochMillisFloor {
		vs = append(vs, FieldViolation{Field: "timeStamp", Rule: "time_stamp.epoch_millis", Description: epochMillisDescription})
	}
	return vs
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// permit is ^[Uu]([0-9]{8}|[0-9]{10})$ for the letters upper, lower.
func permit(s string, upper, lower byte) bool {
	return (len(s) == 9 || len(s) == 11) && (s[0] == upper || s[0] == lower) && allDigits(s[1:])
}

// passport is ^[A-Za-z0-9]{1,25}$.
func passport(s string) bool {
	if len(s) < 1 || len(s) > 25 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

package validation

import (
	"fmt"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The personal request's string fields carry `required`, `string.max_len` and
// `string.pattern`; protovalidate matches each pattern with Go's regexp, a quarter of the
// request's validation. The Go path (see native.go) applies the whole rule set of every
// such field whose pattern is one of the contract's patterns below, with a matcher written
// for it, and the Filter leaves those fields to it. A field with any other rule, or
// another pattern, stays with protovalidate. TestPatternMatchersAgreeWithRegexp holds each
// matcher to regexp on random strings, and TestNativeRulesAgreeWithCEL the whole request.

// patternMatchers are Go equivalents of the contract's patterns (Go regexp semantics:
// `\s` is [\t\n\f\r ], `$` is the end of the text, and an invalid UTF-8 byte reads as
// U+FFFD, as ranging over a string reads it).
var patternMatchers = map[string]func(string) bool{
	NotBlankPattern:          notBlank,
	PrintablePattern:         func(s string) bool { return noneOf(s, isC0C1) },
	PrintableOptionalPattern: func(s string) bool { return noneOf(s, isInvisibleControl) },
	PrintableTextPattern: func(s string) bool {
		return noneOf(s, isInvisibleControl) && notBlank(s)
	},
	`^1[3-9][0-9]{9}$`: func(s string) bool {
		return len(s) == 11 && s[0] == '1' && s[1] >= '3' && s[1] <= '9' && allDigits(s[2:])
	},
	`^[0-9]{1,16}$`: func(s string) bool { return len(s) >= 1 && len(s) <= 16 && allDigits(s) },
	`^[0-9]{8,19}$`: func(s string) bool { return len(s) >= 8 && len(s) <= 19 && allDigits(s) },
	`^[0-9]+(\.[0-9]+)?$`: func(s string) bool {
		i := 0
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == 0 {
			return false
		}
		if i == len(s) {
			return true
		}
		return s[i] == '.' && i+1 < len(s) && allDigits(s[i+1:])
	},
}

// isRE2Space is RE2's \s.
func isRE2Space(r rune) bool { return r == '\t' || r == '\n' || r == '\f' || r == '\r' || r == ' ' }

// notBlank is NotBlankPattern: a character that is neither \s nor \p{Z}.
func notBlank(s string) bool {
	for _, r := range s {
		if !isRE2Space(r) && !unicode.Is(unicode.Z, r) {
			return true
		}
	}
	return false
}

func isC0C1(r rune) bool { return r <= 0x1F || r >= 0x7F && r <= 0x9F }

// isInvisibleControl is invisibleControls.
func isInvisibleControl(r rune) bool {
	return isC0C1(r) || r == 0x200E || r == 0x200F || r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}

// noneOf reports whether no character of s is in.
func noneOf(s string, in func(rune) bool) bool {
	for _, r := range s {
		if in(r) {
			return false
		}
	}
	return true
}

// stringRule is one string field the Go path applies the rules of.
type stringRule struct {
	fd       protoreflect.FieldDescriptor
	required bool // `required`: unset is a violation, and nothing else is checked
	skipZero bool // unset (presence, or IGNORE_IF_ZERO_VALUE): nothing is checked
	maxLen   uint64
	hasMax   bool
	pattern  string
	match    func(string) bool
}

// messagePlan is what the Go path checks of one message type: its string fields, and the
// message fields to descend into, in field order (protovalidate's order).
type messagePlan struct {
	steps []planStep
}

type planStep struct {
	index  int // the field's index in its message
	str    *stringRule
	nested protoreflect.FieldDescriptor // a singular message field leading to string rules
	sub    *messagePlan                 // its message's plan
}

// planStrings works out the string rules of md and the messages under it into plans and
// skip (the field descriptors the Filter leaves to the Go path); it reports whether md
// has any. Lists and maps are left to protovalidate whole.
func planStrings(md protoreflect.MessageDescriptor, plans map[protoreflect.FullName]*messagePlan, skip map[protoreflect.Descriptor]bool) bool {
	if p, ok := plans[md.FullName()]; ok {
		return p != nil && len(p.steps) > 0
	}
	plans[md.FullName()] = nil // being planned (a recursive message is left to protovalidate)
	mr, err := protovalidate.ResolveMessageRules(md)
	if err != nil || len(mr.GetOneof()) > 0 {
		// A message-level oneof rule changes its fields' rules (IGNORE_IF_ZERO_VALUE).
		return false
	}
	plan := &messagePlan{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsList() || fd.IsMap() {
			continue
		}
		if fd.Message() != nil {
			if planStrings(fd.Message(), plans, skip) {
				plan.steps = append(plan.steps, planStep{index: i, nested: fd, sub: plans[fd.Message().FullName()]})
			}
			continue
		}
		if r := stringRuleOf(fd); r != nil {
			plan.steps = append(plan.steps, planStep{index: i, str: r})
			skip[fd] = true
		}
	}
	plans[md.FullName()] = plan
	return len(plan.steps) > 0
}

// stringRuleOf returns fd's rules when they are only `required`, `ignore`
// (IGNORE_IF_ZERO_VALUE), `string.max_len` and a `string.pattern` with a matcher above;
// else nil.
func stringRuleOf(fd protoreflect.FieldDescriptor) *stringRule {
	if fd.Kind() != protoreflect.StringKind {
		return nil
	}
	fr, err := protovalidate.ResolveFieldRules(fd)
	if err != nil || fr == nil {
		return nil
	}
	r := &stringRule{fd: fd, required: fr.GetRequired(), skipZero: fd.HasPresence()}
	switch fr.GetIgnore() {
	case validate.Ignore_IGNORE_UNSPECIFIED:
	case validate.Ignore_IGNORE_IF_ZERO_VALUE:
		r.skipZero = true
	default:
		return nil
	}
	s := fr.GetString()
	if !s.HasPattern() {
		return nil
	}
	r.pattern = s.GetPattern()
	if r.match = patternMatchers[r.pattern]; r.match == nil {
		return nil
	}
	r.maxLen, r.hasMax = s.GetMaxLen(), s.HasMaxLen()
	// Nothing else may be set.
	rest := proto.CloneOf(fr)
	rest.ClearRequired()
	rest.ClearIgnore()
	rest.ClearString()
	restString := proto.CloneOf(s)
	restString.ClearPattern()
	restString.ClearMaxLen()
	if proto.Size(rest) != 0 || proto.Size(restString) != 0 {
		return nil
	}
	return r
}

// keyed is a violation with its place in protovalidate's order: the indexes of the fields
// on its path (-2 for a message's own rules, -1 for a oneof's, which come before its
// fields).
type keyed struct {
	key []int
	fv  FieldViolation
}

// checkStrings appends the violations of the Go path's string rules under m (planned by
// plan) to out, each with its key; and, when utf16 is not nil, those of the UTF-16 length
// rule (RuleMaxLenUTF16) on the same fields to *utf16, as checkMaxLenUTF16 would.
func checkStrings(plan *messagePlan, m protoreflect.Message, key []int, path *fieldPath, out []keyed, utf16 *[]FieldViolation) []keyed {
	for _, st := range plan.steps {
		if st.nested != nil {
			if m.Has(st.nested) {
				out = checkStrings(st.sub, m.Get(st.nested).Message(), append(key[:len(key):len(key)], st.index), &fieldPath{path, st.nested.JSONName(), -1}, out, utf16)
			}
			continue
		}
		r := st.str
		s := m.Get(r.fd).String()
		if utf16 != nil && r.hasMax {
			*utf16 = appendMaxLenUTF16(*utf16, s, r.maxLen, path, r.fd)
		}
		if s == "" && !r.fd.HasPresence() || r.fd.HasPresence() && !m.Has(r.fd) {
			if r.required {
				out = append(out, keyed{append(key[:len(key):len(key)], st.index), FieldViolation{Field: path.prefix() + r.fd.JSONName(), Rule: "required", Description: "value is required"}})
				continue
			}
			if r.skipZero {
				continue
			}
		}
		if r.hasMax && uint64(len(s)) > r.maxLen && uint64(utf8.RuneCountInString(s)) > r.maxLen {
			out = append(out, keyed{append(key[:len(key):len(key)], st.index), FieldViolation{Field: path.prefix() + r.fd.JSONName(), Rule: "string.max_len",
				Description: "must be at most " + strconv.FormatUint(r.maxLen, 10) + " characters"}})
		}
		if !r.match(s) {
			fv := FieldViolation{Field: path.prefix() + r.fd.JSONName()}
			fv.Rule, fv.Description = patternViolation(r.pattern, s)
			out = append(out, keyed{append(key[:len(key):len(key)], st.index), fv})
		}
	}
	return out
}

// patternViolation is the rule id and description a broken pattern is reported with: the
// contract's own for its named patterns (as rename does), protovalidate's otherwise.
func patternViolation(pattern, value string) (rule, description string) {
	fv := FieldViolation{Rule: "string.pattern", Description: fmt.Sprintf("does not match regex pattern `%s`", pattern)}
	renamePattern(&fv, pattern, value)
	return fv.Rule, fv.Description
}

// keyOf is pv's place in protovalidate's order (see keyed).
func keyOf(root protoreflect.MessageDescriptor, pv *protovalidate.Violation) []int {
	elems := pv.Proto.GetField().GetElements()
	key := make([]int, 0, len(elems)+1)
	md := root
	for _, e := range elems {
		if md == nil {
			break
		}
		fd := md.Fields().ByNumber(protoreflect.FieldNumber(e.GetFieldNumber()))
		if fd == nil || fd.Name() != protoreflect.Name(e.GetFieldName()) {
			// A oneof, named by its name alone.
			return append(key, -1)
		}
		key = append(key, fd.Index())
		if e.HasSubscript() {
			// An element of a list or map: the Go path has nothing there.
			return key
		}
		md = fd.Message()
	}
	if md != nil && len(key) == len(elems) {
		// The message's own rule (CEL): before its fields.
		key = append(key, -2)
	}
	return key
}

// mergeKeyed converts protovalidate's violations pvs and puts the Go path's (in order)
// among them, each before the first of protovalidate's whose key is greater.
func mergeKeyed(root protoreflect.MessageDescriptor, pvs []*protovalidate.Violation, m protoreflect.Message, goVs []keyed) []FieldViolation {
	out := make([]FieldViolation, 0, len(pvs)+len(goVs))
	j := 0
	for _, pv := range pvs {
		k := keyOf(root, pv)
		for j < len(goVs) && slices.Compare(goVs[j].key, k) <= 0 {
			out = append(out, goVs[j].fv)
			j++
		}
		out = appendConverted(out, m, pv)
	}
	for ; j < len(goVs); j++ {
		out = append(out, goVs[j].fv)
	}
	return out
}

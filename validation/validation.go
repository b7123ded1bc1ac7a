// Package validation checks requests against the rules of the esign.evidence.v1 contract.
//
// The rules live in the .proto files as protovalidate annotations, so services in other
// languages enforce the same ones with their own protovalidate. This package runs them
// with protovalidate-go and adds the few rules protovalidate's portable CEL cannot
// express (see rules.go), and reports every violation the same way: a field path in the
// contract's JSON names (`cardNo`, `threeElements.mobile`), the rule's id, and a
// description that never contains the offending value.
//
// The personal request's four CEL rules, and its string fields' patterns, are evaluated
// here as exact Go equivalents, not by cel-go and Go's regexp (native.go,
// native_strings.go: the contract keeps them for every other protovalidate; the Go path
// is used only while the contract's rules are word for word the ones it implements, and
// differential tests and fuzz targets hold it to protovalidate's results).
package validation

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// FieldViolation is one broken rule.
type FieldViolation struct {
	// Field is the path to the offending field in JSON names, e.g. "threeElements.mobile".
	// For the `verification` oneof (no block, or none of the right kind) it is the oneof's
	// name, "verification".
	Field string
	// Rule is the rule's id, e.g. "string.max_len" or "cardNo.format".
	Rule string
	// Description says what the field must be. It never quotes the field's value.
	Description string
}

// Error is returned when a request breaks one or more rules.
type Error struct {
	Violations []FieldViolation
}

// Error lists the violations as "field: description" without any field value.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid request: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		if v.Field != "" {
			b.WriteString(v.Field)
			b.WriteString(": ")
		}
		b.WriteString(v.Description)
	}
	return b.String()
}

// Validator validates requests of the esign.evidence.v1 contract. Build one at start-up
// and share it: building compiles every CEL rule, validating is cheap and concurrency-safe.
type Validator struct {
	pv    protovalidate.Validator
	extra *extraRules
	// native applies the personal request's CEL rules in Go (see native.go); nil when
	// protovalidate evaluates them.
	native *personalNative
	now    func() *timestamppb.Timestamp
	// opts are protovalidate's options for a personal request (the clock, and the filter
	// that leaves the Go path's rules to it) and for any other message (the clock).
	personalOpts, otherOpts []protovalidate.ValidationOption
}

// Option configures a Validator.
type Option func(*Validator)

// WithNow fixes the clock the time rules compare against (for tests).
func WithNow(now func() *timestamppb.Timestamp) Option {
	return func(v *Validator) { v.now = now }
}

// withCEL makes protovalidate evaluate the personal request's CEL rules itself (for the
// tests that compare the two paths).
func withCEL() Option {
	return func(v *Validator) { v.native = nil }
}

// requestTypes are the contract's request messages (every message of the service's file
// whose name ends in "Request"), read from the contract itself so that no request type
// can be left out; their rules are compiled eagerly. A message outside the list is still
// validated in full, its rules compiled on first use.
func requestTypes() []proto.Message {
	var out []proto.Message
	msgs := evidencev1.File_esign_evidence_v1_evidence_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		if !strings.HasSuffix(string(md.Name()), "Request") {
			continue
		}
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
			out = append(out, mt.New().Interface())
		}
	}
	return out
}

// New builds a Validator with every request type's rules compiled.
func New(opts ...Option) (*Validator, error) {
	types := requestTypes()
	pv, err := protovalidate.New(protovalidate.WithMessages(types...))
	if err != nil {
		return nil, fmt.Errorf("validation: building protovalidate: %w", err)
	}
	v := &Validator{pv: pv, extra: newExtraRules(types), native: newPersonalNative()}
	if v.native != nil {
		v.native.useUTF16(v.extra)
	}
	for _, o := range opts {
		o(v)
	}
	if v.now != nil {
		v.otherOpts = []protovalidate.ValidationOption{protovalidate.WithNowFunc(v.now)}
	}
	v.personalOpts = v.otherOpts
	if v.native != nil {
		v.personalOpts = append(v.personalOpts[:len(v.personalOpts):len(v.personalOpts)], protovalidate.WithFilter(v.native))
	}
	return v, nil
}

// Validate returns nil if msg satisfies every rule, an *Error listing each violation if
// it does not, or another error if a rule could not be evaluated at all.
func (v *Validator) Validate(msg proto.Message) error {
	var violations []FieldViolation
	m := msg.ProtoReflect()
	if personal, ok := msg.(*evidencev1.CreatePersonalEvidencePointRequest); ok && v.native != nil {
		var utf16 *[]FieldViolation
		if v.native.utf16 {
			utf16 = new([]FieldViolation)
		}
		goVs := v.native.check(personal, m, v.now, utf16)
		var pvs []*protovalidate.Violation
		if err := v.pv.Validate(msg, v.personalOpts...); err != nil {
			var verr *protovalidate.ValidationError
			if !errors.As(err, &verr) {
				return fmt.Errorf("validation: %w", err)
			}
			pvs = verr.Violations
		}
		violations = mergeKeyed(m.Descriptor(), pvs, m, goVs)
		return v.result(v.extra.check(m, violations, utf16))
	}
	if err := v.pv.Validate(msg, v.otherOpts...); err != nil {
		var verr *protovalidate.ValidationError
		if !errors.As(err, &verr) {
			return fmt.Errorf("validation: %w", err)
		}
		for _, pv := range verr.Violations {
			violations = appendConverted(violations, m, pv)
		}
	}
	return v.result(v.extra.check(m, violations, nil))
}

func (v *Validator) result(violations []FieldViolation) error {
	if len(violations) == 0 {
		return nil
	}
	return &Error{Violations: violations}
}

// NotBlankPattern is the contract's pattern for "not blank": at least one character that
// is neither white space nor a Unicode separator (\p{Z} includes the ideographic space
// U+3000, which RE2's \s does not). It is a plain string.pattern, which protovalidate
// evaluates natively, several times faster than the same test in CEL; its violations
// are reported as rule "string.not_blank".
const NotBlankPattern = `[^\s\p{Z}]`

// PrintablePattern is the contract's pattern for "no control character" (no C0 control,
// DEL or C1 control), a native string.pattern; its violations are reported as rule
// "string.printable".
const PrintablePattern = `^[^\x00-\x1F\x7F-\x9F]*$`

// invisibleControls are the characters free text may not hold: C0 controls, DEL, C1
// controls, and the invisible direction marks and overrides (U+200E, U+200F,
// U+202A-U+202E, U+2066-U+2069), which make text read differently from what it holds.
const invisibleControls = `\x00-\x1F\x7F-\x9F\x{200E}\x{200F}\x{202A}-\x{202E}\x{2066}-\x{2069}`

// PrintableTextPattern is the contract's pattern for required free text (eviName): not
// blank, and none of invisibleControls, as one native string.pattern. Its violations are
// reported as rule "string.not_blank" when the value is blank, else "string.printable".
const PrintableTextPattern = `^[^` + invisibleControls + `]*[^\s\p{Z}` + invisibleControls + `][^` + invisibleControls + `]*$`

// PrintableOptionalPattern is PrintableTextPattern for optional free text (mark): it may
// be empty. Its violations are reported as rule "string.printable".
const PrintableOptionalPattern = `^[^` + invisibleControls + `]*$`

// EpochMillisFloor is the contract's lower bound on timeStamp (2000-01-01 in Unix epoch
// milliseconds), a native int64.gte; its violations are reported as rule
// "time_stamp.epoch_millis".
const EpochMillisFloor = 946684800000

const epochMillisDescription = "must be Unix epoch milliseconds after 2000-01-01 (not seconds)"

// allOrNoneSuffix ends the id of a message-level rule "<prefix>.all_or_none": every field
// whose JSON name starts with <prefix> is given, or none is. It is one rule in the
// contract (one evaluation per request) and reported as one violation per missing field.
const allOrNoneSuffix = ".all_or_none"

// rename reports a standard rule the contract gives its own id under that id.
func rename(fv *FieldViolation, pv *protovalidate.Violation) {
	if !pv.RuleValue.IsValid() {
		return
	}
	switch fv.Rule {
	case "string.pattern":
		renamePattern(fv, pv.RuleValue.String(), pv.FieldValue.String())
	case "int64.gte":
		if pv.RuleValue.Int() == EpochMillisFloor {
			fv.Rule, fv.Description = "time_stamp.epoch_millis", epochMillisDescription
		}
	}
}

// renamePattern reports a broken string.pattern the contract names under its own id.
func renamePattern(fv *FieldViolation, pattern, value string) {
	switch pattern {
	case NotBlankPattern:
		fv.Rule, fv.Description = "string.not_blank", "must not be blank"
	case PrintablePattern:
		fv.Rule, fv.Description = "string.printable", "must not contain control characters"
	case PrintableTextPattern, PrintableOptionalPattern:
		if pattern == PrintableTextPattern && strings.TrimFunc(value, isBlank) == "" {
			fv.Rule, fv.Description = "string.not_blank", "must not be blank"
		} else {
			fv.Rule, fv.Description = "string.printable", "must not contain control characters or invisible direction marks"
		}
	}
}

// appendConverted appends pv, turned into FieldViolations with JSON field paths, to vs.
func appendConverted(vs []FieldViolation, m protoreflect.Message, pv *protovalidate.Violation) []FieldViolation {
	root := m.Descriptor()
	p := pv.Proto
	fv := FieldViolation{Rule: p.GetRuleId(), Description: p.GetMessage()}
	rename(&fv, pv)
	elems := p.GetField().GetElements()
	if len(elems) == 0 {
		// A message-level rule of the root message. Its id is written "<field>.<rule>"
		// (see the contract), which names the field the caller has to change.
		name, _, ok := strings.Cut(fv.Rule, ".")
		if !ok {
			return append(vs, fv)
		}
		if root.Fields().ByJSONName(name) != nil {
			fv.Field = name
			return append(vs, fv)
		}
		if strings.HasSuffix(fv.Rule, allOrNoneSuffix) {
			return appendMissing(vs, m, name)
		}
		return append(vs, fv)
	}
	md := root
	parts := make([]string, 0, len(elems))
	var fd protoreflect.FieldDescriptor
	for _, e := range elems {
		fd = nil
		if md != nil {
			fd = md.Fields().ByNumber(protoreflect.FieldNumber(e.GetFieldNumber()))
		}
		if fd == nil {
			// Not a field: protovalidate names a oneof by its name alone.
			parts = append(parts, e.GetFieldName())
			if md != nil {
				if od := md.Oneofs().ByName(protoreflect.Name(e.GetFieldName())); od != nil && fv.Rule == "required" {
					fv.Description = "exactly one of " + oneofMembers(od) + " is required"
				}
			}
			md = nil
			continue
		}
		name := fd.JSONName()
		if sub, ok := e.GetSubscript().(*validate.FieldPathElement_Index); ok {
			// An element of a list: points[3].
			name += "[" + strconv.FormatUint(sub.Index, 10) + "]"
		}
		parts = append(parts, name)
		md = fd.Message()
	}
	// A message-level rule of a nested message names the field to change the same way as
	// one of the root: its id is "<field>.<rule>".
	if md != nil {
		if name, _, ok := strings.Cut(fv.Rule, "."); ok && md.Fields().ByJSONName(name) != nil {
			parts = append(parts, name)
		}
	}
	fv.Field = strings.Join(parts, ".")
	if fv.Rule == "enum.defined_only" && fd != nil && fd.Enum() != nil {
		// protovalidate says "value must be one of the defined enum values"; name them,
		// as the REST decoder does for an unknown name (json.enum), so a gRPC caller that
		// sent a number the contract lacks learns what it may send.
		fv.Description = "must be one of " + enumNames(fd.Enum())
	}
	return append(vs, fv)
}

// appendMissing reports a broken "<prefix>.all_or_none" rule: one violation for each
// field whose JSON name starts with prefix and that m leaves unset, at that field.
func appendMissing(vs []FieldViolation, m protoreflect.Message, prefix string) []FieldViolation {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !strings.HasPrefix(fd.JSONName(), prefix) || m.Has(fd) {
			continue
		}
		vs = append(vs, FieldViolation{
			Field:       fd.JSONName(),
			Rule:        fd.JSONName() + allOrNoneSuffix,
			Description: "is required when any " + prefix + "* field is given",
		})
	}
	return vs
}

// oneofMembers lists a oneof's fields by JSON name: "a, b or c".
func oneofMembers(od protoreflect.OneofDescriptor) string {
	fields := od.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = fields.Get(i).JSONName()
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// isBlank is what NotBlankPattern calls blank: white space or a Unicode separator.
func isBlank(r rune) bool { return unicode.IsSpace(r) || unicode.In(r, unicode.Z) }

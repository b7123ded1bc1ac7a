package gateway

import (
	"bytes"
	"encoding/binary"
	"encoding/json/jsontext"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// quickDecode decodes body into m, a fresh message, when body is a JSON object in the
// plain forms of protojson's mapping, and reports whether it did. Plain: fields by their
// JSON or proto names, each at most once and at most one member of a oneof; strings
// without escapes; integers as plain decimals (JSON numbers or strings: no sign but a
// minus, no fraction, exponent or leading zero, no "-0"); enums by name; true and false;
// nested and repeated messages and scalars; nothing after the object but white space.
// Such a body is rewritten as the protobuf wire encoding of the message protojson makes
// of it, which proto.Unmarshal turns into m: a REST call's body costs about a third of
// protojson's decoding (BenchmarkDecodeSeed), which spends most of its time setting
// fields through reflection. Any other body (null, escapes, floats, bytes, maps,
// well-known types, other number forms, unknown or repeated names, bad JSON ...) is
// refused, m perhaps half-filled: the caller resets m and leaves the body to protojson,
// which decodes it, or words its refusal, as always. TestHeldBodyDecoderAgreesWithJSONPb
// and FuzzHeldBodyDecoder hold the two to the same message and the same error.
func quickDecode(body []byte, m proto.Message) bool {
	q := quickPool.Get().(*quick)
	defer quickPool.Put(q)
	q.r.Reset(body)
	// object refuses a field named twice, under either name: jsontext need not track names.
	q.d.Reset(&q.r, jsontext.AllowDuplicateNames(true))
	wire, ok := q.object(m.ProtoReflect().Descriptor(), q.buf[:0], 0)
	if cap(wire) <= 1<<16 {
		q.buf = wire[:0] // keep the grown buffer for the next body, unless it is a big one
	}
	if !ok {
		return false
	}
	if _, err := q.d.ReadToken(); err != io.EOF {
		return false
	}
	return proto.Unmarshal(wire, m) == nil
}

// quick is quickDecode's reusable state.
type quick struct {
	r   bytes.Reader
	d   jsontext.Decoder
	buf []byte
	// The last messages' field names (names), to spare most bodies the shared cache.
	mds   [4]protoreflect.MessageDescriptor
	names [4]map[string]protoreflect.FieldDescriptor
}

// fieldsOf is names(md), from q's own cache when md was among its last messages.
func (q *quick) fieldsOf(md protoreflect.MessageDescriptor) map[string]protoreflect.FieldDescriptor {
	for i, m := range q.mds {
		if m == md {
			return q.names[i]
		}
	}
	n := names(md)
	copy(q.mds[1:], q.mds[:3])
	copy(q.names[1:], q.names[:3])
	q.mds[0], q.names[0] = md, n
	return n
}

var quickPool = sync.Pool{New: func() any { return new(quick) }}

// maxQuickDepth bounds the nesting quickDecode follows; deeper bodies go to protojson.
const maxQuickDepth = 32

// object reads one JSON object of md's message and appends its wire encoding to b.
func (q *quick) object(md protoreflect.MessageDescriptor, b []byte, depth int) ([]byte, bool) {
	fields, oneofs := md.Fields(), md.Oneofs()
	if depth > maxQuickDepth || fields.Len() > 64 || oneofs.Len() > 64 || md.FullName().Parent() == "google.protobuf" {
		return b, false // well-known types have JSON forms of their own
	}
	if t, err := q.d.ReadToken(); err != nil || t.Kind() != '{' {
		return b, false
	}
	var seen, seenOneof uint64 // by field and oneof index
	for q.d.PeekKind() != '}' {
		name, ok := q.plainString()
		if !ok {
			return b, false
		}
		fd := q.fieldsOf(md)[string(name)]
		if fd == nil || fd.IsMap() || seen&(1<<fd.Index()) != 0 {
			return b, false
		}
		seen |= 1 << fd.Index()
		if od := fd.ContainingOneof(); od != nil {
			if seenOneof&(1<<od.Index()) != 0 {
				return b, false
			}
			seenOneof |= 1 << od.Index()
		}
		if !fd.IsList() {
			if b, ok = q.value(fd, b, depth); !ok {
				return b, false
			}
			continue
		}
		if t, err := q.d.ReadToken(); err != nil || t.Kind() != '[' {
			return b, false
		}
		for q.d.PeekKind() != ']' {
			if b, ok = q.value(fd, b, depth); !ok {
				return b, false
			}
		}
		if _, err := q.d.ReadToken(); err != nil {
			return b, false
		}
	}
	_, err := q.d.ReadToken() // '}'
	return b, err == nil
}

// names is md's fields by the names protojson takes for them: the JSON name, else the
// proto name (fields.ByJSONName, then fields.ByTextName).
func names(md protoreflect.MessageDescriptor) map[string]protoreflect.FieldDescriptor {
	if m, ok := fieldNames.Load(md); ok {
		return m.(map[string]protoreflect.FieldDescriptor)
	}
	fields := md.Fields()
	m := make(map[string]protoreflect.FieldDescriptor, 2*fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		for _, n := range []string{fd.JSONName(), fd.TextName()} {
			if got := fields.ByJSONName(n); got != nil {
				m[n] = got
			} else if got := fields.ByTextName(n); got != nil {
				m[n] = got
			}
		}
	}
	fieldNames.Store(md, m)
	return m
}

// fieldNames caches names by message descriptor.
var fieldNames sync.Map

// value reads one JSON value of fd (an element, if fd is repeated) and appends it to b
// as a field of fd's number.
func (q *quick) value(fd protoreflect.FieldDescriptor, b []byte, depth int) ([]byte, bool) {
	num := fd.Number()
	switch fd.Kind() {
	case protoreflect.MessageKind:
		if q.d.PeekKind() != '{' {
			return b, false
		}
		// The nested message goes after b's end, then moves up behind its tag and length.
		start := len(b)
		var ok bool
		if b, ok = q.object(fd.Message(), b, depth+1); !ok {
			return b, false
		}
		n := len(b) - start
		var hb [2 * binary.MaxVarintLen64]byte
		head := protowire.AppendVarint(protowire.AppendTag(hb[:0], num, protowire.BytesType), uint64(n))
		b = append(b, head...)
		copy(b[start+len(head):], b[start:start+n])
		copy(b[start:], head)
		return b, true
	case protoreflect.StringKind:
		s, ok := q.plainString()
		if !ok {
			return b, false
		}
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), s), true
	case protoreflect.BoolKind:
		var v uint64
		switch q.d.PeekKind() {
		case 't':
			v = 1
		case 'f':
		default:
			return b, false
		}
		if _, err := q.d.ReadToken(); err != nil {
			return b, false
		}
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v), true
	case protoreflect.EnumKind:
		s, ok := q.plainString()
		if !ok {
			return b, false
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(s))
		if ev == nil || fd.Enum().FullName() == "google.protobuf.NullValue" {
			return b, false
		}
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), uint64(int64(ev.Number()))), true
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		digits, ok := q.plainDigits()
		if !ok {
			return b, false
		}
		var v uint64
		var err error
		switch fd.Kind() {
		case protoreflect.Int32Kind, protoreflect.Int64Kind:
			bits := 64
			if fd.Kind() == protoreflect.Int32Kind {
				bits = 32
			}
			var n int64
			n, err = strconv.ParseInt(string(digits), 10, bits)
			v = uint64(n)
		default:
			bits := 64
			if fd.Kind() == protoreflect.Uint32Kind {
				bits = 32
			}
			if digits[0] == '-' {
				return b, false
			}
			v, err = strconv.ParseUint(string(digits), 10, bits)
		}
		if err != nil {
			return b, false
		}
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v), true
	}
	return b, false // floats, bytes, zigzag and fixed-width integers, groups: protojson's
}

// plainString reads a JSON string (or object name) without escapes and returns its
// bytes, valid until the next read (jsontext has checked they are UTF-8 without control
// characters).
func (q *quick) plainString() ([]byte, bool) {
	if q.d.PeekKind() != '"' {
		return nil, false
	}
	v, err := q.d.ReadValue()
	if err != nil || bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// plainDigits reads an integer written as a JSON number or string of decimal digits,
// perhaps after a minus sign: no fraction, exponent or leading zero, no "-0".
func (q *quick) plainDigits() ([]byte, bool) {
	k := q.d.PeekKind()
	if k != '"' && k != '0' {
		return nil, false
	}
	v, err := q.d.ReadValue()
	if err != nil {
		return nil, false
	}
	if k == '"' {
		v = v[1 : len(v)-1]
	}
	digits := v
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && len(v) > 1 {
		return nil, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return nil, false
		}
	}
	return v, true
}

// quickEncode appends to b the JSON protojson.MarshalOptions{EmitUnpopulated: true}
// makes of m, byte for byte, when m is plain: fields of strings without characters
// protojson escapes, booleans, integers, named enum values, plain messages and lists of
// these (no maps, floats, bytes or well-known types). It reports false for any other
// message, b perhaps half-written: the caller leaves m to protojson. A REST answer costs
// a fraction of protojson's marshalling (BenchmarkEncodeAnswer).
func quickEncode(m protoreflect.Message, b []byte, depth int) ([]byte, bool) {
	md := m.Descriptor()
	if depth > maxQuickDepth || !m.IsValid() || md.FullName().Parent() == "google.protobuf" {
		return b, false
	}
	b = append(b, '{')
	fields := md.Fields()
	first := true
	for i := range fields.Len() {
		fd := fields.Get(i)
		has := m.Has(fd)
		if fd.IsMap() || fd.IsExtension() {
			return b, false
		}
		if !has && fd.ContainingOneof() != nil {
			continue // protojson leaves out unset oneof members (and unset proto3 optionals)
		}
		if !first {
			b = append(b, commaSep...)
		}
		first = false
		b = append(b, '"')
		b = append(b, fd.JSONName()...)
		b = append(b, '"', ':')
		var ok bool
		switch {
		case fd.IsList():
			l := m.Get(fd).List()
			b = append(b, '[')
			for j := range l.Len() {
				if j > 0 {
					b = append(b, commaSep...)
				}
				if b, ok = quickEncodeValue(fd, l.Get(j), b, depth); !ok {
					return b, false
				}
			}
			b = append(b, ']')
		case !has && fd.HasPresence():
			b = append(b, "null"...)
		default:
			if b, ok = quickEncodeValue(fd, m.Get(fd), b, depth); !ok {
				return b, false
			}
		}
	}
	return append(b, '}'), true
}

// quickEncodeValue appends one value (a list's element, if fd is repeated) of fd.
func quickEncodeValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, b []byte, depth int) ([]byte, bool) {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		return quickEncode(v.Message(), b, depth+1)
	case protoreflect.StringKind:
		return quickEncodeString(v.String(), b)
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendInt(b, v.Int(), 10), '"'), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendUint(b, v.Uint(), 10), '"'), true
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		if ev == nil || fd.Enum().FullName() == "google.protobuf.NullValue" {
			return b, false
		}
		return quickEncodeString(string(ev.Name()), b)
	}
	return b, false
}

// quickEncodeString appends s quoted, if protojson would write it without escapes.
func quickEncodeString(s string, b []byte) ([]byte, bool) {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < ' ' || c == '"' || c == '\\':
			return b, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(s) {
		return b, false
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// commaSep is what protojson writes between the members of an object or array on one
// line: a comma, and a space after it or not as this build's protobuf module decides
// (it varies its output by build, so that no one relies on its bytes).
var commaSep = func() string {
	probe, err := protojson.Marshal(&descriptorpb.FileDescriptorProto{Name: proto.String("a"), Package: proto.String("b")})
	if err == nil && bytes.Contains(probe, []byte(`", "`)) {
		return ", "
	}
	return ","
}()

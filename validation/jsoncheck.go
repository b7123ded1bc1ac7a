package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// CheckJSON reads a JSON request body (the REST facade's, or one line of an import file)
// against the request message it must decode into and reports, by field path, everything
// protojson would refuse: invalid JSON, unknown fields, values of the wrong JSON type,
// unknown enum values, two members of one oneof, a field given twice. protojson's own
// errors quote the offending input (which may be an ID number), so they are never shown;
// these descriptions never contain a value.
//
// It returns nil when the body is acceptable to protojson. The server and cmd/esign-import
// both decode with it, so a body is refused the same way wherever it is read.
//
// At most MaxJSONViolations problems are listed: past them one more violation (rule
// json.too_many_problems) says the list stops there, and the body is read no further.
func CheckJSON(body []byte, md protoreflect.MessageDescriptor) []FieldViolation {
	c := &jsonChecker{dec: json.NewDecoder(bytes.NewReader(body)), body: body, badUTF8: firstInvalidUTF8(body)}
	c.dec.UseNumber()
	c.message(md, "")
	if !c.failed {
		// Exactly one JSON value: trailing data is an error for protojson too.
		if _, err := c.dec.Token(); !errors.Is(err, io.EOF) {
			c.add("", "json.syntax", "the body must hold exactly one JSON object")
		}
	}
	if c.badUTF8 >= 0 && !c.utf8Reported {
		// encoding/json reads invalid UTF-8 as U+FFFD; protojson refuses it.
		c.add("", "json.utf8", "the body is not valid UTF-8")
	}
	return c.out
}

// MaxJSONViolations bounds the problems CheckJSON lists, and so the work and the answer
// for a body made of nothing but mistakes (a 1 MiB body holds 90,000 unknown keys).
const MaxJSONViolations = 100

type jsonChecker struct {
	dec    *json.Decoder
	body   []byte // for the position of a syntax error
	out    []FieldViolation
	failed bool // the JSON itself is broken: stop reading
	// badUTF8 is the offset of the body's first byte that is not UTF-8, or -1.
	badUTF8      int64
	utf8Reported bool
	// truncated: MaxJSONViolations were listed; nothing more is read or added.
	truncated bool
}

// firstInvalidUTF8 is the offset of the first byte of b that is not UTF-8, or -1.
func firstInvalidUTF8(b []byte) int64 {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return int64(i)
		}
		i += n
	}
	return -1
}

func (c *jsonChecker) add(path, rule, desc string) {
	if c.truncated {
		return
	}
	if len(c.out) == MaxJSONViolations {
		c.out = append(c.out, FieldViolation{Rule: "json.too_many_problems",
			Description: "the body has more problems; the first " + strconv.Itoa(MaxJSONViolations) + " are listed"})
		c.truncated, c.failed = true, true
		return
	}
	c.out = append(c.out, FieldViolation{Field: path, Rule: rule, Description: desc})
}

// token reads the next token; a syntax error is reported at path and stops the check.
func (c *jsonChecker) token(path string) (json.Token, bool) {
	if c.failed {
		return nil, false
	}
	t, err := c.dec.Token()
	if err != nil {
		c.failed = true
		c.add(path, "json.syntax", c.syntaxError(err))
		return nil, false
	}
	return t, true
}

// syntaxError says where the JSON breaks: line and column (in characters, from 1) and
// the byte offset, never the text found there.
func (c *jsonChecker) syntaxError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset > 0 && se.Offset <= int64(len(c.body)) {
		// Offset counts the bytes read, the offending character's included: back up to
		// that character's first byte.
		at := se.Offset - 1
		for at > 0 && !utf8.RuneStart(c.body[at]) {
			at--
		}
		line, col := position(c.body, at)
		return fmt.Sprintf("is not valid JSON here: line %d, column %d (byte %d)", line, col, at+1)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		line, col := position(c.body, int64(len(c.body)))
		return fmt.Sprintf("is not valid JSON here: the body ends at line %d, column %d before the JSON is complete", line, col)
	}
	return "is not valid JSON here"
}

// position is the line and column (both from 1, the column in characters) of byte off.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(b)))
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}

// message checks one JSON object against md; path is the object's own path. It reports
// whether the value was set (not null).
func (c *jsonChecker) message(md protoreflect.MessageDescriptor, path string) bool {
	t, ok := c.token(path)
	if !ok || t == nil { // null: the field is unset
		return false
	}
	if d, isDelim := t.(json.Delim); !isDelim || d != '{' {
		c.skipRest(t)
		c.add(path, "json.type", "must be a JSON object")
		return true
	}
	seen := map[protoreflect.FieldNumber]bool{}
	oneofSet := map[protoreflect.FullName]string{}
	for c.dec.More() {
		kt, ok := c.token(path)
		if !ok {
			return true
		}
		key, _ := kt.(string)
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		if fd == nil {
			c.add(join(path, printableKey(key)), "json.unknown_field", "is not a field of this request")
			c.skipValue(path)
			continue
		}
		fpath := join(path, fd.JSONName())
		if seen[fd.Number()] {
			c.add(fpath, "json.duplicate_field", "is given more than once")
		}
		seen[fd.Number()] = true
		set := c.field(fd, fpath)
		if od := fd.ContainingOneof(); set && od != nil && !od.IsSynthetic() {
			if first, ok := oneofSet[od.FullName()]; ok {
				c.add(fpath, "json.oneof", "cannot be set together with "+first+": give only one of "+oneofNames(od))
			} else {
				oneofSet[od.FullName()] = fd.JSONName()
			}
		}
		if c.failed {
			return true
		}
	}
	c.token(path) // the closing '}'
	return true
}

// field checks one field's value and reports whether it was set (not null).
func (c *jsonChecker) field(fd protoreflect.FieldDescriptor, path string) bool {
	if fd.IsList() || fd.IsMap() {
		// The contract has none; leave them to protojson.
		c.skipValue(path)
		return true
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return c.message(fd.Message(), path)
	}
	start := c.dec.InputOffset()
	t, ok := c.token(path)
	if !ok || t == nil {
		return false
	}
	if c.badUTF8 >= start && c.badUTF8 < c.dec.InputOffset() {
		c.add(path, "string.utf8", "is not valid UTF-8")
		c.utf8Reported = true
		return true
	}
	if d, isDelim := t.(json.Delim); isDelim {
		c.skipRest(d)
		c.add(path, "json.type", "must be "+kindWord(fd))
		return true
	}
	if !scalarOK(fd, t) {
		if fd.Kind() == protoreflect.EnumKind {
			c.add(path, "json.enum", "must be one of "+enumNames(fd.Enum()))
		} else {
			c.add(path, "json.type", "must be "+kindWord(fd))
		}
	}
	return true
}

var intString = regexp.MustCompile(`^-?[0-9]+$`)

func scalarOK(fd protoreflect.FieldDescriptor, t json.Token) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		_, ok := t.(string)
		return ok
	case protoreflect.BoolKind:
		_, ok := t.(bool)
		return ok
	case protoreflect.EnumKind:
		switch v := t.(type) {
		case string:
			return fd.Enum().Values().ByName(protoreflect.Name(v)) != nil
		case json.Number:
			n, err := strconv.ParseInt(string(v), 10, 32)
			return err == nil && fd.Enum().Values().ByNumber(protoreflect.EnumNumber(n)) != nil
		}
		return false
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return intToken(t, math.MinInt64, math.MaxInt64)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return intToken(t, math.MinInt32, math.MaxInt32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return intToken(t, 0, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return intToken(t, 0, math.MaxInt64)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch v := t.(type) {
		case json.Number:
			return true
		case string:
			_, err := strconv.ParseFloat(v, 64)
			return err == nil || v == "NaN" || v == "Infinity" || v == "-Infinity"
		}
		return false
	case protoreflect.BytesKind:
		_, ok := t.(string)
		return ok
	}
	return false
}

// intToken accepts a JSON integer or a string of digits, as protojson does for 64-bit
// integers (and 32-bit ones).
func intToken(t json.Token, min, max int64) bool {
	var s string
	switch v := t.(type) {
	case json.Number:
		s = string(v)
	case string:
		s = v
	default:
		return false
	}
	if !intString.MatchString(s) {
		// protojson also takes 1e3 or 5.0 for integers; those are rare and checked by
		// protojson itself after this pass.
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && f == math.Trunc(f) && f >= float64(min) && f <= float64(max)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && n >= min && n <= max
}

func kindWord(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "a JSON string"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.EnumKind:
		return "one of " + enumNames(fd.Enum())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "an integer (a JSON number or a string of digits)"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	}
	return "a value of type " + fd.Kind().String()
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, 0, vals.Len())
	for i := 0; i < vals.Len(); i++ {
		if vals.Get(i).Number() == 0 {
			continue // the UNSPECIFIED placeholder: omit the field instead
		}
		names = append(names, string(vals.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	fs := od.Fields()
	names := make([]string, fs.Len())
	for i := range names {
		names[i] = fs.Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}

// skipValue consumes one whole JSON value.
func (c *jsonChecker) skipValue(path string) {
	t, ok := c.token(path)
	if !ok {
		return
	}
	c.skipRest(t)
}

// skipRest consumes the rest of a value whose first token was t.
func (c *jsonChecker) skipRest(t json.Token) {
	d, ok := t.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return
	}
	depth := 1
	for depth > 0 {
		t, ok := c.token("")
		if !ok {
			return
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
	}
}

var safeKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// printableKey returns an unknown key for the error message only if it looks like a
// field name: a key is input too, and input is never echoed.
func printableKey(k string) string {
	if safeKey.MatchString(k) {
		return k
	}
	return "(unprintable key)"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Command openapimerge finishes the OpenAPI (Swagger 2.0) document protoc-gen-openapiv2
// generated, in place, so that a client generator turns it into a good client. `make
// generate` runs it. Everything it adds is derived from the contract's descriptors (the
// generated Go package is linked in), none of it written by hand here:
//
//   - Hand-described routes: protoc-gen-openapiv2 describes only methods with a
//     google.api.http binding. The REST upload route (POST /v1/files, raw bytes in,
//     UploadFileResponse out) is served by the service's own handler in front of the
//     client-streamed UploadFile, so openapi/upload.swagger.json describes it and this
//     command merges that fragment's paths and definitions in. Its error responses are
//     the ones the UploadFile method lists in its openapiv2_operation option. A path or
//     definition the generator already wrote is an error, never silently replaced.
//   - Validation rules as JSON Schema: each protovalidate rule that has a JSON Schema
//     counterpart (string pattern, min/max length, `in` as enum, `required` strings as
//     minLength 1, repeated min/max items and uniqueness, numeric bounds) is added to the
//     property or parameter of its field.
//   - Typed error details: google.rpc.Status's `details` are documented as the detail
//     messages this service sends (ErrorInfo, BadRequest, RetryInfo, schemas built from
//     their descriptors) instead of the untyped google.protobuf.Any.
//   - Operation ids named after the method alone, in lowerCamelCase
//     (`createPersonalEvidencePoint`), instead of `EvidenceService_CreatePersonalEvidencePoint`.
//
// Usage: go run ./scripts/openapimerge <generated.swagger.json> <fragment.swagger.json>...
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	pvalidate "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	openapiv2 "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2/options"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: openapimerge <generated.swagger.json> <fragment.swagger.json>...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "openapimerge:", err)
		os.Exit(1)
	}
}

type object = map[string]any

// contract is the file whose services and messages the document describes.
var contract = evidencev1.File_esign_evidence_v1_evidence_proto

func run(target string, fragments []string) error {
	doc, err := readObject(target)
	if err != nil {
		return err
	}
	paths, _ := doc["paths"].(object)
	defs, _ := doc["definitions"].(object)
	if paths == nil || defs == nil {
		return fmt.Errorf("%s: no paths or definitions", target)
	}
	for _, f := range fragments {
		if err := mergeFragment(f, paths, defs); err != nil {
			return err
		}
	}
	if err := typeErrorDetails(defs); err != nil {
		return err
	}
	if err := addRules(paths, defs); err != nil {
		return err
	}
	if err := renameOperations(paths); err != nil {
		return err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return os.WriteFile(target, escapeInvisible(out.Bytes()), 0o644)
}

func mergeFragment(f string, paths, defs object) error {
	frag, err := readObject(f)
	if err != nil {
		return err
	}
	fpaths, _ := frag["paths"].(object)
	for _, p := range sortedKeys(fpaths) {
		if _, ok := paths[p]; ok {
			return fmt.Errorf("%s: path %s is generated already", f, p)
		}
		ops, _ := fpaths[p].(object)
		for _, m := range sortedKeys(ops) {
			op, _ := ops[m].(object)
			responses, _ := op["responses"].(object)
			if responses == nil {
				return fmt.Errorf("%s: %s: an operation without responses", f, p)
			}
			method, err := methodOf(op)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", f, p, err)
			}
			// The error statuses the method lists, as protoc-gen-openapiv2 writes them
			// for a bound method, and the catch-all it adds to each operation.
			o, _ := proto.GetExtension(method.Options(), openapiv2.E_Openapiv2Operation).(*openapiv2.Operation)
			if len(o.GetResponses()) == 0 {
				return fmt.Errorf("%s: %s: method %s lists no error responses", f, p, method.Name())
			}
			for code, r := range o.GetResponses() {
				if _, ok := responses[code]; ok {
					return fmt.Errorf("%s: %s: response %s is the method's to describe", f, p, code)
				}
				responses[code] = object{"description": r.GetDescription(), "schema": object{"$ref": r.GetSchema().GetJsonSchema().GetRef()}}
			}
			responses["default"] = object{"description": "An unexpected error response.", "schema": object{"$ref": "#/definitions/rpcStatus"}}
		}
		paths[p] = ops
	}
	fdefs, _ := frag["definitions"].(object)
	for name, d := range fdefs {
		if _, ok := defs[name]; ok {
			return fmt.Errorf("%s: definition %s is generated already", f, name)
		}
		defs[name] = d
	}
	return nil
}

// methodOf finds the contract method an operation serves from the operation id
// protoc-gen-openapiv2 gives it (and the fragments copy): <Service>_<Method>.
func methodOf(op object) (protoreflect.MethodDescriptor, error) {
	id, _ := op["operationId"].(string)
	svc, name, ok := strings.Cut(id, "_")
	if !ok {
		return nil, fmt.Errorf("operation id %q is not <Service>_<Method>", id)
	}
	s := contract.Services().ByName(protoreflect.Name(svc))
	if s == nil {
		return nil, fmt.Errorf("operation id %q: no service %s", id, svc)
	}
	m := s.Methods().ByName(protoreflect.Name(name))
	if m == nil {
		return nil, fmt.Errorf("operation id %q: no method %s", id, name)
	}
	return m, nil
}

// renameOperations names each operation after its method in lowerCamelCase, the name a
// generated client's function gets.
func renameOperations(paths object) error {
	seen := map[string]bool{}
	for _, p := range sortedKeys(paths) {
		ops, _ := paths[p].(object)
		for _, m := range sortedKeys(ops) {
			op, _ := ops[m].(object)
			method, err := methodOf(op)
			if err != nil {
				return fmt.Errorf("%s %s: %w", m, p, err)
			}
			name := string(method.Name())
			id := strings.ToLower(name[:1]) + name[1:]
			if seen[id] {
				return fmt.Errorf("two operations would be named %s", id)
			}
			seen[id] = true
			op["operationId"] = id
		}
	}
	return nil
}

// definitionName is the name protoc-gen-openapiv2 gives a message's schema: the last
// part of its package, then its name (nested names joined).
func definitionName(md protoreflect.MessageDescriptor) string {
	pkg := string(md.ParentFile().Package())
	if i := strings.LastIndex(pkg, "."); i >= 0 {
		pkg = pkg[i+1:]
	}
	rel := strings.TrimPrefix(string(md.FullName()), string(md.ParentFile().Package())+".")
	return pkg + strings.ReplaceAll(rel, ".", "")
}

// addRules adds each field's protovalidate rules to the schema of the message's
// definition, and to the path and query parameters that carry the field.
func addRules(paths, defs object) error {
	var walk func(protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if def, ok := defs[definitionName(md)].(object); ok {
			props, _ := def["properties"].(object)
			for i := 0; i < md.Fields().Len(); i++ {
				fd := md.Fields().Get(i)
				if prop, ok := props[fd.JSONName()].(object); ok {
					applyRules(prop, fd)
				}
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			walk(md.Messages().Get(i))
		}
	}
	for i := 0; i < contract.Messages().Len(); i++ {
		walk(contract.Messages().Get(i))
	}
	for _, p := range sortedKeys(paths) {
		ops, _ := paths[p].(object)
		for _, m := range sortedKeys(ops) {
			op, _ := ops[m].(object)
			method, err := methodOf(op)
			if err != nil {
				return fmt.Errorf("%s %s: %w", m, p, err)
			}
			params, _ := op["parameters"].([]any)
			for _, x := range params {
				param, _ := x.(object)
				if in := param["in"]; in != "path" && in != "query" {
					continue
				}
				name, _ := param["name"].(string)
				fd := fieldByJSONPath(method.Input(), name)
				if fd == nil {
					return fmt.Errorf("%s %s: parameter %s is no field of %s", m, p, name, method.Input().Name())
				}
				applyRules(param, fd)
			}
		}
	}
	return nil
}

// fieldByJSONPath finds the field a parameter names: a JSON path (`info.fileName`), or a
// bare name found in the message or, once, in one of its message fields (the upload
// route's query names FileInfo's fields).
func fieldByJSONPath(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	first, rest, nested := strings.Cut(name, ".")
	if fd := md.Fields().ByJSONName(first); fd != nil {
		if !nested {
			return fd
		}
		if fd.Message() != nil {
			return fieldByJSONPath(fd.Message(), rest)
		}
		return nil
	}
	if nested {
		return nil
	}
	var found protoreflect.FieldDescriptor
	for i := 0; i < md.Fields().Len(); i++ {
		if sub := md.Fields().Get(i).Message(); sub != nil {
			if fd := sub.Fields().ByJSONName(name); fd != nil {
				if found != nil {
					return nil // ambiguous
				}
				found = fd
			}
		}
	}
	return found
}

// applyRules writes the JSON Schema counterparts of fd's protovalidate rules into s (a
// schema or a non-body parameter, which take the same keywords).
func applyRules(s object, fd protoreflect.FieldDescriptor) {
	rules, _ := proto.GetExtension(fd.Options(), pvalidate.E_Field).(*pvalidate.FieldRules)
	if rules == nil {
		return
	}
	target := s
	if fd.IsList() {
		if r := rules.GetRepeated(); r != nil {
			if r.HasMinItems() {
				s["minItems"] = r.GetMinItems()
			}
			if r.HasMaxItems() {
				s["maxItems"] = r.GetMaxItems()
			}
			if r.GetUnique() {
				s["uniqueItems"] = true
			}
			rules = r.GetItems()
		} else {
			rules = nil
		}
		items, _ := s["items"].(object)
		if items == nil || items["$ref"] != nil {
			return
		}
		target = items
	}
	if rules == nil {
		return
	}
	if str := rules.GetString(); str != nil {
		if rules.GetRequired() && !fd.IsList() {
			target["minLength"] = 1 // protovalidate's required: present and not empty
		}
		if str.HasPattern() {
			target["pattern"] = schemaPattern(str.GetPattern())
		}
		if str.HasMinLen() {
			target["minLength"] = str.GetMinLen()
		}
		if str.HasMaxLen() {
			target["maxLength"] = str.GetMaxLen()
		}
		if str.HasLen() {
			target["minLength"], target["maxLength"] = str.GetLen(), str.GetLen()
		}
		if len(str.GetIn()) > 0 {
			target["enum"] = slices.Clone(str.GetIn())
		}
		if str.HasConst() {
			target["enum"] = []string{str.GetConst()}
		}
	} else if rules.GetRequired() && target["type"] == "string" && target["format"] == nil {
		target["minLength"] = 1
	}
	// Numeric bounds, for the types whose JSON is a number (64-bit integers are JSON
	// strings, which minimum and maximum do not apply to).
	switch {
	case rules.GetInt32() != nil:
		bounds(target, rules.GetInt32().ProtoReflect())
	case rules.GetUint32() != nil:
		bounds(target, rules.GetUint32().ProtoReflect())
	case rules.GetSint32() != nil:
		bounds(target, rules.GetSint32().ProtoReflect())
	case rules.GetDouble() != nil:
		bounds(target, rules.GetDouble().ProtoReflect())
	case rules.GetFloat() != nil:
		bounds(target, rules.GetFloat().ProtoReflect())
	}
}

// schemaPattern writes an RE2 pattern (what protovalidate runs) so that it means the same
// as JSON Schema's `pattern`, an ECMAScript regular expression read with the `u` flag, and
// still compiles as RE2 (go-openapi validates the document with Go's regexp): RE2's code
// point escape \x{HHHH}, which ECMAScript lacks, becomes the character itself (\xHH below
// U+0080); the rest of the syntax the contract uses (classes, \p{Z}, \s, \xHH, anchors,
// repetition) is spelled alike. CI compiles every pattern of the document as an ECMAScript
// RegExp (make client-check). The JSON encoder's output escapes the invisible characters
// this can produce (writeJSON).
func schemaPattern(re2 string) string {
	var b strings.Builder
	for i := 0; i < len(re2); i++ {
		c := re2[i]
		if c != '\\' || i+1 >= len(re2) {
			b.WriteByte(c)
			continue
		}
		if re2[i+1] == 'x' && i+2 < len(re2) && re2[i+2] == '{' {
			if end := strings.IndexByte(re2[i+3:], '}'); end > 0 {
				if cp, err := strconv.ParseUint(re2[i+3:i+3+end], 16, 32); err == nil && utf8.ValidRune(rune(cp)) {
					if cp < 0x80 {
						fmt.Fprintf(&b, `\x%02X`, cp)
					} else {
						b.WriteRune(rune(cp))
					}
					i += 3 + end
					continue
				}
			}
		}
		b.WriteByte(c)
		b.WriteByte(re2[i+1]) // an escaped character, a backslash included, is kept as it is
		i++
	}
	return b.String()
}

// escapeInvisible writes every invisible character of JSON text (a format character such
// as U+202A, or one that does not print) as a \uXXXX escape, so that the document shows
// what its patterns hold. Such characters occur only inside JSON strings, where the
// escape means the same.
func escapeInvisible(js []byte) []byte {
	var out bytes.Buffer
	for _, r := range string(js) {
		if r == '\n' || r == ' ' || (unicode.IsPrint(r) && !unicode.Is(unicode.Cf, r)) {
			out.WriteRune(r)
			continue
		}
		for _, u := range utf16.Encode([]rune{r}) {
			fmt.Fprintf(&out, `\u%04x`, u)
		}
	}
	return out.Bytes()
}

// bounds maps a numeric rules message's gt/gte/lt/lte to Swagger 2.0's minimum, maximum
// and exclusive flags.
func bounds(s object, m protoreflect.Message) {
	get := func(name string) (any, bool) {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || !m.Has(fd) {
			return nil, false
		}
		return m.Get(fd).Interface(), true
	}
	if v, ok := get("gte"); ok {
		s["minimum"] = v
	}
	if v, ok := get("gt"); ok {
		s["minimum"], s["exclusiveMinimum"] = v, true
	}
	if v, ok := get("lte"); ok {
		s["maximum"] = v
	}
	if v, ok := get("lt"); ok {
		s["maximum"], s["exclusiveMaximum"] = v, true
	}
}

// errorDetails are the detail messages the service puts in a google.rpc.Status, with
// what each says.
var errorDetails = []struct {
	msg  proto.Message
	desc string
}{
	{&errdetails.ErrorInfo{}, "On every error: `reason` (what to branch on), `domain` (`esign-evidence`) and `metadata` (e.g. `retry_safe`, `esign_code`, `esign_trace_id`)."},
	{&errdetails.BadRequest{}, "On a request that breaks the contract: one violation per field, named by its JSON path (`cardNo`, `threeElements.mobile`), with the rule in `reason`. Values are never quoted."},
	{&errdetails.RetryInfo{}, "On a refusal that a retry after `retryDelay` may pass (`OVERLOADED`, `RATE_LIMITED`)."},
}

// typeErrorDetails documents rpcStatus.details as the detail messages the service sends,
// each a schema built from its descriptor, and drops the untyped protobufAny.
func typeErrorDetails(defs object) error {
	st, _ := defs["rpcStatus"].(object)
	props, _ := st["properties"].(object)
	details, _ := props["details"].(object)
	if details == nil {
		return fmt.Errorf("rpcStatus has no details property")
	}
	var types []string
	allOf := []any{nil} // the @type part, filled in below
	for _, d := range errorDetails {
		md := d.msg.ProtoReflect().Descriptor()
		if err := messageSchema(defs, md, d.desc); err != nil {
			return err
		}
		types = append(types, "type.googleapis.com/"+string(md.FullName()))
		allOf = append(allOf, object{"$ref": "#/definitions/" + definitionName(md)})
	}
	allOf[0] = object{
		"type":     "object",
		"required": []string{"@type"},
		"properties": object{"@type": object{
			"type":        "string",
			"enum":        types,
			"description": "Which detail this is; only that message's fields are present.",
		}},
	}
	defs["rpcStatusDetail"] = object{
		"description": "One detail of an error: an ErrorInfo (on every error), a BadRequest (on a request that breaks the contract) or a RetryInfo, told apart by `@type`. The schema lists every detail's fields; a detail carries only its own.",
		"allOf":       allOf,
	}
	details["items"] = object{"$ref": "#/definitions/rpcStatusDetail"}
	details["description"] = "The error's details: an ErrorInfo always, a BadRequest on a request that breaks the contract, a RetryInfo when a retry after a delay may pass."
	delete(defs, "protobufAny")
	typeAnswers(defs)
	return nil
}

// typeAnswers documents every other field of type google.protobuf.Any (GetSubmission's
// result: the answer of the operation the submission was made with) as what protojson
// writes for one: an object whose "@type" names the message, beside that message's own
// fields.
func typeAnswers(v any) {
	switch n := v.(type) {
	case object:
		for k, child := range n {
			if c, ok := child.(object); ok && c["$ref"] == "#/definitions/protobufAny" {
				n[k] = object{
					"type":                 "object",
					"description":          "An operation's answer as JSON: \"@type\" names its message (e.g. type.googleapis.com/esign.evidence.v1.CreateEvidenceChainResponse), beside that message's fields.",
					"properties":           object{"@type": object{"type": "string"}},
					"additionalProperties": true,
				}
				continue
			}
			typeAnswers(child)
		}
	case []any:
		for _, child := range n {
			typeAnswers(child)
		}
	}
}

// messageSchema adds the schema of md (and of the messages its fields hold) to defs, in
// protojson's form.
func messageSchema(defs object, md protoreflect.MessageDescriptor, desc string) error {
	name := definitionName(md)
	if _, ok := defs[name]; ok {
		return nil
	}
	props := object{}
	def := object{"type": "object", "properties": props}
	if desc != "" {
		def["description"] = desc
	}
	defs[name] = def
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		s, err := fieldSchema(defs, fd)
		if err != nil {
			return fmt.Errorf("%s: %w", fd.FullName(), err)
		}
		if fd.IsList() {
			s = object{"type": "array", "items": s}
		}
		props[fd.JSONName()] = s
	}
	return nil
}

func fieldSchema(defs object, fd protoreflect.FieldDescriptor) (object, error) {
	if fd.IsMap() {
		v, err := fieldSchema(defs, fd.MapValue())
		if err != nil {
			return nil, err
		}
		return object{"type": "object", "additionalProperties": v}, nil
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return object{"type": "string"}, nil
	case protoreflect.BoolKind:
		return object{"type": "boolean"}, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return object{"type": "integer", "format": "int32"}, nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return object{"type": "string", "format": "int64"}, nil
	case protoreflect.MessageKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Duration":
			return object{"type": "string", "description": "A duration such as `1s` or `0.5s`."}, nil
		case "google.protobuf.Timestamp":
			return object{"type": "string", "format": "date-time"}, nil
		}
		if err := messageSchema(defs, fd.Message(), ""); err != nil {
			return nil, err
		}
		return object{"$ref": "#/definitions/" + definitionName(fd.Message())}, nil
	}
	return nil, fmt.Errorf("no JSON schema for %s", fd.Kind())
}

func sortedKeys(m object) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readObject(path string) (object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

package esignevidence_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	pvalidate "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/go-openapi/loads"
	"github.com/go-openapi/spec"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
	openapiv2 "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2/options"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	esignevidence "github.com/esign-evidence/esign-evidence"
	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// loadDocument loads the served document with go-openapi, a full Swagger 2.0 validator.
func loadDocument(t *testing.T) *loads.Document {
	t.Helper()
	doc, err := loads.Analyzed(json.RawMessage(esignevidence.OpenAPIv2), "2.0")
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	return doc
}

// The document is valid Swagger 2.0: the specification's JSON schema plus go-openapi's
// semantic checks (references resolve, path parameters declared, unique operation IDs,
// examples conform to their schemas, ...). Warnings count as failures too.
func TestOpenAPIDocumentValidates(t *testing.T) {
	doc := loadDocument(t)
	errs, warns := validate.NewSpecValidator(doc.Schema(), strfmt.Default).Validate(doc)
	for _, e := range errs.Errors {
		t.Errorf("error: %v", e)
	}
	for _, w := range warns.Errors {
		t.Errorf("warning: %v", w)
	}
}

// What a client team needs from the document: who it is, how to authenticate, which
// fields are required, what every error looks like, and every REST route.
func TestOpenAPIDocumentForClients(t *testing.T) {
	sw := loadDocument(t).Spec()

	if sw.Info == nil || sw.Info.Title != "esign-evidence" || sw.Info.Version == "" ||
		strings.Contains(sw.Info.Version, "not set") || len(sw.Info.Description) < 100 {
		t.Errorf("info: %+v", sw.Info)
	}

	bearer, ok := sw.SecurityDefinitions["bearer"]
	if !ok || bearer.Type != "apiKey" || bearer.In != "header" || bearer.Name != "Authorization" ||
		!strings.Contains(bearer.Description, "Bearer") {
		t.Errorf("bearer security definition: %+v", bearer)
	}
	if len(sw.Security) != 1 || sw.Security[0]["bearer"] == nil {
		t.Errorf("the document does not require the bearer token: %v", sw.Security)
	}

	// google.rpc.Status with typed details: the detail messages the service sends, each
	// a schema of its own, never the untyped google.protobuf.Any.
	st, ok := sw.Definitions["rpcStatus"]
	if !ok {
		t.Fatal("no rpcStatus definition")
	}
	for _, p := range []string{"code", "message", "details"} {
		if _, ok := st.Properties[p]; !ok {
			t.Errorf("rpcStatus lacks %s", p)
		}
	}
	if d := st.Properties["details"]; d.Items == nil || d.Items.Schema == nil || d.Items.Schema.Ref.String() != "#/definitions/rpcStatusDetail" {
		t.Errorf("rpcStatus.details is not a list of rpcStatusDetail: %+v", d)
	}
	var detailRefs []string
	for _, s := range sw.Definitions["rpcStatusDetail"].AllOf {
		detailRefs = append(detailRefs, s.Ref.String())
	}
	for _, want := range []string{"#/definitions/rpcErrorInfo", "#/definitions/rpcBadRequest", "#/definitions/rpcRetryInfo"} {
		if !slices.Contains(detailRefs, want) {
			t.Errorf("rpcStatusDetail does not include %s: %v", want, detailRefs)
		}
	}
	if fv := sw.Definitions["rpcBadRequest"].Properties["fieldViolations"]; fv.Items == nil || fv.Items.Schema == nil ||
		fv.Items.Schema.Ref.String() != "#/definitions/rpcBadRequestFieldViolation" {
		t.Errorf("rpcBadRequest.fieldViolations: %+v", fv)
	}
	for _, p := range []string{"field", "description", "reason"} {
		if _, ok := sw.Definitions["rpcBadRequestFieldViolation"].Properties[p]; !ok {
			t.Errorf("rpcBadRequestFieldViolation lacks %s", p)
		}
	}
	for _, p := range []string{"reason", "domain", "metadata"} {
		if _, ok := sw.Definitions["rpcErrorInfo"].Properties[p]; !ok {
			t.Errorf("rpcErrorInfo lacks %s", p)
		}
	}
	if strings.Contains(string(esignevidence.OpenAPIv2), "protobufAny") {
		t.Error("the document still names the untyped protobufAny")
	}

	// Every REST route the service serves, named after its method, each with exactly the
	// error statuses its method lists (openapiv2_operation in the contract) as
	// google.rpc.Status, and a default.
	want := map[string]string{
		"POST /v3/evidence/evi-point/psn-realname": "createPersonalEvidencePoint",
		"POST /v3/evidence/evi-chain/create":       "createEvidenceChain",
		"GET /v1/submissions/{customBizId}":        "getSubmission",
		"POST /v1/files":                           "uploadFile",
	}
	svc := evidencev1.File_esign_evidence_v1_evidence_proto.Services().ByName("EvidenceService")
	got := map[string]string{}
	codes := map[string][]int{}
	for path, item := range sw.Paths.Paths {
		for method, op := range map[string]*spec.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put, "PATCH": item.Patch, "DELETE": item.Delete} {
			if op == nil {
				continue
			}
			route := method + " " + path
			got[route] = op.ID
			if op.Responses == nil || op.Responses.StatusCodeResponses[200].Schema == nil {
				t.Errorf("%s: no 200 schema", route)
				continue
			}
			m := svc.Methods().ByName(protoreflect.Name(strings.ToUpper(op.ID[:1]) + op.ID[1:]))
			if m == nil {
				t.Errorf("%s: operation %s names no method", route, op.ID)
				continue
			}
			listed, _ := proto.GetExtension(m.Options(), openapiv2.E_Openapiv2Operation).(*openapiv2.Operation)
			var wantCodes []int
			for k := range listed.GetResponses() {
				c, _ := strconv.Atoi(k)
				wantCodes = append(wantCodes, c)
			}
			slices.Sort(wantCodes)
			var gotCodes []int
			for code, r := range op.Responses.StatusCodeResponses {
				if code < 300 {
					continue
				}
				gotCodes = append(gotCodes, code)
				if r.Schema == nil || r.Schema.Ref.String() != "#/definitions/rpcStatus" || r.Description == "" {
					t.Errorf("%s: %d is not documented as google.rpc.Status", route, code)
				}
			}
			slices.Sort(gotCodes)
			if len(wantCodes) == 0 || !slices.Equal(gotCodes, wantCodes) {
				t.Errorf("%s: error statuses %v, its method lists %v", route, gotCodes, wantCodes)
			}
			codes[route] = gotCodes
			if d := op.Responses.Default; d == nil || d.Schema == nil || d.Schema.Ref.String() != "#/definitions/rpcStatus" {
				t.Errorf("%s: default is not google.rpc.Status", route)
			}
		}
	}
	for route, id := range want {
		if got[route] != id {
			t.Errorf("route %s: operation %q, want %q", route, got[route], id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	// Per route, not one list for all: only a lookup answers 404, only a keyed create
	// 409, and a GET has no body to be too large.
	for route, c := range map[string][2][]int{
		"POST /v3/evidence/evi-point/psn-realname": {{400, 401, 409, 413, 429, 503, 504}, {404}},
		"GET /v1/submissions/{customBizId}":        {{400, 401, 404, 429, 503, 504}, {409, 413}},
		"POST /v1/files":                           {{400, 401, 413, 415, 429, 503, 504}, {404, 409}},
	} {
		for _, code := range c[0] {
			if !slices.Contains(codes[route], code) {
				t.Errorf("%s: %d is not documented", route, code)
			}
		}
		for _, code := range c[1] {
			if slices.Contains(codes[route], code) {
				t.Errorf("%s: %d is documented but never answered", route, code)
			}
		}
	}

	// Required fields: exactly the fields the server requires (protovalidate's `required`),
	// for every message the document describes; they reach the document through
	// google.api.field_behavior, which must therefore agree with the validation rules in
	// every message of the contract.
	msgs := evidencev1.File_esign_evidence_v1_evidence_proto.Messages()
	checked := 0
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		wantReq := requiredJSONNames(md, validatedRequired)
		if marked := requiredJSONNames(md, markedRequired); !slices.Equal(marked, wantReq) {
			t.Errorf("%s: field_behavior REQUIRED on %v, protovalidate required on %v", md.Name(), marked, wantReq)
		}
		def, ok := sw.Definitions["v1"+string(md.Name())]
		if !ok {
			continue
		}
		checked++
		gotReq := slices.Clone(def.Required)
		slices.Sort(gotReq)
		if !slices.Equal(gotReq, wantReq) {
			t.Errorf("%s: required %v, want %v", md.Name(), gotReq, wantReq)
		}
	}
	if checked < 6 {
		t.Errorf("only %d messages found in the definitions", checked)
	}
	if req := sw.Definitions["v1CreatePersonalEvidencePointRequest"].Required; !slices.Contains(req, "cardNo") {
		t.Errorf("cardNo is not required in the document: %v", req)
	}
}

// The upload route is described by hand (openapi/upload.swagger.json, merged by
// `make generate`): it must name the same fields the contract's messages have.
func TestOpenAPIUploadRouteMatchesContract(t *testing.T) {
	sw := loadDocument(t).Spec()
	def, ok := sw.Definitions["v1UploadFileResponse"]
	if !ok {
		t.Fatal("no v1UploadFileResponse definition")
	}
	var props []string
	for p := range def.Properties {
		props = append(props, p)
	}
	slices.Sort(props)
	if want := jsonNames((&evidencev1.UploadFileResponse{}).ProtoReflect().Descriptor()); !slices.Equal(props, want) {
		t.Errorf("v1UploadFileResponse has %v, the contract %v", props, want)
	}
	op := sw.Paths.Paths["/v1/files"].Post
	if op == nil {
		t.Fatal("no POST /v1/files")
	}
	for _, ct := range []string{"application/octet-stream", "multipart/form-data"} {
		if !slices.Contains(op.Consumes, ct) {
			t.Errorf("POST /v1/files does not consume %s", ct)
		}
	}
	info := jsonNames((&evidencev1.FileInfo{}).ProtoReflect().Descriptor())
	for _, p := range op.Parameters {
		if p.In == "query" && !slices.Contains(info, p.Name) {
			t.Errorf("query parameter %s is not a FileInfo field (%v)", p.Name, info)
		}
		// fileName is required unless a form's file part names the file, which Swagger 2.0
		// cannot say but in words (a body and form fields exclude each other there).
		if p.In == "query" && p.Name == "fileName" && (p.Required || !strings.Contains(p.Description, "Required, unless the body is a form")) {
			t.Errorf("fileName: required %v, described %q: it is required unless a form's file part names the file", p.Required, p.Description)
		}
	}
}

// The contract's validation rules reach the document as JSON Schema constraints a
// generated client or form can check: every string pattern, length bound and `in` list
// of every field of every message the document describes, required strings as
// minLength 1, and the same on the path and query parameters that carry such a field.
func TestOpenAPIDocumentCarriesTheRules(t *testing.T) {
	sw := loadDocument(t).Spec()
	checked := 0
	checkField := func(where string, fd protoreflect.FieldDescriptor, pattern string, minLen, maxLen *int64, enum []any) {
		rules, _ := proto.GetExtension(fd.Options(), pvalidate.E_Field).(*pvalidate.FieldRules)
		str := rules.GetString()
		if str == nil {
			return
		}
		checked++
		// The same pattern, RE2's \x{HHHH} (which ECMAScript lacks) written as the
		// character itself.
		want := codePointEscape.ReplaceAllStringFunc(str.GetPattern(), func(e string) string {
			cp, _ := strconv.ParseUint(e[3:len(e)-1], 16, 32)
			if cp < 0x80 {
				return fmt.Sprintf(`\x%02X`, cp)
			}
			return string(rune(cp))
		})
		if pattern != want {
			t.Errorf("%s: pattern %q, the contract %q", where, pattern, want)
		}
		if str.HasMaxLen() && (maxLen == nil || uint64(*maxLen) != str.GetMaxLen()) {
			t.Errorf("%s: maxLength %v, the contract %d", where, maxLen, str.GetMaxLen())
		}
		if rules.GetRequired() && (minLen == nil || *minLen != 1) {
			t.Errorf("%s: required but minLength %v", where, minLen)
		}
		if len(str.GetIn()) > 0 {
			var got []string
			for _, v := range enum {
				got = append(got, v.(string))
			}
			if !slices.Equal(got, str.GetIn()) {
				t.Errorf("%s: enum %v, the contract %v", where, got, str.GetIn())
			}
		}
	}
	msgs := evidencev1.File_esign_evidence_v1_evidence_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		def, ok := sw.Definitions["v1"+string(md.Name())]
		if !ok {
			continue
		}
		for j := 0; j < md.Fields().Len(); j++ {
			fd := md.Fields().Get(j)
			p, ok := def.Properties[fd.JSONName()]
			if !ok {
				continue
			}
			checkField(string(md.Name())+"."+fd.JSONName(), fd, p.Pattern, p.MinLength, p.MaxLength, p.Enum)
		}
	}
	if p := sw.Definitions["v1ThreeElements"].Properties["mobile"].Pattern; p != "^1[3-9][0-9]{9}$" {
		t.Errorf("threeElements.mobile pattern %q", p)
	}
	params := map[string]protoreflect.FieldDescriptor{
		"/v1/submissions/{customBizId} customBizId": (&evidencev1.GetSubmissionRequest{}).ProtoReflect().Descriptor().Fields().ByName("custom_biz_id"),
		"/v1/files fileName":                        (&evidencev1.FileInfo{}).ProtoReflect().Descriptor().Fields().ByName("file_name"),
		"/v1/files contentType":                     (&evidencev1.FileInfo{}).ProtoReflect().Descriptor().Fields().ByName("content_type"),
	}
	for path, item := range sw.Paths.Paths {
		for _, op := range []*spec.Operation{item.Get, item.Post} {
			if op == nil {
				continue
			}
			for _, p := range op.Parameters {
				if fd, ok := params[path+" "+p.Name]; ok {
					checkField(path+" "+p.Name, fd, p.Pattern, p.MinLength, p.MaxLength, p.Enum)
					delete(params, path+" "+p.Name)
				}
			}
		}
	}
	if len(params) > 0 {
		t.Errorf("parameters not found: %v", params)
	}
	if checked < 30 {
		t.Errorf("only %d fields with string rules checked", checked)
	}
}

var codePointEscape = regexp.MustCompile(`\\x\{[0-9A-Fa-f]+\}`)

func requiredJSONNames(md protoreflect.MessageDescriptor, required func(protoreflect.FieldDescriptor) bool) []string {
	var names []string
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); required(fd) {
			names = append(names, fd.JSONName())
		}
	}
	slices.Sort(names)
	return names
}

// markedRequired: the field carries (google.api.field_behavior) = REQUIRED.
func markedRequired(fd protoreflect.FieldDescriptor) bool {
	behaviors, _ := proto.GetExtension(fd.Options(), annotations.E_FieldBehavior).([]annotations.FieldBehavior)
	return slices.Contains(behaviors, annotations.FieldBehavior_REQUIRED)
}

// validatedRequired: the server's validation requires the field
// ((buf.validate.field).required).
func validatedRequired(fd protoreflect.FieldDescriptor) bool {
	rules, _ := proto.GetExtension(fd.Options(), pvalidate.E_Field).(*pvalidate.FieldRules)
	return rules.GetRequired()
}

func jsonNames(md protoreflect.MessageDescriptor) []string {
	var names []string
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	slices.Sort(names)
	return names
}

package esignevidence_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	pvalidate "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/go-openapi/loads"
	"github.com/go-openapi/spec"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
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

	// google.rpc.Status with its details.
	st, ok := sw.Definitions["rpcStatus"]
	if !ok {
		t.Fatal("no rpcStatus definition")
	}
	for _, p := range []string{"code", "message", "details"} {
		if _, ok := st.Properties[p]; !ok {
			t.Errorf("rpcStatus lacks %s", p)
		}
	}
	if d := st.Properties["details"]; d.Items == nil || d.Items.Schema == nil || d.Items.Schema.Ref.String() != "#/definitions/protobufAny" {
		t.Errorf("rpcStatus.details is not a list of google.protobuf.Any: %+v", d)
	}

	// Every REST route the service serves, each with the error schema on every error status
	// the service answers.
	want := map[string]string{
		"POST /v3/evidence/evi-point/psn-realname": "EvidenceService_CreatePersonalEvidencePoint",
		"GET /v1/submissions/{customBizId}":        "EvidenceService_GetSubmission",
		"POST /v1/files":                           "EvidenceService_UploadFile",
	}
	got := map[string]string{}
	for path, item := range sw.Paths.Paths {
		for method, op := range map[string]*spec.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put, "PATCH": item.Patch, "DELETE": item.Delete} {
			if op == nil {
				continue
			}
			got[method+" "+path] = op.ID
			if op.Responses == nil || op.Responses.StatusCodeResponses[200].Schema == nil {
				t.Errorf("%s %s: no 200 schema", method, path)
				continue
			}
			for _, code := range []int{400, 401, 404, 409, 413, 429, 500, 503, 504} {
				r, ok := op.Responses.StatusCodeResponses[code]
				if !ok || r.Schema == nil || r.Schema.Ref.String() != "#/definitions/rpcStatus" || r.Description == "" {
					t.Errorf("%s %s: %d is not documented as google.rpc.Status", method, path, code)
				}
			}
			if d := op.Responses.Default; d == nil || d.Schema == nil || d.Schema.Ref.String() != "#/definitions/rpcStatus" {
				t.Errorf("%s %s: default is not google.rpc.Status", method, path)
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
	info := jsonNames((&evidencev1.FileInfo{}).ProtoReflect().Descriptor())
	for _, p := range op.Parameters {
		if p.In == "query" && !slices.Contains(info, p.Name) {
			t.Errorf("query parameter %s is not a FileInfo field (%v)", p.Name, info)
		}
		if p.In == "query" && p.Name == "fileName" && !p.Required {
			t.Error("fileName is not required")
		}
	}
}

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

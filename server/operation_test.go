package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/operation"
)

// Every unary RPC of the contract is served: by its operation's descriptor, or by the
// service itself (GetSubmission). An RPC added to the proto without either would answer
// UNIMPLEMENTED; this finds it.
func TestEveryRPCIsServed(t *testing.T) {
	st := startStack(t, stackOpt{})
	for _, m := range evidencev1.EvidenceService_ServiceDesc.Methods {
		full := "/" + evidencev1.EvidenceService_ServiceDesc.ServiceName + "/" + m.MethodName
		// An empty request: every RPC answers it (most with INVALID_ARGUMENT), none with
		// UNIMPLEMENTED.
		err := st.conn.Invoke(context.Background(), full, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) == codes.Unimplemented {
			t.Errorf("%s is not served: %v", m.MethodName, err)
		}
	}
	if len(operation.All()) == 0 {
		t.Fatal("no operation is registered")
	}
	for _, d := range operation.All() {
		if d.FullMethod() != "/esign.evidence.v1.EvidenceService/"+d.RPC() {
			t.Errorf("%s: full method %q", d.RPC(), d.FullMethod())
		}
	}
}

// GetSubmission names the operation; a name that is not an exactly-once operation of the
// service is refused naming the field, and the personal one is the default.
func TestGetSubmissionByOperation(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CustomBizId = "by-operation-1"
	created, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"", "CreatePersonalEvidencePoint"} {
		got, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "by-operation-1", Operation: op})
		if err != nil {
			t.Fatalf("operation %q: %v", op, err)
		}
		if got.GetOperation() != "CreatePersonalEvidencePoint" || got.GetEviPointId() != created.GetEviPointId() {
			t.Errorf("operation %q: %v", op, got)
		}
		answer := &evidencev1.CreatePersonalEvidencePointResponse{}
		if err := got.GetResult().UnmarshalTo(answer); err != nil || answer.GetEviPointId() != created.GetEviPointId() || !answer.GetReplayed() {
			t.Errorf("operation %q: result %v (%v)", op, answer, err)
		}
	}
	for _, op := range []string{"UploadFile", "GetSubmission", "NoSuchThing"} {
		_, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "by-operation-1", Operation: op})
		_, br := grpcDetails(err)
		if status.Code(err) != codes.InvalidArgument || len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "operation" {
			t.Errorf("operation %q: %v %v", op, err, br)
		}
	}
	// Over REST, the query parameter; the result is typed JSON.
	resp, err := st.http.Get(st.restURL + "/v1/submissions/by-operation-1?operation=CreatePersonalEvidencePoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Operation string         `json:"operation"`
		Result    map[string]any `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("REST: %d %v", resp.StatusCode, err)
	}
	if body.Operation != "CreatePersonalEvidencePoint" || body.Result["eviPointId"] != created.GetEviPointId() ||
		!strings.HasSuffix(body.Result["@type"].(string), "CreatePersonalEvidencePointResponse") {
		t.Errorf("REST body %+v", body)
	}
}

// A key that did not pass validation is logged as a bounded, marked prefix, never whole:
// a megabyte of key costs the log 36 bytes. A valid key is logged whole.
func TestUnvalidatedKeyIsLoggedBounded(t *testing.T) {
	st := startStack(t, stackOpt{})
	long := "K" + strings.Repeat("k", 200_000)
	_, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: long})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v", err)
	}
	waitFor(t, func() bool {
		return len(logLines(t, st.logs.String(), map[string]string{"msg": "call", "code": "InvalidArgument"})) > 0
	})
	line := logLines(t, st.logs.String(), map[string]string{"msg": "call", "code": "InvalidArgument"})[0]
	if _, ok := line["custom_biz_id"]; ok {
		t.Errorf("unvalidated key logged as custom_biz_id")
	}
	if p, _ := line["custom_biz_id_unvalidated"].(string); len(p) == 0 || len(p) > 36 || !strings.HasPrefix(long, p) {
		t.Errorf("prefix %q", p)
	}
	if n, _ := line["custom_biz_id_bytes"].(float64); int(n) != len(long) {
		t.Errorf("length %v", line["custom_biz_id_bytes"])
	}
	if len(st.logs.String()) > 10_000 {
		t.Errorf("log grew by %d bytes for one refused call", len(st.logs.String()))
	}

	_, err = st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "valid-key-7"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("got %v", err)
	}
	waitFor(t, func() bool {
		return len(logLines(t, st.logs.String(), map[string]string{"msg": "call", "custom_biz_id": "valid-key-7"})) == 1
	})
}

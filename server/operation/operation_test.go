package operation_test

import (
	"strings"
	"testing"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/operation"
	"github.com/esign-evidence/esign-evidence/server/translate"
	"github.com/esign-evidence/esign-evidence/upstream"
)

type psnOp = operation.Op[*evidencev1.CreatePersonalEvidencePointRequest, *evidencev1.CreatePersonalEvidencePointResponse,
	*upstream.PsnEvidencePoint, upstream.PsnEvidencePointResult, *upstream.PsnEvidencePointResult]

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), want) {
			t.Errorf("panic %v, want one saying %q", r, want)
		}
	}()
	f()
}

// A descriptor that is incomplete, names no RPC of the service, or repeats one already
// registered is refused when the package loads, never found later by a caller.
func TestRegisterRefusesMistakes(t *testing.T) {
	respond := func(*upstream.PsnEvidencePointResult, bool) *evidencev1.CreatePersonalEvidencePointResponse {
		return nil
	}
	mustPanic(t, "incomplete", func() {
		operation.Register(&psnOp{Method: "CreatePersonalEvidencePoint", Esign: upstream.PsnRealname, Translate: translate.ToUpstream})
	})
	mustPanic(t, "incomplete", func() {
		operation.Register(&psnOp{Method: "CreatePersonalEvidencePoint", Esign: upstream.PsnRealname, Translate: translate.ToUpstream,
			Respond: respond, Key: (*evidencev1.CreatePersonalEvidencePointRequest).GetCustomBizId})
	})
	mustPanic(t, "not a unary RPC", func() {
		operation.Register(&psnOp{Method: "CreateSomethingElse", Esign: upstream.PsnRealname, Translate: translate.ToUpstream, Respond: respond})
	})
	mustPanic(t, "registered twice", func() {
		operation.Register(&psnOp{Method: "CreatePersonalEvidencePoint", Esign: upstream.PsnRealname, Translate: translate.ToUpstream, Respond: respond})
	})
}

// The registry answers by RPC and by gRPC full method, and lists the request types.
func TestLookups(t *testing.T) {
	d := operation.ByFullMethod("/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint")
	if d == nil || d != operation.ByRPC("CreatePersonalEvidencePoint") || !d.ExactlyOnce() || d.Upstream() != upstream.PsnRealname {
		t.Fatalf("lookup: %v", d)
	}
	for _, m := range []string{"", "/", "/other.Service/CreatePersonalEvidencePoint", "/esign.evidence.v1.EvidenceService/GetSubmission"} {
		if operation.ByFullMethod(m) != nil {
			t.Errorf("%q found", m)
		}
	}
	if n := len(operation.RequestTypes()); n != len(operation.All()) {
		t.Errorf("%d request types for %d operations", n, len(operation.All()))
	}
	// A stored personal result is the bare eviPointId (as every release kept it).
	resp, err := d.Recorded("P0000000000000000042")
	if err != nil || resp.(*evidencev1.CreatePersonalEvidencePointResponse).GetEviPointId() != "P0000000000000000042" {
		t.Errorf("Recorded: %v %v", resp, err)
	}
}

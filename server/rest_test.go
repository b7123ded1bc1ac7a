package server_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/gateway"
)

// A REST call reaches the handler in process: it is traced once as an HTTP request (the
// REST listener's span) and once, as that span's child, as a server call of the service's
// own in-process tracer; never as a gRPC client or a second gRPC server call (which a hop
// over a gRPC connection would record through the gRPC stats handler).
func TestRESTIsOneHop(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(context.Background())
	st := startStack(t, stackOpt{configure: func(o *server.Options) { o.TracerProvider = tp }})

	if code, b := st.post(t, seedJSON(t)); code != 200 {
		t.Fatalf("REST: %d %s", code, b)
	}
	if resp, b := st.postWith(t, gateway.UploadPath+"?fileName=id-front.jpg", readFile(t, "id-front.jpg"), nil); resp.StatusCode != 200 {
		t.Fatalf("REST upload: %d %s", resp.StatusCode, b)
	}
	want := map[string]bool{
		"esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint": false,
		"esign.evidence.v1.EvidenceService/UploadFile":                  false,
	}
	// The REST listener's span of each request, by route, and the in-process spans' parents.
	httpSpans := map[string]trace.SpanID{}
	parents := map[string]trace.SpanID{}
	for _, s := range exporter.GetSpans() {
		scope := s.InstrumentationScope.Name
		switch {
		case s.SpanKind == trace.SpanKindServer && scope == "github.com/esign-evidence/esign-evidence/server/observe":
			if seen, ok := want[s.Name]; !ok || seen {
				t.Errorf("unexpected or repeated in-process span %q", s.Name)
			}
			want[s.Name] = true
			parents[s.Name] = s.Parent.SpanID()
		case s.SpanKind == trace.SpanKindServer && scope == "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp":
			if _, seen := httpSpans[s.Name]; seen {
				t.Errorf("repeated HTTP span %q", s.Name)
			}
			httpSpans[s.Name] = s.SpanContext.SpanID()
		case s.SpanKind == trace.SpanKindServer || s.SpanKind == trace.SpanKindClient:
			t.Errorf("a REST call made a second hop: %s span %q from %s", s.SpanKind, s.Name, scope)
		}
	}
	for call, route := range map[string]string{
		"esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint": "POST /v3/evidence/evi-point/psn-realname",
		"esign.evidence.v1.EvidenceService/UploadFile":                  "POST " + gateway.UploadPath,
	} {
		if id, ok := httpSpans[route]; !ok || parents[call] != id {
			t.Errorf("%s: in-process span's parent %v, want the REST span of %s (%v)", call, parents[call], route, id)
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("no in-process server span for %s", name)
		}
	}
}

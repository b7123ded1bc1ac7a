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

// A REST call reaches the handler in process: it is traced once, as a server call of the
// service's own in-process tracer, and never as a gRPC client or a second gRPC server call
// (which a hop over a gRPC connection would record through the gRPC stats handler).
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
	for _, s := range exporter.GetSpans() {
		scope := s.InstrumentationScope.Name
		switch {
		case s.SpanKind == trace.SpanKindServer && scope == "github.com/esign-evidence/esign-evidence/server/observe":
			if seen, ok := want[s.Name]; !ok || seen {
				t.Errorf("unexpected or repeated in-process span %q", s.Name)
			}
			want[s.Name] = true
		case s.SpanKind == trace.SpanKindServer || s.SpanKind == trace.SpanKindClient:
			t.Errorf("a REST call made a second hop: %s span %q from %s", s.SpanKind, s.Name, scope)
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("no in-process server span for %s", name)
		}
	}
}

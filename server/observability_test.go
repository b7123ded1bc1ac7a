package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/esign-evidence/esign-evidence/server"
)

// scrape reads the admin listener's /metrics as Prometheus would.
func (st *stack) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(st.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the sample of family name whose labels include every one
// of want, and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// The series the common gRPC Grafana dashboards query (the go-grpc-middleware/
// go-grpc-prometheus dashboards: request rate from grpc_server_started_total, errors from
// grpc_server_handled_total by grpc_code, latency quantiles from
// grpc_server_handling_seconds_bucket, message rates from grpc_server_msg_*_total, all by
// grpc_service/grpc_method/grpc_type), the Go and process collectors' series, and the
// service's own metrics, side by side on /metrics.
func TestStandardMetricsForDashboards(t *testing.T) {
	st := startStack(t, stackOpt{})
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); err != nil {
		t.Fatal(err)
	}
	if code, body := st.post(t, seedJSON(t)); code != http.StatusOK {
		t.Fatalf("REST: %d %s", code, body)
	}
	bad := seedRequest(t)
	bad.CardNo = "130401199601018394"
	_, _ = st.client.CreatePersonalEvidencePoint(context.Background(), bad)

	fams := st.scrape(t)
	create := map[string]string{"grpc_service": "esign.evidence.v1.EvidenceService", "grpc_method": "CreatePersonalEvidencePoint", "grpc_type": "unary"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range create {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	// Both transports count: the REST call reaches the same gRPC server.
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_started_total", create, 3},
		{"grpc_server_handled_total", with(map[string]string{"grpc_code": "OK"}), 2},
		{"grpc_server_handled_total", with(map[string]string{"grpc_code": "InvalidArgument"}), 1},
		{"grpc_server_msg_received_total", create, 3},
		{"grpc_server_msg_sent_total", create, 2},
		{"grpc_server_handling_seconds", create, 3}, // the histogram's _count; its _bucket series carry le
	} {
		got, ok := sample(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if f := fams["grpc_server_handling_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()[0].GetHistogram().GetBucket()) < 5 {
		t.Errorf("grpc_server_handling_seconds is not a histogram with buckets: %v", f.GetType())
	}
	// Every method has its series from the start, the client-streamed upload included.
	if _, ok := sample(fams, "grpc_server_started_total", map[string]string{"grpc_method": "UploadFile", "grpc_type": "client_stream"}); !ok {
		t.Error("no grpc_server_started_total series for UploadFile")
	}
	for _, name := range []string{
		"go_goroutines", "go_memstats_alloc_bytes", "go_gc_duration_seconds", "go_info",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds",
		"esign_evidence_calls_total", "esign_evidence_esign_calls_total", "esign_evidence_http_requests_total",
		"esign_evidence_pending_results", "esign_evidence_store_up",
	} {
		if fams[name] == nil {
			t.Errorf("no %s on /metrics", name)
		}
	}
}

// logLines decodes the JSON log lines that have every one of the given field values.
func logLines(t *testing.T, logs string, want map[string]string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		match := true
		for k, v := range want {
			if s, _ := m[k].(string); s != v {
				match = false
			}
		}
		if match {
			out = append(out, m)
		}
	}
	return out
}

// Every REST response gets one access line and one count, with the request ID the caller
// sees, including those the gateway refuses before any gRPC call: an undecodable body
// (400), an oversized one (413), an unknown path (404). Health checks are logged at debug.
// No line carries the path's or the body's values.
func TestRESTEdgeLogsAndCountsEveryResponse(t *testing.T) {
	st := startStack(t, stackOpt{maxRequestBytes: 4096})
	const idNumber = "130401199601018395" // the seed's ID number, in bodies and a path

	unknownField := bytes.Replace(seedJSON(t), []byte(`"eviName"`), []byte(`"nickname": "x", "eviName"`), 1)
	cases := []struct {
		id, method, path string
		body             []byte
		status           int
		route, level     string
		reachesGRPC      bool
	}{
		{"edge-ok", "POST", "/v3/evidence/evi-point/psn-realname", seedJSON(t), 200, "POST /v3/evidence/evi-point/psn-realname", "INFO", true},
		{"edge-400", "POST", "/v3/evidence/evi-point/psn-realname", unknownField, 400, "POST /v3/evidence/evi-point/psn-realname", "INFO", false},
		{"edge-413", "POST", "/v3/evidence/evi-point/psn-realname", bytes.Repeat([]byte(" "), 8192), 413, "POST /v3/evidence/evi-point/psn-realname", "INFO", false},
		{"edge-404", "GET", "/v1/nothing/" + idNumber + "?cardNo=" + idNumber, nil, 404, "unmatched", "INFO", false},
		{"edge-health", "GET", "/healthz", nil, 200, "GET /healthz", "DEBUG", true},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, st.restURL+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", c.id)
		req.Header.Set("Content-Type", "application/json")
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Exactly one X-Request-Id: the edge's (the gateway once repeated the call's copy).
		if ids := resp.Header.Values("X-Request-Id"); resp.StatusCode != c.status || len(ids) != 1 || ids[0] != c.id {
			t.Errorf("%s: HTTP %d, X-Request-Id %q", c.id, resp.StatusCode, ids)
		}
	}
	// One access line per request: the call's ("call") when it reached an RPC, else the
	// edge's ("http"). A line is written just after its response: wait until all are there.
	lineOf := func(c struct {
		id, method, path string
		body             []byte
		status           int
		route, level     string
		reachesGRPC      bool
	}) string {
		if c.reachesGRPC {
			return "call"
		}
		return "http"
	}
	waitFor(t, func() bool {
		logs := st.logs.String()
		for _, c := range cases {
			if len(logLines(t, logs, map[string]string{"msg": lineOf(c), "request_id": c.id})) == 0 {
				return false
			}
		}
		return true
	})

	logs := st.logs.String()
	for _, c := range cases {
		edge := logLines(t, logs, map[string]string{"msg": "http", "request_id": c.id})
		calls := logLines(t, logs, map[string]string{"msg": "call", "request_id": c.id})
		if len(edge)+len(calls) != 1 {
			t.Errorf("%s: %d edge and %d gRPC access lines, want one line in all", c.id, len(edge), len(calls))
			continue
		}
		if c.reachesGRPC {
			if len(calls) != 1 || calls[0]["level"] != c.level {
				t.Errorf("%s: gRPC access lines %v, want one at %s", c.id, calls, c.level)
			}
			continue
		}
		if len(edge) != 1 {
			t.Errorf("%s: no edge access line", c.id)
			continue
		}
		l := edge[0]
		if l["route"] != c.route || l["status"] != float64(c.status) || l["level"] != c.level || l["http_method"] != c.method {
			t.Errorf("%s: access line %v", c.id, l)
		}
	}
	if strings.Contains(logs, idNumber) || strings.Contains(logs, "nickname") {
		t.Error("a path, query or body value reached the log")
	}

	fams := st.scrape(t)
	for _, c := range cases {
		want := map[string]string{"route": c.route, "method": c.method, "code": strconv.Itoa(c.status)}
		if n, ok := sample(fams, "esign_evidence_http_requests_total", want); !ok || n < 1 {
			t.Errorf("%s: esign_evidence_http_requests_total%v = %v", c.id, want, n)
		}
	}
	if n, _ := sample(fams, "esign_evidence_http_requests_total", map[string]string{"route": "POST /v3/evidence/evi-point/psn-realname", "code": "400"}); n != 1 {
		t.Errorf("400s counted %v times, want 1", n)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !eventually(cond) {
		t.Fatal("condition not met within 10 s")
	}
}

// eventually polls cond until it holds (true) or 10 s pass (false).
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// A REST call carrying a caller's traceparent is traced under the caller's trace, through
// the gateway into the gRPC server's span, and both access lines name that trace and
// their own span.
func TestRESTTraceparentReachesGRPCSpans(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	st := startStack(t, stackOpt{configure: func(o *server.Options) { o.TracerProvider = tp }})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest("POST", st.restURL+"/v3/evidence/evi-point/psn-realname", bytes.NewReader(seedJSON(t)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	req.Header.Set("tracestate", "vendor=abc")
	req.Header.Set("X-Request-Id", "traced-1")
	resp, err := st.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}

	var httpSpan, grpcSpan tracetest.SpanStub
	eventually(func() bool {
		for _, s := range exporter.GetSpans() {
			switch {
			case s.SpanKind == trace.SpanKindServer && s.Name == "POST /v3/evidence/evi-point/psn-realname":
				httpSpan = s
			case s.SpanKind == trace.SpanKindServer && s.Name == "esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint":
				grpcSpan = s
			}
		}
		return httpSpan.SpanContext.IsValid() && grpcSpan.SpanContext.IsValid()
	})
	if !httpSpan.SpanContext.IsValid() || !grpcSpan.SpanContext.IsValid() {
		t.Fatalf("spans recorded: REST %v, gRPC %v; want both", httpSpan.SpanContext.IsValid(), grpcSpan.SpanContext.IsValid())
	}
	if got := httpSpan.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("REST span in trace %s, want the caller's %s", got, traceID)
	}
	if !httpSpan.Parent.IsRemote() || httpSpan.Parent.SpanID().String() != parentID {
		t.Errorf("REST span's parent %v, want the caller's span %s", httpSpan.Parent.SpanID(), parentID)
	}
	if got := httpSpan.SpanContext.TraceState().Get("vendor"); got != "abc" {
		t.Errorf("tracestate lost: %q", got)
	}
	if got := grpcSpan.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("gRPC span in trace %s, want the caller's %s", got, traceID)
	}

	// A REST call that reached its RPC has one access line, the call's, in the caller's
	// trace.
	logs := st.logs.String()
	if edge := logLines(t, logs, map[string]string{"msg": "http", "request_id": "traced-1"}); len(edge) != 0 {
		t.Errorf("%d edge access lines for a call that reached its RPC, want none", len(edge))
	}
	lines := logLines(t, logs, map[string]string{"msg": "call", "request_id": "traced-1"})
	if len(lines) != 1 {
		t.Fatalf("%d call lines", len(lines))
	}
	if lines[0]["trace_id"] != traceID || lines[0]["span_id"] != grpcSpan.SpanContext.SpanID().String() {
		t.Errorf("call line has trace %v span %v, want %s %s", lines[0]["trace_id"], lines[0]["span_id"], traceID, grpcSpan.SpanContext.SpanID())
	}
}

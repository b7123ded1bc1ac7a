package observe

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/operation"
)

// benchStream is the server transport stream a call's context carries: the method, and
// somewhere for the request ID header to go.
type benchStream struct{ method string }

func (s *benchStream) Method() string                                { return s.method }
func (s *benchStream) SetHeader(metadata.MD) error                   { return nil }
func (s *benchStream) SendHeader(metadata.MD) error                  { return nil }
func (s *benchStream) SetTrailer(metadata.MD) error                  { return nil }
func (s *benchStream) SetSendCompress(string) error                  { return nil }
func (s *benchStream) ClientSupportedCompressors() ([]string, error) { return nil, nil }

// BenchmarkObserveUnary is one successful CreatePersonalEvidencePoint call through the
// observing interceptors as the server chains them (the access line's and the standard
// gRPC metrics'), around a handler that does what authentication and validation tell
// the observer; the access line goes to a JSON handler on io.Discard. The incoming
// metadata is what a gRPC client sends, without a request ID (ghz sends none).
func BenchmarkObserveUnary(b *testing.B) {
	reg := prometheus.NewRegistry()
	calls := NewCalls(slog.New(slog.NewJSONHandler(io.Discard, nil)), NewMetrics(reg))
	std := NewGRPCMetrics(reg)
	method := operation.PersonalEvidencePoint.FullMethod()
	calls.m.methods = map[string]operation.Descriptor{method: operation.PersonalEvidencePoint}
	first, second := calls.UnaryServerInterceptor(), std.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: method}
	req := &evidencev1.CreatePersonalEvidencePointRequest{CustomBizId: "biz-0123456789abcdef"}
	resp := &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: "evi-0123456789abcdef0123456789"}
	handler := func(ctx context.Context, _ any) (any, error) {
		SetCaller(ctx, "bench-caller")
		MarkValidated(ctx)
		return resp, nil
	}
	inner := func(ctx context.Context, req any) (any, error) { return second(ctx, req, info, handler) }
	md := metadata.MD{
		":authority":    {"localhost:50051"},
		"content-type":  {"application/grpc"},
		"user-agent":    {"grpc-go/1.85.0"},
		"authorization": {"Bearer token"},
		"grpc-timeout":  {"20S"},
	}
	base := grpc.NewContextWithServerTransportStream(metadata.NewIncomingContext(context.Background(), md),
		&benchStream{method: method})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := first(base, req, info, inner); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserveHTTP is one successful REST response through the REST edge (its
// request ID, route, metrics; the call's own line is written inside, so the edge writes
// none), around a handler that answers 200 as the gateway does.
func BenchmarkObserveHTTP(b *testing.B) {
	const route = "POST /v3/evidence/evi-point/psn-realname"
	h := NewHTTP(slog.New(slog.NewJSONHandler(io.Discard, nil)), prometheus.NewRegistry(), []string{route}, nil)
	body := []byte(`{"eviPointId":"evi-0123456789abcdef0123456789"}`)
	handler := h.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		markCallLogged(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}))
	req := httptest.NewRequest(http.MethodPost, "/v3/evidence/evi-point/psn-realname", nil)
	w := &discardWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		req.Header.Del("X-Request-Id")
		clear(w.header)
		handler.ServeHTTP(w, req)
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its headers.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

package upstream_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// TestEchoedRequestIsMasked: an e签宝 that quotes the whole request in its business error
// gets every caller-supplied string masked, whichever field it came from (eviName, mark,
// verifySerialNumber, openingBank, the suppliers, the scores); a 401/403 keeps only a
// reason e签宝 documents, never the gateway's free text.
func TestEchoedRequestIsMasked(t *testing.T) {
	sentinels := map[string]string{
		"eviName": "evi-sentinel-名称", "mark": "mark-sentinel-备注", "verifySerialNumber": "VSN-sentinel-77",
		"openingBank": "bank-sentinel-银行", "infoVerifySupplier": "supplier-sentinel-甲", "smsSupplier": "sms-sentinel-乙",
		"faceImageSimilarScore": "0.987654", "faceLiveDetectScore": "0.123456",
	}
	var gatewayText string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if gatewayText != "" {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": gatewayText})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"code": 1435002, "message": "参数错误: " + string(body)})
	}))
	defer srv.Close()
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: testAppID, AppSecret: testSecret, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	points := []*upstream.PsnEvidencePoint{seedPoint(), seedPoint(), seedPoint()}
	for _, p := range points {
		p.EviName, p.Mark = sentinels["eviName"], sentinels["mark"]
	}
	te := points[0].ThreeElements
	te.VerifySerialNumber, te.InfoVerifySupplier, te.SMSSupplier = sentinels["verifySerialNumber"], sentinels["infoVerifySupplier"], sentinels["smsSupplier"]
	points[1].RealNameMethod, points[1].ThreeElements = upstream.MethodBankCardFour, nil
	points[1].BankCardFour = &upstream.BankCardFour{InfoVerifySupplier: sentinels["infoVerifySupplier"], VerifyTime: "20240324",
		VerifySerialNumber: sentinels["verifySerialNumber"], OpeningBank: sentinels["openingBank"], BankCard: "6222021234567890123",
		Mobile: "19800002222", SMSCode: "123456", SMSSupplier: sentinels["smsSupplier"]}
	points[2].RealNameMethod, points[2].ThreeElements = upstream.MethodFace, nil
	points[2].Face = &upstream.Face{InfoVerifySupplier: sentinels["infoVerifySupplier"], VerifyTime: "20240324",
		VerifySerialNumber: sentinels["verifySerialNumber"], FaceImage: "9631665ce202447bb254ab57a391808c",
		FaceImageSimilarScore: sentinels["faceImageSimilarScore"], FaceLiveDetectScore: sentinels["faceLiveDetectScore"]}
	for i, p := range points {
		_, err := c.CreatePsnEvidencePoint(t.Context(), p)
		var be *upstream.BusinessError
		if !errors.As(err, &be) {
			t.Fatalf("point %d: %v", i, err)
		}
		for field, v := range sentinels {
			if strings.Contains(err.Error(), v) {
				t.Errorf("point %d: %s (%s) echoed in %q", i, field, v, err.Error())
			}
		}
		if !strings.Contains(be.Message, "参数错误") {
			t.Errorf("point %d: e签宝's own words were masked too: %q", i, be.Message)
		}
	}
	for text, want := range map[string]string{"INVALID_SIGNATURE": "INVALID_SIGNATURE", "no such app: evi-sentinel-名称 at 10.0.0.1": ""} {
		gatewayText = text
		_, err := c.CreatePsnEvidencePoint(t.Context(), points[0])
		var ae *upstream.AuthError
		if !errors.As(err, &ae) || ae.Reason != want || (want == "" && strings.Contains(err.Error(), "sentinel")) {
			t.Errorf("a 401 saying %q: %v (reason %q, want %q)", text, err, ae.Reason, want)
		}
	}
}

// TestRedactURL: a URL is printed without the credentials it may carry.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:p4ss@smlopenapi.esign.cn/base":      "https://smlopenapi.esign.cn/base",
		"https://oss.example/f?Signature=abc&Expires=1#x": "https://oss.example/f",
		"http://127.0.0.1:8080":                           "http://127.0.0.1:8080",
		"://user:p4ss@bad":                                "(not a URL)",
	} {
		if got := upstream.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := upstream.New(upstream.Config{BaseURL: "ftp://user:p4ss@host", AppID: testAppID, AppSecret: testSecret})
	if err == nil || strings.Contains(err.Error(), "p4ss") {
		t.Errorf("New with credentials in a bad BaseURL: %v", err)
	}
}

// TestTracedUploadHidesTheSignedQuery: with tracing on, the spans of an upload (the
// upload-URL call and the PUT to the pre-signed URL) carry no query string, while the
// PUT still reaches the storage with its query (the upload succeeds).
func TestTracedUploadHidesTheSignedQuery(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(t.Context())
	e := newEnv(t, upstream.Revision2025, func(c *upstream.Config) {
		c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp))
		}
	})
	data := []byte("the file's bytes")
	sum := md5.Sum(data)
	id, err := e.client.UploadFile(t.Context(), upstream.FileUpload{Name: "a.jpg", ContentType: upstream.ContentTypeOctetStream,
		Size: int64(len(data)), ContentMD5: base64.StdEncoding.EncodeToString(sum[:]), Body: bytes.NewReader(data)})
	if err != nil || !e.sim.Uploaded(id) {
		t.Fatalf("upload: %q %v", id, err)
	}
	spans := exporter.GetSpans()
	if len(spans) < 2 {
		t.Fatalf("%d spans, want the upload-URL call and the PUT", len(spans))
	}
	for _, s := range spans {
		for _, a := range s.Attributes {
			if v := a.Value.String(); strings.Contains(v, "?") || strings.Contains(v, "Expires") {
				t.Errorf("span %q: %s = %q", s.Name, a.Key, v)
			}
		}
	}
}

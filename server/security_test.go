package server_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/authtoken"
	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/gateway"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

const (
	billingToken = "billing-token-0123456789"
	crmToken     = "crm-token-9876543210abcd"
)

func tokenAuth(publicReflection bool) func(*server.Options) {
	return func(o *server.Options) {
		o.Auth = auth.Config{
			Tokens: authtoken.NewSet([]authtoken.Token{
				{Identity: "billing", SHA256: sha256.Sum256([]byte(billingToken))},
				{Identity: "crm", SHA256: sha256.Sum256([]byte(crmToken))},
			}),
			PublicHealth:     true,
			PublicReflection: publicReflection,
		}
	}
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func (st *stack) postWith(t *testing.T, path string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	method := http.MethodPost
	var rd io.Reader = strings.NewReader(string(body))
	if body == nil {
		method, rd = http.MethodGet, nil
	}
	req, err := http.NewRequest(method, st.restURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := st.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestBearerTokens(t *testing.T) {
	st := startStack(t, stackOpt{configure: tokenAuth(true)})
	_, errNone := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
	_, errWrong := st.client.CreatePersonalEvidencePoint(bearer("not-a-token-at-all-000"), seedRequest(t))
	for _, err := range []error{errNone, errWrong} {
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v", err)
		}
	}
	if status.Convert(errNone).Message() != status.Convert(errWrong).Message() {
		t.Error("a missing and a wrong token are told apart")
	}
	if _, err := st.client.CreatePersonalEvidencePoint(bearer(billingToken), seedRequest(t)); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if !strings.Contains(st.logs.String(), `"caller":"billing"`) {
		t.Error("the caller's identity is not in the access log")
	}
	// Health and reflection are public here.
	if _, err := grpc_health_v1.NewHealthClient(st.conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Errorf("health: %v", err)
	}
	if err := listServices(st.conn, context.Background()); err != nil {
		t.Errorf("reflection: %v", err)
	}
	// REST: the Authorization header is the gRPC one.
	resp, b := st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), nil)
	if resp.StatusCode != 401 || !strings.Contains(string(b), "UNAUTHENTICATED") {
		t.Errorf("REST without token: %d %s", resp.StatusCode, b)
	}
	resp, b = st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), map[string]string{"Authorization": "Bearer " + crmToken})
	if resp.StatusCode != 200 {
		t.Errorf("REST with token: %d %s", resp.StatusCode, b)
	}
	if n := st.sim.Count(); n != 2 {
		t.Errorf("e签宝 received %d requests; unauthenticated calls must not reach it", n)
	}
}

func listServices(conn *grpc.ClientConn, ctx context.Context) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	// A Send that finds the stream already ended (io.EOF) leaves the server's status to
	// Recv, which returns it.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestReflectionCanRequireAuth(t *testing.T) {
	st := startStack(t, stackOpt{configure: tokenAuth(false)})
	if err := listServices(st.conn, context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without token: %v", err)
	}
	if err := listServices(st.conn, bearer(crmToken)); err != nil {
		t.Errorf("reflection with token: %v", err)
	}
}

// Callers' customBizIds live in separate namespaces.
func TestCustomBizIDNamespacedByCaller(t *testing.T) {
	st := startStack(t, stackOpt{configure: tokenAuth(true)})
	a := seedRequest(t)
	a.CustomBizId = "shared-42"
	b := seedRequest(t)
	b.CustomBizId = "shared-42"
	b.GetThreeElements().VerifySerialNumber = "No-other"
	ra, err := st.client.CreatePersonalEvidencePoint(bearer(billingToken), a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := st.client.CreatePersonalEvidencePoint(bearer(crmToken), b)
	if err != nil {
		t.Fatalf("the other caller's same customBizId: %v", err)
	}
	ga, _ := st.client.GetSubmission(bearer(billingToken), &evidencev1.GetSubmissionRequest{CustomBizId: "shared-42"})
	gb, _ := st.client.GetSubmission(bearer(crmToken), &evidencev1.GetSubmissionRequest{CustomBizId: "shared-42"})
	if ga.GetEviPointId() != ra.GetEviPointId() || gb.GetEviPointId() != rb.GetEviPointId() || ra.GetEviPointId() == rb.GetEviPointId() {
		t.Errorf("namespaces mixed: %v %v / %v %v", ra, ga, rb, gb)
	}
}

func tlsStack(t *testing.T, ca *testCA, clientCert *tls.Certificate) (*stack, *tlsreload.Reloader, string) {
	t.Helper()
	st, reloader, _, dir := tlsStackTrust(t, ca, clientCert)
	return st, reloader, dir
}

// tlsStackTrust is tlsStack, also returning the client certificates' trust: the client
// CA in dir/ca.crt and the deny-list in dir/deny (empty at first).
func tlsStackTrust(t *testing.T, ca *testCA, clientCert *tls.Certificate) (*stack, *tlsreload.Reloader, *tlsreload.ClientTrust, string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := ca.writeServerCert(t, dir, 7)
	reloader, err := tlsreload.New(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	denyFile := filepath.Join(dir, "deny")
	if err := os.WriteFile(denyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	trust, err := tlsreload.NewClientTrust(ca.writeCA(t, dir), denyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsreload.ServerConfig(reloader, trust)
	client := &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		client.Certificates = []tls.Certificate{*clientCert}
	}
	st := startStack(t, stackOpt{clientTLS: client, configure: func(o *server.Options) {
		tokenAuth(true)(o)
		o.Auth.ClientCerts = true
		o.Auth.CertDenied = trust.Denied
		o.TLS = cfg
	}})
	return st, reloader, trust, dir
}

func TestTLSAndClientCertificates(t *testing.T) {
	ca := newCA(t)
	crm := ca.clientCert(t, "crm-service")
	st, reloader, dir := tlsStack(t, ca, &crm)
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	if resp, b := st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), nil); resp.StatusCode != 200 {
		t.Fatalf("REST with a client certificate: %d %s", resp.StatusCode, b)
	}
	// A REST upload: the handler's stream gets the HTTP connection's certificate too.
	if resp, b := st.postWith(t, gateway.UploadPath+"?fileName=id-front.jpg", readFile(t, "id-front.jpg"), nil); resp.StatusCode != 200 {
		t.Fatalf("REST upload with a client certificate: %d %s", resp.StatusCode, b)
	}
	if got := strings.Count(st.logs.String(), `"caller":"cert:crm-service"`); got != 3 {
		t.Errorf("the certificate's identity logged %d times, want 3", got)
	}

	// The same server, a client with TLS but no certificate: a token is needed, and a
	// REST client cannot claim a certificate identity through a header.
	noCert, _, _ := tlsStackClient(t, st, ca)
	if _, err := noCert.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate, no token: %v", err)
	}
	plainTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
	req, _ := http.NewRequest(http.MethodPost, st.restURL+"/v3/evidence/evi-point/psn-realname", strings.NewReader(string(seedJSON(t))))
	req.Header.Set("Grpc-Metadata-X-Esign-Evidence-Client-Cert", "crm-service")
	req.Header.Set("X-Esign-Evidence-Client-Cert", "crm-service")
	resp, err := plainTLS.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("forged certificate identity over REST: %d", resp.StatusCode)
	}

	// A plaintext client cannot talk to the TLS listener.
	plain, _ := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := evidencev1.NewEvidenceServiceClient(plain).CreatePersonalEvidencePoint(ctx, seedRequest(t)); err == nil {
		t.Error("plaintext accepted on the TLS listener")
	}

	// Rotate the certificate files: new connections get the new certificate.
	time.Sleep(20 * time.Millisecond) // a later modification time
	ca.writeServerCert(t, dir, 8)
	if changed, err := reloader.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	conn, err := tls.Dial("tcp", st.grpcAddr, &tls.Config{RootCAs: ca.pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	conn.Close()
	if serial != 8 {
		t.Errorf("serving certificate serial %d after reload, want 8", serial)
	}
	// REST still works after the reload.
	if resp, b := st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), nil); resp.StatusCode != 200 {
		t.Errorf("REST after reload: %d %s", resp.StatusCode, b)
	}
}

func tlsStackClient(t *testing.T, st *stack, ca *testCA) (evidencev1.EvidenceServiceClient, *grpc.ClientConn, error) {
	t.Helper()
	conn, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(credentialsFor(ca)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return evidencev1.NewEvidenceServiceClient(conn), conn, nil
}

func TestRequestID(t *testing.T) {
	st := startStack(t, stackOpt{})
	var hdr metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "trace-abc.123")
	if _, err := st.client.CreatePersonalEvidencePoint(ctx, seedRequest(t), grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "trace-abc.123" {
		t.Errorf("gRPC header %v", got)
	}
	if !strings.Contains(st.logs.String(), `"request_id":"trace-abc.123"`) {
		t.Error("request ID not logged")
	}
	resp, _ := st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), map[string]string{"X-Request-Id": "rest-req-7"})
	if resp.Header.Get("X-Request-Id") != "rest-req-7" {
		t.Errorf("REST echo %q", resp.Header.Get("X-Request-Id"))
	}
	resp, _ = st.postWith(t, "/v3/evidence/evi-point/psn-realname", []byte(`{"eviName": ""}`), nil)
	if id := resp.Header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("generated request ID %q on an error response", id)
	}
	resp, _ = st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), map[string]string{"X-Request-Id": "has spaces 130401199601018395"})
	if id := resp.Header.Get("X-Request-Id"); strings.Contains(id, " ") || strings.Contains(st.logs.String(), "130401199601018395") {
		t.Errorf("an unsafe request ID was kept: %q", id)
	}
}

func TestMetricsOnTheAdminListener(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CustomBizId = "metrics-1"
	for range 2 {
		if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	bad := seedRequest(t)
	bad.CardNo = "130401199601018394"
	_, _ = st.client.CreatePersonalEvidencePoint(context.Background(), bad)
	st.sim.Inject(esignsim.Fault{BusinessCode: 1435002, Times: 1})
	_, _ = st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))

	resp, err := http.Get(st.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`esign_evidence_calls_total{caller="anonymous",code="OK",method="/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint"} 2`,
		`esign_evidence_calls_total{caller="anonymous",code="InvalidArgument",method="/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint"} 2`,
		`esign_evidence_replays_total 1`,
		`esign_evidence_esign_calls_total{esign_code="0",outcome="success"} 1`,
		`esign_evidence_esign_calls_total{esign_code="1435002",outcome="business_error"} 1`,
		`esign_evidence_calls_in_flight 0`,
		`esign_evidence_circuit_breaker_state 0`,
		`esign_evidence_ratelimit_wait_seconds_count 2`,
		`esign_evidence_ratelimit_refusals_total 0`,
		`esign_evidence_call_duration_seconds_bucket{code="OK"`,
		`esign_evidence_esign_call_duration_seconds_count{outcome="success"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "130401199601018394") || strings.Contains(body, "测试张三") {
		t.Error("personal data in metrics")
	}
}

// Sentinel personal data goes through every path: success, validation failure, an
// e签宝 business error that echoes it, an e签宝 401, and a panic, with debug logging and
// tracing on. It must appear in no log line, no error (gRPC or REST), no span.
func TestSentinelPersonalDataNeverLeaks(t *testing.T) {
	sentinels := []string{"哨兵甲乙丙", "11010519491231002X", "13987654321", "975310", "6212263602078899001",
		"sentinelportrait7f3a", "sentinelemblem9c2d", "sentinelface51b0", "198.51.100.77"}
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(context.Background())
	traced := func(wrongSecret bool) stackOpt {
		return stackOpt{
			revision: upstream.Revision2025,
			configure: func(o *server.Options) {
				o.TracerProvider = tp
			},
			upstreamCfg: func(c *upstream.Config) {
				c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
					return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp))
				}
				if wrongSecret {
					c.AppSecret = "wrong-secret"
				}
			},
		}
	}
	st := startStack(t, traced(false))
	st401 := startStack(t, traced(true))

	sentinel := func() *evidencev1.CreatePersonalEvidencePointRequest {
		r := seedRequest(t)
		r.Name, r.CardNo, r.CardPortrait, r.CardNationalEmblem = sentinels[0], sentinels[1], sentinels[5], sentinels[6]
		r.GetThreeElements().Mobile, r.GetThreeElements().SmsCode = sentinels[2], sentinels[3]
		r.CertAgreementReadTitle, r.CertAgreementReadVersion = "《数字证书服务协议》", "20250801"
		r.CertAgreementReadHash, r.CertAgreementReadTime = strings.Repeat("ab", 32), "2025-03-24 17:30:00"
		r.CertAgreementReadType, r.CertAgreementReadIp = "CHECK", sentinels[8]
		return r
	}
	var errs []string
	record := func(err error) {
		if err == nil {
			return
		}
		b, _ := protojson.Marshal(status.Convert(err).Proto())
		errs = append(errs, err.Error(), string(b))
	}
	restCall := func(s *stack, r *evidencev1.CreatePersonalEvidencePointRequest) {
		body, _ := protojson.Marshal(r)
		_, b := s.post(t, body)
		errs = append(errs, string(b))
	}

	// Success.
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), sentinel()); err != nil {
		t.Fatalf("success path: %v", err)
	}
	restCall(st, sentinel())
	// Validation failure (bank block with an invalid card and SMS code).
	v := sentinel()
	v.RealNameMethod = 0
	v.Verification = &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: &evidencev1.BankCardFour{
		InfoVerifySupplier: "s", VerifyTime: "t", VerifySerialNumber: "n", OpeningBank: "b",
		BankCard: sentinels[4] + "x", Mobile: sentinels[2] + "0", SmsCode: sentinels[3] + "a", SmsSupplier: "x"}}
	_, err := st.client.CreatePersonalEvidencePoint(context.Background(), v)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("validation path: %v", err)
	}
	record(err)
	restCall(st, v)
	// e签宝 echoes the input in a business error.
	echo := fmt.Sprintf("参数错误: 姓名%s证件号%s手机%s验证码%s文件%s/%s IP %s", sentinels[0], strings.ToLower(sentinels[1]), sentinels[2], sentinels[3], sentinels[5], sentinels[6], sentinels[8])
	st.sim.Inject(esignsim.Fault{BusinessCode: 1435002, BusinessMessage: echo, Times: 2})
	_, err = st.client.CreatePersonalEvidencePoint(context.Background(), sentinel())
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("business error path: %v", err)
	}
	record(err)
	restCall(st, sentinel())
	// e签宝 refuses our signature.
	_, err = st401.client.CreatePersonalEvidencePoint(context.Background(), sentinel())
	if status.Code(err) != codes.Internal {
		t.Fatalf("401 path: %v", err)
	}
	record(err)
	restCall(st401, sentinel())
	// A panic in a handler.
	err = st.conn.Invoke(context.Background(), "/test.Panic/Panic", sentinel(), &evidencev1.CreatePersonalEvidencePointResponse{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panic path: %v", err)
	}
	record(err)

	var spans []string
	for _, s := range exporter.GetSpans() {
		spans = append(spans, s.Name, s.Status.Description)
		for _, a := range s.Attributes {
			spans = append(spans, string(a.Key)+"="+a.Value.String())
		}
		for _, e := range s.Events {
			spans = append(spans, e.Name)
			for _, a := range e.Attributes {
				spans = append(spans, string(a.Key)+"="+a.Value.String())
			}
		}
	}
	if len(exporter.GetSpans()) == 0 {
		t.Fatal("no spans recorded: tracing is not wired")
	}
	logs := st.logs.String() + st401.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatal("debug logging produced nothing: the test would prove little")
	}
	for where, text := range map[string]string{"logs": logs, "errors": strings.Join(errs, "\n"), "traces": strings.Join(spans, "\n")} {
		for _, s := range sentinels {
			if strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
				t.Errorf("%s contain the sentinel %q", where, s)
			}
		}
		if strings.Contains(text, secret) {
			t.Errorf("%s contain the app secret", where)
		}
	}
}

func TestLimits(t *testing.T) {
	t.Run("concurrent streams", func(t *testing.T) {
		st := startStack(t, stackOpt{configure: func(o *server.Options) { o.MaxConcurrentStreams = 1 }})
		st.sim.Inject(esignsim.Fault{Latency: 600 * time.Millisecond, Times: 1})
		done := make(chan error, 1)
		go func() {
			_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
			done <- err
		}()
		time.Sleep(150 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := st.client.CreatePersonalEvidencePoint(ctx, seedRequest(t))
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("a stream over the limit: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("the call holding the stream: %v", err)
		}
		if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); err != nil {
			t.Errorf("after: %v", err)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		st := startStack(t, stackOpt{configure: func(o *server.Options) { o.ReadHeaderTimeout = 200 * time.Millisecond }})
		conn, err := net.Dial("tcp", strings.TrimPrefix(st.restURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("POST /v3/evidence/evi-point/psn-realname HTTP/1.1\r\nHost: x\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if time.Since(start) > 2*time.Second || (line != "" && !strings.Contains(line, "408")) {
			t.Errorf("slow client kept for %v (answer %q)", time.Since(start), line)
		}
		if code, b := st.post(t, seedJSON(t)); code != 200 {
			t.Errorf("after: %d %s", code, b)
		}
	})
	t.Run("header size", func(t *testing.T) {
		st := startStack(t, stackOpt{})
		resp, _ := st.postWith(t, "/v3/evidence/evi-point/psn-realname", seedJSON(t), map[string]string{"X-Padding": strings.Repeat("p", 100<<10)})
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d", resp.StatusCode)
		}
		if code, b := st.post(t, seedJSON(t)); code != 200 {
			t.Errorf("after: %d %s", code, b)
		}
	})
	t.Run("upstream response size", func(t *testing.T) {
		huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"code":0,"data":{"eviPointId":"P1"},"message":"` + strings.Repeat("x", 64<<10) + `"}`))
		}))
		defer huge.Close()
		st := startStack(t, stackOpt{upstreamCfg: func(c *upstream.Config) { c.BaseURL, c.MaxResponseBytes = huge.URL, 4096 }})
		_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
		if ei, _ := grpcDetails(err); status.Code(err) != codes.Unavailable || ei.GetMetadata()["cause"] != "malformed_response" {
			t.Errorf("got %v %v", err, ei)
		}
		if _, err := grpc_health_v1.NewHealthClient(st.conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{}); err != nil {
			t.Errorf("after: %v", err)
		}
	})
}

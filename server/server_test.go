package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	esignevidence "github.com/esign-evidence/esign-evidence"
	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/gateway"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

const (
	appID  = "7438000001"
	secret = "s3cr3t-app-secret-7f9a"
)

// stack is a running service against a simulator: real listeners on loopback port 0,
// the real gateway, a real gRPC client.
type stack struct {
	sim      *esignsim.Simulator
	simURL   string
	client   evidencev1.EvidenceServiceClient
	conn     *grpc.ClientConn
	restURL  string
	grpcAddr string
	upstream *upstream.Client
	adminURL string
	http     *http.Client
	logs     *syncBuffer
	stop     func() // stops the server and waits for Serve to return
	served   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type stackOpt struct {
	// configure adjusts the server's options (auth, TLS, tracing, limits).
	configure func(*server.Options)
	// clientTLS makes the test's gRPC and REST clients use TLS.
	clientTLS *tls.Config
	// sim and store, when set, are shared with another stack (two replicas).
	sim             *esignsim.Simulator
	store           submission.Store
	unknown         submission.UnknownPolicy
	upstreamCfg     func(*upstream.Config)
	maxRequestBytes int
	revision        upstream.Revision
}

func startStack(t testing.TB, o stackOpt) *stack {
	t.Helper()
	st := &stack{logs: &syncBuffer{}}
	st.sim = o.sim
	if st.sim == nil {
		st.sim = esignsim.New(esignsim.Config{AppID: appID, AppSecret: secret, Revision: o.revision})
	}
	simSrv := httptest.NewServer(st.sim)
	t.Cleanup(simSrv.Close)
	st.simURL = simSrv.URL

	ucfg := upstream.Config{BaseURL: simSrv.URL, AppID: appID, AppSecret: secret, Revision: o.revision, Timeout: 2 * time.Second}
	if o.upstreamCfg != nil {
		o.upstreamCfg(&ucfg)
	}
	uc, err := upstream.New(ucfg)
	if err != nil {
		t.Fatal(err)
	}
	st.upstream = uc
	store := o.store
	if store == nil {
		bolt, err := submission.OpenBolt(filepath.Join(t.TempDir(), "submissions.db"), submission.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bolt.Close() })
		store = bolt
	}
	policy := o.unknown
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{[]byte("test-fingerprint-key-0123456789")}, Unknown: policy})
	if err != nil {
		t.Fatal(err)
	}
	opts := server.Options{
		Settings:  server.DefaultSettings(),
		Upstream:  uc,
		Submitter: sub,
		Logger:    slog.New(slog.NewJSONHandler(st.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Auth:      auth.Config{Disabled: true},
		OpenAPI:   esignevidence.OpenAPIv2,
	}
	opts.ShutdownTimeout = 5 * time.Second
	if o.maxRequestBytes != 0 {
		opts.MaxRequestBytes = o.maxRequestBytes
	}
	if o.configure != nil {
		o.configure(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	registerPanicService(srv.GRPCServer())
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.served = make(chan error, 1)
	go func() {
		st.served <- srv.Serve(ctx, server.Listeners{GRPC: grpcLis, HTTP: httpLis, Admin: adminLis})
	}()
	var once sync.Once
	st.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-st.served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return after shutdown")
			}
		})
	}
	t.Cleanup(st.stop)

	creds := insecure.NewCredentials()
	scheme := "http://"
	st.http = &http.Client{}
	if o.clientTLS != nil {
		creds = credentials.NewTLS(o.clientTLS)
		scheme = "https://"
		st.http = &http.Client{Transport: &http.Transport{TLSClientConfig: o.clientTLS}}
	}
	st.conn, err = grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.conn.Close() })
	st.client = evidencev1.NewEvidenceServiceClient(st.conn)
	st.restURL = scheme + httpLis.Addr().String()
	st.grpcAddr = grpcLis.Addr().String()
	st.adminURL = "http://" + adminLis.Addr().String()
	return st
}

func seedJSON(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seedRequest(t testing.TB) *evidencev1.CreatePersonalEvidencePointRequest {
	t.Helper()
	r := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(seedJSON(t), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (st *stack) post(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	resp, err := st.http.Post(st.restURL+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// restStatus decodes a google.rpc.Status JSON body.
type restStatus struct {
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

func (r restStatus) detail(typ string) map[string]any {
	for _, d := range r.Details {
		var m map[string]any
		_ = json.Unmarshal(d, &m)
		if m["@type"] == "type.googleapis.com/google.rpc."+typ {
			return m
		}
	}
	return nil
}

func (r restStatus) fields() []string {
	br := r.detail("BadRequest")
	var out []string
	if br == nil {
		return nil
	}
	vs, _ := br["fieldViolations"].([]any)
	for _, v := range vs {
		out = append(out, v.(map[string]any)["field"].(string))
	}
	return out
}

func decodeStatus(t *testing.T, b []byte) restStatus {
	t.Helper()
	var s restStatus
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("not a google.rpc.Status: %s", b)
	}
	return s
}

func grpcDetails(err error) (*errdetails.ErrorInfo, *errdetails.BadRequest) {
	var ei *errdetails.ErrorInfo
	var br *errdetails.BadRequest
	for _, d := range status.Convert(err).Details() {
		switch v := d.(type) {
		case *errdetails.ErrorInfo:
			ei = v
		case *errdetails.BadRequest:
			br = v
		}
	}
	return ei, br
}

func TestGRPCSeedSuccess(t *testing.T) {
	st := startStack(t, stackOpt{})
	resp, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetEviPointId(), "P") {
		t.Errorf("eviPointId %q", resp.GetEviPointId())
	}
	recs := st.sim.Received()
	if len(recs) != 1 || recs[0].EviPointID != resp.GetEviPointId() {
		t.Fatalf("simulator saw %+v", recs)
	}
}

func TestRESTSeedVerbatim(t *testing.T) {
	st := startStack(t, stackOpt{})
	code, body := st.post(t, seedJSON(t))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	id, _ := out["eviPointId"].(string)
	if !strings.HasPrefix(id, "P") || st.sim.Issued() != 1 {
		t.Errorf("response %s, issued %d", body, st.sim.Issued())
	}
}

func TestValidationOverBoth(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CardNo = "130401199601018394" // wrong check digit
	req.GetThreeElements().Mobile = "12345"
	_, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC: %v", err)
	}
	ei, br := grpcDetails(err)
	if ei.GetReason() != apierror.ReasonInvalidRequest || ei.GetDomain() != apierror.ErrorDomain {
		t.Errorf("ErrorInfo %v", ei)
	}
	got := map[string]bool{}
	for _, v := range br.GetFieldViolations() {
		got[v.GetField()] = true
	}
	if !got["cardNo"] || !got["threeElements.mobile"] {
		t.Errorf("field violations %v", br.GetFieldViolations())
	}
	if strings.Contains(err.Error(), "130401199601018394") || strings.Contains(err.Error(), "12345") {
		t.Errorf("values echoed: %v", err)
	}

	body := bytes.Replace(seedJSON(t), []byte("130401199601018395"), []byte("130401199601018394"), 1)
	code, b := st.post(t, body)
	if code != http.StatusBadRequest {
		t.Fatalf("REST status %d: %s", code, b)
	}
	s := decodeStatus(t, b)
	if s.Code != int(codes.InvalidArgument) || strings.Join(s.fields(), ",") != "cardNo" || s.detail("ErrorInfo")["reason"] != apierror.ReasonInvalidRequest {
		t.Errorf("REST status %s", b)
	}
	if bytes.Contains(b, []byte("130401199601018394")) {
		t.Errorf("value echoed: %s", b)
	}
	if st.sim.Count() != 0 {
		t.Error("an invalid request reached e签宝")
	}
}

func TestRESTStrictDecoding(t *testing.T) {
	st := startStack(t, stackOpt{})
	seed := string(seedJSON(t))
	cases := []struct {
		name  string
		body  string
		field string
		never string // a value from the body that must not come back
	}{
		{"unknown cardType", strings.Replace(seed, `"CRED_PSN_CH_IDCARD"`, `"FOO"`, 1), "cardType", "FOO"},
		{"unknown field", strings.Replace(seed, `"eviName"`, `"nickname": "阿三", "eviName"`, 1), "nickname", "阿三"},
		{"unknown nested field", strings.Replace(seed, `"smsCode"`, `"pin": "9999", "smsCode"`, 1), "threeElements.pin", "9999"},
		{"two verification blocks", strings.Replace(seed, `"threeElements"`, `"face": {"faceImage": "abc"}, "threeElements"`, 1), "threeElements", "abc"},
		{"a string where an object belongs", strings.Replace(seed, `"threeElements": {`, `"threeElements": "19800002222", "x": {`, 1), "threeElements", "19800002222"},
		{"a number where a string belongs", strings.Replace(seed, `"130401199601018395"`, `130401199601018395`, 1), "cardNo", "130401199601018395"},
		{"timeStamp not digits", strings.Replace(seed, `"1742809059000"`, `"2025-03-24 17:37:39"`, 1), "timeStamp", "2025-03-24"},
		{"a field twice", strings.Replace(seed, `"eviName"`, `"cardNo": "110105194912310021", "eviName"`, 1), "cardNo", "110105194912310021"},
		{"broken JSON", seed[:len(seed)/2], "", "测试张三"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b := st.post(t, []byte(tc.body))
			if code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", code, b)
			}
			s := decodeStatus(t, b)
			if tc.field != "" && !contains(s.fields(), tc.field) {
				t.Errorf("fields %v, want %s: %s", s.fields(), tc.field, b)
			}
			if tc.field == "" && s.detail("BadRequest") == nil {
				t.Errorf("no BadRequest: %s", b)
			}
			if bytes.Contains(b, []byte(tc.never)) {
				t.Errorf("echoed %q: %s", tc.never, b)
			}
		})
	}
	if st.sim.Count() != 0 {
		t.Error("a bad body reached e签宝")
	}
	// cardType as its enum number and realNameMethod omitted are fine.
	ok := strings.Replace(seed, `"CRED_PSN_CH_IDCARD"`, `1`, 1)
	ok = strings.Replace(ok, `"realNameMethod": "THREEELEMENTS",`, ``, 1)
	if code, b := st.post(t, []byte(ok)); code != http.StatusOK {
		t.Errorf("status %d: %s", code, b)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestOversizedBodies(t *testing.T) {
	st := startStack(t, stackOpt{maxRequestBytes: 4096})
	big := bytes.Replace(seedJSON(t), []byte(`"mark"`), nil, 1)
	big = bytes.Replace(big, []byte(`"eviName"`), []byte(`"mark": "`+strings.Repeat("x", 8192)+`", "eviName"`), 1)
	code, b := st.post(t, big)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", code, b)
	}
	if s := decodeStatus(t, b); s.Code != int(codes.ResourceExhausted) {
		t.Errorf("status %s", b)
	}
	req := seedRequest(t)
	req.Mark = strings.Repeat("x", 8192)
	_, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC: %v", err)
	}
	// Still serving.
	if code, b := st.post(t, seedJSON(t)); code != 200 {
		t.Errorf("after the oversized body: %d %s", code, b)
	}
}

func TestUpstreamOutcomesMapped(t *testing.T) {
	cases := []struct {
		name     string
		fault    *esignsim.Fault
		qps      int
		deadline time.Duration
		cfg      func(*upstream.Config)
		code     codes.Code
		http     int
		reason   string
		// restReason is the reason of the REST call that follows, when it differs.
		restReason string
		meta       map[string]string
	}{
		{name: "e签宝 HTTP 503", fault: &esignsim.Fault{Status: 503}, code: codes.Unavailable, http: 503, reason: apierror.ReasonEsignOutcomeUnknown, meta: map[string]string{"cause": "http_503", "retry_safe": "false"}},
		{name: "reset after the body", fault: &esignsim.Fault{ResetAfterBody: true}, code: codes.Unavailable, http: 503, reason: apierror.ReasonEsignOutcomeUnknown, meta: map[string]string{"cause": "connection_lost"}},
		{name: "malformed JSON", fault: &esignsim.Fault{MalformedJSON: true}, code: codes.Unavailable, http: 503, reason: apierror.ReasonEsignOutcomeUnknown, meta: map[string]string{"cause": "malformed_response"}},
		{name: "upstream timeout", fault: &esignsim.Fault{Latency: 3 * time.Second}, cfg: func(c *upstream.Config) { c.Timeout = 200 * time.Millisecond }, code: codes.Unavailable, http: 503, reason: apierror.ReasonEsignOutcomeUnknown, meta: map[string]string{"cause": "timeout"}},
		// The caller's own deadline fires in the caller's gRPC library first, so no details
		// reach it; the code is what matters.
		{name: "caller deadline", fault: &esignsim.Fault{Latency: 3 * time.Second}, deadline: 300 * time.Millisecond, code: codes.DeadlineExceeded},
		{name: "parameter error", fault: &esignsim.Fault{BusinessCode: 1435002, BusinessMessage: "参数错误: 证件号130401199601018395与姓名测试张三不一致"}, code: codes.InvalidArgument, http: 400, reason: apierror.ReasonEsignParameterError, meta: map[string]string{"esign_code": "1435002", "retry_safe": "true"}},
		{name: "other business error", fault: &esignsim.Fault{BusinessCode: 1435011, BusinessMessage: "功能未开通"}, code: codes.FailedPrecondition, http: 400, reason: apierror.ReasonEsignBusinessError, meta: map[string]string{"esign_code": "1435011"}},
		{name: "quota", qps: 1, code: codes.ResourceExhausted, http: 429, reason: apierror.ReasonEsignRateLimited},
		{name: "our signature refused", cfg: func(c *upstream.Config) { c.AppSecret = "wrong" }, code: codes.Internal, http: 500, reason: apierror.ReasonEsignCredentialsRejected, meta: map[string]string{"esign_reason": "INVALID_SIGNATURE", "esign_http_status": "401"}},
		{name: "our app refused", cfg: func(c *upstream.Config) { c.AppID = "123" }, code: codes.Internal, http: 500, reason: apierror.ReasonEsignCredentialsRejected, meta: map[string]string{"esign_reason": "无效的应用"}},
		// Each call tries three times (unsent attempts are retried); the REST call's
		// second failure is the fifth in a row and opens the circuit breaker.
		{name: "e签宝 unreachable", cfg: func(c *upstream.Config) { c.BaseURL = "http://127.0.0.1:1" }, code: codes.Unavailable, http: 503, reason: apierror.ReasonEsignUnreachable, restReason: apierror.ReasonEsignCircuitOpen, meta: map[string]string{"retry_safe": "true"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := startStack(t, stackOpt{upstreamCfg: tc.cfg})
			check := func(t *testing.T, err error) {
				t.Helper()
				if status.Code(err) != tc.code {
					t.Fatalf("code %v, want %v: %v", status.Code(err), tc.code, err)
				}
				ei, _ := grpcDetails(err)
				if tc.reason != "" && ei.GetReason() != tc.reason {
					t.Errorf("reason %q, want %q", ei.GetReason(), tc.reason)
				}
				for k, v := range tc.meta {
					if ei.GetMetadata()[k] != v {
						t.Errorf("metadata %s = %q, want %q (%v)", k, ei.GetMetadata()[k], v, ei.GetMetadata())
					}
				}
				for _, pii := range []string{"130401199601018395", "测试张三", secret} {
					if strings.Contains(err.Error(), pii) {
						t.Errorf("error carries %q: %v", pii, err)
					}
				}
			}
			call := func() error {
				ctx := context.Background()
				if tc.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.deadline)
					defer cancel()
				}
				_, err := st.client.CreatePersonalEvidencePoint(ctx, seedRequest(t))
				return err
			}
			if tc.qps > 0 {
				st.sim.SetQPSLimit(esignsim.QPSLimit{QPS: tc.qps})
				var err error
				for range 4 {
					if err = call(); err != nil {
						break
					}
				}
				check(t, err)
				st.sim.SetQPSLimit(esignsim.QPSLimit{})
			} else {
				if tc.fault != nil {
					st.sim.Inject(*tc.fault)
				}
				check(t, call())
			}
			if tc.deadline > 0 {
				return // REST has no per-call deadline to set here
			}
			// The same over REST: the standard HTTP status and the same ErrorInfo.
			var (
				code int
				b    []byte
			)
			if tc.qps > 0 {
				// As over gRPC: calls until e签宝's limit refuses one (a loaded machine may
				// spread the first ones over a new second of e签宝's window).
				st.sim.SetQPSLimit(esignsim.QPSLimit{QPS: tc.qps})
				for range 6 {
					if code, b = st.post(t, seedJSON(t)); code != http.StatusOK {
						break
					}
				}
			} else {
				code, b = st.post(t, seedJSON(t))
			}
			if code != tc.http {
				t.Errorf("REST status %d, want %d: %s", code, tc.http, b)
			}
			wantRest := tc.reason
			if tc.restReason != "" {
				wantRest = tc.restReason
			}
			if r := decodeStatus(t, b).detail("ErrorInfo"); r == nil || r["reason"] != wantRest {
				t.Errorf("REST ErrorInfo %s", b)
			}
			if bytes.Contains(b, []byte("130401199601018395")) || bytes.Contains(b, []byte(secret)) {
				t.Errorf("REST error leaks: %s", b)
			}
			// Still serving after the fault.
			st.sim.ClearFaults()
			st.sim.SetQPSLimit(esignsim.QPSLimit{})
		})
	}
}

func TestHealthReflectionOpenAPI(t *testing.T) {
	st := startStack(t, stackOpt{})
	h, err := grpc_health_v1.NewHealthClient(st.conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{Service: "esign.evidence.v1.EvidenceService"})
	if err != nil || h.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(st.conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"esign.evidence.v1.EvidenceService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if !contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	for path, want := range map[string]string{"/healthz": "SERVING", gateway.OpenAPIPath: `"/v3/evidence/evi-point/psn-realname"`} {
		resp, err := http.Get(st.restURL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
}

func TestPanicRecovered(t *testing.T) {
	st := startStack(t, stackOpt{})
	err := st.conn.Invoke(context.Background(), "/test.Panic/Panic", seedRequest(t), &evidencev1.CreatePersonalEvidencePointResponse{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v", err)
	}
	if ei, _ := grpcDetails(err); ei.GetReason() != apierror.ReasonInternal {
		t.Errorf("reason %v", ei)
	}
	if strings.Contains(err.Error(), panicSecret) || strings.Contains(st.logs.String(), panicSecret) {
		t.Error("the panic value leaked")
	}
	if !strings.Contains(st.logs.String(), "panic recovered") {
		t.Error("panic not logged")
	}
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); err != nil {
		t.Errorf("not serving after the panic: %v", err)
	}
}

const panicSecret = "130401199601018395-in-a-panic"

// registerPanicService adds a service whose handler panics with personal data, to test
// recovery through the real interceptor chain.
func registerPanicService(s *grpc.Server) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Panic",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Panic",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := &evidencev1.CreatePersonalEvidencePointRequest{}
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(context.Context, any) (any, error) { panic(panicSecret) }
				if ic == nil {
					return h(ctx, in)
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Panic/Panic"}, h)
			},
		}},
	}, struct{}{})
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	for _, via := range []string{"grpc", "rest"} {
		t.Run(via, func(t *testing.T) {
			st := startStack(t, stackOpt{})
			st.sim.Inject(esignsim.Fault{Latency: 700 * time.Millisecond})
			done := make(chan error, 1)
			go func() {
				if via == "grpc" {
					_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
					done <- err
					return
				}
				code, b := st.post(t, seedJSON(t))
				if code != 200 {
					done <- errors.New(string(b))
					return
				}
				done <- nil
			}()
			// Wait until the call is at the simulator, then shut down.
			deadline := time.Now().Add(3 * time.Second)
			for len(st.sim.Received()) == 0 && st.sim.Count() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			go st.stop()
			// Health turns NOT_SERVING while draining.
			time.Sleep(100 * time.Millisecond)
			if err := <-done; err != nil {
				t.Fatalf("in-flight %s call failed: %v", via, err)
			}
			st.stop()
			if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); status.Code(err) != codes.Unavailable {
				t.Errorf("after shutdown: %v", err)
			}
		})
	}
}

func TestRevision2025NeedsCertAgreement(t *testing.T) {
	st := startStack(t, stackOpt{revision: upstream.Revision2025})
	_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v", err)
	}
	_, br := grpcDetails(err)
	if len(br.GetFieldViolations()) != 6 || br.GetFieldViolations()[0].GetField() != "certAgreementReadTitle" {
		t.Errorf("violations %v", br.GetFieldViolations())
	}
	req := seedRequest(t)
	req.CertAgreementReadTitle = "《数字证书服务协议》"
	req.CertAgreementReadVersion = "20250801"
	req.CertAgreementReadHash = strings.Repeat("ab", 32)
	req.CertAgreementReadTime = "2025-03-24 17:30:00"
	req.CertAgreementReadType = "CLICK"
	req.CertAgreementReadIp = "203.0.113.10"
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
		t.Fatalf("complete 2025 request: %v", err)
	}
	if st.sim.Count() != 1 {
		t.Errorf("simulator saw %d requests", st.sim.Count())
	}
}

// BenchmarkCreateEvidenceGRPC is one whole call in process: gRPC client → interceptors →
// validation → translation → signed HTTP to the simulator on loopback → answer.
func BenchmarkCreateEvidenceGRPC(b *testing.B) {
	st := startStack(b, stackOpt{configure: func(o *server.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		o.Guard.QPS = 1e9
	}})
	req := seedRequest(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateEvidenceREST is the same call over REST: HTTP client → gateway →
// the same interceptors in process → … → answer; read it against BenchmarkCreateEvidenceGRPC.
func BenchmarkCreateEvidenceREST(b *testing.B) {
	st := startStack(b, stackOpt{configure: func(o *server.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		o.Guard.QPS = 1e9
	}})
	body := seedJSON(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := st.http.Post(st.restURL+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("HTTP %d", resp.StatusCode)
				return
			}
		}
	})
}

// The whole contract, e签宝's revision-dependent rules and file-name rules included, is
// checked before a customBizId is claimed or a quota token spent: refused calls leave no
// submission behind, and with a quota of one call per two seconds a valid call right
// after them still gets its token at once.
func TestContractCheckedBeforeKeyOrToken(t *testing.T) {
	st := startStack(t, stackOpt{revision: upstream.Revision2025, configure: func(o *server.Options) { o.Guard.QPS = 0.5 }})
	for range 2 {
		if _, err := uploadGRPC(t, st, "front?.jpg", []byte("image"), 5); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad file name: %v", err)
		}
		req := seedRequest(t)
		req.CustomBizId = "contract-before-key"
		_, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
		if _, br := grpcDetails(err); status.Code(err) != codes.InvalidArgument || len(br.GetFieldViolations()) != 6 {
			t.Fatalf("2025 request without certAgreementRead*: %v", err)
		}
	}
	_, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "contract-before-key"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("a refused request claimed its customBizId: %v", err)
	}
	req := seedRequest(t)
	req.CertAgreementReadTitle, req.CertAgreementReadVersion = "《数字证书服务协议》", "20250801"
	req.CertAgreementReadHash, req.CertAgreementReadTime = strings.Repeat("ab", 32), "2025-03-24 17:30:00"
	req.CertAgreementReadType, req.CertAgreementReadIp = "CLICK", "203.0.113.10"
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := st.client.CreatePersonalEvidencePoint(ctx, req); err != nil {
		t.Errorf("the first valid call found the quota spent by refused ones: %v", err)
	}
	if n := st.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests, want 1", n)
	}
}

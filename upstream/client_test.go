package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

const (
	testAppID  = "7438000001"
	testSecret = "s3cr3t-app-secret-7f9a"
)

// Personal values used in every request below; none may appear in an error string.
var personal = []string{"测试张三", "130401199601018395", "19800002222", "123456", "6222021234567890123", "13800001111", "9631665ce202447bb254ab57a391808c", "02723880e8da4611acc7a6d9ffe93f68"}

func seedPoint() *upstream.PsnEvidencePoint {
	return &upstream.PsnEvidencePoint{
		EviName:            "测试张三-个人实名证据",
		RealNameMethod:     upstream.MethodThreeElements,
		TimeStamp:          time.UnixMilli(1742809059000),
		Name:               "测试张三",
		CardNo:             "130401199601018395",
		CardType:           upstream.CardTypeMainlandID,
		CardPortrait:       "9631665ce202447bb254ab57a391808c",
		CardNationalEmblem: "02723880e8da4611acc7a6d9ffe93f68",
		ThreeElements: &upstream.ThreeElements{
			InfoVerifySupplier: "信息核验供应商名字",
			VerifyTime:         "20240324",
			VerifySerialNumber: "No1234567",
			Mobile:             "19800002222",
			SMSCode:            "123456",
			SMSSupplier:        "短信供应商名字",
		},
	}
}

func certAgreement() *upstream.CertAgreementRead {
	return &upstream.CertAgreementRead{
		Title: "《数字证书服务协议》", Version: "20250801", Hash: strings.Repeat("0f", 32),
		Time: "2025-08-01 12:00:00", Type: "CHECK", IP: "198.51.100.7",
	}
}

type env struct {
	sim    *esignsim.Simulator
	srv    *httptest.Server
	client *upstream.Client
	conns  atomic.Int64
}

func newEnv(t *testing.T, rev upstream.Revision, mutate ...func(*upstream.Config)) *env {
	t.Helper()
	e := &env{sim: esignsim.New(esignsim.Config{AppID: testAppID, AppSecret: testSecret, Revision: rev})}
	e.srv = httptest.NewUnstartedServer(e.sim)
	e.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	cfg := upstream.Config{BaseURL: e.srv.URL, AppID: testAppID, AppSecret: testSecret, Revision: rev, Timeout: 2 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	e.client = c
	return e
}

// assertClean fails if err's text carries the secret or any personal value.
func assertClean(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	s := err.Error() + fmt.Sprintf(" %v %+v %#v", err, err, err)
	for _, v := range append([]string{testSecret}, personal...) {
		if strings.Contains(s, v) {
			t.Errorf("error %q contains %q", err.Error(), v)
		}
	}
}

func TestCreateSuccessSeedRevision(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	res, err := e.client.CreatePsnEvidencePoint(context.Background(), seedPoint())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.EviPointID, "P") || len(res.EviPointID) != 20 {
		t.Errorf("eviPointId %q", res.EviPointID)
	}
	if res.TraceID == "" {
		t.Error("trace ID not kept")
	}
	got := e.sim.Received()
	if len(got) != 1 {
		t.Fatalf("simulator received %d requests", len(got))
	}
	want, _ := seedPoint().Marshal(upstream.RevisionSeed)
	if string(got[0].Body) != string(want) {
		t.Errorf("sent body\n%s\nwant\n%s", got[0].Body, want)
	}
	// The exact header set of the recipe, recomputed here.
	h := got[0].Header
	for k, v := range map[string]string{
		"X-Tsign-Open-App-Id":    testAppID,
		"X-Tsign-Open-Auth-Mode": "Signature",
		"Accept":                 "*/*",
		"Content-Type":           "application/json; charset=UTF-8",
		"Content-MD5":            recipeMD5(want),
		"X-Tsign-Open-Ca-Signature": recipeSign(testSecret,
			"POST\n*/*\n"+recipeMD5(want)+"\napplication/json; charset=UTF-8\n\n/v3/evidence/evi-point/psn-realname"),
	} {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	for _, k := range []string{"Idempotency-Key", "X-Idempotency-Key", "Date"} {
		if h.Get(k) != "" {
			t.Errorf("header %s sent", k)
		}
	}
	if e.client.Sent() != 1 {
		t.Errorf("Sent() = %d", e.client.Sent())
	}
}

func TestSeedWireBody(t *testing.T) {
	b, err := seedPoint().Marshal(upstream.RevisionSeed)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if ts, ok := m["timeStamp"].(float64); !ok || ts != 1742809059000 {
		t.Errorf("timeStamp = %#v, want the JSON number 1742809059000", m["timeStamp"])
	}
	for _, k := range []string{"customBizId", "mark", "bankCardFour", "face", "certAgreementReadTitle"} {
		if _, ok := m[k]; ok {
			t.Errorf("optional field %s sent although not given", k)
		}
	}
	if !strings.Contains(string(b), "测试张三") {
		t.Error("Chinese text is escaped instead of sent as UTF-8")
	}
	p := seedPoint()
	p.CardType = ""
	b, _ = p.Marshal(upstream.RevisionSeed)
	if !strings.Contains(string(b), `"cardType":"CRED_PSN_CH_IDCARD"`) {
		t.Errorf("omitted cardType not defaulted: %s", b)
	}
	p = seedPoint()
	p.CertAgreementRead = certAgreement()
	if _, err := p.Marshal(upstream.RevisionSeed); err == nil {
		t.Error("seed revision accepted certAgreementRead fields")
	}
}

func TestCreateSuccess2025Revision(t *testing.T) {
	e := newEnv(t, upstream.Revision2025)
	p := seedPoint()
	p.CertAgreementRead = certAgreement()
	if _, err := e.client.CreatePsnEvidencePoint(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(e.sim.Received()[0].Body, &m); err != nil {
		t.Fatal(err)
	}
	// 1742809059000 ms is 2025-03-24 09:37:39 UTC, 17:37:39 in Beijing.
	if m["timeStamp"] != "2025-03-24 17:37:39" {
		t.Errorf("timeStamp = %#v", m["timeStamp"])
	}
	if m["certAgreementReadIP"] != "198.51.100.7" || m["certAgreementReadType"] != "CHECK" {
		t.Errorf("certAgreementRead fields not sent: %v", m)
	}
}

func TestRevision2025RefusesMissingCertFieldsBeforeSending(t *testing.T) {
	e := newEnv(t, upstream.Revision2025)
	p := seedPoint()
	p.CertAgreementRead = certAgreement()
	p.CertAgreementRead.Hash, p.CertAgreementRead.IP = "", ""
	_, err := e.client.CreatePsnEvidencePoint(context.Background(), p)
	var ire *upstream.InvalidRequestError
	if !errors.As(err, &ire) {
		t.Fatalf("got %v", err)
	}
	if strings.Join(ire.Fields, ",") != "certAgreementReadHash,certAgreementReadIP" {
		t.Errorf("fields %v", ire.Fields)
	}
	if !strings.Contains(err.Error(), "certAgreementReadHash") || !ire.RetrySafe() {
		t.Errorf("error %q", err)
	}
	if e.sim.Count() != 0 {
		t.Error("request was sent")
	}
	_, err = e.client.CreatePsnEvidencePoint(context.Background(), seedPoint())
	if !errors.As(err, &ire) || len(ire.Fields) != 6 {
		t.Errorf("without any certAgreementRead field: %v", err)
	}
}

// TestFaults runs the client against each simulator fault and checks the error type,
// whether a retry is called safe, that nothing was re-sent, and that the error text is
// clean.
func TestFaults(t *testing.T) {
	cases := []struct {
		name      string
		fault     esignsim.Fault
		timeout   time.Duration
		check     func(t *testing.T, err error)
		retrySafe bool
	}{
		{"HTTP 503", esignsim.Fault{Status: 503}, 0, func(t *testing.T, err error) {
			var u *upstream.UnknownOutcomeError
			if !errors.As(err, &u) || u.Status != 503 {
				t.Errorf("got %v", err)
			}
		}, false},
		{"latency beyond the timeout", esignsim.Fault{Latency: 2 * time.Second}, 200 * time.Millisecond, func(t *testing.T, err error) {
			var u *upstream.UnknownOutcomeError
			if !errors.As(err, &u) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v", err)
			}
		}, false},
		{"slow body beyond the timeout", esignsim.Fault{SlowBody: 3 * time.Second}, 300 * time.Millisecond, func(t *testing.T, err error) {
			var u *upstream.UnknownOutcomeError
			if !errors.As(err, &u) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v", err)
			}
		}, false},
		{"reset after reading the body", esignsim.Fault{ResetAfterBody: true}, 0, func(t *testing.T, err error) {
			var u *upstream.UnknownOutcomeError
			if !errors.As(err, &u) {
				t.Errorf("got %v", err)
			}
		}, false},
		{"reset before reading the body", esignsim.Fault{ResetBeforeBody: true}, 0, func(t *testing.T, err error) {
			// The request fits in the socket buffer, so the client has written it in full
			// before the reset arrives: it cannot know e签宝 did not act on it.
			var u *upstream.UnknownOutcomeError
			var s *upstream.SendError
			if !errors.As(err, &u) && !errors.As(err, &s) {
				t.Errorf("got %v", err)
			}
		}, false},
		{"malformed JSON", esignsim.Fault{MalformedJSON: true}, 0, func(t *testing.T, err error) {
			var m *upstream.MalformedResponseError
			if !errors.As(err, &m) {
				t.Errorf("got %v", err)
			}
		}, false},
		{"business code echoing the input", esignsim.Fault{BusinessCode: 1435002, BusinessMessage: "参数错误: 姓名测试张三与证件号130401199601018395不匹配, 手机19800002222"}, 0, func(t *testing.T, err error) {
			var b *upstream.BusinessError
			if !errors.As(err, &b) || b.Code != 1435002 || !b.IsParameterError() {
				t.Fatalf("got %v", err)
			}
			if want := "参数错误: 姓名***与证件号***不匹配, 手机***"; b.Message != want {
				t.Errorf("masked message %q, want %q", b.Message, want)
			}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, upstream.RevisionSeed, func(c *upstream.Config) {
				if tc.timeout > 0 {
					c.Timeout = tc.timeout
				}
			})
			e.sim.Inject(tc.fault)
			_, err := e.client.CreatePsnEvidencePoint(context.Background(), seedPoint())
			if err == nil {
				t.Fatal("no error")
			}
			tc.check(t, err)
			if got := upstream.IsRetrySafe(err); got != tc.retrySafe {
				t.Errorf("RetrySafe = %v, want %v (%v)", got, tc.retrySafe, err)
			}
			assertClean(t, err)
			// Never re-sent: exactly one request reached the simulator.
			time.Sleep(50 * time.Millisecond)
			if n := e.sim.Count(); n != 1 {
				t.Errorf("simulator received %d requests, want 1", n)
			}
		})
	}
}

func TestQPSLimit(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	e.sim.SetQPSLimit(esignsim.QPSLimit{QPS: 2})
	var refused int
	for range 5 {
		_, err := e.client.CreatePsnEvidencePoint(context.Background(), seedPoint())
		var s *upstream.StatusError
		if errors.As(err, &s) && s.Status == http.StatusTooManyRequests {
			refused++
			if !s.RetrySafe() {
				t.Error("a refused request is not retry-safe")
			}
		}
	}
	// Five calls within (at most) two one-second windows: at least one is refused.
	if refused == 0 || refused > 3 {
		t.Errorf("%d of 5 refused", refused)
	}
}

func TestAuthFailures(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*upstream.Config)
		reason string
	}{
		{"wrong secret", func(c *upstream.Config) { c.AppSecret = "not-the-secret" }, upstream.ReasonInvalidSignature},
		{"unknown app", func(c *upstream.Config) { c.AppID = "9999999999" }, upstream.ReasonInvalidApp},
		{"clock 20 minutes behind", func(c *upstream.Config) {
			c.Now = func() time.Time { return time.Now().Add(-20 * time.Minute) }
		}, upstream.ReasonInvalidTimestamp},
		{"base URL with a path prefix the server does not know", func(c *upstream.Config) { c.BaseURL += "/prefix" }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, upstream.RevisionSeed, tc.mutate)
			_, err := e.client.CreatePsnEvidencePoint(context.Background(), seedPoint())
			assertClean(t, err)
			if tc.reason == "" {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			var a *upstream.AuthError
			if !errors.As(err, &a) || a.Status != 401 || a.Reason != tc.reason {
				t.Fatalf("got %v, want 401 %s", err, tc.reason)
			}
			if !a.RetrySafe() {
				t.Error("an auth refusal is not retry-safe")
			}
		})
	}
}

func TestParameterErrorFromSimulator(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	p := seedPoint()
	p.CardNo = "1304011996" // the simulator quotes a bad card number in its message
	_, err := e.client.CreatePsnEvidencePoint(context.Background(), p)
	var b *upstream.BusinessError
	if !errors.As(err, &b) || b.Code != upstream.CodeParameterError {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), p.CardNo) {
		t.Errorf("card number not masked: %v", err)
	}
	if !strings.Contains(b.Message, "证件号") {
		t.Errorf("message %q does not name the field", b.Message)
	}
}

func TestConnectionRefusedIsNotSent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c, err := upstream.New(upstream.Config{BaseURL: "http://" + addr, AppID: testAppID, AppSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreatePsnEvidencePoint(context.Background(), seedPoint())
	var s *upstream.SendError
	if !errors.As(err, &s) || !s.RetrySafe() {
		t.Fatalf("got %v", err)
	}
	assertClean(t, err)
}

// A socket the process cannot make (out of descriptors) is a local failure: nothing was
// sent, and it says nothing about e签宝, so the circuit breaker ignores it.
func TestOutOfDescriptorsIsLocal(t *testing.T) {
	emfile := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}}
	c, err := upstream.New(upstream.Config{BaseURL: "http://127.0.0.1:1", AppID: testAppID, AppSecret: testSecret,
		WrapTransport: func(http.RoundTripper) http.RoundTripper { return emfile }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreatePsnEvidencePoint(context.Background(), seedPoint())
	if o := upstream.OutcomeOf(err); o != upstream.OutcomeLocal || o.UpstreamFailure() {
		t.Fatalf("out of descriptors: outcome %v (%v)", o, err)
	}
	// A refused connection is e签宝 (or the way to it) failing, not a local one.
	refused := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}}
	c, _ = upstream.New(upstream.Config{BaseURL: "http://127.0.0.1:1", AppID: testAppID, AppSecret: testSecret,
		WrapTransport: func(http.RoundTripper) http.RoundTripper { return refused }})
	_, err = c.CreatePsnEvidencePoint(context.Background(), seedPoint())
	if o := upstream.OutcomeOf(err); o != upstream.OutcomeNotSent {
		t.Fatalf("connection refused: outcome %v (%v)", o, err)
	}
}

func TestCallerContextCancelledBeforeSending(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.client.CreatePsnEvidencePoint(ctx, seedPoint())
	var s *upstream.SendError
	if !errors.As(err, &s) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if e.sim.Count() != 0 {
		t.Error("sent anyway")
	}
}

func TestResponseBodyCap(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"code":0,"message":"` + strings.Repeat("x", 4096) + `"}`))
	}))
	defer big.Close()
	c, err := upstream.New(upstream.Config{BaseURL: big.URL, AppID: testAppID, AppSecret: testSecret, MaxResponseBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreatePsnEvidencePoint(context.Background(), seedPoint())
	var m *upstream.MalformedResponseError
	if !errors.As(err, &m) || !strings.Contains(err.Error(), "larger than 1024") {
		t.Fatalf("got %v", err)
	}
}

func TestGateway403WithoutContentType(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(403)
		_, _ = w.Write([]byte(`{"success":false,"code":403,"message":"IP白名单不匹配"}`))
	}))
	defer srv.Close()
	c, _ := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: testAppID, AppSecret: testSecret})
	_, err := c.CreatePsnEvidencePoint(context.Background(), seedPoint())
	var a *upstream.AuthError
	if !errors.As(err, &a) || a.Status != 403 || a.Reason != upstream.ReasonIPNotWhitelisted {
		t.Fatalf("got %v", err)
	}
}

func TestConnectionsReusedUnderConcurrency(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	const n = 50
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.client.CreatePsnEvidencePoint(context.Background(), seedPoint()); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// 150 calls, at most 50 at a time: a pool that keeps its connections needs no more
	// than 50 (Go's default of 2 idle per host would open far more).
	if c := e.conns.Load(); c > n {
		t.Errorf("%d connections opened for %d calls", c, 3*n)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := map[string]upstream.Config{
		"no base URL":      {AppID: "a", AppSecret: "s"},
		"not http":         {BaseURL: "ftp://x", AppID: "a", AppSecret: "s"},
		"no app ID":        {BaseURL: "https://x", AppSecret: "s"},
		"no secret":        {BaseURL: "https://x", AppID: "a"},
		"unknown revision": {BaseURL: "https://x", AppID: "a", AppSecret: "s", Revision: "2019"},
	}
	for name, cfg := range cases {
		if _, err := upstream.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := upstream.Secret(testSecret)
	cfg := upstream.Config{AppSecret: s}
	// Config holds a func (Now), which encoding/json refuses: marshal the secret inside a
	// struct of its own, as a caller's configuration dump would hold it.
	b, err := json.Marshal(struct{ AppSecret upstream.Secret }{s})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if !strings.Contains(string(b), "[REDACTED]") {
		t.Errorf("JSON without the redaction marker: %s", b)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, s), string(b)} {
		if strings.Contains(out, testSecret) {
			t.Errorf("secret printed: %s", out)
		}
	}
}

// Only e签宝's documented answers are definite: an undocumented 2xx or 3xx may mean the
// evidence point was created (or queued), so it is an outcome unknown, never a refusal;
// 401 and 403 are credential refusals whatever the size of their body; other 4xx refuse.
func TestStatusClassification(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   upstream.Outcome
		check  func(error) bool
	}{
		{201, `{"code":0,"data":{}}`, upstream.OutcomeUnknown, func(err error) bool {
			var u *upstream.UnknownOutcomeError
			return errors.As(err, &u) && u.Status == 201
		}},
		{202, ``, upstream.OutcomeUnknown, func(err error) bool {
			var u *upstream.UnknownOutcomeError
			return errors.As(err, &u) && u.Status == 202
		}},
		{204, ``, upstream.OutcomeUnknown, nil},
		{302, ``, upstream.OutcomeUnknown, nil},
		{304, ``, upstream.OutcomeUnknown, nil},
		{503, strings.Repeat("x", 4096), upstream.OutcomeUnknown, nil},
		{401, `{"success":false,"code":401,"message":"INVALID_SIGNATURE` + strings.Repeat("x", 4096) + `"}`, upstream.OutcomeRefused, func(err error) bool { var a *upstream.AuthError; return errors.As(err, &a) && a.Status == 401 }},
		{403, strings.Repeat("<p>denied</p>", 1000), upstream.OutcomeRefused, func(err error) bool { var a *upstream.AuthError; return errors.As(err, &a) && a.Status == 403 }},
		{404, ``, upstream.OutcomeRefused, func(err error) bool { var s *upstream.StatusError; return errors.As(err, &s) && s.Status == 404 }},
		{429, ``, upstream.OutcomeRefused, nil},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: testAppID, AppSecret: testSecret, MaxResponseBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CreatePsnEvidencePoint(context.Background(), seedPoint())
			if got := upstream.OutcomeOf(err); got != tc.want {
				t.Fatalf("outcome %v, want %v (%v)", got, tc.want, err)
			}
			if tc.want == upstream.OutcomeUnknown && upstream.IsRetrySafe(err) {
				t.Errorf("%d is reported retry-safe", tc.status)
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("wrong error: %#v", err)
			}
		})
	}
}

// Each error type states one outcome, and the outcome alone decides retry safety and
// whether the breaker counts it.
func TestOutcomeVocabulary(t *testing.T) {
	cases := []struct {
		err     error
		want    upstream.Outcome
		failure bool
	}{
		{nil, upstream.OutcomeOK, false},
		{&upstream.SendError{Err: errors.New("refused")}, upstream.OutcomeNotSent, true},
		{&upstream.SendError{Err: context.Canceled, Local: true}, upstream.OutcomeLocal, false},
		{&upstream.LocalError{What: "opening a temporary file", Err: errors.New("too many open files")}, upstream.OutcomeLocal, false},
		{&upstream.InvalidRequestError{Reason: "x"}, upstream.OutcomeLocal, false},
		{&upstream.UnknownOutcomeError{Status: 502}, upstream.OutcomeUnknown, true},
		{&upstream.MalformedResponseError{Status: 200}, upstream.OutcomeUnknown, true},
		{&upstream.AuthError{Status: 401}, upstream.OutcomeRefused, false},
		{&upstream.BusinessError{Code: 1}, upstream.OutcomeRefused, false},
		{&upstream.StatusError{Status: 429}, upstream.OutcomeRefused, false},
		{fmt.Errorf("wrapped: %w", &upstream.BusinessError{Code: 1}), upstream.OutcomeRefused, false},
		{errors.New("says nothing"), upstream.OutcomeUnknown, true},
	}
	for _, tc := range cases {
		got := upstream.OutcomeOf(tc.err)
		if got != tc.want || got.UpstreamFailure() != tc.failure || got.RetrySafe() != (tc.want != upstream.OutcomeUnknown) {
			t.Errorf("%v: outcome %v (failure %v)", tc.err, got, got.UpstreamFailure())
		}
		var ue upstream.Error
		if errors.As(tc.err, &ue) && ue.RetrySafe() != got.RetrySafe() {
			t.Errorf("%v: RetrySafe disagrees with its outcome", tc.err)
		}
	}
}

package esignsim_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

const (
	appID  = "7438000001"
	secret = "s3cr3t-app-secret-7f9a"
)

// signed builds a request exactly as the documented recipe says, independently of the
// upstream package.
type signed struct {
	method, path, query string
	body                []byte
	secret              string
	timestamp           string
	md5                 string // overrides the computed Content-MD5 when set
	signPath            string // path+query signed, when different from the one sent
	omit                []string
	headers             map[string]string
}

func (s signed) do(t *testing.T, base string) (*http.Response, map[string]any) {
	t.Helper()
	if s.method == "" {
		s.method = http.MethodPost
	}
	if s.secret == "" {
		s.secret = secret
	}
	if s.timestamp == "" {
		s.timestamp = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	sum := md5.Sum(s.body)
	contentMD5 := base64.StdEncoding.EncodeToString(sum[:])
	if s.md5 != "" {
		contentMD5 = s.md5
	}
	pq := s.path
	if s.query != "" {
		pq += "?" + s.query
	}
	signPath := pq
	if s.signPath != "" {
		signPath = s.signPath
	}
	mac := hmac.New(sha256.New, []byte(s.secret))
	mac.Write([]byte(s.method + "\n*/*\n" + contentMD5 + "\napplication/json; charset=UTF-8\n\n" + signPath))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))

	req, err := http.NewRequest(s.method, base+pq, bytes.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{
		"X-Tsign-Open-App-Id":       appID,
		"X-Tsign-Open-Auth-Mode":    "Signature",
		"X-Tsign-Open-Ca-Timestamp": s.timestamp,
		"X-Tsign-Open-Ca-Signature": sig,
		"Accept":                    "*/*",
		"Content-Type":              "application/json; charset=UTF-8",
		"Content-MD5":               contentMD5,
	}
	for k, v := range s.headers {
		h[k] = v
	}
	for _, k := range s.omit {
		delete(h, k)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp, m
}

func seedBody(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newSim(t *testing.T, rev upstream.Revision) (*esignsim.Simulator, string) {
	t.Helper()
	sim := esignsim.New(esignsim.Config{AppID: appID, AppSecret: secret, Revision: rev, RecordLimit: 8})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func TestSeedExampleAccepted(t *testing.T) {
	sim, base := newSim(t, upstream.RevisionSeed)
	resp, m := signed{path: upstream.PathPsnRealname, body: seedBody(t)}.do(t, base)
	if resp.StatusCode != 200 || m["code"] != float64(0) {
		t.Fatalf("status %d body %v", resp.StatusCode, m)
	}
	id, _ := m["data"].(map[string]any)["eviPointId"].(string)
	if !strings.HasPrefix(id, "P") || len(id) != 20 {
		t.Errorf("eviPointId %q", id)
	}
	if resp.Header.Get(upstream.HeaderTraceID) == "" {
		t.Error("no trace ID")
	}
	_, m2 := signed{path: upstream.PathPsnRealname, body: seedBody(t)}.do(t, base)
	if id2 := m2["data"].(map[string]any)["eviPointId"]; id2 == id {
		t.Error("the same eviPointId issued twice")
	}
	if sim.Issued() != 2 {
		t.Errorf("Issued() = %d", sim.Issued())
	}
}

func TestSignedQueryIsSorted(t *testing.T) {
	_, base := newSim(t, upstream.RevisionSeed)
	// An unknown path with a valid signature gets past the gateway (404); one signed over
	// the unsorted query does not (401).
	resp, _ := signed{path: "/v3/files", query: "b=2&a=1", signPath: "/v3/files?a=1&b=2"}.do(t, base)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("sorted: status %d", resp.StatusCode)
	}
	resp, m := signed{path: "/v3/files", query: "b=2&a=1", signPath: "/v3/files?b=2&a=1"}.do(t, base)
	if resp.StatusCode != 401 || m["message"] != upstream.ReasonInvalidSignature {
		t.Errorf("unsorted: status %d %v", resp.StatusCode, m)
	}
}

func TestTamperingRejected(t *testing.T) {
	body := seedBody(t)
	tampered := bytes.Replace(body, []byte("8395"), []byte("8396"), 1)
	origMD5 := func() string { s := md5.Sum(body); return base64.StdEncoding.EncodeToString(s[:]) }()
	old := strconv.FormatInt(time.Now().Add(-16*time.Minute).UnixMilli(), 10)
	future := strconv.FormatInt(time.Now().Add(16*time.Minute).UnixMilli(), 10)
	cases := []struct {
		name   string
		req    signed
		reason string
	}{
		{"one byte of the body", signed{path: upstream.PathPsnRealname, body: tampered, md5: origMD5}, upstream.ReasonInvalidSignature},
		{"body and Content-MD5 both changed", signed{path: upstream.PathPsnRealname, body: tampered, md5: origMD5, headers: map[string]string{"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}}, upstream.ReasonInvalidSignature},
		{"the secret", signed{path: upstream.PathPsnRealname, body: body, secret: secret + "x"}, upstream.ReasonInvalidSignature},
		{"the path", signed{path: upstream.PathPsnRealname, body: body, signPath: "/v3/evidence/evi-point/org-realname"}, upstream.ReasonInvalidSignature},
		{"the timestamp, 16 minutes old", signed{path: upstream.PathPsnRealname, body: body, timestamp: old}, upstream.ReasonInvalidTimestamp},
		{"the timestamp, 16 minutes ahead", signed{path: upstream.PathPsnRealname, body: body, timestamp: future}, upstream.ReasonInvalidTimestamp},
		{"the timestamp in seconds", signed{path: upstream.PathPsnRealname, body: body, timestamp: strconv.FormatInt(time.Now().Unix(), 10)}, upstream.ReasonInvalidTimestamp},
		{"the Accept header", signed{path: upstream.PathPsnRealname, body: body, headers: map[string]string{"Accept": "application/json"}}, upstream.ReasonInvalidSignature},
		{"the Content-Type header", signed{path: upstream.PathPsnRealname, body: body, headers: map[string]string{"Content-Type": "application/json"}}, upstream.ReasonInvalidSignature},
		{"the app ID", signed{path: upstream.PathPsnRealname, body: body, headers: map[string]string{"X-Tsign-Open-App-Id": "7438000002"}}, upstream.ReasonInvalidApp},
		{"no auth mode", signed{path: upstream.PathPsnRealname, body: body, omit: []string{"X-Tsign-Open-Auth-Mode"}}, upstream.ReasonTokenCantBeNull},
		{"another auth mode", signed{path: upstream.PathPsnRealname, body: body, headers: map[string]string{"X-Tsign-Open-Auth-Mode": "Token"}}, upstream.ReasonAuthStrategy},
		{"no signature", signed{path: upstream.PathPsnRealname, body: body, omit: []string{"X-Tsign-Open-Ca-Signature"}}, upstream.ReasonMissingParameter},
		{"no timestamp", signed{path: upstream.PathPsnRealname, body: body, omit: []string{"X-Tsign-Open-Ca-Timestamp"}}, upstream.ReasonMissingParameter},
		{"no app ID", signed{path: upstream.PathPsnRealname, body: body, omit: []string{"X-Tsign-Open-App-Id"}}, upstream.ReasonMissingParameter},
		{"unknown path, bad signature", signed{path: "/v3/nowhere", body: body, secret: "wrong"}, upstream.ReasonInvalidSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newSim(t, upstream.RevisionSeed)
			resp, m := tc.req.do(t, base)
			if resp.StatusCode != 401 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if m["success"] != false || m["code"] != float64(401) || m["message"] != tc.reason {
				t.Errorf("body %v, want reason %s", m, tc.reason)
			}
			if _, ok := m["data"]; ok {
				t.Error("gateway body has data")
			}
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				t.Errorf("gateway 401 with Content-Type %q", ct)
			}
			if sim.Issued() != 0 {
				t.Error("an evidence point was issued")
			}
		})
	}
}

func TestBodyRules(t *testing.T) {
	edit := func(t *testing.T, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(seedBody(t), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := []struct {
		name    string
		f       func(m map[string]any)
		message string // part of the message
	}{
		{"eviName missing", func(m map[string]any) { delete(m, "eviName") }, "eviName"},
		{"eviName of 65 characters", func(m map[string]any) { m["eviName"] = strings.Repeat("证", 65) }, "eviName"},
		{"eviName of 33 astral characters", func(m map[string]any) { m["eviName"] = strings.Repeat("𠀀", 33) }, "eviName"},
		{"customBizId of 37", func(m map[string]any) { m["customBizId"] = strings.Repeat("a", 37) }, "customBizId"},
		{"realNameMethod unknown", func(m map[string]any) { m["realNameMethod"] = "PASSWORD" }, "realNameMethod"},
		{"timeStamp not a number", func(m map[string]any) { m["timeStamp"] = "yesterday" }, "timeStamp"},
		{"cardType unknown", func(m map[string]any) { m["cardType"] = "FOO" }, "cardType"},
		{"cardNo of the wrong shape", func(m map[string]any) { m["cardNo"] = "1304" }, "证件号"},
		{"block missing for the method", func(m map[string]any) { m["realNameMethod"] = "FACE" }, "face"},
		{"inner field missing", func(m map[string]any) { delete(m["threeElements"].(map[string]any), "smsCode") }, "threeElements.smsCode"},
		{"name blank", func(m map[string]any) { m["name"] = "  " }, "name"},
		{"name a number", func(m map[string]any) { m["name"] = 12 }, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newSim(t, upstream.RevisionSeed)
			resp, m := signed{path: upstream.PathPsnRealname, body: edit(t, tc.f)}.do(t, base)
			if resp.StatusCode != 200 || m["code"] != float64(upstream.CodeParameterError) {
				t.Fatalf("status %d body %v", resp.StatusCode, m)
			}
			msg, _ := m["message"].(string)
			if !strings.HasPrefix(msg, "参数错误: ") || !strings.Contains(msg, tc.message) {
				t.Errorf("message %q does not name %s", msg, tc.message)
			}
			if sim.Issued() != 0 {
				t.Error("issued anyway")
			}
		})
	}
	t.Run("timeStamp as a JSON number", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		_, m := signed{path: upstream.PathPsnRealname, body: edit(t, func(m map[string]any) { m["timeStamp"] = 1742809059000 })}.do(t, base)
		if m["code"] != float64(0) {
			t.Errorf("refused: %v", m)
		}
	})
	t.Run("cardType omitted", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		_, m := signed{path: upstream.PathPsnRealname, body: edit(t, func(m map[string]any) { delete(m, "cardType") })}.do(t, base)
		if m["code"] != float64(0) {
			t.Errorf("refused: %v", m)
		}
	})
}

func TestRevision2025Rules(t *testing.T) {
	_, base := newSim(t, upstream.Revision2025)
	_, m := signed{path: upstream.PathPsnRealname, body: seedBody(t)}.do(t, base)
	if m["code"] != float64(upstream.CodeParameterError) || !strings.Contains(m["message"].(string), "timeStamp") {
		t.Errorf("epoch-ms timeStamp accepted under 2025: %v", m)
	}
	var req map[string]any
	_ = json.Unmarshal(seedBody(t), &req)
	req["timeStamp"] = "2025-03-24 17:37:39"
	b, _ := json.Marshal(req)
	_, m = signed{path: upstream.PathPsnRealname, body: b}.do(t, base)
	if m["code"] != float64(upstream.CodeParameterError) || !strings.Contains(m["message"].(string), "certAgreementReadTitle") {
		t.Errorf("missing certAgreementRead accepted: %v", m)
	}
	for k, v := range map[string]string{
		"certAgreementReadTitle": "《数字证书服务协议》", "certAgreementReadVersion": "20250801",
		"certAgreementReadHash": strings.Repeat("a", 64), "certAgreementReadTime": "2025-03-24 17:30:00",
		"certAgreementReadType": "CLICK", "certAgreementReadIP": "::1",
	} {
		req[k] = v
	}
	b, _ = json.Marshal(req)
	_, m = signed{path: upstream.PathPsnRealname, body: b}.do(t, base)
	if m["code"] != float64(0) {
		t.Errorf("complete 2025 body refused: %v", m)
	}
}

func TestRecordIsBounded(t *testing.T) {
	sim, base := newSim(t, upstream.RevisionSeed) // RecordLimit 8
	for i := range 20 {
		signed{path: upstream.PathPsnRealname, body: seedBody(t), headers: map[string]string{"X-N": strconv.Itoa(i)}}.do(t, base)
	}
	got := sim.Received()
	if len(got) != 8 || sim.Count() != 20 {
		t.Fatalf("kept %d, counted %d", len(got), sim.Count())
	}
	// Oldest first: the last eight, 12 to 19.
	for i, r := range got {
		if r.Header.Get("X-N") != strconv.Itoa(12+i) {
			t.Errorf("record %d is request %s", i, r.Header.Get("X-N"))
		}
	}
	sim.Reset()
	if len(sim.Received()) != 0 || sim.Count() != 0 {
		t.Error("Reset kept records")
	}
}

func TestFaultTimes(t *testing.T) {
	sim, base := newSim(t, upstream.RevisionSeed)
	sim.Inject(esignsim.Fault{Status: 502, Times: 2})
	var statuses []int
	for range 3 {
		resp, _ := signed{path: upstream.PathPsnRealname, body: seedBody(t)}.do(t, base)
		statuses = append(statuses, resp.StatusCode)
	}
	if statuses[0] != 502 || statuses[1] != 502 || statuses[2] != 200 {
		t.Errorf("statuses %v", statuses)
	}
}

// EchoRequest quotes the request in a business error's message and in the gateway's
// refusal, and checks the signature first all the same.
func TestFaultEchoRequest(t *testing.T) {
	sim, base := newSim(t, upstream.RevisionSeed)
	sim.Inject(esignsim.Fault{BusinessCode: upstream.CodeParameterError, BusinessMessage: "参数错误:", EchoRequest: true})
	body := seedBody(t)
	resp, m := signed{path: upstream.PathPsnRealname, query: "a=1", body: body}.do(t, base)
	msg, _ := m["message"].(string)
	if resp.StatusCode != 200 || m["code"] != float64(upstream.CodeParameterError) ||
		!strings.HasPrefix(msg, "参数错误:") || !strings.Contains(msg, string(body)) || !strings.Contains(msg, "a=1") {
		t.Errorf("business error: %d %v", resp.StatusCode, m)
	}
	resp, m = signed{path: upstream.PathPsnRealname, body: body, secret: "wrong"}.do(t, base)
	msg, _ = m["message"].(string)
	if resp.StatusCode != 401 || !strings.HasPrefix(msg, upstream.ReasonInvalidSignature) || !strings.Contains(msg, string(body)) {
		t.Errorf("a wrong signature: %d %v", resp.StatusCode, m)
	}
	if n := sim.Issued(); n != 0 {
		t.Errorf("%d evidence points issued", n)
	}
}

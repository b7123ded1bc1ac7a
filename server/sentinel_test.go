package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/authtoken"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/gateway"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
	"github.com/esign-evidence/esign-evidence/validation"
)

// The sentinel sweep (issue 21, item 7): every string a caller supplies, in every
// operation, carries a sentinel of its own — each request field's (found by protobuf
// reflection over the request messages, so a field added later is covered without a
// change here), an upload's file name, media type, bytes and form fields, the X-Request-Id
// header, the bearer token (valid; wrong; under another scheme), and other headers
// (User-Agent over both transports, X-Forwarded-For, a header and gRPC metadata of no
// meaning) — sent over gRPC and over REST through every path:
// success, validation failure (every
// field's free-text sentinel, which the shaped fields refuse), REST bodies protojson
// refuses (a sentinel string in every enum, number and boolean field), REST uploads in a
// media type the route does not take (the body's, a form's file part's), an e签宝 business
// error that quotes the whole request in its message, an e签宝 401 that does the same, an
// unknown outcome (the connection reset after the request), an e签宝 timeout, and a
// refused token. Debug logging and tracing are on. No sentinel may then appear in the
// log, in any span (name, attributes, events, status), in any error (gRPC status with
// its details and the response metadata; REST body and headers) or in the /metrics
// exposition.
//
// Two caller strings are logged on purpose, and only in the log are they allowed:
//   - customBizId: the caller's key, documented as logged and stored ("never put personal
//     data in it"): whole once it passed validation, else a marked prefix of at most 36
//     bytes (the access line's custom_biz_id / custom_biz_id_unvalidated);
//   - X-Request-Id when it is plain (`[A-Za-z0-9._:-]{1,128}`): it is how a caller finds
//     its call's line (and it comes back as the X-Request-Id header, the one response
//     header not searched). A request ID that is not plain is replaced, and is searched
//     everywhere like any other sentinel.
//
// The caller's name in the log is not caller-supplied: it comes from the token file.
func TestSentinelSweep(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(context.Background())

	reg := &sentinelRegistry{where: map[string]string{}, logged: map[string]bool{}}
	validToken := reg.add(func(k int) string { return freeSentinel(k) + "-token-of-billing" }, "the bearer token (valid)", false)
	withTracing := func(wrongSecret bool) stackOpt {
		return stackOpt{
			revision: upstream.Revision2025,
			configure: func(o *server.Options) {
				o.TracerProvider = tp
				o.Auth = auth.Config{
					Tokens:       authtoken.NewSet([]authtoken.Token{{Identity: "billing", SHA256: sha256.Sum256([]byte(validToken))}}),
					PublicHealth: true,
				}
			},
			upstreamCfg: func(c *upstream.Config) {
				c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
					return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp))
				}
				// Short, so that the timeout path is quick; the simulator answers in
				// milliseconds otherwise.
				c.Timeout = time.Second
				if wrongSecret {
					c.AppSecret = "wrong-secret-of-this-test"
				}
			},
		}
	}
	st := startStack(t, withTracing(false))
	st401 := startStack(t, withTracing(true))

	v, err := validation.New()
	if err != nil {
		t.Fatal(err)
	}
	sw := &sweep{t: t, reg: reg, v: v, token: validToken, clients: map[*stack]evidencev1.EvidenceServiceClient{}}
	// The gRPC calls' user agent is a sentinel too.
	for _, s := range []*stack{st, st401} {
		conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUserAgent(reg.add(freeSentinel, "the gRPC user agent", false)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sw.clients[s] = evidencev1.NewEvidenceServiceClient(conn)
	}

	type path struct {
		name  string
		st    *stack
		valid bool // the request carries sentinels that pass validation
		// before scripts e签宝 for a call that reaches it, until the call returns (an
		// upload is retried: every attempt meets the fault).
		before func(*stack)
		want   codes.Code // what a call that reaches e签宝 gets; OK for any
		token  bool       // send a wrong token (a sentinel) instead of the valid one
		// heal follows each call with a plain success, so that e签宝's failures do not
		// open the breaker and keep the next calls from reaching it.
		heal bool
	}
	echo := func(s *stack) {
		s.sim.Inject(esignsim.Fault{BusinessCode: upstream.CodeParameterError, BusinessMessage: "参数错误:", EchoRequest: true, Times: 1})
	}
	paths := []path{
		{name: "success", st: st, valid: true, want: codes.OK},
		{name: "validation failure", st: st, want: codes.InvalidArgument},
		{name: "e签宝 business error echoing the request", st: st, valid: true, before: echo, want: codes.InvalidArgument},
		// st401 signs with a secret e签宝 does not know; its 401 quotes the request.
		{name: "e签宝 401 echoing the request", st: st401, valid: true, want: codes.Internal,
			before: func(s *stack) { s.sim.Inject(esignsim.Fault{EchoRequest: true}) }},
		{name: "unknown outcome", st: st, valid: true, heal: true, want: codes.Unavailable,
			before: func(s *stack) { s.sim.Inject(esignsim.Fault{ResetAfterBody: true}) }},
		{name: "e签宝 timeout", st: st, valid: true, heal: true, want: codes.Unavailable,
			before: func(s *stack) { s.sim.Inject(esignsim.Fault{Latency: 3 * time.Second}) }},
		{name: "refused token", st: st, valid: true, token: true, want: codes.Unauthenticated},
	}
	for _, p := range paths {
		for _, transport := range []string{"gRPC", "REST"} {
			for _, op := range sweepOps {
				if op.form && transport != "REST" {
					continue
				}
				for _, variant := range op.variants {
					c := sw.newCall(p.name, transport, op, variant, p.valid, p.token)
					reaches := p.valid && !p.token && op.reachesESign
					if p.before != nil && reaches {
						p.before(p.st)
					}
					before := p.st.sim.Count()
					code := sw.do(p.st, c)
					p.st.sim.ClearFaults()
					if reaches && !eventually(func() bool { return p.st.sim.Count() > before }) {
						t.Errorf("%s: never reached e签宝 (%v)", c.name, code)
					}
					if p.heal {
						if _, err := p.st.client.CreatePersonalEvidencePoint(bearer(validToken), personalBase(t)); err != nil {
							t.Fatalf("after %s: %v", c.name, err)
						}
					}
					switch {
					case !p.valid && code != codes.InvalidArgument:
						t.Errorf("%s: got %v, want InvalidArgument: the invalid sentinels were not refused", c.name, code)
					case p.token && code != codes.Unauthenticated:
						t.Errorf("%s: got %v, want Unauthenticated", c.name, code)
					case reaches && p.want != codes.OK && code != p.want:
						t.Errorf("%s: got %v, want %v", c.name, code, p.want)
					case reaches && p.name == "success" && code != codes.OK:
						t.Errorf("%s: got %v: a request with valid sentinels must succeed", c.name, code)
					case reaches && code == codes.OK && p.name != "success":
						t.Errorf("%s: succeeded: the path was not taken", c.name)
					}
				}
			}
			// A REST body protojson refuses: a sentinel string in every field that is not a
			// string (enums, numbers, booleans), in every JSON-bodied operation.
			if p.name == "validation failure" && transport == "REST" {
				for _, op := range sweepOps {
					if op.restJSON {
						sw.restDecodeFailure(st, op)
					}
				}
				sw.restMediaTypeRefusals(st)
			}
		}
	}
	// With a key that exists, GetSubmission answers what is stored (the key is the only
	// string, and it is logged on purpose).
	for _, key := range sw.createdKeys {
		sw.do(st, sw.lookup(key))
	}

	// The sweep proves something only if its surfaces saw the calls.
	logs := st.logs.String() + st401.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatal("debug logging produced nothing")
	}
	spans := exporter.GetSpans()
	if len(spans) == 0 {
		t.Fatal("no spans recorded: tracing is not wired")
	}
	var sawClient, sawREST, sawLookup bool
	for _, s := range spans {
		sawClient = sawClient || strings.HasPrefix(s.InstrumentationScope.Name, "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp") && s.SpanKind.String() == "client"
		sawREST = sawREST || s.Name == "POST /v3/evidence/evi-point/psn-realname"
		if s.Name == "GET /v1/submissions/{custom_biz_id}" {
			for _, a := range s.Attributes {
				// The REST span names the route, not the path the caller sent.
				sawLookup = sawLookup || a.Key == "url.path" && a.Value.AsString() == "/v1/submissions/{custom_biz_id}"
			}
		}
	}
	if !sawClient || !sawREST || !sawLookup {
		t.Fatalf("spans lack e签宝 calls (%v), REST calls (%v) or REST lookups by route (%v)", sawClient, sawREST, sawLookup)
	}
	// e签宝 got the sentinels it would echo: the echoing paths echoed them.
	var received strings.Builder
	for _, r := range append(st.sim.Received(), st401.sim.Received()...) {
		received.WriteString(r.RawQuery)
		received.Write(r.Body)
		received.WriteByte('\n')
	}
	for _, s := range sw.sentToESign {
		if !strings.Contains(received.String(), s) {
			t.Errorf("e签宝 never received %s (%s): its echo proves nothing for it", s, reg.where[s])
		}
	}

	var spanText []string
	for _, s := range spans {
		spanText = append(spanText, s.Name, s.Status.Description)
		for _, a := range s.Attributes {
			spanText = append(spanText, string(a.Key)+"="+a.Value.String())
		}
		for _, e := range s.Events {
			spanText = append(spanText, e.Name)
			for _, a := range e.Attributes {
				spanText = append(spanText, string(a.Key)+"="+a.Value.String())
			}
		}
		for _, l := range s.Links {
			for _, a := range l.Attributes {
				spanText = append(spanText, string(a.Key)+"="+a.Value.String())
			}
		}
	}
	surfaces := []struct{ name, text string }{
		{"the log", logs},
		{"a span", strings.Join(spanText, "\n")},
		{"an error answer", strings.Join(sw.errors, "\n")},
		{"/metrics", st.scrapeText(t) + st401.scrapeText(t)},
	}
	for _, sf := range surfaces {
		lower := strings.ToLower(sf.text)
		for _, s := range reg.sorted() {
			if sf.name == "the log" && reg.logged[s] {
				continue // logged on purpose: see above
			}
			if i := strings.Index(lower, strings.ToLower(s)); i >= 0 {
				from, to := max(0, i-80), min(len(sf.text), i+len(s)+40)
				t.Errorf("LEAK in %s: %s (sentinel %q): …%s…", sf.name, reg.where[s], s, strings.ToValidUTF8(sf.text[from:to], "?"))
			}
		}
		if strings.Contains(sf.text, secret) {
			t.Errorf("LEAK in %s: the app secret", sf.name)
		}
	}
	t.Logf("%d sentinels in %d calls (%d string fields by reflection, %d operations, %d paths, 2 transports); %d errors, %d spans, %d bytes of log searched",
		len(reg.where), sw.calls, sw.fieldCount(), len(sweepOps), len(paths), len(sw.errors), len(spans), len(logs))
}

// sentinelRegistry hands out distinct sentinels and remembers where each was put.
type sentinelRegistry struct {
	n      int
	where  map[string]string
	logged map[string]bool // deliberately logged: allowed in the log only
}

func (r *sentinelRegistry) add(form func(k int) string, where string, logged bool) string {
	r.n++
	s := form(r.n)
	if _, dup := r.where[s]; dup {
		panic("sentinel issued twice: " + s)
	}
	r.where[s] = where
	if logged {
		r.logged[s] = true
	}
	return s
}

// sorted lists the sentinels longest first, so a report names the longest match.
func (r *sentinelRegistry) sorted() []string {
	out := make([]string, 0, len(r.where))
	for s := range r.where {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j] })
	return out
}

// freeSentinel is the free-text form: fixed width, so that no sentinel contains another,
// and letters that no hex ID, number or timestamp of the service's own holds.
func freeSentinel(k int) string { return fmt.Sprintf("zqsnt%04dq", k) }

// shapedSentinels are, for the fields whose contract refuses free text, a sentinel of the
// shape the contract wants, so that the field passes validation and reaches e签宝. A field
// added later that refuses free text makes the sweep fail until it has one here.
var shapedSentinels = map[protoreflect.FullName]func(k int) string{
	"esign.evidence.v1.CreatePersonalEvidencePointRequest.card_no":                  idNumberSentinel,
	"esign.evidence.v1.CreatePersonalEvidencePointRequest.cert_agreement_read_hash": func(k int) string { return fmt.Sprintf("5e1714a5%056x", k) },
	"esign.evidence.v1.CreatePersonalEvidencePointRequest.cert_agreement_read_ip":   func(k int) string { return fmt.Sprintf("2001:db8:5e17::%04x", k) },
	"esign.evidence.v1.CreatePersonalEvidencePointRequest.cert_agreement_read_time": func(k int) string {
		return time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(k) * 3607 * time.Second).Format("2006-01-02 15:04:05")
	},
	"esign.evidence.v1.ThreeElements.mobile":            mobileSentinel,
	"esign.evidence.v1.BankCardFour.mobile":             mobileSentinel,
	"esign.evidence.v1.ThreeElements.sms_code":          func(k int) string { return fmt.Sprintf("86420975%04d", k) },
	"esign.evidence.v1.BankCardFour.sms_code":           func(k int) string { return fmt.Sprintf("86420975%04d", k) },
	"esign.evidence.v1.BankCardFour.bank_card":          func(k int) string { return fmt.Sprintf("621226975310%07d", k) },
	"esign.evidence.v1.Face.face_image_similar_score":   func(k int) string { return fmt.Sprintf("73.95%04d", k) },
	"esign.evidence.v1.Face.face_live_detect_score":     func(k int) string { return fmt.Sprintf("73.95%04d", k) },
	"esign.evidence.v1.EvidenceChainPoint.evi_point_id": func(k int) string { return "P" + freeSentinel(k) },
	"esign.evidence.v1.FileInfo.file_name":              func(k int) string { return freeSentinel(k) + ".jpg" },
	"esign.evidence.v1.GetSubmissionRequest.operation":  func(k int) string { return "Zqsnt" + letters(k) + "Q" },
}

// enumeratedFields take one of a few fixed values: no sentinel can pass their validation,
// so they carry one through the validation failure path only.
var enumeratedFields = map[protoreflect.FullName]bool{
	"esign.evidence.v1.CreatePersonalEvidencePointRequest.cert_agreement_read_type": true,
	"esign.evidence.v1.FileInfo.content_type":                                       true,
}

func mobileSentinel(k int) string { return fmt.Sprintf("1390753%04d", k) }

func letters(k int) string {
	b := []byte{'a', 'a', 'a'}
	for i := 2; i >= 0; i-- {
		b[i] = byte('a' + k%26)
		k /= 26
	}
	return string(b)
}

// idNumberSentinel is a mainland ID number with its GB 11643 check character.
func idNumberSentinel(k int) string {
	body := fmt.Sprintf("110105194%08d", k)
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, w := range weights {
		sum += int(body[i]-'0') * w
	}
	return body + string("10X98765432"[sum%11])
}

// sweepOp is one RPC of the sweep: its request variants (valid requests with every
// string field a placeholder, one per verification block), how REST reaches it.
type sweepOp struct {
	name         string
	variants     []func(t *testing.T) proto.Message
	reachesESign bool
	restJSON     bool // the REST body is the request as JSON
	// form: REST only, the upload as a multipart/form-data form (the file name in the
	// file part, a form field before it).
	form bool
}

var sweepOps = []sweepOp{
	{name: "CreatePersonalEvidencePoint", reachesESign: true, restJSON: true, variants: []func(*testing.T) proto.Message{
		func(t *testing.T) proto.Message { return personalBase(t) },
		func(t *testing.T) proto.Message {
			r := personalBase(t)
			r.RealNameMethod = 0
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_BankCardFour{BankCardFour: &evidencev1.BankCardFour{
				InfoVerifySupplier: "x", VerifyTime: "20240324", VerifySerialNumber: "x", OpeningBank: "x",
				BankCard: "6222021234567890123", Mobile: "19800002222", SmsCode: "123456", SmsSupplier: "x"}}
			return r
		},
		func(t *testing.T) proto.Message {
			r := personalBase(t)
			r.RealNameMethod = 0
			r.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: &evidencev1.Face{
				InfoVerifySupplier: "x", VerifyTime: "20240324", VerifySerialNumber: "x", FaceImage: "x",
				FaceImageSimilarScore: "95.5", FaceLiveDetectScore: "90"}}
			return r
		},
	}},
	{name: "CreateEvidenceChain", reachesESign: true, restJSON: true, variants: []func(*testing.T) proto.Message{
		func(*testing.T) proto.Message { return chainRequest("x") },
	}},
	{name: "GetSubmission", variants: []func(*testing.T) proto.Message{
		func(*testing.T) proto.Message { return &evidencev1.GetSubmissionRequest{CustomBizId: "x"} },
	}},
	{name: "UploadFile", reachesESign: true, variants: []func(*testing.T) proto.Message{uploadBase}},
	{name: "UploadFile (form)", reachesESign: true, form: true, variants: []func(*testing.T) proto.Message{uploadBase}},
}

func uploadBase(*testing.T) proto.Message {
	return &evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: "x.jpg"}}}
}

func personalBase(t *testing.T) *evidencev1.CreatePersonalEvidencePointRequest {
	r := seedRequest(t)
	r.CertAgreementReadTitle, r.CertAgreementReadVersion = "《数字证书服务协议》", "20250801"
	r.CertAgreementReadHash, r.CertAgreementReadTime = strings.Repeat("ab", 32), "2025-03-24 17:30:00"
	r.CertAgreementReadType, r.CertAgreementReadIp = "CHECK", "198.51.100.7"
	return r
}

// sweep runs the calls and collects what came back.
type sweep struct {
	t           *testing.T
	reg         *sentinelRegistry
	v           *validation.Validator
	token       string
	calls       int
	errors      []string
	createdKeys []string
	sentToESign []string
	fields      map[protoreflect.FullName]bool
	clients     map[*stack]evidencev1.EvidenceServiceClient
}

func (sw *sweep) fieldCount() int { return len(sw.fields) }

// sweepCall is one call: the request, its file bytes (uploads), its headers.
type sweepCall struct {
	name      string
	transport string
	op        sweepOp
	req       proto.Message
	file      []byte
	token     string
	requestID string
	// authorization is the Authorization header; "Bearer " + token when empty.
	authorization string
	// formField is a form field sent before the file part (forms only): name, value.
	formField [2]string
}

// newCall builds a call whose every caller-supplied string is a new sentinel: the
// request's string fields (valid: each of a shape its field accepts; else free text in
// every field, which the shaped ones refuse), the file's bytes, the request ID, and the
// bearer token when wrongToken.
func (sw *sweep) newCall(path, transport string, op sweepOp, variant func(*testing.T) proto.Message, valid, wrongToken bool) *sweepCall {
	t := sw.t
	sw.calls++
	c := &sweepCall{transport: transport, op: op, req: variant(t), token: sw.token}
	c.name = fmt.Sprintf("%s over %s, %s", op.name, transport, path)
	if oneof := c.req.ProtoReflect().Descriptor().Oneofs(); oneof.Len() > 0 {
		if fd := c.req.ProtoReflect().WhichOneof(oneof.Get(0)); fd != nil && fd.Kind() == protoreflect.MessageKind && op.name == "CreatePersonalEvidencePoint" {
			c.name = fmt.Sprintf("%s (%s) over %s, %s", op.name, fd.JSONName(), transport, path)
		}
	}
	var sent []string
	fillStrings(c.req.ProtoReflect(), "", func(fd protoreflect.FieldDescriptor, at string) (string, bool) {
		if sw.fields == nil {
			sw.fields = map[protoreflect.FullName]bool{}
		}
		sw.fields[fd.FullName()] = true
		where := c.name + ": field " + at
		logged := fd.Name() == "custom_biz_id"
		if !valid {
			return sw.reg.add(freeSentinel, where, logged), true
		}
		if enumeratedFields[fd.FullName()] {
			return "", false
		}
		form := freeSentinel
		if f := shapedSentinels[fd.FullName()]; f != nil {
			form = f
		}
		s := sw.reg.add(form, where, logged)
		// What e签宝 receives (the chain's key is the service's own, never sent).
		if !logged {
			sent = append(sent, s)
		}
		return s, true
	})
	if valid {
		if err := sw.v.Validate(c.req); err != nil {
			t.Fatalf("%s: the request with a sentinel in every string field is refused (%v): give the field a shaped sentinel (shapedSentinels)", c.name, err)
		}
		if op.name == "CreatePersonalEvidencePoint" {
			sw.createdKeys = append(sw.createdKeys, c.req.(*evidencev1.CreatePersonalEvidencePointRequest).GetCustomBizId())
		}
	}
	if strings.HasPrefix(op.name, "UploadFile") {
		s := sw.reg.add(freeSentinel, c.name+": the file's bytes", false)
		c.file = []byte("\xff\xd8\xff\xe0 image bytes " + s + " end")
	}
	if op.form {
		c.formField = [2]string{sw.reg.add(freeSentinel, c.name+": a form field's name", false), sw.reg.add(freeSentinel, c.name+": a form field's value", false)}
	}
	if wrongToken {
		c.token = sw.reg.add(func(k int) string { return freeSentinel(k) + "-wrong-token" }, c.name+": the bearer token (wrong)", false)
		if sw.calls%2 == 0 {
			// Another scheme than Bearer, which the answer names without quoting it.
			c.authorization = "Basic " + c.token
		}
	} else if path == "e签宝 business error echoing the request" && op.reachesESign {
		sw.sentToESign = append(sw.sentToESign, sent...)
	}
	// Every other call's request ID is plain (logged on purpose); the others are not
	// plain and must be found nowhere.
	if sw.calls%2 == 0 {
		c.requestID = sw.reg.add(freeSentinel, c.name+": X-Request-Id (plain)", true)
	} else {
		s := sw.reg.add(freeSentinel, c.name+": X-Request-Id (not plain)", false)
		c.requestID = s + " /" + s
	}
	return c
}

func (c *sweepCall) authHeader() string {
	if c.authorization != "" {
		return c.authorization
	}
	return "Bearer " + c.token
}

// lookup is a GetSubmission of an existing key (no other caller string but the request ID).
func (sw *sweep) lookup(key string) *sweepCall {
	sw.calls++
	c := &sweepCall{name: "GetSubmission of a stored key", transport: "gRPC", op: sweepOps[2], req: &evidencev1.GetSubmissionRequest{CustomBizId: key}, token: sw.token}
	c.requestID = sw.reg.add(freeSentinel, c.name+": X-Request-Id (plain)", true)
	return c
}

// fillStrings sets every string field of m to what value returns for it (leaving it
// when value says no): the fields of m, of its message fields (set or not, but only the
// set member of a oneof) and of every element of its repeated message fields.
func fillStrings(m protoreflect.Message, prefix string, value func(fd protoreflect.FieldDescriptor, path string) (string, bool)) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		at := fd.JSONName()
		if prefix != "" {
			at = prefix + "." + at
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && m.WhichOneof(od) != fd {
			continue
		}
		switch {
		case fd.IsMap():
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := m.Mutable(fd).List()
			if l.Len() == 0 {
				l.Append(l.NewElement())
			}
			for j := range l.Len() {
				fillStrings(l.Get(j).Message(), fmt.Sprintf("%s[%d]", at, j), value)
			}
		case fd.IsList() && fd.Kind() == protoreflect.StringKind:
			if s, ok := value(fd, at+"[0]"); ok {
				l := m.Mutable(fd).List()
				l.Append(protoreflect.ValueOfString(s))
			}
		case fd.Kind() == protoreflect.MessageKind:
			fillStrings(m.Mutable(fd).Message(), at, value)
		case fd.Kind() == protoreflect.StringKind:
			if s, ok := value(fd, at); ok {
				m.Set(fd, protoreflect.ValueOfString(s))
			}
		}
	}
}

// do makes the call over its transport and keeps its error answer (and the response's
// metadata or headers); it returns the gRPC code (REST: the code the body names).
func (sw *sweep) do(st *stack, c *sweepCall) codes.Code {
	t := sw.t
	if c.transport == "REST" {
		code, body, hdr := sw.rest(st, c)
		if code != http.StatusOK {
			var s struct {
				Code int `json:"code"`
			}
			_ = json.Unmarshal(body, &s)
			sw.errors = append(sw.errors, string(body), headerText(hdr))
			return codes.Code(s.Code)
		}
		return codes.OK
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", c.authHeader(), "x-request-id", c.requestID,
		"x-probe", sw.reg.add(freeSentinel, c.name+": x-probe metadata", false))
	var hdr, trl metadata.MD
	var err error
	client := sw.clients[st]
	switch r := c.req.(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest:
		_, err = client.CreatePersonalEvidencePoint(ctx, r, grpc.Header(&hdr), grpc.Trailer(&trl))
	case *evidencev1.CreateEvidenceChainRequest:
		_, err = client.CreateEvidenceChain(ctx, r, grpc.Header(&hdr), grpc.Trailer(&trl))
	case *evidencev1.GetSubmissionRequest:
		_, err = client.GetSubmission(ctx, r, grpc.Header(&hdr), grpc.Trailer(&trl))
	case *evidencev1.UploadFileRequest:
		stream, serr := client.UploadFile(ctx)
		if serr != nil {
			t.Fatal(serr)
		}
		// A refused stream makes Send return io.EOF; CloseAndRecv then returns the status.
		if stream.Send(r) == nil {
			_ = stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Chunk{Chunk: c.file}})
		}
		_, err = stream.CloseAndRecv()
		hdr, _ = stream.Header()
		trl = stream.Trailer()
	default:
		t.Fatalf("no gRPC call for %T", r)
	}
	if err != nil {
		b, merr := protojson.Marshal(status.Convert(err).Proto())
		if merr != nil {
			t.Fatalf("%s: the status does not marshal: %v", c.name, merr)
		}
		sw.errors = append(sw.errors, err.Error(), string(b), headerText(hdr), headerText(trl))
	}
	return status.Code(err)
}

func (sw *sweep) rest(st *stack, c *sweepCall) (int, []byte, http.Header) {
	t := sw.t
	var method, target, ctype string
	var body io.Reader
	switch r := c.req.(type) {
	case *evidencev1.CreatePersonalEvidencePointRequest:
		method, target, ctype = http.MethodPost, "/v3/evidence/evi-point/psn-realname", "application/json"
		body = strings.NewReader(protojson.Format(r))
	case *evidencev1.CreateEvidenceChainRequest:
		method, target, ctype = http.MethodPost, "/v3/evidence/evi-chain/create", "application/json"
		body = strings.NewReader(protojson.Format(r))
	case *evidencev1.GetSubmissionRequest:
		method, target = http.MethodGet, "/v1/submissions/"+url.PathEscape(r.GetCustomBizId())
		if r.GetOperation() != "" {
			target += "?operation=" + url.QueryEscape(r.GetOperation())
		}
	case *evidencev1.UploadFileRequest:
		if c.op.form {
			// The file part's name is the file name, its Content-Type the declared type.
			var b strings.Builder
			w := multipart.NewWriter(&b)
			fw, _ := w.CreateFormField(c.formField[0])
			_, _ = io.WriteString(fw, c.formField[1])
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf("form-data; name=%q; filename=%q", gateway.FilePart, r.GetInfo().GetFileName()))
			if ct := r.GetInfo().GetContentType(); ct != "" {
				h.Set("Content-Type", ct)
			}
			pw, _ := w.CreatePart(h)
			_, _ = pw.Write(c.file)
			_ = w.Close()
			return sw.send(st, http.MethodPost, gateway.UploadPath, w.FormDataContentType(), strings.NewReader(b.String()), c)
		}
		q := url.Values{"fileName": {r.GetInfo().GetFileName()}}
		if ct := r.GetInfo().GetContentType(); ct != "" {
			q.Set("contentType", ct)
		}
		method, target, ctype = http.MethodPost, gateway.UploadPath+"?"+q.Encode(), "application/octet-stream"
		body = strings.NewReader(string(c.file))
	default:
		t.Fatalf("no REST call for %T", r)
	}
	return sw.send(st, method, target, ctype, body, c)
}

func (sw *sweep) send(st *stack, method, target, ctype string, body io.Reader, c *sweepCall) (int, []byte, http.Header) {
	t := sw.t
	req, err := http.NewRequest(method, st.restURL+target, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", c.authHeader())
	req.Header.Set("X-Request-Id", c.requestID)
	req.Header.Set("User-Agent", sw.reg.add(freeSentinel, c.name+": User-Agent", false))
	req.Header.Set("X-Forwarded-For", sw.reg.add(freeSentinel, c.name+": X-Forwarded-For", false))
	req.Header.Set("Grpc-Metadata-X-Probe", sw.reg.add(freeSentinel, c.name+": Grpc-Metadata-X-Probe", false))
	req.Header.Set("X-Probe", sw.reg.add(freeSentinel, c.name+": X-Probe", false))
	resp, err := st.http.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// restDecodeFailure sends op's REST body with a sentinel string as the value of every
// field that is not a string: protojson refuses it, naming the field.
func (sw *sweep) restDecodeFailure(st *stack, op sweepOp) {
	for _, variant := range op.variants {
		c := sw.newCall("REST body protojson refuses", "REST", op, variant, true, false)
		var m map[string]any
		if err := json.Unmarshal([]byte(protojson.Format(c.req)), &m); err != nil {
			sw.t.Fatal(err)
		}
		n := 0
		var walk func(md protoreflect.MessageDescriptor, obj map[string]any, at string)
		walk = func(md protoreflect.MessageDescriptor, obj map[string]any, at string) {
			fields := md.Fields()
			for i := range fields.Len() {
				fd := fields.Get(i)
				name := fd.JSONName()
				switch fd.Kind() {
				case protoreflect.StringKind, protoreflect.BytesKind:
				case protoreflect.MessageKind, protoreflect.GroupKind:
					switch v := obj[name].(type) {
					case map[string]any:
						walk(fd.Message(), v, at+name+".")
					case []any:
						for _, e := range v {
							if em, ok := e.(map[string]any); ok {
								walk(fd.Message(), em, at+name+"[].")
							}
						}
					}
				default:
					if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
						continue
					}
					obj[name] = sw.reg.add(freeSentinel, c.name+": non-string field "+at+name, false)
					n++
				}
			}
		}
		walk(c.req.ProtoReflect().Descriptor(), m, "")
		if n == 0 {
			continue
		}
		b, _ := json.Marshal(m)
		target := "/v3/evidence/evi-point/psn-realname"
		if op.name == "CreateEvidenceChain" {
			target = "/v3/evidence/evi-chain/create"
		}
		code, body, hdr := sw.send(st, http.MethodPost, target, "application/json", strings.NewReader(string(b)), c)
		if code != http.StatusBadRequest {
			sw.t.Errorf("%s: HTTP %d, want 400", c.name, code)
		}
		sw.errors = append(sw.errors, string(body), headerText(hdr))
	}
}

// restMediaTypeRefusals sends REST uploads whose Content-Type (the body's, then a form's
// file part's) is a sentinel: both are refused 415.
func (sw *sweep) restMediaTypeRefusals(st *stack) {
	op := sweepOps[len(sweepOps)-1]
	for _, form := range []bool{false, true} {
		o := op
		o.form = form
		if !form {
			o.name = "UploadFile"
		}
		c := sw.newCall("REST upload in a media type the route does not take", "REST", o, uploadBase, true, false)
		mt := "application/x-" + sw.reg.add(freeSentinel, c.name+": the media type", false)
		var code int
		var body []byte
		var hdr http.Header
		if form {
			c.req.(*evidencev1.UploadFileRequest).GetInfo().ContentType = mt
			code, body, hdr = sw.rest(st, c)
		} else {
			code, body, hdr = sw.send(st, http.MethodPost, gateway.UploadPath+"?fileName=a.jpg", mt, strings.NewReader(string(c.file)), c)
		}
		if code != http.StatusUnsupportedMediaType {
			sw.t.Errorf("%s (form %v): HTTP %d, want 415", c.name, form, code)
		}
		sw.errors = append(sw.errors, string(body), headerText(hdr))
	}
}

// headerText is a REST response's headers or gRPC response metadata, but the request ID
// (X-Request-Id, x-request-id), which echoes a plain request ID on purpose.
func headerText[M ~map[string][]string](h M) string {
	var b strings.Builder
	for k, vs := range h {
		if strings.EqualFold(k, "X-Request-Id") {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(vs, ", "))
	}
	return b.String()
}

// scrapeText is the admin listener's /metrics exposition.
func (st *stack) scrapeText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(st.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "esign_evidence_calls_total") {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

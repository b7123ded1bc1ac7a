// Package esignsim is an offline stand-in for e签宝's OpenAPI, for tests, the service's
// demo mode and benchmarks, because e签宝 itself cannot be reached from where this
// project is built.
//
// It is strict where e签宝 is strict: it checks the app ID, the auth mode, the timestamp
// window, the Content-MD5 and the HMAC-SHA256 signature of every request and answers
// e签宝's documented 401 bodies and reasons; it checks evidence-point bodies against the
// API reference's rules and answers code 1435002 naming the problem; on success it
// returns a fresh e签宝-like eviPointId. Faults can be scripted (latency, HTTP 5xx,
// connection resets, malformed JSON, business codes, answers that quote the request, a
// QPS limit, slow bodies), and what it received is recorded, within a fixed bound, for
// assertions.
package esignsim

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// Defaults.
const (
	// TimestampWindow is how far the signing timestamp may be from the simulator's clock,
	// as at e签宝.
	TimestampWindow = 15 * time.Minute
	// DefaultRecordLimit bounds how many received requests are kept.
	DefaultRecordLimit = 256
	// maxBody caps how much of a request body is read.
	maxBody = 4 << 20
	// recordBodyLimit caps how much of each body is kept in the record.
	recordBodyLimit = 16 << 10
)

// Config configures a Simulator.
type Config struct {
	// AppID and AppSecret are the one app the simulator knows.
	AppID     string
	AppSecret string
	// Revision is the evidence-point API revision it enforces; RevisionSeed when empty.
	Revision upstream.Revision
	// RecordLimit bounds the requests kept by Received; DefaultRecordLimit when zero.
	RecordLimit int
	// Now is the simulator's clock; time.Now when nil.
	Now func() time.Time
	// StrictFileIDs makes the evidence call refuse cardPortrait, cardNationalEmblem and
	// faceImage values that are not file IDs whose bytes were uploaded here.
	StrictFileIDs bool
}

// Received is one request as the simulator saw it.
type Received struct {
	Method, Path, RawQuery string
	Header                 http.Header
	// Body is the request body, truncated to 16 KiB.
	Body []byte
	// Status and Code are what the simulator answered (HTTP status, business code) or
	// -1 when it reset the connection.
	Status, Code int
	// Reason is the gateway reason of a 401/403, else "".
	Reason string
	// EviPointID is the ID issued, on success.
	EviPointID string
}

// Simulator is an http.Handler that behaves like e签宝's OpenAPI. Use it in-process with
// httptest.NewServer, or serve it with http.Server (see cmd/esign-sim).
type Simulator struct {
	cfg Config

	mu       sync.Mutex
	faults   []*Fault
	received []Received // ring buffer
	next     int
	total    int

	qps atomic.Pointer[qpsLimiter]

	seq     atomic.Uint64
	idEpoch uint64
	// tallies are counts an operation's handler keeps (Tally), by name.
	tallies sync.Map // string → *atomic.Int64

	files fileStore
}

// New returns a Simulator for cfg.
func New(cfg Config) *Simulator {
	if cfg.Revision == "" {
		cfg.Revision = upstream.RevisionSeed
	}
	if cfg.RecordLimit <= 0 {
		cfg.RecordLimit = DefaultRecordLimit
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Simulator{
		cfg: cfg,
		// eviPointIds are 19 digits after the letter; a random start keeps two simulator
		// runs from issuing the same IDs.
		idEpoch: 1_000_000_000_000_000_000 + rand.Uint64N(8_000_000_000_000_000_000),
	}
}

// Revision returns the API revision the simulator enforces.
func (s *Simulator) Revision() upstream.Revision { return s.cfg.Revision }

// ServeHTTP answers one request the way e签宝 would.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ossPrefix) {
		// The object storage behind upload URLs: no e签宝 gateway in front of it.
		s.ossPut(w, r)
		return
	}
	rec := Received{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()}
	f := s.takeFault()

	if f != nil && f.ResetBeforeBody {
		rec.Status, rec.Code = -1, -1
		s.record(rec)
		resetConnection(w)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	rec.Body = truncate(body)
	if err != nil {
		rec.Status, rec.Code = -1, -1
		s.record(rec)
		return
	}
	if f != nil && f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			rec.Status, rec.Code = -1, -1
			s.record(rec)
			return
		}
	}
	if f != nil && f.ResetAfterBody {
		rec.Status, rec.Code = -1, -1
		s.record(rec)
		resetConnection(w)
		return
	}

	// The gateway authenticates every request first, whatever its path.
	if status, reason := s.authenticate(r, body); status != 0 {
		rec.Status, rec.Code, rec.Reason = status, status, reason
		s.record(rec)
		writeGateway(w, status, reason+f.echo(r, body))
		return
	}
	if lim := s.qps.Load(); lim != nil && !lim.allow(s.cfg.Now()) {
		rec.Status, rec.Code = lim.status, lim.code
		s.record(rec)
		writeJSON(w, lim.status, map[string]any{"code": lim.code, "message": "请求过于频繁，请稍后再试", "data": nil})
		return
	}
	if f != nil {
		if done := s.applyResponseFault(w, f, &rec, r, body); done {
			s.record(rec)
			return
		}
	}

	if h := handlerAt(r.Method, r.URL.Path); h != nil {
		h(s, w, r, body, f, rec)
		return
	}
	rec.Status, rec.Code = http.StatusNotFound, http.StatusNotFound
	s.record(rec)
	writeJSON(w, http.StatusNotFound, map[string]any{"code": http.StatusNotFound, "message": "接口不存在", "data": nil})
}

// handler answers one e签宝 operation: rec is the request's record so far, f the fault
// scripted for it (nil when none). It records and answers.
type handler func(s *Simulator, w http.ResponseWriter, r *http.Request, body []byte, f *Fault, rec Received)

// handlers holds the simulator's answer to each registered e签宝 operation (upstream's
// registry), by the operation's name. Each operation's file adds its own (simulates);
// TestEveryOperationIsSimulated holds the two lists equal.
var handlers = map[string]handler{}

// simulates makes h the simulator's answer to op.
func simulates(op *upstream.Operation, h handler) {
	if _, dup := handlers[op.Name]; dup {
		panic("esignsim: " + op.Name + " simulated twice")
	}
	handlers[op.Name] = h
}

// handlerAt returns the answer to the registered operation at method and path, or nil:
// an unknown path, or an operation the simulator does not implement.
func handlerAt(method, path string) handler {
	for _, op := range upstream.Operations() {
		if op.Method == method && op.Path == path {
			return handlers[op.Name]
		}
	}
	return nil
}

func init() {
	simulates(upstream.PsnRealname, func(s *Simulator, w http.ResponseWriter, _ *http.Request, body []byte, f *Fault, rec Received) {
		s.createPsnEvidencePoint(w, body, f, rec)
	})
	simulates(upstream.FileUploadOp, func(s *Simulator, w http.ResponseWriter, r *http.Request, body []byte, _ *Fault, rec Received) {
		s.fileUploadURL(w, r, body, rec)
	})
}

// authenticate checks the signing headers as e签宝's gateway does and returns the HTTP
// status and reason of a refusal, or 0.
func (s *Simulator) authenticate(r *http.Request, body []byte) (int, string) {
	h := r.Header
	mode := h.Get(upstream.HeaderAuthMode)
	switch {
	case mode == "":
		return http.StatusUnauthorized, upstream.ReasonTokenCantBeNull
	case mode != upstream.AuthModeSignature:
		return http.StatusUnauthorized, upstream.ReasonAuthStrategy
	}
	appID, ts, sig := h.Get(upstream.HeaderAppID), h.Get(upstream.HeaderTimestamp), h.Get(upstream.HeaderSignature)
	if appID == "" || ts == "" || sig == "" {
		return http.StatusUnauthorized, upstream.ReasonMissingParameter
	}
	if appID != s.cfg.AppID {
		return http.StatusUnauthorized, upstream.ReasonInvalidApp
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) != 13 {
		return http.StatusUnauthorized, upstream.ReasonInvalidTimestamp
	}
	if d := s.cfg.Now().Sub(time.UnixMilli(ms)); d > TimestampWindow || d < -TimestampWindow {
		return http.StatusUnauthorized, upstream.ReasonInvalidTimestamp
	}
	// The MD5 is recomputed from the body received: a body changed on the way, or a
	// Content-MD5 header that does not describe it, fails the signature.
	md5 := upstream.ContentMD5(body)
	if h.Get(upstream.HeaderContentMD5) != md5 {
		return http.StatusUnauthorized, upstream.ReasonInvalidSignature
	}
	want := upstream.Sign([]byte(s.cfg.AppSecret), upstream.StringToSign(
		r.Method, h.Get("Accept"), md5, h.Get("Content-Type"), h.Get("Date"),
		upstream.CanonicalPathAndQuery(r.URL.EscapedPath(), r.URL.RawQuery)))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return http.StatusUnauthorized, upstream.ReasonInvalidSignature
	}
	return 0, ""
}

// createPsnEvidencePoint records the request, then answers it.
func (s *Simulator) createPsnEvidencePoint(w http.ResponseWriter, body []byte, f *Fault, rec Received) {
	msg := checkPsnBody(body, s.cfg.Revision)
	if msg == "" && s.cfg.StrictFileIDs {
		msg = s.checkFileIDs(body)
	}
	if msg != "" {
		rec.Status, rec.Code = http.StatusOK, upstream.CodeParameterError
		s.record(rec)
		writeJSON(w, http.StatusOK, map[string]any{"code": upstream.CodeParameterError, "message": "参数错误: " + msg, "data": nil})
		return
	}
	id := s.newEviPointID()
	rec.Status, rec.EviPointID = http.StatusOK, id
	s.record(rec)
	payload := map[string]any{"code": 0, "message": nil, "data": map[string]any{"eviPointId": id}}
	if f != nil && f.SlowBody > 0 {
		writeSlow(w, payload, f.SlowBody)
		return
	}
	writeJSON(w, http.StatusOK, payload)
}

// newEviPointID returns an ID shaped like e签宝's: P and 19 digits.
func (s *Simulator) newEviPointID() string {
	return fmt.Sprintf("P%019d", s.idEpoch+s.seq.Add(1))
}

// Received returns the requests recorded, oldest first (at most RecordLimit).
func (s *Simulator) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.received)
	out := make([]Received, 0, n)
	if n < s.cfg.RecordLimit {
		return append(out, s.received...)
	}
	out = append(out, s.received[s.next:]...)
	return append(out, s.received[:s.next]...)
}

// Count returns how many requests the simulator has received in all.
func (s *Simulator) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Tally returns a count an operation's handler keeps, by the name the handler documents
// (for instance how many points evidence chains billed); 0 when none was kept.
func (s *Simulator) Tally(name string) int64 {
	if v, ok := s.tallies.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// tally adds n to the count called name and returns the new count.
func (s *Simulator) tally(name string, n int64) int64 {
	v, _ := s.tallies.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64).Add(n)
}

// Issued returns how many evidence points it has created.
func (s *Simulator) Issued() int { return int(s.seq.Load()) }

// Reset forgets what was received and every scripted fault.
func (s *Simulator) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received, s.next, s.total, s.faults = nil, 0, 0, nil
	s.qps.Store(nil)
}

func (s *Simulator) record(rec Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if len(s.received) < s.cfg.RecordLimit {
		s.received = append(s.received, rec)
		return
	}
	s.received[s.next] = rec
	s.next = (s.next + 1) % s.cfg.RecordLimit
}

func truncate(b []byte) []byte {
	if len(b) > recordBodyLimit {
		b = b[:recordBodyLimit]
	}
	return append([]byte(nil), b...)
}

// writeGateway answers the gateway's refusal; its message is the reason (and, with
// Fault.EchoRequest, the request after it).
func writeGateway(w http.ResponseWriter, status int, message string) {
	// e签宝's gateway answers these without a Content-Type.
	b, _ := json.Marshal(map[string]any{"success": false, "code": status, "message": message})
	w.Header()["Content-Type"] = nil
	w.Header().Set(upstream.HeaderTraceID, newTraceID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set(upstream.HeaderTraceID, newTraceID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeSlow(w http.ResponseWriter, v any, total time.Duration) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set(upstream.HeaderTraceID, newTraceID())
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	step := total / time.Duration(len(b))
	for i := range b {
		if _, err := w.Write(b[i : i+1]); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		time.Sleep(step)
	}
}

func newTraceID() string {
	return fmt.Sprintf("%016x", rand.Uint64())
}

package esignsim

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Fault scripts how the simulator misbehaves. Set one kind of fault per Fault; Latency
// combines with any of them.
type Fault struct {
	// Times is how many requests the fault applies to; 0 means every request until
	// ClearFaults.
	Times int
	// Latency delays the answer (after the body is read).
	Latency time.Duration
	// Status answers this HTTP status (e.g. 502, 503) instead of processing the request.
	Status int
	// ResetBeforeBody resets the connection (TCP RST) before reading the request body.
	ResetBeforeBody bool
	// ResetAfterBody reads the whole request, then resets the connection without
	// answering: the client cannot know whether the request was acted on.
	ResetAfterBody bool
	// MalformedJSON answers HTTP 200 with a body that is not valid JSON.
	MalformedJSON bool
	// BusinessCode answers HTTP 200 with this non-zero code and BusinessMessage.
	BusinessCode    int
	BusinessMessage string
	// EchoRequest appends the whole request (its query and body, as received) to the
	// message of the answer, as e签宝 errors that quote the input they refuse do: to a
	// business error's (with BusinessCode) and to the gateway's 401/403 when the
	// signature check refuses the request. Signatures are checked as always, first.
	EchoRequest bool
	// SlowBody spreads a successful answer's body over this long, byte by byte.
	SlowBody time.Duration
}

// Inject adds a fault. Faults apply in the order injected: each request takes the first
// one that still has uses left.
func (s *Simulator) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f2 := f
	s.faults = append(s.faults, &f2)
}

// ClearFaults removes every scripted fault.
func (s *Simulator) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Simulator) takeFault() *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return nil
	}
	f := s.faults[0]
	if f.Times == 0 {
		return f
	}
	f.Times--
	if f.Times == 0 {
		s.faults = s.faults[1:]
	}
	return f
}

// applyResponseFault answers f's scripted response, if it has one, and reports whether it
// did.
func (s *Simulator) applyResponseFault(w http.ResponseWriter, f *Fault, rec *Received, r *http.Request, body []byte) bool {
	switch {
	case f.Status != 0:
		rec.Status, rec.Code = f.Status, f.Status
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte("<html><body><h1>" + http.StatusText(f.Status) + "</h1></body></html>"))
		return true
	case f.MalformedJSON:
		rec.Status, rec.Code = http.StatusOK, -1
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"code":0,"message":null,"data":{"eviPointId":`))
		return true
	case f.BusinessCode != 0:
		rec.Status, rec.Code = http.StatusOK, f.BusinessCode
		writeJSON(w, http.StatusOK, map[string]any{"code": f.BusinessCode, "message": f.BusinessMessage + f.echo(r, body), "data": nil})
		return true
	}
	return false
}

// echo is what EchoRequest adds to a message: the request's query and body, or "".
func (f *Fault) echo(r *http.Request, body []byte) string {
	if f == nil || !f.EchoRequest {
		return ""
	}
	return " 请求: " + r.URL.RawQuery + " " + string(body)
}

// resetConnection aborts the connection with a TCP RST, as a crashing peer or a
// load balancer dropping a connection would.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// QPSLimit makes the simulator refuse requests beyond QPS per second. e签宝's default
// quota is 50 requests per second per app; what it answers beyond that is not
// documented, so the answer is configurable: HTTP Status with business Code.
type QPSLimit struct {
	QPS int
	// Status is the HTTP status of a refusal; 429 when zero.
	Status int
	// Code is the business code in the refusal's body; Status when zero.
	Code int
}

// SetQPSLimit enforces l from now on; a QPS of zero or less removes the limit.
func (s *Simulator) SetQPSLimit(l QPSLimit) {
	if l.QPS <= 0 {
		s.qps.Store(nil)
		return
	}
	if l.Status == 0 {
		l.Status = http.StatusTooManyRequests
	}
	if l.Code == 0 {
		l.Code = l.Status
	}
	s.qps.Store(&qpsLimiter{qps: l.QPS, status: l.Status, code: l.Code})
}

// qpsLimiter counts requests in fixed one-second windows, as a gateway quota does.
type qpsLimiter struct {
	qps, status, code int

	mu     sync.Mutex
	window int64
	n      int
}

func (l *qpsLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := now.Unix(); w != l.window {
		l.window, l.n = w, 0
	}
	l.n++
	return l.n <= l.qps
}

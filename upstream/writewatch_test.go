package upstream

import (
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"
)

// The connections the client's transport dials, plain or under TLS, can be watched from a
// client trace's GotConn, and a watched write returns after net/http reports the request
// written: WroteRequest comes before the HTTP/1.1 buffer is flushed to the socket, so
// only the connection's write tells when the request's bytes have left.
func TestWritesWatchedAfterWroteRequest(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := "plain"
		if tlsOn {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
			var srv *httptest.Server
			var roots *x509.CertPool
			if tlsOn {
				srv = httptest.NewTLSServer(h)
				roots = x509.NewCertPool()
				roots.AddCert(srv.Certificate())
			} else {
				srv = httptest.NewServer(h)
			}
			defer srv.Close()
			tr := newTransport(roots)
			defer tr.CloseIdleConnections()
			for i := range 3 { // a new connection, then kept ones
				var (
					mu                  sync.Mutex
					wroteReq, lastWrite time.Time
					watched             bool
					stop                func()
				)
				trace := &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) {
						w, ok := WatcherOf(info.Conn)
						watched = ok
						if ok {
							stop = w.WatchWrites(func() {
								mu.Lock()
								lastWrite = time.Now()
								mu.Unlock()
							})
						}
					},
					WroteRequest: func(httptrace.WroteRequestInfo) {
						mu.Lock()
						wroteReq = time.Now()
						mu.Unlock()
					},
				}
				req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(strings.Repeat("x", 600)))
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if !watched {
					t.Fatalf("request %d: the connection cannot be watched", i)
				}
				stop()
				mu.Lock()
				if lastWrite.IsZero() || lastWrite.Before(wroteReq) {
					t.Errorf("request %d: last watched write at %v, WroteRequest at %v: the flush was not seen", i, lastWrite, wroteReq)
				}
				mu.Unlock()
			}
		})
	}
}

// Package upstream is the e签宝 side of the service: the wire JSON of the calls it makes,
// request signing, and an HTTP client that returns typed errors.
//
// It knows nothing of gRPC. What it does is fixed by e签宝's documentation, summarised in
// the project's shared e签宝 facts: every request is signed with HMAC-SHA256 over a
// canonical string that includes the body's Content-MD5, the body is marshalled once and
// the same bytes are hashed and sent, and a POST that may have reached e签宝 is never
// sent again by this package.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Base URLs of e签宝's two environments. They share nothing: an app ID of one is refused
// by the other.
const (
	SandboxBaseURL    = "https://smlopenapi.esign.cn"
	ProductionBaseURL = "https://openapi.esign.cn"
)

// PathPsnRealname is the personal real-name evidence-point call.
const PathPsnRealname = "/v3/evidence/evi-point/psn-realname"

// PsnRealname is the personal real-name evidence point (个人实名认证证据点): it creates
// one each time it is sent.
var PsnRealname = Register(Operation{Name: "psn-realname", Method: http.MethodPost, Path: PathPsnRealname,
	Kind: KindCreate, Makes: "the evidence point"})

// Defaults, with the reason for each.
const (
	// DefaultTimeout bounds one call, connection included. e签宝's official Java demo
	// uses 15 s.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxResponseBytes caps how much of a response body is read. e签宝's answers
	// to these calls are well under 1 KiB; 1 MiB leaves room for any error page.
	DefaultMaxResponseBytes = 1 << 20
	// defaultMaxIdleConns matches the official Java demo's pool of 100 connections, so a
	// burst of concurrent calls reuses connections instead of opening new ones (Go's
	// default keeps only 2 idle connections per host).
	defaultMaxIdleConns = 100
	// defaultIdleConnTimeout closes pooled connections before typical server and
	// load-balancer idle timeouts would, avoiding writes onto a connection the far end
	// is closing.
	defaultIdleConnTimeout = 50 * time.Second
)

// Secret holds the app secret. It has no way to be printed: fmt, %v, %#v, JSON and slog
// all show "[REDACTED]".
type Secret string

func (Secret) String() string               { return "[REDACTED]" }
func (Secret) GoString() string             { return "[REDACTED]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[REDACTED]") }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Config configures a Client.
type Config struct {
	// BaseURL is e签宝's OpenAPI base URL (SandboxBaseURL, ProductionBaseURL) or any
	// other, such as a local simulator or a proxy.
	BaseURL   string
	AppID     string
	AppSecret Secret
	// Revision is the evidence-point API revision; DefaultSettings' when empty.
	Revision Revision
	// Timeout bounds each call; DefaultSettings' when zero. The caller's context may end
	// it sooner.
	Timeout time.Duration
	// MaxResponseBytes caps the response body read; DefaultMaxResponseBytes when zero.
	MaxResponseBytes int64
	// RootCAs replaces the system roots when set (a private proxy, tests). TLS
	// certificates are always verified.
	RootCAs *x509.CertPool
	// Now is the clock for the signing timestamp; time.Now when nil.
	Now func() time.Time
	// WrapTransport, when set, wraps the tuned transport (for tracing). It must not
	// re-send requests.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Client calls e签宝. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	appID    string
	secret   []byte
	revision Revision
	timeout  time.Duration
	maxResp  int64
	now      func() time.Time
	http     *http.Client
	// sent counts requests fully written to the network, for tests and metrics.
	sent atomic.Int64
}

// RedactURL is s as it may be printed: without its user and password, its query and its
// fragment (where a URL carries credentials); "(not a URL)" when it cannot be read, since
// the text itself might hold them.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(not a URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// New validates cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("upstream: BaseURL is required")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("upstream: BaseURL %q is not an http(s) URL", RedactURL(cfg.BaseURL))
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("upstream: BaseURL %q must not have a query or fragment", RedactURL(cfg.BaseURL))
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	if strings.TrimSpace(cfg.AppID) == "" {
		return nil, errors.New("upstream: AppID is required")
	}
	if cfg.AppSecret == "" {
		return nil, errors.New("upstream: AppSecret is required")
	}
	// A Config built in code, not from Settings, may leave the settings' fields zero.
	d := DefaultSettings()
	rev := cfg.Revision
	if rev == "" {
		rev = d.Revision
	}
	if _, err := ParseRevision(string(rev)); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	c := &Client{
		base:     base,
		appID:    cfg.AppID,
		secret:   []byte(cfg.AppSecret),
		revision: rev,
		timeout:  cfg.Timeout,
		maxResp:  cfg.MaxResponseBytes,
		now:      cfg.Now,
	}
	if c.timeout <= 0 {
		c.timeout = d.Timeout
	}
	if c.maxResp <= 0 {
		c.maxResp = DefaultMaxResponseBytes
	}
	if c.now == nil {
		c.now = time.Now
	}
	var rt http.RoundTripper = newTransport(cfg.RootCAs)
	if cfg.WrapTransport != nil {
		// The wrapper (tracing) sees each request without its query: e签宝's upload URL
		// is pre-signed, its query a credential. The query is back before the request
		// leaves.
		rt = hideQuery{cfg.WrapTransport(restoreQuery{rt})}
	}
	c.http = &http.Client{
		Transport: rt,
		// Redirects would re-send the signed request somewhere else; e签宝 does not
		// redirect API calls, so a redirect is answered as the status it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func newTransport(roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: watchingDialer((&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext),
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:   5 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          defaultMaxIdleConns,
		MaxIdleConnsPerHost:   defaultMaxIdleConns,
		IdleConnTimeout:       defaultIdleConnTimeout,
		ExpectContinueTimeout: 0,
	}
}

// Revision returns the API revision the client speaks.
func (c *Client) Revision() Revision { return c.revision }

// Sent returns how many requests the client has written to the network in full.
func (c *Client) Sent() int64 { return c.sent.Load() }

// CloseIdleConnections closes pooled connections (at shutdown).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// CreatePsnEvidencePoint creates a personal real-name evidence point.
//
// On success it returns the eviPointId. Every error is an Error; see its types for what
// each means and whether a retry is safe. The call is not idempotent at e签宝: after an
// UnknownOutcomeError the evidence point may exist.
func (c *Client) CreatePsnEvidencePoint(ctx context.Context, p *PsnEvidencePoint) (*PsnEvidencePointResult, error) {
	return Send[PsnEvidencePointResult](ctx, c, PsnRealname, p)
}

// envelope is e签宝's business response: {code, message, data}.
type envelope struct {
	Code    *int            `json:"code"`
	Message *string         `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// gatewayBody is the body of the gateway's 401/403 answers.
type gatewayBody struct {
	Message string `json:"message"`
}

// post signs and sends body to path and decodes a successful answer's data into out.
// personal lists the request's personal values, masked out of any message e签宝 returns,
// and so is every other string the body holds (callerStrings): any of them may be echoed.
// They are worked out only when e签宝 returns a message (decoding the body costs as much
// as a tenth of a call).
func (c *Client) post(ctx context.Context, path string, body []byte, personal []string, out any) (trace string, err error) {
	masked := func() []string { return append(callerStrings(body), personal...) }
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	u := *c.base
	u.Path = c.base.Path + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return "", &SendError{Err: errors.New("cannot build the request")}
	}
	// The signed path is the one sent, including any prefix of the base URL.
	md5 := ContentMD5(body)
	sig := Sign(c.secret, StringToSign(http.MethodPost, AcceptAll, md5, ContentTypeJSON, "", CanonicalPathAndQuery(u.EscapedPath(), u.RawQuery)))
	h := req.Header
	h.Set(HeaderAppID, c.appID)
	h.Set(HeaderAuthMode, AuthModeSignature)
	h.Set(HeaderTimestamp, strconv.FormatInt(c.now().UnixMilli(), 10))
	h.Set(HeaderSignature, sig)
	h.Set("Accept", AcceptAll)
	h.Set("Content-Type", ContentTypeJSON)
	h.Set(HeaderContentMD5, md5)
	// No Idempotency-Key header: with one, net/http would re-send this POST on a dead
	// keep-alive connection, and e签宝 does not de-duplicate.

	// Whether the request was written in full decides between "not sent" (safe to retry)
	// and "outcome unknown".
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	}))

	resp, err := c.http.Do(req)
	if wrote.Load() {
		c.sent.Add(1)
	}
	if err != nil {
		cause := transportCause(ctx, err)
		if !wrote.Load() {
			// A cancelled context is the caller leaving (or the service stopping the
			// attempt itself), and a socket that could not even be made is this process
			// out of descriptors or memory: local reasons, which say nothing about e签宝.
			return "", &SendError{Err: cause, Local: errors.Is(cause, context.Canceled) || localResource(cause)}
		}
		return "", &UnknownOutcomeError{Err: cause}
	}
	defer func() {
		// Drain what is left (bounded) so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.maxResp))
		_ = resp.Body.Close()
	}()
	trace = resp.Header.Get(HeaderTraceID)

	raw, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil && resp.StatusCode == http.StatusOK {
		return trace, &UnknownOutcomeError{Status: resp.StatusCode, Err: transportCause(ctx, err), Trace: trace}
	}
	if int64(len(raw)) > c.maxResp && resp.StatusCode == http.StatusOK {
		return trace, &MalformedResponseError{Status: resp.StatusCode, Reason: fmt.Sprintf("body larger than %d bytes", c.maxResp), Trace: trace}
	}
	// Any other status decides the outcome by itself, whatever its body's size or
	// completeness: a 401 is a refusal of the credentials even with a huge page attached.
	return trace, decodeResponse(resp.StatusCode, raw, trace, masked, out)
}

// decodeResponse turns a whole e签宝 answer (status and body) into nil, with data decoded
// into out, or one of the package's errors.
//
// Only what e签宝 documents is definite: 200 with its {code, message, data} body, and
// the gateway's 401/403. A 5xx, and any other 2xx or 3xx, proves nothing about whether
// the evidence point was created (a 202 may have queued it), so it is an outcome unknown.
// Other 4xx statuses refuse the request as a whole.
//
// personal returns the values to mask out of e签宝's message; it is called only for one.
func decodeResponse(status int, raw []byte, trace string, personal func() []string, out any) error {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		var g gatewayBody
		_ = json.Unmarshal(raw, &g) // may be empty, cut or not JSON: the status says enough
		return &AuthError{Status: status, Reason: knownGatewayReason(g.Message), Trace: trace}
	case status >= 500 || (status >= 200 && status < 400 && status != http.StatusOK):
		return &UnknownOutcomeError{Status: status, Trace: trace}
	case status != http.StatusOK:
		return &StatusError{Status: status, Trace: trace}
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.Code == nil {
		return &MalformedResponseError{Status: status, Reason: "not e签宝's {code, message, data} JSON", Trace: trace}
	}
	if *env.Code != 0 {
		msg := ""
		if env.Message != nil {
			msg = mask(*env.Message, personal())
		}
		return &BusinessError{Code: *env.Code, Message: msg, Trace: trace}
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return &MalformedResponseError{Status: status, Reason: "success without data", Trace: trace}
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return &MalformedResponseError{Status: status, Reason: "data has an unexpected shape", Trace: trace}
	}
	return nil
}

// transportCause reports the context's error when the context ended (go-github,
// google-cloud-go do the same), else a transport error with the URL stripped: the error
// text then has no host or path the caller did not configure.
// localResource reports whether err is this process running out of a resource of its
// own (descriptors, socket buffers, memory) rather than a failure on the way to e签宝.
func localResource(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

func transportCause(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// queryKey carries a request's query past a transport wrapper that must not see it.
type queryKey struct{}

// hideQuery hands the wrapped transport the request without its query.
type hideQuery struct{ next http.RoundTripper }

func (h hideQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery == "" {
		return h.next.RoundTrip(r)
	}
	u := *r.URL
	r2 := r.Clone(context.WithValue(r.Context(), queryKey{}, u.RawQuery))
	u.RawQuery = ""
	r2.URL = &u
	return h.next.RoundTrip(r2)
}

// restoreQuery puts back the query hideQuery took off.
type restoreQuery struct{ next http.RoundTripper }

func (h restoreQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if q, ok := r.Context().Value(queryKey{}).(string); ok {
		u := *r.URL
		u.RawQuery = q
		r = r.Clone(r.Context())
		r.URL = &u
	}
	return h.next.RoundTrip(r)
}

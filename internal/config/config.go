// Package config reads the service's configuration from flags and the environment into
// one struct and validates it at start-up. A flag wins over its environment variable.
// Errors name the setting at fault; the app secret is never printed.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/server/service"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Defaults of the listeners.
const (
	DefaultGRPCAddr = ":9090"
	DefaultHTTPAddr = ":8080"
)

// Config is the whole configuration of one esign-evidence process.
type Config struct {
	GRPCAddr string
	HTTPAddr string
	// Simulate runs the offline e签宝 simulator in-process and points the service at it
	// (demo mode). Nothing else ever selects the simulator.
	Simulate bool
	// BaseURL is e签宝's base URL, from ESIGN_BASE_URL or ESIGN_ENV.
	BaseURL   string
	AppID     string
	AppSecret upstream.Secret
	Revision  upstream.Revision
	// UpstreamTimeout bounds one e签宝 call.
	UpstreamTimeout time.Duration
	// MaxRequestBytes caps request size on gRPC and REST.
	MaxRequestBytes int
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	LogLevel        slog.Level

	// DBPath is the embedded store's file; "" in demo mode means a temporary file.
	DBPath string
	// DatabaseURL selects the PostgreSQL store instead (several replicas).
	DatabaseURL upstream.Secret
	// UnknownOutcome says what a retry does after an outcome unknown.
	UnknownOutcome submission.UnknownPolicy
	// SubmissionLease is how long an in-progress submission holds its key.
	SubmissionLease time.Duration
	// EsignQPS is the app's e签宝 quota, enforced before sending.
	EsignQPS float64
	// FingerprintKey keys the hash of each request kept in the store.
	FingerprintKey upstream.Secret

	AdminAddr string
	// TLSCertFile and TLSKeyFile serve both listeners over TLS; TLSClientCAFile adds
	// client-certificate authentication.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// Auth is caller authentication.
	Auth                 auth.Config
	MaxConcurrentStreams uint32
	ReadHeaderTimeout    time.Duration
	MaxFileBytes         int64
}

// setting describes one configuration item: its flag, its environment variable, and its
// help text; Usage lists them all.
type setting struct {
	flag, env, def, help string
	// boolean settings are flags that need no value (-simulate).
	boolean bool
}

var settings = []setting{
	{"grpc-addr", "GRPC_ADDR", DefaultGRPCAddr, "gRPC listen address", false},
	{"http-addr", "HTTP_ADDR", DefaultHTTPAddr, "REST (grpc-gateway) listen address", false},
	{"simulate", "SIMULATE", "false", "demo mode: serve against the in-process offline e签宝 simulator, not e签宝", true},
	{"esign-env", "ESIGN_ENV", "", "e签宝 environment: sandbox or production (or set ESIGN_BASE_URL)", false},
	{"esign-base-url", "ESIGN_BASE_URL", "", "e签宝 base URL; overrides ESIGN_ENV (a proxy, a simulator)", false},
	{"esign-app-id", "ESIGN_APP_ID", "", "e签宝 app ID", false},
	{"esign-app-secret-file", "ESIGN_APP_SECRET_FILE", "", "file holding the e签宝 app secret (or set ESIGN_APP_SECRET; no flag takes the secret itself, so it never shows in a process list)", false},
	{"esign-api-revision", "ESIGN_API_REVISION", string(upstream.RevisionSeed), "e签宝 evidence API revision: seed or 2025", false},
	{"esign-timeout", "ESIGN_TIMEOUT", upstream.DefaultTimeout.String(), "timeout of one e签宝 call", false},
	{"max-request-bytes", "MAX_REQUEST_BYTES", strconv.Itoa(server.DefaultMaxRequestBytes), "maximum request size on gRPC and REST", false},
	{"shutdown-timeout", "SHUTDOWN_TIMEOUT", server.DefaultShutdownTimeout.String(), "how long in-flight calls may take to finish at shutdown", false},
	{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error", false},
	{"db-path", "DB_PATH", "esign-evidence.db", "embedded submission store file (demo mode: a temporary file); ignored when DATABASE_URL is set", false},
	{"unknown-outcome-retry", "UNKNOWN_OUTCOME_RETRY", string(submission.ResendUnknown), "after an unknown outcome, a retry with the same customBizId: resend or refuse", false},
	{"submission-lease", "SUBMISSION_LEASE", submission.DefaultLease.String(), "how long an in-progress submission holds its customBizId (a replica that died frees it after this)", false},
	{"esign-qps", "ESIGN_QPS", strconv.Itoa(submission.DefaultQPS), "e签宝 requests per second allowed for the app (its quota)", false},
	{"fingerprint-key-file", "FINGERPRINT_KEY_FILE", "", "file holding the key of the request fingerprints (or set FINGERPRINT_KEY; default: derived from the app secret)", false},
	{"admin-addr", "ADMIN_ADDR", ":9091", "admin listen address: /metrics and /debug/pprof (empty: none)", false},
	{"tls-cert-file", "TLS_CERT_FILE", "", "serve gRPC and REST over TLS with this certificate (PEM; reloaded when the file changes)", false},
	{"tls-key-file", "TLS_KEY_FILE", "", "the TLS certificate's private key (PEM)", false},
	{"tls-client-ca-file", "TLS_CLIENT_CA_FILE", "", "accept callers with a client certificate signed by this CA (mTLS); the certificate's CN is the caller", false},
	{"auth-tokens-file", "AUTH_TOKENS_FILE", "", "bearer tokens, one caller per line: <caller> <token> (or set AUTH_TOKEN_HASHES)", false},
	{"auth-disabled", "AUTH_DISABLED", "false", "serve without authenticating callers (demo mode does unless tokens or a client CA are set)", true},
	{"auth-public-health", "AUTH_PUBLIC_HEALTH", "true", "health checks need no credentials", true},
	{"auth-public-reflection", "AUTH_PUBLIC_REFLECTION", "true", "server reflection needs no credentials", true},
	{"max-concurrent-streams", "MAX_CONCURRENT_STREAMS", strconv.Itoa(server.DefaultMaxConcurrentStreams), "concurrent calls per gRPC connection", false},
	{"read-header-timeout", "READ_HEADER_TIMEOUT", server.DefaultReadHeaderTimeout.String(), "how long a REST client may take to send its headers", false},
	{"max-file-bytes", "MAX_FILE_BYTES", strconv.Itoa(service.DefaultMaxFileBytes), "largest file UploadFile accepts", false},
}

// Load parses args (without the program name) and the environment.
func Load(args []string, getenv func(string) string, usageOut io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("esign-evidence", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.Usage = func() { Usage(usageOut) }
	vals := map[string]*string{}
	bools := map[string]*bool{}
	for _, s := range settings {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		if s.boolean {
			b, err := strconv.ParseBool(def)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not true or false", s.env, def)
			}
			bools[s.flag] = fs.Bool(s.flag, b, s.help+" ("+s.env+")")
			continue
		}
		vals[s.flag] = fs.String(s.flag, def, s.help+" ("+s.env+")")
	}
	simulate := bools["simulate"]
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	c := &Config{
		GRPCAddr: *vals["grpc-addr"],
		HTTPAddr: *vals["http-addr"],
		Simulate: *simulate,
	}
	var errs []error
	bad := func(flagName, env, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s (-%s): %s", env, flagName, fmt.Sprintf(format, a...)))
	}
	for _, a := range []struct{ flag, env, v string }{
		{"grpc-addr", "GRPC_ADDR", c.GRPCAddr},
		{"http-addr", "HTTP_ADDR", c.HTTPAddr},
	} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad(a.flag, a.env, "%q is not a host:port address", a.v)
		}
	}

	rev, err := upstream.ParseRevision(*vals["esign-api-revision"])
	if err != nil {
		bad("esign-api-revision", "ESIGN_API_REVISION", "%v", err)
	}
	c.Revision = rev

	durations := []struct {
		flag, env string
		dst       *time.Duration
	}{
		{"esign-timeout", "ESIGN_TIMEOUT", &c.UpstreamTimeout},
		{"shutdown-timeout", "SHUTDOWN_TIMEOUT", &c.ShutdownTimeout},
	}
	for _, d := range durations {
		v, err := time.ParseDuration(*vals[d.flag])
		if err != nil || v <= 0 {
			bad(d.flag, d.env, "%q is not a positive duration such as 15s", *vals[d.flag])
			continue
		}
		*d.dst = v
	}
	n, err := strconv.Atoi(*vals["max-request-bytes"])
	if err != nil || n < 1024 || n > 64<<20 {
		bad("max-request-bytes", "MAX_REQUEST_BYTES", "%q is not a number of bytes from 1024 to 67108864", *vals["max-request-bytes"])
	}
	c.MaxRequestBytes = n
	if err := c.LogLevel.UnmarshalText([]byte(*vals["log-level"])); err != nil {
		bad("log-level", "LOG_LEVEL", "%q is not debug, info, warn or error", *vals["log-level"])
	}

	c.UnknownOutcome = submission.UnknownPolicy(*vals["unknown-outcome-retry"])
	if c.UnknownOutcome != submission.ResendUnknown && c.UnknownOutcome != submission.RefuseUnknown {
		bad("unknown-outcome-retry", "UNKNOWN_OUTCOME_RETRY", "%q is not resend or refuse", *vals["unknown-outcome-retry"])
	}
	if v, err := time.ParseDuration(*vals["submission-lease"]); err != nil || v < time.Second {
		bad("submission-lease", "SUBMISSION_LEASE", "%q is not a duration of at least 1s", *vals["submission-lease"])
	} else {
		c.SubmissionLease = v
	}
	if v, err := strconv.ParseFloat(*vals["esign-qps"], 64); err != nil || v <= 0 {
		bad("esign-qps", "ESIGN_QPS", "%q is not a positive number", *vals["esign-qps"])
	} else {
		c.EsignQPS = v
	}
	c.DatabaseURL = upstream.Secret(getenv("DATABASE_URL"))
	c.DBPath = *vals["db-path"]
	if c.DBPath == "" && c.DatabaseURL == "" {
		bad("db-path", "DB_PATH", "is empty; name a file, or set DATABASE_URL")
	}
	fpKey, fpFile := getenv("FINGERPRINT_KEY"), *vals["fingerprint-key-file"]
	switch {
	case fpKey != "" && fpFile != "":
		bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "set either FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, not both")
	case fpFile != "":
		b, err := os.ReadFile(fpFile)
		if err != nil || len(strings.TrimSpace(string(b))) < 16 {
			bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "cannot read at least 16 characters from %q", fpFile)
		}
		c.FingerprintKey = upstream.Secret(strings.TrimSpace(string(b)))
	case fpKey != "":
		if len(fpKey) < 16 {
			bad("fingerprint-key-file", "FINGERPRINT_KEY", "must be at least 16 characters")
		}
		c.FingerprintKey = upstream.Secret(fpKey)
	}

	c.AdminAddr = *vals["admin-addr"]
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("admin-addr", "ADMIN_ADDR", "%q is not a host:port address", c.AdminAddr)
		}
	}
	if n, err := strconv.ParseUint(*vals["max-concurrent-streams"], 10, 32); err != nil || n == 0 {
		bad("max-concurrent-streams", "MAX_CONCURRENT_STREAMS", "%q is not a positive number", *vals["max-concurrent-streams"])
	} else {
		c.MaxConcurrentStreams = uint32(n)
	}
	if v, err := time.ParseDuration(*vals["read-header-timeout"]); err != nil || v <= 0 {
		bad("read-header-timeout", "READ_HEADER_TIMEOUT", "%q is not a positive duration", *vals["read-header-timeout"])
	} else {
		c.ReadHeaderTimeout = v
	}
	if n, err := strconv.ParseInt(*vals["max-file-bytes"], 10, 64); err != nil || n < 1024 || n > 1<<30 {
		bad("max-file-bytes", "MAX_FILE_BYTES", "%q is not a number of bytes from 1024 to 1073741824", *vals["max-file-bytes"])
	} else {
		c.MaxFileBytes = n
	}
	c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = *vals["tls-cert-file"], *vals["tls-key-file"], *vals["tls-client-ca-file"]
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("tls-key-file", "TLS_CERT_FILE and TLS_KEY_FILE", "set both or neither")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		bad("tls-client-ca-file", "TLS_CLIENT_CA_FILE", "client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE")
	}
	c.Auth = auth.Config{
		Disabled:         *bools["auth-disabled"],
		ClientCerts:      c.TLSClientCAFile != "",
		PublicHealth:     *bools["auth-public-health"],
		PublicReflection: *bools["auth-public-reflection"],
	}
	tokens, err := loadTokens(*vals["auth-tokens-file"], getenv("AUTH_TOKEN_HASHES"))
	if err != nil {
		bad("auth-tokens-file", "AUTH_TOKENS_FILE / AUTH_TOKEN_HASHES", "%v", err)
	}
	c.Auth.Tokens = tokens
	authConfigured := len(tokens) > 0 || c.Auth.ClientCerts
	if c.Simulate && !authConfigured {
		c.Auth.Disabled = true // demo mode: anyone on this machine may call the simulator
	}
	if !c.Auth.Disabled && !authConfigured {
		bad("auth-tokens-file", "AUTH_TOKENS_FILE", "callers must authenticate: set AUTH_TOKENS_FILE, AUTH_TOKEN_HASHES or TLS_CLIENT_CA_FILE, or AUTH_DISABLED=true to serve anyone")
	}

	if c.Simulate {
		if getenv("DB_PATH") == "" && !flagSet(fs, "db-path") {
			c.DBPath = "" // a temporary file
		}
		// Demo mode brings its own simulator, app ID and secret; e签宝 settings given as
		// well are a mistake worth stopping for: the operator may think they are used.
		for _, s := range []struct{ flag, env string }{
			{"esign-env", "ESIGN_ENV"}, {"esign-base-url", "ESIGN_BASE_URL"}, {"esign-app-id", "ESIGN_APP_ID"},
		} {
			if *vals[s.flag] != "" {
				bad(s.flag, s.env, "must not be set in demo mode (-simulate): the simulator is used instead of e签宝")
			}
		}
		if getenv("ESIGN_APP_SECRET") != "" || *vals["esign-app-secret-file"] != "" {
			bad("esign-app-secret-file", "ESIGN_APP_SECRET", "must not be set in demo mode (-simulate)")
		}
		return c, errors.Join(errs...)
	}

	switch base, env := *vals["esign-base-url"], *vals["esign-env"]; {
	case base != "":
		c.BaseURL = base
	case env == "sandbox":
		c.BaseURL = upstream.SandboxBaseURL
	case env == "production":
		c.BaseURL = upstream.ProductionBaseURL
	case env == "":
		bad("esign-env", "ESIGN_ENV", "set ESIGN_ENV to sandbox or production, or ESIGN_BASE_URL; or run the demo with -simulate")
	default:
		bad("esign-env", "ESIGN_ENV", "%q is not sandbox or production", env)
	}
	c.AppID = strings.TrimSpace(*vals["esign-app-id"])
	if c.AppID == "" {
		bad("esign-app-id", "ESIGN_APP_ID", "is required")
	}
	secret, file := getenv("ESIGN_APP_SECRET"), *vals["esign-app-secret-file"]
	switch {
	case secret != "" && file != "":
		bad("esign-app-secret-file", "ESIGN_APP_SECRET_FILE", "set either ESIGN_APP_SECRET or ESIGN_APP_SECRET_FILE, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			bad("esign-app-secret-file", "ESIGN_APP_SECRET_FILE", "cannot read %q", file)
		} else if strings.TrimSpace(string(b)) == "" {
			bad("esign-app-secret-file", "ESIGN_APP_SECRET_FILE", "%q is empty", file)
		}
		c.AppSecret = upstream.Secret(strings.TrimSpace(string(b)))
	case secret != "":
		c.AppSecret = upstream.Secret(secret)
	default:
		bad("esign-app-secret-file", "ESIGN_APP_SECRET", "the app secret is required (ESIGN_APP_SECRET or ESIGN_APP_SECRET_FILE)")
	}
	return c, errors.Join(errs...)
}

// loadTokens reads bearer tokens from a file of "<caller> <token>" lines (blank lines and
// # comments allowed) and from hashes given as "<caller>:<sha256 hex>,...". Only the
// SHA-256 of each token is kept. Errors never quote a token.
func loadTokens(file, hashes string) ([]auth.Token, error) {
	var out []auth.Token
	seen := map[[32]byte]bool{}
	add := func(id string, sum [32]byte) error {
		if !validIdentity.MatchString(id) {
			return fmt.Errorf("caller name %q must be 1 to 64 letters, digits, '.', '_' or '-'", id)
		}
		if seen[sum] {
			return fmt.Errorf("a token is given twice (caller %s)", id)
		}
		seen[sum] = true
		out = append(out, auth.Token{Identity: id, SHA256: sum})
		return nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %q", file)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			id, tok, ok := strings.Cut(line, " ")
			tok = strings.TrimSpace(tok)
			if !ok || len(tok) < 16 {
				return nil, fmt.Errorf("%s line %d: want \"<caller> <token>\" with a token of at least 16 characters", file, i+1)
			}
			if err := add(id, sha256.Sum256([]byte(tok))); err != nil {
				return nil, err
			}
		}
	}
	for _, entry := range strings.Split(hashes, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, hx, _ := strings.Cut(entry, ":")
		raw, err := hex.DecodeString(hx)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("AUTH_TOKEN_HASHES: want <caller>:<64 hex digits of SHA-256> for caller %q", id)
		}
		if err := add(id, [32]byte(raw)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var validIdentity = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// Usage writes every setting with its flag, environment variable and default.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: esign-evidence [flags]\n\nEvery flag can also be set by its environment variable; a flag wins.")
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "  -%-22s %-22s default %-10s %s\n", s.flag, s.env, def, s.help)
	}
}

// Package config reads the service's configuration from flags and the environment into
// one struct and validates it at start-up. A flag wins over its environment variable.
// Errors name the setting at fault; the app secret is never printed.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/esign-evidence/esign-evidence/internal/authtoken"
	"github.com/esign-evidence/esign-evidence/internal/guard"
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
	// DefaultAdminAddr serves /metrics (and /debug/pprof with ADMIN_PPROF). It has no
	// credentials, so by default only this host reaches it.
	DefaultAdminAddr = "127.0.0.1:9091"
	// DefaultDBPath is in the state directory the container image and the systemd unit
	// use, not relative to whatever the working directory happens to be.
	DefaultDBPath = "/var/lib/esign-evidence/submissions.db"
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
	// DrainDelay is how long the listeners keep serving after health turns NOT_SERVING.
	DrainDelay time.Duration
	LogLevel   slog.Level

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
	// FingerprintKeys key the hash of each request kept in the store: the first keys new
	// records, every one is accepted (rotation). Empty: the embedded store keeps its own.
	FingerprintKeys []upstream.Secret
	// StoreTimeout bounds every store operation.
	StoreTimeout time.Duration
	// MinRemaining is the admission rule: no e签宝 call is started for a caller whose
	// remaining deadline is shorter.
	MinRemaining time.Duration
	// JournalPath is the local journal of results the store could not record yet.
	JournalPath string
	// Retention is how long submissions are kept after their last change.
	Retention time.Duration

	// AdminAddr is the admin listener's address; "" for none.
	AdminAddr string
	// AdminPprof serves Go's profiler on the admin listener.
	AdminPprof bool
	// TLSCertFile and TLSKeyFile serve both listeners over TLS; TLSClientCAFile adds
	// client-certificate authentication.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// Auth is caller authentication.
	Auth auth.Config
	// AuthTokensFile and AuthTokenHashes are where Auth.Tokens came from; ReloadTokens
	// reads them again.
	AuthTokensFile, AuthTokenHashes string
	MaxConcurrentStreams            uint32
	ReadHeaderTimeout               time.Duration
	MaxFileBytes                    int64
	// UploadIdleTimeout ends an upload that sends nothing for this long.
	UploadIdleTimeout time.Duration
	// MaxConcurrentUploads and MaxConnections bound uploads in progress and open
	// connections; 0 sizes them from the descriptor limit (server.Default…).
	MaxConcurrentUploads, MaxConnections int
	// MaxCallsInFlight bounds the calls in progress over both transports.
	MaxCallsInFlight int
	// ReadTimeout bounds a whole REST request, headers and body.
	ReadTimeout time.Duration
	// GRPCMaxConnectionIdle closes a gRPC connection without calls for this long.
	GRPCMaxConnectionIdle time.Duration
	// GRPCKeepaliveTime and GRPCKeepaliveTimeout: a silent gRPC connection is pinged after
	// the first and closed when no answer comes within the second.
	GRPCKeepaliveTime, GRPCKeepaliveTimeout time.Duration
	// IdleTimeout closes a REST keep-alive connection without a request for this long.
	IdleTimeout time.Duration
}

// envOnly are the settings read from the environment alone: secrets (a flag's value would
// show in a process list) and settings that hold one.
var envOnly = []string{"ESIGN_APP_SECRET", "FINGERPRINT_KEY", "AUTH_TOKEN_HASHES", "DATABASE_URL"}

// EnvVars lists every environment variable the service reads.
func EnvVars() []string {
	fs, _ := newFlagSet(&Config{}, io.Discard)
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, envName(f.Name)) })
	return append(out, envOnly...)
}

// envName is the environment variable of a flag, by ff's rule: upper case, dashes as
// underscores.
func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// raw holds the settings whose meaning depends on others and is decided after parsing.
type raw struct {
	esignEnv, esignBaseURL, esignAppID, secretFile, fingerprintFile, tokensFile, databaseURLFile string
	authDisabled, publicHealth, publicReflection                                                 bool
}

// newFlagSet declares every setting with its type, default and help; parsing writes
// straight into c (and r). The environment variable of each flag is its name in upper
// case with underscores (GRPC_ADDR for -grpc-addr).
func newFlagSet(c *Config, out io.Writer) (*flag.FlagSet, *raw) {
	fs := flag.NewFlagSet("esign-evidence", flag.ContinueOnError)
	fs.SetOutput(out)
	r := &raw{}
	c.Revision = upstream.RevisionSeed
	c.UpstreamTimeout = upstream.DefaultTimeout
	c.MaxRequestBytes = server.DefaultMaxRequestBytes
	c.ShutdownTimeout = server.DefaultShutdownTimeout
	c.UnknownOutcome = submission.ResendUnknown
	c.SubmissionLease = submission.DefaultLease
	c.EsignQPS = guard.DefaultQPS
	c.StoreTimeout = submission.DefaultStoreTimeout
	c.MinRemaining = guard.DefaultMinRemaining
	c.Retention = submission.DefaultRetention
	c.MaxConcurrentStreams = server.DefaultMaxConcurrentStreams
	c.ReadHeaderTimeout = server.DefaultReadHeaderTimeout
	c.MaxFileBytes = service.DefaultMaxFileBytes
	c.UploadIdleTimeout = service.DefaultUploadIdleTimeout
	c.MaxCallsInFlight = server.DefaultMaxCallsInFlight
	c.ReadTimeout = server.DefaultReadTimeout
	c.GRPCMaxConnectionIdle = server.DefaultGRPCMaxConnectionIdle
	c.GRPCKeepaliveTime = server.DefaultGRPCKeepaliveTime
	c.GRPCKeepaliveTimeout = server.DefaultGRPCKeepaliveTimeout
	c.IdleTimeout = server.DefaultIdleTimeout

	v := func(name string, dst any, help string) {
		fs.Var(newValue(name, dst), name, help)
	}
	c.GRPCAddr, c.HTTPAddr, c.AdminAddr = DefaultGRPCAddr, DefaultHTTPAddr, DefaultAdminAddr
	fs.Var(&address{name: "grpc-addr", dst: &c.GRPCAddr}, "grpc-addr", "gRPC listen address")
	fs.Var(&address{name: "http-addr", dst: &c.HTTPAddr}, "http-addr", "REST (grpc-gateway) listen address")
	v("simulate", &c.Simulate, "demo mode: serve against the in-process offline e签宝 simulator, not e签宝")
	fs.StringVar(&r.esignEnv, "esign-env", "", "e签宝 environment: sandbox or production (or set ESIGN_BASE_URL)")
	fs.StringVar(&r.esignBaseURL, "esign-base-url", "", "e签宝 base URL; overrides ESIGN_ENV (a proxy, a simulator)")
	fs.StringVar(&r.esignAppID, "esign-app-id", "", "e签宝 app ID")
	fs.StringVar(&r.secretFile, "esign-app-secret-file", "", "file holding the e签宝 app secret (or set ESIGN_APP_SECRET; no flag takes the secret itself, so it never shows in a process list)")
	v("esign-api-revision", &c.Revision, "e签宝 evidence API revision: seed or 2025")
	v("esign-timeout", &c.UpstreamTimeout, "timeout of one e签宝 call")
	v("max-request-bytes", &c.MaxRequestBytes, "maximum request size on gRPC and REST")
	v("shutdown-timeout", &c.ShutdownTimeout, "how long in-flight calls may take to finish at shutdown")
	v("shutdown-drain-delay", &c.DrainDelay, "on SIGTERM, how long to keep serving new calls after health turns NOT_SERVING, before draining (load balancers' time to notice; 5s under Kubernetes)")
	v("log-level", &c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.DBPath, "db-path", DefaultDBPath, "embedded submission store file; its directory must exist and be writable (demo mode: a temporary file); ignored when DATABASE_URL is set")
	fs.StringVar(&r.databaseURLFile, "database-url-file", "", "file holding the PostgreSQL connection string, to use PostgreSQL instead of DB_PATH (or set DATABASE_URL)")
	v("unknown-outcome-retry", &c.UnknownOutcome, "after an unknown outcome, a retry with the same customBizId: resend or refuse")
	v("submission-lease", &c.SubmissionLease, "how long an in-progress submission holds its customBizId without being renewed (its holder renews it while its call is in flight; a replica that died frees it after this)")
	v("store-timeout", &c.StoreTimeout, "bound of every submission-store operation, whatever the caller's deadline")
	v("submission-retention", &c.Retention, "how long submissions are kept after their last change (at least 1h)")
	fs.StringVar(&c.JournalPath, "journal-path", "", "local journal of e签宝 results the store could not record yet (default: DB_PATH + .journal, or esign-evidence.journal with DATABASE_URL)")
	v("esign-qps", &c.EsignQPS, "e签宝 requests per second allowed for the app (its quota); with DATABASE_URL shared by every replica")
	v("esign-min-remaining", &c.MinRemaining, "no e签宝 call is started for a caller with less deadline left (after waiting for the quota)")
	fs.StringVar(&r.fingerprintFile, "fingerprint-key-file", "", "file holding the keys of the request fingerprints, one per line, the first for new records (or set FINGERPRINT_KEY); required with DATABASE_URL; default with DB_PATH: a key kept in the store")
	fs.Var(&address{name: "admin-addr", dst: &c.AdminAddr, emptyOK: true}, "admin-addr", "admin listen address: /metrics, and /debug/pprof with ADMIN_PPROF (set but empty: none)")
	v("admin-pprof", &c.AdminPprof, "serve Go's profiler (/debug/pprof/) on the admin listener")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", "", "serve gRPC and REST over TLS with this certificate (PEM; reloaded when the file changes)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", "", "the TLS certificate's private key (PEM)")
	fs.StringVar(&c.TLSClientCAFile, "tls-client-ca-file", "", "accept callers with a client certificate signed by this CA (mTLS); the certificate's CN is the caller")
	fs.StringVar(&r.tokensFile, "auth-tokens-file", "", "bearer tokens, one caller per line: <caller> <token> (or set AUTH_TOKEN_HASHES)")
	v("auth-disabled", &r.authDisabled, "serve without authenticating callers (demo mode does unless tokens or a client CA are set)")
	r.publicHealth, r.publicReflection = true, true
	v("auth-public-health", &r.publicHealth, "health checks need no credentials")
	v("auth-public-reflection", &r.publicReflection, "server reflection needs no credentials")
	v("max-concurrent-streams", &c.MaxConcurrentStreams, "concurrent calls per gRPC connection")
	v("read-header-timeout", &c.ReadHeaderTimeout, "how long a REST client may take to send its headers")
	v("max-file-bytes", &c.MaxFileBytes, "largest file UploadFile accepts")
	v("upload-idle-timeout", &c.UploadIdleTimeout, "an upload that sends nothing for this long is ended and its temporary file removed")
	fs.Var(&count{name: "max-concurrent-uploads", dst: &c.MaxConcurrentUploads, auto: true}, "max-concurrent-uploads",
		"uploads in progress at once; more are refused (auto: from the descriptor limit)")
	fs.Var(&count{name: "max-connections", dst: &c.MaxConnections, auto: true}, "max-connections",
		"connections open at once on the gRPC and REST listeners together; more are closed at once (auto: from the descriptor limit)")
	fs.Var(&count{name: "max-calls-in-flight", dst: &c.MaxCallsInFlight}, "max-calls-in-flight",
		"calls in progress at once over gRPC and REST (health checks aside); more are refused")
	v("read-timeout", &c.ReadTimeout, "how long a REST client may take to send a whole request, headers and body")
	v("grpc-max-connection-idle", &c.GRPCMaxConnectionIdle, "a gRPC connection without calls for this long is closed")
	v("grpc-keepalive-time", &c.GRPCKeepaliveTime, "a gRPC connection silent for this long is pinged")
	v("grpc-keepalive-timeout", &c.GRPCKeepaliveTimeout, "a pinged gRPC connection that does not answer within this is closed")
	v("idle-timeout", &c.IdleTimeout, "a REST keep-alive connection without a request for this long is closed")
	return fs, r
}

// Load parses args (without the program name) and the environment (ff: a flag wins over
// its environment variable). An environment variable that is set counts as set even when
// empty (ADMIN_ADDR= means no admin listener).
func Load(args []string, usageOut io.Writer) (*Config, error) {
	c := &Config{}
	fs, r := newFlagSet(c, usageOut)
	fs.Usage = func() { Usage(usageOut) }
	if err := ff.Parse(fs, args, ff.WithEnvVars()); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// ff skips empty environment variables; one that is set to "" still says something.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var setErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && v == "" && !set[f.Name] && setErr == nil {
			setErr = fs.Set(f.Name, "")
			set[f.Name] = true
		}
	})
	if setErr != nil {
		return nil, setErr
	}

	var errs []error
	bad := func(flagName, env, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s (-%s): %s", env, flagName, fmt.Sprintf(format, a...)))
	}
	c.DatabaseURL = upstream.Secret(os.Getenv("DATABASE_URL"))
	if r.databaseURLFile != "" {
		b, err := os.ReadFile(r.databaseURLFile)
		switch {
		case c.DatabaseURL != "":
			bad("database-url-file", "DATABASE_URL_FILE", "set either DATABASE_URL or DATABASE_URL_FILE, not both")
		case err != nil:
			bad("database-url-file", "DATABASE_URL_FILE", "cannot read %q", r.databaseURLFile)
		case strings.TrimSpace(string(b)) == "":
			bad("database-url-file", "DATABASE_URL_FILE", "%q is empty", r.databaseURLFile)
		}
		c.DatabaseURL = upstream.Secret(strings.TrimSpace(string(b)))
	}
	if c.DBPath == "" && c.DatabaseURL == "" && !c.Simulate {
		bad("db-path", "DB_PATH", "is empty; name a file, or set DATABASE_URL")
	}
	fpKey, fpFile := os.Getenv("FINGERPRINT_KEY"), r.fingerprintFile
	switch {
	case fpKey != "" && fpFile != "":
		bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "set either FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, not both")
	case fpFile != "":
		b, err := os.ReadFile(fpFile)
		if err != nil {
			bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "cannot read %q", fpFile)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if len(line) < 16 {
				bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "%s line %d: a key must be at least 16 characters", fpFile, i+1)
			}
			c.FingerprintKeys = append(c.FingerprintKeys, upstream.Secret(line))
		}
		if err == nil && len(c.FingerprintKeys) == 0 {
			bad("fingerprint-key-file", "FINGERPRINT_KEY_FILE", "%q holds no key", fpFile)
		}
	case fpKey != "":
		if len(fpKey) < 16 {
			bad("fingerprint-key-file", "FINGERPRINT_KEY", "must be at least 16 characters")
		}
		c.FingerprintKeys = []upstream.Secret{upstream.Secret(fpKey)}
	}
	if c.DatabaseURL != "" && fpKey == "" && fpFile == "" {
		bad("fingerprint-key-file", "FINGERPRINT_KEY", "is required with DATABASE_URL (set FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, the same on every replica): the request fingerprints must not change when the app secret is rotated")
	}
	if err := submission.CheckTiming(c.SubmissionLease, c.StoreTimeout); err != nil {
		bad("submission-lease", "SUBMISSION_LEASE", "%v", err)
	}
	if c.Retention < time.Hour {
		bad("submission-retention", "SUBMISSION_RETENTION", "%v is shorter than an hour: retries of recent submissions would be sent again", c.Retention)
	}

	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("tls-key-file", "TLS_CERT_FILE and TLS_KEY_FILE", "set both or neither")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		bad("tls-client-ca-file", "TLS_CLIENT_CA_FILE", "client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE")
	}
	c.Auth = auth.Config{
		Disabled:         r.authDisabled,
		ClientCerts:      c.TLSClientCAFile != "",
		PublicHealth:     r.publicHealth,
		PublicReflection: r.publicReflection,
	}
	c.AuthTokensFile, c.AuthTokenHashes = r.tokensFile, os.Getenv("AUTH_TOKEN_HASHES")
	tokens, err := authtoken.Parse(c.AuthTokensFile, c.AuthTokenHashes)
	if err != nil {
		bad("auth-tokens-file", "AUTH_TOKENS_FILE / AUTH_TOKEN_HASHES", "%v", err)
	}
	c.Auth.Tokens = authtoken.NewSet(tokens)
	authConfigured := len(tokens) > 0 || c.Auth.ClientCerts
	if c.Simulate && !authConfigured {
		c.Auth.Disabled = true // demo mode: anyone on this machine may call the simulator
	}
	if !c.Auth.Disabled && !authConfigured {
		bad("auth-tokens-file", "AUTH_TOKENS_FILE", "callers must authenticate: set AUTH_TOKENS_FILE, AUTH_TOKEN_HASHES or TLS_CLIENT_CA_FILE, or AUTH_DISABLED=true to serve anyone")
	}

	if c.Simulate {
		if !set["db-path"] {
			c.DBPath = "" // a temporary file
		}
		// Demo mode brings its own simulator, app ID and secret; e签宝 settings given as
		// well are a mistake worth stopping for: the operator may think they are used.
		for _, s := range []struct{ flag, v string }{
			{"esign-env", r.esignEnv}, {"esign-base-url", r.esignBaseURL}, {"esign-app-id", r.esignAppID},
		} {
			if s.v != "" {
				bad(s.flag, envName(s.flag), "must not be set in demo mode (-simulate): the simulator is used instead of e签宝")
			}
		}
		if os.Getenv("ESIGN_APP_SECRET") != "" || r.secretFile != "" {
			bad("esign-app-secret-file", "ESIGN_APP_SECRET", "must not be set in demo mode (-simulate)")
		}
		return c, errors.Join(errs...)
	}

	switch base, env := r.esignBaseURL, r.esignEnv; {
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
	c.AppID = strings.TrimSpace(r.esignAppID)
	if c.AppID == "" {
		bad("esign-app-id", "ESIGN_APP_ID", "is required")
	}
	secret, file := os.Getenv("ESIGN_APP_SECRET"), r.secretFile
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

// ReloadTokens reads AUTH_TOKENS_FILE and AUTH_TOKEN_HASHES again and, when they are
// valid, makes their tokens the accepted set; it returns the number of callers. On an
// error the accepted set is left as it was. A reload that would leave no way to
// authenticate is refused like the same configuration at start-up.
func (c *Config) ReloadTokens() (int, error) {
	tokens, err := authtoken.Parse(c.AuthTokensFile, c.AuthTokenHashes)
	if err != nil {
		return 0, err
	}
	if len(tokens) == 0 && !c.Auth.ClientCerts && !c.Auth.Disabled {
		return 0, errors.New("no tokens left and no client CA: every caller would be refused")
	}
	c.Auth.Tokens.Replace(tokens)
	return len(tokens), nil
}

// Usage writes every setting with its flag, environment variable and default.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: esign-evidence [flags]            serve\n       esign-evidence -check-config [flags]  check the settings (flags and environment) and exit\n       esign-evidence -version               print the build and exit\n\nEvery flag can also be set by its environment variable; a flag wins.")
	fs, _ := newFlagSet(&Config{}, io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "  -%-22s %-22s default %-10s %s\n", f.Name, envName(f.Name), def, f.Usage)
	})
	fmt.Fprintf(w, "  Environment only: %s.\n", strings.Join(envOnly, ", "))
}

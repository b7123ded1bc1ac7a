package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/setting"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// usageHeader opens the usage text; every setting follows it.
const usageHeader = `Usage: esign-evidence [flags]            serve
       esign-evidence -check-config [flags]  check the settings (flags and environment) and exit
       esign-evidence -version               print the build and exit

Every flag can also be set by its environment variable; a flag wins.`

// settings are the whole configuration of one process: each package's own settings,
// declared by the package (Bind) with its defaults (DefaultSettings), and the command's.
type settings struct {
	// Simulate runs the offline e签宝 simulator in-process and points the service at it
	// (demo mode). Nothing else ever selects the simulator.
	Simulate bool
	LogLevel slog.Level

	Server   server.Settings
	Upstream upstream.Settings
	Auth     auth.Settings
	TLS      tlsreload.Settings
	Store    storeSettings

	// Resolved by check: e签宝's client configuration (demo mode: the simulator's, set
	// when it starts) and the authentication the interceptors apply.
	esign upstream.Config
	auth  auth.Config
}

// defaultSettings are every package's defaults.
func defaultSettings() *settings {
	return &settings{
		Server:   server.DefaultSettings(),
		Upstream: upstream.DefaultSettings(),
		Auth:     auth.DefaultSettings(),
		Store:    defaultStoreSettings(),
	}
}

// bind declares every setting on set.
func (s *settings) bind(set *setting.Set) {
	set.Bool(&s.Simulate, "simulate", "demo mode: serve against the in-process offline e签宝 simulator, not e签宝")
	set.Level(&s.LogLevel, "log-level", "debug, info, warn or error")
	s.Server.Bind(set)
	s.Upstream.Bind(set)
	s.Store.Bind(set)
	s.Auth.Bind(set)
	s.TLS.Bind(set)
}

// newSettingSet is the program's settings, declared on a new Set that prints usage to out.
func newSettingSet(out io.Writer) (*settings, *setting.Set) {
	s := defaultSettings()
	set := setting.NewSet("esign-evidence", out, usageHeader)
	s.bind(set)
	return s, set
}

// loadSettings parses args (without the program name) and the environment, then checks
// the whole: every error names its setting, all of them at once; the app secret is never
// printed.
func loadSettings(args []string, usageOut io.Writer) (*settings, error) {
	s, set := newSettingSet(usageOut)
	if err := set.Parse(args); err != nil {
		return nil, err
	}
	return s, s.check(set)
}

// check validates the settings together and resolves what depends on several: demo mode,
// authentication (tokens or client certificates), the store.
func (s *settings) check(set *setting.Set) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if s.Simulate && !set.Given("db-path") {
		s.Store.DBPath = "" // a temporary file
	}
	add(s.Store.check(s.Simulate))
	add(s.TLS.Check())
	var err error
	s.auth, err = s.Auth.Config(s.TLS.ClientCerts(), s.Simulate)
	add(err)
	if s.Simulate {
		// Demo mode brings its own simulator, app ID and secret; e签宝 settings given as
		// well are a mistake worth stopping for: the operator may think they are used.
		add(s.Upstream.CheckUnset())
	} else {
		s.esign, err = s.Upstream.Config()
		add(err)
	}
	return errors.Join(errs...)
}

// envVars lists every environment variable the service reads.
func envVars() []string {
	_, set := newSettingSet(io.Discard)
	return set.EnvVars()
}

// storeSettings are the exactly-once store's and the e签宝 guard's settings.
type storeSettings struct {
	// DBPath is the embedded store's file; "" in demo mode means a temporary file.
	DBPath string
	// DatabaseURL selects the PostgreSQL store instead (several replicas); from the
	// environment, or read from DatabaseURLFile.
	DatabaseURL     upstream.Secret
	DatabaseURLFile string
	// JournalPath is the local journal of results the store could not record yet.
	JournalPath string
	// FingerprintKey (environment only) or FingerprintKeyFile key the hash of each request
	// kept in the store; check puts them in FingerprintKeys, the first keying new records,
	// every one accepted (rotation). Empty: the embedded store keeps its own.
	FingerprintKey     string
	FingerprintKeyFile string
	FingerprintKeys    []upstream.Secret
	// UnknownOutcome says what a retry does after an outcome unknown.
	UnknownOutcome submission.UnknownPolicy
	// Lease is how long an in-progress submission holds its key.
	Lease time.Duration
	// StoreTimeout bounds every store operation.
	StoreTimeout time.Duration
	// Retention is how long submissions are kept after their last change.
	Retention time.Duration
	// EsignQPS is the app's e签宝 quota, enforced before sending.
	EsignQPS float64
	// MinRemaining is the admission rule: no e签宝 call is started for a caller whose
	// remaining deadline is shorter.
	MinRemaining time.Duration
}

// DefaultDBPath is in the state directory the container image and the systemd unit use,
// not relative to whatever the working directory happens to be.
const DefaultDBPath = "/var/lib/esign-evidence/submissions.db"

func defaultStoreSettings() storeSettings {
	return storeSettings{
		DBPath:         DefaultDBPath,
		UnknownOutcome: submission.ResendUnknown,
		Lease:          submission.DefaultLease,
		StoreTimeout:   submission.DefaultStoreTimeout,
		Retention:      submission.DefaultRetention,
		EsignQPS:       guard.DefaultQPS,
		MinRemaining:   guard.DefaultMinRemaining,
	}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *storeSettings) Bind(set *setting.Set) {
	set.String(&s.DBPath, "db-path", "embedded submission store file; its directory must exist and be writable (demo mode: a temporary file); ignored when DATABASE_URL is set")
	setting.EnvOnly(set, &s.DatabaseURL, "DATABASE_URL")
	set.String(&s.DatabaseURLFile, "database-url-file", "file holding the PostgreSQL connection string, to use PostgreSQL instead of DB_PATH (or set DATABASE_URL)")
	set.String(&s.JournalPath, "journal-path", "local journal of e签宝 results the store could not record yet (default: DB_PATH + .journal, or esign-evidence.journal with DATABASE_URL)")
	setting.EnvOnly(set, &s.FingerprintKey, "FINGERPRINT_KEY")
	set.String(&s.FingerprintKeyFile, "fingerprint-key-file", "file holding the keys of the request fingerprints, one per line, the first for new records (or set FINGERPRINT_KEY); required with DATABASE_URL; default with DB_PATH: a key kept in the store")
	setting.Parsed(set, &s.UnknownOutcome, "unknown-outcome-retry", "after an unknown outcome, a retry with the same customBizId: resend or refuse",
		func(v string) (submission.UnknownPolicy, error) {
			if p := submission.UnknownPolicy(v); p == submission.ResendUnknown || p == submission.RefuseUnknown {
				return p, nil
			}
			return "", fmt.Errorf("%q is not resend or refuse", v)
		})
	set.DurationIn(&s.Lease, "submission-lease", time.Second, time.Duration(1<<63-1), "a duration of at least 1s",
		"how long an in-progress submission holds its customBizId without being renewed (its holder renews it while its call is in flight; a replica that died frees it after this)")
	set.Duration(&s.StoreTimeout, "store-timeout", "bound of every submission-store operation, whatever the caller's deadline")
	set.Duration(&s.Retention, "submission-retention", "how long submissions are kept after their last change (at least 1h)")
	set.PositiveFloat(&s.EsignQPS, "esign-qps", "e签宝 requests per second allowed for the app (its quota); with DATABASE_URL shared by every replica")
	set.Duration(&s.MinRemaining, "esign-min-remaining", "no e签宝 call is started for a caller with less deadline left (after waiting for the quota)")
}

// check reads the database URL and fingerprint key files and checks the settings
// together; demo says an empty DBPath is a temporary file.
func (s *storeSettings) check(demo bool) error {
	var errs []error
	bad := func(env, flag, format string, a ...any) { errs = append(errs, setting.Errorf(env, flag, format, a...)) }
	if s.DatabaseURLFile != "" {
		b, err := os.ReadFile(s.DatabaseURLFile)
		switch {
		case s.DatabaseURL != "":
			bad("DATABASE_URL_FILE", "database-url-file", "set either DATABASE_URL or DATABASE_URL_FILE, not both")
		case err != nil:
			bad("DATABASE_URL_FILE", "database-url-file", "cannot read %q", s.DatabaseURLFile)
		case strings.TrimSpace(string(b)) == "":
			bad("DATABASE_URL_FILE", "database-url-file", "%q is empty", s.DatabaseURLFile)
		}
		s.DatabaseURL = upstream.Secret(strings.TrimSpace(string(b)))
	}
	if s.DBPath == "" && s.DatabaseURL == "" && !demo {
		bad("DB_PATH", "db-path", "is empty; name a file, or set DATABASE_URL")
	}
	switch key, file := s.FingerprintKey, s.FingerprintKeyFile; {
	case key != "" && file != "":
		bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "set either FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "cannot read %q", file)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if len(line) < 16 {
				bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "%s line %d: a key must be at least 16 characters", file, i+1)
			}
			s.FingerprintKeys = append(s.FingerprintKeys, upstream.Secret(line))
		}
		if err == nil && len(s.FingerprintKeys) == 0 {
			bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "%q holds no key", file)
		}
	case key != "":
		if len(key) < 16 {
			bad("FINGERPRINT_KEY", "fingerprint-key-file", "must be at least 16 characters")
		}
		s.FingerprintKeys = []upstream.Secret{upstream.Secret(key)}
	}
	if s.DatabaseURL != "" && s.FingerprintKey == "" && s.FingerprintKeyFile == "" {
		bad("FINGERPRINT_KEY", "fingerprint-key-file", "is required with DATABASE_URL (set FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, the same on every replica): the request fingerprints must not change when the app secret is rotated")
	}
	if err := submission.CheckTiming(s.Lease, s.StoreTimeout); err != nil {
		bad("SUBMISSION_LEASE", "submission-lease", "%v", err)
	}
	if s.Retention < time.Hour {
		bad("SUBMISSION_RETENTION", "submission-retention", "%v is shorter than an hour: retries of recent submissions would be sent again", s.Retention)
	}
	return errors.Join(errs...)
}

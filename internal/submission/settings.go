package submission

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Settings are a Submitter's settings: what a retry does after an unknown outcome, how
// long an in-progress record holds its key, the bound of every store operation, and how
// long records are kept.
type Settings struct {
	// Unknown says what a retry does after an outcome unknown.
	Unknown UnknownPolicy
	// Lease is how long an in-progress record holds its key without being renewed.
	Lease time.Duration
	// StoreTimeout bounds each store operation, whatever the caller's deadline.
	StoreTimeout time.Duration
	// Retention is how long a record is kept after its last change; Run removes older
	// ones.
	Retention time.Duration
}

// DefaultSettings are the settings unless configured otherwise; the reason for each value
// is beside its constant.
func DefaultSettings() Settings {
	return Settings{Unknown: ResendUnknown, Lease: DefaultLease, StoreTimeout: DefaultStoreTimeout, Retention: DefaultRetention}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	setting.Parsed(set, &s.Unknown, "unknown-outcome-retry", "after an unknown outcome, a retry with the same customBizId: resend or refuse",
		func(v string) (UnknownPolicy, error) {
			if p := UnknownPolicy(v); p == ResendUnknown || p == RefuseUnknown {
				return p, nil
			}
			return "", fmt.Errorf("%q is not resend or refuse", v)
		})
	set.DurationIn(&s.Lease, "submission-lease", time.Second, time.Duration(1<<63-1), "a duration of at least 1s",
		"how long an in-progress submission holds its customBizId without being renewed (its holder renews it while its call is in flight; a replica that died frees it after this)")
	set.Duration(&s.StoreTimeout, "store-timeout", "bound of every submission-store operation, whatever the caller's deadline")
	set.Duration(&s.Retention, "submission-retention", "how long submissions are kept after their last change (at least 1h)")
}

// MinRetention is the shortest retention accepted from configuration: a shorter one would
// forget submissions their callers may still retry.
const MinRetention = time.Hour

// Check refuses settings that together would break the guarantee: a lease that cannot be
// renewed within the store timeout (CheckTiming), a retention shorter than MinRetention.
func (s Settings) Check() error {
	var errs []error
	if err := CheckTiming(s.Lease, s.StoreTimeout); err != nil {
		errs = append(errs, setting.Errorf("SUBMISSION_LEASE", "submission-lease", "%v", err))
	}
	if s.Retention < MinRetention {
		errs = append(errs, setting.Errorf("SUBMISSION_RETENTION", "submission-retention",
			"%v is shorter than an hour: retries of recent submissions would be sent again", s.Retention))
	}
	return errors.Join(errs...)
}

// DefaultDBPath is in the state directory the container image and the systemd unit use,
// not relative to whatever the working directory happens to be.
const DefaultDBPath = "/var/lib/esign-evidence/submissions.db"

// StoreSettings say where records are kept and how requests are fingerprinted: the
// embedded store's file or PostgreSQL's connection string, the journal of results not yet
// recorded, the fingerprint keys. Check reads the files they name.
type StoreSettings struct {
	// DBPath is the embedded store's file; "" in demo mode means a temporary file.
	DBPath string
	// DatabaseURL selects the PostgreSQL store instead (several replicas); from the
	// environment only, or read from DatabaseURLFile.
	DatabaseURL     upstream.Secret
	DatabaseURLFile string
	// JournalPath is the local journal of results the store could not record yet; ""
	// puts it next to the embedded store (or esign-evidence.journal with PostgreSQL).
	JournalPath string
	// FingerprintKey (environment only) or FingerprintKeyFile (one key a line) key the
	// hash of each request kept in the store; Check puts them in FingerprintKeys, the
	// first keying new records, every one accepted (rotation). None: the embedded store
	// keeps its own.
	FingerprintKey     upstream.Secret
	FingerprintKeyFile string
	FingerprintKeys    []upstream.Secret
	// Migrate brings the PostgreSQL schema to this binary's version at start-up. When
	// false, start-up changes nothing in the schema (the role needs no DDL) and refuses a
	// schema at another version: a separate step migrates it (`esign-evidence -migrate`,
	// MigratePostgres), with a role that may.
	Migrate bool
}

// DefaultStoreSettings are the settings unless configured otherwise: the embedded store at
// DefaultDBPath.
func DefaultStoreSettings() StoreSettings {
	return StoreSettings{DBPath: DefaultDBPath, Migrate: true}
}

// minFingerprintKey is the shortest fingerprint key accepted (New's own minimum).
const minFingerprintKey = 16

// Bind declares the settings on set, with their current values as defaults.
func (s *StoreSettings) Bind(set *setting.Set) {
	set.String(&s.DBPath, "db-path", "embedded submission store file; its directory must exist and be writable (demo mode: a temporary file); ignored when DATABASE_URL is set")
	setting.EnvOnly(set, &s.FingerprintKey, "FINGERPRINT_KEY")
	setting.EnvOnly(set, &s.DatabaseURL, "DATABASE_URL")
	set.String(&s.DatabaseURLFile, "database-url-file", "file holding the PostgreSQL connection string, to use PostgreSQL instead of DB_PATH (or set DATABASE_URL)")
	set.String(&s.JournalPath, "journal-path", "local journal of e签宝 results the store could not record yet (default: DB_PATH + .journal, or esign-evidence.journal with DATABASE_URL)")
	set.String(&s.FingerprintKeyFile, "fingerprint-key-file", "file holding the keys of the request fingerprints, one per line, the first for new records (or set FINGERPRINT_KEY); required with DATABASE_URL; default with DB_PATH: a key kept in the store")
	set.Bool(&s.Migrate, "store-migrate", "migrate the PostgreSQL schema at start-up; false: change nothing in it (the role needs no DDL) and refuse a schema at another version (run -migrate first)")
}

// Check reads the database URL and fingerprint key files and checks the settings
// together; demo says an empty DBPath means a temporary file. Errors name the setting and
// never quote a key or the connection string.
func (s *StoreSettings) Check(demo bool) error {
	errs := s.checkLocation(demo)
	bad := func(env, flag, format string, a ...any) { errs = append(errs, setting.Errorf(env, flag, format, a...)) }
	s.FingerprintKeys = nil
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
			if len(line) < minFingerprintKey {
				bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "%s line %d: a key must be at least %d characters", file, i+1, minFingerprintKey)
			}
			s.FingerprintKeys = append(s.FingerprintKeys, upstream.Secret(line))
		}
		if err == nil && len(s.FingerprintKeys) == 0 {
			bad("FINGERPRINT_KEY_FILE", "fingerprint-key-file", "%q holds no key", file)
		}
	case key != "":
		if len(key) < minFingerprintKey {
			bad("FINGERPRINT_KEY", "fingerprint-key-file", "must be at least %d characters", minFingerprintKey)
		}
		s.FingerprintKeys = []upstream.Secret{key}
	}
	if s.DatabaseURL != "" && s.FingerprintKey == "" && s.FingerprintKeyFile == "" {
		bad("FINGERPRINT_KEY", "fingerprint-key-file", "is required with DATABASE_URL (set FINGERPRINT_KEY or FINGERPRINT_KEY_FILE, the same on every replica): the request fingerprints must not change when the app secret is rotated")
	}
	return errors.Join(errs...)
}

// CheckLocation reads the database URL file and checks only where the store is: all that
// migrating it needs (no fingerprint key).
func (s *StoreSettings) CheckLocation() error { return errors.Join(s.checkLocation(false)...) }

// checkLocation reads DATABASE_URL_FILE and checks DB_PATH and DATABASE_URL.
func (s *StoreSettings) checkLocation(demo bool) []error {
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
	return errs
}

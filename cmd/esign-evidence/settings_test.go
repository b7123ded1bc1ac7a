package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// Loopback listen addresses: a service without authentication or TLS may listen on them.
const local9090, local8080 = "127.0.0.1:9090", "127.0.0.1:8080"

// setEnv makes m the whole environment the service reads, for the test's duration.
func setEnv(t *testing.T, m map[string]string) {
	t.Helper()
	for _, k := range envVars() {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	for k, v := range m {
		t.Setenv(k, v)
	}
}

func TestValidConfigurations(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# callers\nbilling tok-0123456789abcdef\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURLFile := filepath.Join(dir, "database-url")
	if err := os.WriteFile(dbURLFile, []byte("postgres://u:p@db/esign\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c *settings)
	}{
		{"demo mode by flag", []string{"-simulate"}, nil, func(t *testing.T, c *settings) {
			if !c.Simulate || c.Server.GRPCAddr != "127.0.0.1:9090" || c.Server.HTTPAddr != "127.0.0.1:8080" || c.Upstream.Revision != upstream.RevisionSeed {
				t.Errorf("%+v", c)
			}
		}},
		{"demo mode by environment", nil, map[string]string{"SIMULATE": "true"}, func(t *testing.T, c *settings) {
			if !c.Simulate {
				t.Error("not simulating")
			}
		}},
		{"sandbox", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s", "AUTH_DISABLED": "true", "GRPC_ADDR": local9090, "HTTP_ADDR": local8080}, func(t *testing.T, c *settings) {
			if c.esign.BaseURL != upstream.SandboxBaseURL || c.esign.AppSecret != "s" || c.esign.Timeout != 15*time.Second || !c.auth.Disabled {
				t.Errorf("%+v", c)
			}
			if c.Store.DBPath != "/var/lib/esign-evidence/submissions.db" || c.Server.DrainDelay != 0 {
				t.Errorf("defaults: DB_PATH %q, SHUTDOWN_DRAIN_DELAY %v", c.Store.DBPath, c.Server.DrainDelay)
			}
		}},
		{"drain delay", nil, map[string]string{"SIMULATE": "true", "SHUTDOWN_DRAIN_DELAY": "5s"}, func(t *testing.T, c *settings) {
			if c.Server.DrainDelay != 5*time.Second {
				t.Errorf("drain delay %v", c.Server.DrainDelay)
			}
		}},
		{"token hashes", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s", "GRPC_ADDR": local9090, "HTTP_ADDR": local8080,
			"AUTH_TOKEN_HASHES": "billing:" + strings.Repeat("ab", 32) + ", crm:" + strings.Repeat("cd", 32)}, func(t *testing.T, c *settings) {
			if c.auth.Disabled || c.auth.Tokens.Len() != 2 || c.auth.Tokens.Tokens()[1].Identity != "crm" || !c.auth.PublicHealth || !c.auth.PublicReflection {
				t.Errorf("%+v", c.auth)
			}
		}},
		{"token file", []string{"-auth-public-reflection=false"}, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s", "GRPC_ADDR": local9090, "HTTP_ADDR": local8080,
			"AUTH_TOKENS_FILE": tokenFile}, func(t *testing.T, c *settings) {
			if c.auth.Tokens.Len() != 1 || c.auth.Tokens.Tokens()[0].Identity != "billing" || c.auth.Tokens.Tokens()[0].SHA256 != sha256.Sum256([]byte("tok-0123456789abcdef")) || c.auth.PublicReflection {
				t.Errorf("%+v", c.auth)
			}
		}},
		{"production with a secret file", nil, map[string]string{"ESIGN_ENV": "production", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET_FILE": secretFile, "AUTH_DISABLED": "true", "GRPC_ADDR": local9090, "HTTP_ADDR": local8080}, func(t *testing.T, c *settings) {
			if c.esign.BaseURL != upstream.ProductionBaseURL || c.esign.AppSecret != "file-secret" {
				t.Errorf("%+v", c)
			}
		}},
		{"PostgreSQL from a file", nil, map[string]string{"SIMULATE": "true", "DATABASE_URL_FILE": dbURLFile, "FINGERPRINT_KEY": "a-fingerprint-key-0123"}, func(t *testing.T, c *settings) {
			if c.Store.DatabaseURL != "postgres://u:p@db/esign" {
				t.Errorf("DATABASE_URL from the file: got %d characters", len(c.Store.DatabaseURL))
			}
		}},
		{"base URL wins over env; flags win over environment", []string{"-grpc-addr", "127.0.0.1:1", "-esign-api-revision", "2025"},
			map[string]string{"GRPC_ADDR": ":2", "HTTP_ADDR": local8080, "ESIGN_ENV": "sandbox", "ESIGN_BASE_URL": "http://proxy:1", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s", "AUTH_DISABLED": "true"},
			func(t *testing.T, c *settings) {
				if c.Server.GRPCAddr != "127.0.0.1:1" || c.esign.BaseURL != "http://proxy:1" || c.esign.Revision != upstream.Revision2025 {
					t.Errorf("%+v", c)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := loadSettings(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestBadConfigurationNamesTheSetting(t *testing.T) {
	const secret = "very-secret-value-123"
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"nothing at all", nil, nil, []string{"ESIGN_ENV", "ESIGN_APP_ID", "ESIGN_APP_SECRET", "-simulate"}},
		{"unknown environment", nil, map[string]string{"ESIGN_ENV": "staging", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": secret}, []string{"ESIGN_ENV"}},
		{"both secret sources", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": secret, "ESIGN_APP_SECRET_FILE": "/x"}, []string{"ESIGN_APP_SECRET_FILE"}},
		{"unreadable secret file", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET_FILE": "/nonexistent/secret"}, []string{"ESIGN_APP_SECRET_FILE"}},
		{"bad revision", nil, map[string]string{"SIMULATE": "true", "ESIGN_API_REVISION": "2019"}, []string{"ESIGN_API_REVISION"}},
		{"bad timeout", nil, map[string]string{"SIMULATE": "true", "ESIGN_TIMEOUT": "fast"}, []string{"ESIGN_TIMEOUT"}},
		{"bad address", []string{"-simulate", "-http-addr", "8080"}, nil, []string{"HTTP_ADDR"}},
		{"bad drain delay", nil, map[string]string{"SIMULATE": "true", "SHUTDOWN_DRAIN_DELAY": "-1s"}, []string{"SHUTDOWN_DRAIN_DELAY"}},
		{"both database URL sources", nil, map[string]string{"SIMULATE": "true", "DATABASE_URL": "postgres://u:" + secret + "@db/x", "DATABASE_URL_FILE": "/x"}, []string{"DATABASE_URL_FILE"}},
		{"unreadable database URL file", nil, map[string]string{"SIMULATE": "true", "DATABASE_URL_FILE": "/nonexistent/url"}, []string{"DATABASE_URL_FILE"}},
		{"bad size", nil, map[string]string{"SIMULATE": "true", "MAX_REQUEST_BYTES": "12"}, []string{"MAX_REQUEST_BYTES"}},
		{"bad log level", nil, map[string]string{"SIMULATE": "true", "LOG_LEVEL": "loud"}, []string{"LOG_LEVEL"}},
		{"bad SIMULATE", nil, map[string]string{"SIMULATE": "maybe"}, []string{"SIMULATE"}},
		{"demo mode with e签宝 credentials", []string{"-simulate"}, map[string]string{"ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": secret}, []string{"ESIGN_APP_ID", "ESIGN_APP_SECRET"}},
		{"no authentication configured", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": secret}, []string{"AUTH_TOKENS_FILE", "AUTH_DISABLED"}},
		{"bad token hash", nil, map[string]string{"SIMULATE": "true", "AUTH_TOKEN_HASHES": "billing:" + secret}, []string{"AUTH_TOKEN_HASHES"}},
		{"short token in file", nil, map[string]string{"SIMULATE": "true", "AUTH_TOKENS_FILE": shortTokenFile(t)}, []string{"AUTH_TOKENS_FILE"}},
		{"TLS key without certificate", nil, map[string]string{"SIMULATE": "true", "TLS_KEY_FILE": "/k"}, []string{"TLS_CERT_FILE"}},
		{"client CA without TLS", nil, map[string]string{"SIMULATE": "true", "TLS_CLIENT_CA_FILE": "/ca"}, []string{"TLS_CLIENT_CA_FILE"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			_, err := loadSettings(tc.args, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error prints the secret: %v", err)
			}
		})
	}
}

// shortTokenFile holds a token too short to accept; its text must not be echoed.
func shortTokenFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("billing very-secret-v\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An environment variable that is set counts as set, even when empty: ADMIN_ADDR= means
// no admin listener, and an empty value of a typed setting is refused by name.
func TestSetButEmptyEnvironment(t *testing.T) {
	setEnv(t, map[string]string{"SIMULATE": "true"})
	c, err := loadSettings(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.AdminAddr != "127.0.0.1:9091" || c.Server.AdminPprof {
		t.Errorf("unset ADMIN_ADDR: %q (pprof %v), want the default on loopback without the profiler", c.Server.AdminAddr, c.Server.AdminPprof)
	}
	setEnv(t, map[string]string{"SIMULATE": "true", "ADMIN_PPROF": "true"})
	if c, err = loadSettings(nil, io.Discard); err != nil || !c.Server.AdminPprof {
		t.Errorf("ADMIN_PPROF=true: %v, %v", c.Server.AdminPprof, err)
	}
	setEnv(t, map[string]string{"SIMULATE": "true", "DB_PATH": ""})
	if c, err = loadSettings(nil, io.Discard); err != nil || c.Store.DBPath != "" {
		t.Errorf("DB_PATH set but empty in demo mode: %q, %v; want a temporary file", c.Store.DBPath, err)
	}
	setEnv(t, map[string]string{"SIMULATE": "true", "ADMIN_ADDR": ""})
	if c, err = loadSettings(nil, io.Discard); err != nil || c.Server.AdminAddr != "" {
		t.Errorf("ADMIN_ADDR set but empty: %q, %v; want no admin listener", c.Server.AdminAddr, err)
	}
	setEnv(t, map[string]string{"SIMULATE": "true", "ESIGN_TIMEOUT": ""})
	if _, err = loadSettings(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "ESIGN_TIMEOUT") {
		t.Errorf("ESIGN_TIMEOUT set but empty: %v", err)
	}
	// A flag still wins over an empty variable.
	setEnv(t, map[string]string{"SIMULATE": "true", "ADMIN_ADDR": ""})
	if c, err = loadSettings([]string{"-admin-addr", "127.0.0.1:9"}, io.Discard); err != nil || c.Server.AdminAddr != "127.0.0.1:9" {
		t.Errorf("flag over empty variable: %q, %v", c.Server.AdminAddr, err)
	}
}

// The usage text names every setting's flag and environment variable with its default.
func TestUsageListsEverySetting(t *testing.T) {
	var b strings.Builder
	if _, err := loadSettings([]string{"-help"}, &b); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, k := range envVars() {
		if !strings.Contains(b.String(), k) {
			t.Errorf("usage does not mention %s", k)
		}
	}
	for _, want := range []string{"-esign-timeout", "15s", "-grpc-addr", ":9090", "-esign-api-revision", "seed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

// The exactly-once settings: a lease that could not be renewed in time, a PostgreSQL
// store without a fingerprint key, and a too short retention are refused, naming the
// settings; a key file may list several keys (rotation), the first one current.
func TestExactlyOnceSettings(t *testing.T) {
	base := map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s", "AUTH_DISABLED": "true", "GRPC_ADDR": local9090, "HTTP_ADDR": local8080}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"SUBMISSION_LEASE": "2s", "STORE_TIMEOUT": "2s"}, []string{"SUBMISSION_LEASE", "STORE_TIMEOUT"}},
		{map[string]string{"DATABASE_URL": "postgres://db/x"}, []string{"FINGERPRINT_KEY", "DATABASE_URL"}},
		{map[string]string{"SUBMISSION_RETENTION": "10m"}, []string{"SUBMISSION_RETENTION"}},
		{map[string]string{"ESIGN_MIN_REMAINING": "0s"}, []string{"ESIGN_MIN_REMAINING"}},
	} {
		setEnv(t, with(tc.env))
		_, err := loadSettings(nil, io.Discard)
		if err == nil {
			t.Errorf("%v accepted", tc.env)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v does not name %s", tc.env, err, w)
			}
		}
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("new-fingerprint-key-0002\n\nold-fingerprint-key-0001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, with(map[string]string{"DATABASE_URL": "postgres://db/x", "FINGERPRINT_KEY_FILE": keys, "SUBMISSION_LEASE": "3s", "STORE_TIMEOUT": "1s"}))
	c, err := loadSettings(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Store.FingerprintKeys) != 2 || c.Store.FingerprintKeys[0] != "new-fingerprint-key-0002" || c.Submission.StoreTimeout != time.Second ||
		c.Server.Guard.MinRemaining != time.Second || c.Submission.Retention != 30*24*time.Hour {
		t.Errorf("%+v", c)
	}
}

func TestReloadTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("billing tok-0123456789abcdef\n")
	setEnv(t, map[string]string{"SIMULATE": "true", "AUTH_TOKENS_FILE": file})
	c, err := loadSettings(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	write("billing tok-0123456789abcdef\ncrm crm-0123456789abcdef\n")
	if n, err := c.Auth.Reload(c.auth); err != nil || n != 2 {
		t.Fatalf("reload: %d %v", n, err)
	}
	if id, ok := c.auth.Tokens.Identity("crm-0123456789abcdef"); !ok || id != "crm" {
		t.Errorf("added token not accepted: %q %v", id, ok)
	}
	for _, broken := range []string{"crm short-secret\n", "", "bad/name tok-0123456789abcdef\n"} {
		write(broken)
		if _, err := c.Auth.Reload(c.auth); err == nil {
			t.Errorf("reload of %q accepted", broken)
		} else if strings.Contains(err.Error(), "short-secret") {
			t.Errorf("error quotes the token: %v", err)
		}
		if _, ok := c.auth.Tokens.Identity("crm-0123456789abcdef"); !ok {
			t.Errorf("a broken file (%q) dropped the previous tokens", broken)
		}
	}
}

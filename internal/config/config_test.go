package config_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/config"
	"github.com/esign-evidence/esign-evidence/upstream"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestValidConfigurations(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c *config.Config)
	}{
		{"demo mode by flag", []string{"-simulate"}, nil, func(t *testing.T, c *config.Config) {
			if !c.Simulate || c.GRPCAddr != ":9090" || c.HTTPAddr != ":8080" || c.Revision != upstream.RevisionSeed {
				t.Errorf("%+v", c)
			}
		}},
		{"demo mode by environment", nil, map[string]string{"SIMULATE": "true"}, func(t *testing.T, c *config.Config) {
			if !c.Simulate {
				t.Error("not simulating")
			}
		}},
		{"sandbox", nil, map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s"}, func(t *testing.T, c *config.Config) {
			if c.BaseURL != upstream.SandboxBaseURL || c.AppSecret != "s" || c.UpstreamTimeout != 15*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{"production with a secret file", nil, map[string]string{"ESIGN_ENV": "production", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET_FILE": secretFile}, func(t *testing.T, c *config.Config) {
			if c.BaseURL != upstream.ProductionBaseURL || c.AppSecret != "file-secret" {
				t.Errorf("%+v", c)
			}
		}},
		{"base URL wins over env; flags win over environment", []string{"-grpc-addr", "127.0.0.1:1", "-esign-api-revision", "2025"},
			map[string]string{"GRPC_ADDR": ":2", "ESIGN_ENV": "sandbox", "ESIGN_BASE_URL": "http://proxy:1", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s"},
			func(t *testing.T, c *config.Config) {
				if c.GRPCAddr != "127.0.0.1:1" || c.BaseURL != "http://proxy:1" || c.Revision != upstream.Revision2025 {
					t.Errorf("%+v", c)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Load(tc.args, env(tc.env), io.Discard)
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
		{"bad revision", nil, map[string]string{"SIMULATE": "1", "ESIGN_API_REVISION": "2019"}, []string{"ESIGN_API_REVISION"}},
		{"bad timeout", nil, map[string]string{"SIMULATE": "1", "ESIGN_TIMEOUT": "fast"}, []string{"ESIGN_TIMEOUT"}},
		{"bad address", []string{"-simulate", "-http-addr", "8080"}, nil, []string{"HTTP_ADDR"}},
		{"bad size", nil, map[string]string{"SIMULATE": "1", "MAX_REQUEST_BYTES": "12"}, []string{"MAX_REQUEST_BYTES"}},
		{"bad log level", nil, map[string]string{"SIMULATE": "1", "LOG_LEVEL": "loud"}, []string{"LOG_LEVEL"}},
		{"bad SIMULATE", nil, map[string]string{"SIMULATE": "maybe"}, []string{"SIMULATE"}},
		{"demo mode with e签宝 credentials", []string{"-simulate"}, map[string]string{"ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": secret}, []string{"ESIGN_APP_ID", "ESIGN_APP_SECRET"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.args, env(tc.env), io.Discard)
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

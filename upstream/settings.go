package upstream

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings say which e签宝 to call and how: the environment or base URL, the app's
// credentials, the API revision and the timeout of one call. Config checks them and
// returns a Client's Config.
type Settings struct {
	// Env is e签宝's environment: "sandbox" or "production"; BaseURL, when set, is used
	// instead (a proxy, a simulator).
	Env, BaseURL string
	AppID        string
	// AppSecret is from the environment only (ESIGN_APP_SECRET), or read from
	// AppSecretFile.
	AppSecret     Secret
	AppSecretFile string
	Revision      Revision
	// Timeout bounds one call.
	Timeout time.Duration
}

// DefaultSettings are the settings unless configured otherwise: no e签宝 chosen, the seed
// revision, DefaultTimeout.
func DefaultSettings() Settings {
	return Settings{Revision: RevisionSeed, Timeout: DefaultTimeout}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.String(&s.Env, "esign-env", "e签宝 environment: sandbox or production (or set ESIGN_BASE_URL)")
	set.String(&s.BaseURL, "esign-base-url", "e签宝 base URL; overrides ESIGN_ENV (a proxy, a simulator)")
	set.String(&s.AppID, "esign-app-id", "e签宝 app ID")
	setting.EnvOnly(set, &s.AppSecret, "ESIGN_APP_SECRET")
	set.String(&s.AppSecretFile, "esign-app-secret-file", "file holding the e签宝 app secret (or set ESIGN_APP_SECRET; no flag takes the secret itself, so it never shows in a process list)")
	setting.Parsed(set, &s.Revision, "esign-api-revision", "e签宝 evidence API revision: seed or 2025", ParseRevision)
	set.Duration(&s.Timeout, "esign-timeout", "timeout of one e签宝 call")
}

// Config checks the settings of a real e签宝 and returns a Client's Config: the base URL
// from ESIGN_BASE_URL or ESIGN_ENV, the app ID, the secret (read from its file when given
// so), the revision and the timeout. Errors name the setting and never quote the secret.
func (s Settings) Config() (Config, error) {
	var errs []error
	bad := func(env, flag, format string, a ...any) { errs = append(errs, setting.Errorf(env, flag, format, a...)) }
	c := Config{Revision: s.Revision, Timeout: s.Timeout}
	switch {
	case s.BaseURL != "":
		c.BaseURL = s.BaseURL
	case s.Env == "sandbox":
		c.BaseURL = SandboxBaseURL
	case s.Env == "production":
		c.BaseURL = ProductionBaseURL
	case s.Env == "":
		bad("ESIGN_ENV", "esign-env", "set ESIGN_ENV to sandbox or production, or ESIGN_BASE_URL; or run the demo with -simulate")
	default:
		bad("ESIGN_ENV", "esign-env", "%q is not sandbox or production", s.Env)
	}
	c.AppID = strings.TrimSpace(s.AppID)
	if c.AppID == "" {
		bad("ESIGN_APP_ID", "esign-app-id", "is required")
	}
	switch file := s.AppSecretFile; {
	case s.AppSecret != "" && file != "":
		bad("ESIGN_APP_SECRET_FILE", "esign-app-secret-file", "set either ESIGN_APP_SECRET or ESIGN_APP_SECRET_FILE, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			bad("ESIGN_APP_SECRET_FILE", "esign-app-secret-file", "cannot read %q", file)
		} else if strings.TrimSpace(string(b)) == "" {
			bad("ESIGN_APP_SECRET_FILE", "esign-app-secret-file", "%q is empty", file)
		}
		c.AppSecret = Secret(strings.TrimSpace(string(b)))
	case s.AppSecret != "":
		c.AppSecret = s.AppSecret
	default:
		bad("ESIGN_APP_SECRET", "esign-app-secret-file", "the app secret is required (ESIGN_APP_SECRET or ESIGN_APP_SECRET_FILE)")
	}
	return c, errors.Join(errs...)
}

// CheckUnset refuses the settings that choose an e签宝 and its credentials: in demo mode
// the offline simulator is used instead, and an operator who set them may think they are.
func (s Settings) CheckUnset() error {
	var errs []error
	for _, v := range []struct{ flag, value string }{{"esign-env", s.Env}, {"esign-base-url", s.BaseURL}, {"esign-app-id", s.AppID}} {
		if v.value != "" {
			errs = append(errs, setting.Errorf(setting.EnvName(v.flag), v.flag, "must not be set in demo mode (-simulate): the simulator is used instead of e签宝"))
		}
	}
	if s.AppSecret != "" || s.AppSecretFile != "" {
		errs = append(errs, setting.Errorf("ESIGN_APP_SECRET", "esign-app-secret-file", "must not be set in demo mode (-simulate)"))
	}
	return errors.Join(errs...)
}

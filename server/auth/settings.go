package auth

import (
	"errors"

	"github.com/esign-evidence/esign-evidence/internal/authtoken"
	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings say how callers authenticate. Config turns them into the Config the
// interceptors use; client certificates are the TLS settings' (tlsreload).
type Settings struct {
	// TokensFile holds bearer tokens, one "<caller> <token>" a line; TokenHashes (from the
	// environment only) gives them as "<caller>:<sha256 hex>,...". SIGHUP reads both again
	// (Reload).
	TokensFile, TokenHashes string
	// Disabled serves anyone; only this setting, or demo mode without a way to
	// authenticate, turns authentication off.
	Disabled bool
	// DisabledAllowRemote lets a service without authentication listen beyond this host
	// (gRPC or REST on an address other than loopback); without it such a service is
	// refused at start (the command checks it, knowing the listen addresses).
	DisabledAllowRemote bool
	// PublicHealth and PublicReflection let health checks and server reflection through
	// without credentials.
	PublicHealth, PublicReflection bool
}

// DefaultSettings are the settings unless configured otherwise: no tokens (so
// authentication must be configured, or disabled explicitly), health and reflection public.
func DefaultSettings() Settings {
	return Settings{PublicHealth: true, PublicReflection: true}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.String(&s.TokensFile, "auth-tokens-file", "bearer tokens, one caller per line: <caller> <token> (or set AUTH_TOKEN_HASHES)")
	setting.EnvOnly(set, &s.TokenHashes, "AUTH_TOKEN_HASHES")
	set.Bool(&s.Disabled, "auth-disabled", "serve without authenticating callers (demo mode does unless tokens or a client CA are set); only on loopback addresses unless AUTH_DISABLED_ALLOW_REMOTE")
	set.Bool(&s.DisabledAllowRemote, "auth-disabled-allow-remote", "with authentication off, listen on addresses other than loopback all the same: anyone who reaches them can create evidence points")
	set.Bool(&s.PublicHealth, "auth-public-health", "health checks need no credentials")
	set.Bool(&s.PublicReflection, "auth-public-reflection", "server reflection needs no credentials")
}

// Config reads the tokens and returns the authentication the interceptors apply.
// clientCerts says that TLS verifies client certificates (a way to authenticate of its
// own); demo, that the service runs against the offline simulator: then, with no way to
// authenticate configured, anyone on the machine may call it. Otherwise a service without
// a way to authenticate is refused unless Disabled says so. Errors name the setting and
// never quote a token.
func (s Settings) Config(clientCerts, demo bool) (Config, error) {
	c := Config{Disabled: s.Disabled, ClientCerts: clientCerts, PublicHealth: s.PublicHealth, PublicReflection: s.PublicReflection}
	var errs []error
	tokens, err := authtoken.Parse(s.TokensFile, s.TokenHashes)
	if err != nil {
		errs = append(errs, setting.Errorf("AUTH_TOKENS_FILE / AUTH_TOKEN_HASHES", "auth-tokens-file", "%v", err))
	}
	c.Tokens = authtoken.NewSet(tokens)
	configured := len(tokens) > 0 || clientCerts
	if demo && !configured {
		c.Disabled = true // demo mode: anyone on this machine may call the simulator
	}
	if !c.Disabled && !configured {
		errs = append(errs, setting.Errorf("AUTH_TOKENS_FILE", "auth-tokens-file",
			"callers must authenticate: set AUTH_TOKENS_FILE, AUTH_TOKEN_HASHES or TLS_CLIENT_CA_FILE, or AUTH_DISABLED=true to serve anyone"))
	}
	return c, errors.Join(errs...)
}

// Reload reads TokensFile and TokenHashes again and, when they are valid, makes their
// tokens c's accepted set; it returns the number of callers. On an error the accepted set
// is left as it was. A reload that would leave no way to authenticate is refused like the
// same settings at start-up.
func (s Settings) Reload(c Config) (int, error) {
	tokens, err := authtoken.Parse(s.TokensFile, s.TokenHashes)
	if err != nil {
		return 0, err
	}
	if len(tokens) == 0 && !c.ClientCerts && !c.Disabled {
		return 0, errors.New("no tokens left and no client CA: every caller would be refused")
	}
	if c.Tokens == nil {
		return 0, errors.New("no token set to reload into")
	}
	c.Tokens.Replace(tokens)
	return len(tokens), nil
}

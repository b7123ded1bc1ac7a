package tlsreload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings serve the listeners over TLS: a certificate and its key (PEM files, reloaded
// when they change) and, optionally, a CA whose client certificates authenticate callers.
// All empty: no TLS.
type Settings struct {
	CertFile, KeyFile, ClientCAFile string
	// ClientDenyFile lists client certificates refused although the client CA signed
	// them (ClientTrust); SIGHUP reads it and the CA again.
	ClientDenyFile string
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.String(&s.CertFile, "tls-cert-file", "serve gRPC and REST over TLS with this certificate (PEM; reloaded when the file changes)")
	set.String(&s.KeyFile, "tls-key-file", "the TLS certificate's private key (PEM)")
	set.String(&s.ClientCAFile, "tls-client-ca-file", "accept callers with a client certificate signed by this CA (mTLS); the caller is cert:<first DNS SAN, else CN>; re-read on SIGHUP")
	set.String(&s.ClientDenyFile, "tls-client-deny-file", "client certificates to refuse although the CA signed them: one a line, serial number in hex or sha256:<fingerprint>; re-read on SIGHUP")
}

// Check refuses settings that cannot serve: a certificate without its key or the reverse,
// a client CA without TLS. The files are read by Start.
func (s Settings) Check() error {
	var errs []error
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, setting.Errorf("TLS_CERT_FILE and TLS_KEY_FILE", "tls-key-file", "set both or neither"))
	}
	if s.ClientCAFile != "" && s.CertFile == "" {
		errs = append(errs, setting.Errorf("TLS_CLIENT_CA_FILE", "tls-client-ca-file", "client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE"))
	}
	if s.ClientDenyFile != "" && s.ClientCAFile == "" {
		errs = append(errs, setting.Errorf("TLS_CLIENT_DENY_FILE", "tls-client-deny-file", "a deny-list of client certificates needs TLS_CLIENT_CA_FILE"))
	}
	return errors.Join(errs...)
}

// ClientCerts reports whether callers may authenticate with a client certificate.
func (s Settings) ClientCerts() bool { return s.ClientCAFile != "" }

// ReloadInterval is how often the certificate files are checked for a new version.
const ReloadInterval = 30 * time.Second

// Start loads the certificate and returns the listeners' TLS configuration (ServerConfig),
// checking the files for a new version every ReloadInterval until ctx is done, and the
// client certificates' trust (nil without a client CA), which the caller reloads on
// SIGHUP; nil without TLS.
func (s Settings) Start(ctx context.Context, log *slog.Logger) (*tls.Config, *ClientTrust, error) {
	if s.CertFile == "" {
		return nil, nil, nil
	}
	r, err := New(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	var trust *ClientTrust
	if s.ClientCAFile != "" {
		if trust, err = NewClientTrust(s.ClientCAFile, s.ClientDenyFile); err != nil {
			return nil, nil, fmt.Errorf("TLS_CLIENT_CA_FILE / TLS_CLIENT_DENY_FILE: %w", err)
		}
	}
	go r.Watch(ctx, ReloadInterval, log)
	return ServerConfig(r, trust), trust, nil
}

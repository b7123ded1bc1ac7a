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
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.String(&s.CertFile, "tls-cert-file", "serve gRPC and REST over TLS with this certificate (PEM; reloaded when the file changes)")
	set.String(&s.KeyFile, "tls-key-file", "the TLS certificate's private key (PEM)")
	set.String(&s.ClientCAFile, "tls-client-ca-file", "accept callers with a client certificate signed by this CA (mTLS); the certificate's CN is the caller")
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
	return errors.Join(errs...)
}

// ClientCerts reports whether callers may authenticate with a client certificate.
func (s Settings) ClientCerts() bool { return s.ClientCAFile != "" }

// ReloadInterval is how often the certificate files are checked for a new version.
const ReloadInterval = 30 * time.Second

// Start loads the certificate and returns the listeners' TLS configuration (ServerConfig),
// checking the files for a new version every ReloadInterval until ctx is done; nil
// without TLS.
func (s Settings) Start(ctx context.Context, log *slog.Logger) (*tls.Config, error) {
	if s.CertFile == "" {
		return nil, nil
	}
	r, err := New(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	go r.Watch(ctx, ReloadInterval, log)
	cfg, err := ServerConfig(r, s.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CLIENT_CA_FILE: %w", err)
	}
	return cfg, nil
}

// Package tlsreload serves a certificate and key from files and picks up new ones
// without a restart: rotate the files and the next handshake uses them.
package tlsreload

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader holds the current certificate of a certificate/key file pair.
type Reloader struct {
	certFile, keyFile string

	mu      sync.RWMutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

// New loads certFile and keyFile.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again if either changed, and reports whether it did. On error
// the previous certificate stays in use.
func (r *Reloader) Reload() (bool, error) {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return false, fmt.Errorf("TLS certificate: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("TLS key: %w", err)
	}
	r.mu.RLock()
	same := r.cert != nil && cs.ModTime().Equal(r.certMod) && ks.ModTime().Equal(r.keyMod)
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return false, fmt.Errorf("loading the TLS certificate and key: %w", err)
	}
	r.mu.Lock()
	r.cert, r.certMod, r.keyMod = &cert, cs.ModTime(), ks.ModTime()
	r.mu.Unlock()
	return true, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// Watch checks the files every interval until ctx is done.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := r.Reload()
			switch {
			case err != nil:
				log.Error("TLS certificate reload failed; keeping the current one", "err", err.Error())
			case changed:
				log.Info("TLS certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
}

// ServerConfig is the TLS configuration of both listeners: the reloader's certificate,
// TLS 1.2 or later, and, with trust, client certificates verified against its client CA
// (as it is at each handshake) when a client presents one (callers may authenticate with
// a token instead).
func ServerConfig(r *Reloader, trust *ClientTrust) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if trust != nil {
		trust.verifyWith(cfg)
	}
	return cfg
}

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Demo mode's listen addresses unless GRPC_ADDR or HTTP_ADDR says otherwise: this host
// only, since the demo serves anyone (no authentication) in plaintext.
const (
	demoGRPCAddr = "127.0.0.1:9090"
	demoHTTPAddr = "127.0.0.1:8080"
)

// isLoopback reports whether a listen address (host:port) reaches this host only: a
// loopback IP or "localhost". An empty host (every interface), any other IP and any other
// name count as reachable from other hosts.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// remoteListeners names the API listeners (gRPC and REST; the admin listener carries no
// caller's credentials or data) that listen beyond this host, as `GRPC_ADDR ":9090"`.
func (s *settings) remoteListeners() []string {
	var out []string
	for _, l := range []struct{ env, addr string }{{"GRPC_ADDR", s.Server.GRPCAddr}, {"HTTP_ADDR", s.Server.HTTPAddr}} {
		if !isLoopback(l.addr) {
			out = append(out, fmt.Sprintf("%s %q", l.env, l.addr))
		}
	}
	return out
}

// checkExposure refuses what would serve other hosts unsafely: without authentication
// unless AUTH_DISABLED_ALLOW_REMOTE, without TLS unless PLAINTEXT_ALLOW_REMOTE. Listeners
// on loopback need neither.
func (s *settings) checkExposure() error {
	remote := s.remoteListeners()
	if len(remote) == 0 {
		return nil
	}
	where := strings.Join(remote, ", ")
	var errs []error
	if s.auth.Disabled && !s.Auth.DisabledAllowRemote {
		why := "AUTH_DISABLED=true"
		if !s.Auth.Disabled {
			why = "demo mode without AUTH_TOKENS_FILE, AUTH_TOKEN_HASHES or TLS_CLIENT_CA_FILE"
		}
		errs = append(errs, setting.Errorf("AUTH_DISABLED_ALLOW_REMOTE", "auth-disabled-allow-remote",
			"authentication is off (%s) but the service listens beyond this host (%s), where anyone could call it: listen on 127.0.0.1, "+
				"configure authentication, or set AUTH_DISABLED_ALLOW_REMOTE=true to serve anyone who reaches it", why, where))
	}
	if s.TLS.CertFile == "" && !s.Server.PlaintextAllowRemote {
		errs = append(errs, setting.Errorf("TLS_CERT_FILE", "tls-cert-file",
			"the service listens beyond this host (%s) without TLS, where tokens and personal data would cross the network in clear: "+
				"set TLS_CERT_FILE and TLS_KEY_FILE, listen on 127.0.0.1, or set PLAINTEXT_ALLOW_REMOTE=true "+
				"when a mesh or proxy in front encrypts every connection", where))
	}
	return errors.Join(errs...)
}

// exposureWarnings are the start-up log's warnings about what the settings allow: an
// override in force, the backup token on a plaintext admin listener beyond this host, a
// database connection that may be plaintext or is not verified. None quotes a secret.
func (s *settings) exposureWarnings() []string {
	var out []string
	remote := s.remoteListeners()
	if len(remote) > 0 && s.auth.Disabled {
		out = append(out, fmt.Sprintf("authentication is OFF and the service listens beyond this host (%s; AUTH_DISABLED_ALLOW_REMOTE=true): anyone who reaches it can create evidence points",
			strings.Join(remote, ", ")))
	}
	if len(remote) > 0 && s.TLS.CertFile == "" {
		out = append(out, fmt.Sprintf("the service listens beyond this host without TLS (%s; PLAINTEXT_ALLOW_REMOTE=true): tokens and personal data cross the network as callers send them; "+
			"only a mesh or proxy that encrypts every connection makes that safe", strings.Join(remote, ", ")))
	}
	if s.Server.AdminAddr != "" && !isLoopback(s.Server.AdminAddr) && s.Server.BackupTokenFile != "" {
		out = append(out, fmt.Sprintf("ADMIN_ADDR %q reaches beyond this host in plaintext and ADMIN_BACKUP_TOKEN_FILE is set: the backup token and the backup cross the network in clear",
			s.Server.AdminAddr))
	}
	if w := databaseTLSWarning(string(s.Store.DatabaseURL), os.Getenv("PGHOST"), os.Getenv("PGSSLMODE")); w != "" {
		out = append(out, w)
	}
	return out
}

// databaseTLSWarning says what is unsafe about a PostgreSQL connection string's TLS, or ""
// when nothing is: a host other than this one (not a loopback address, localhost or a
// Unix socket) with an sslmode that does not verify the server (disable, allow, prefer,
// require; prefer when unset, which falls back to plaintext). verify-ca checks the
// server's certificate chain but not its name; verify-full checks both. envHost and
// envMode are PGHOST and PGSSLMODE, which the driver reads when the string has no host or
// sslmode. The warning names the host(s) and the mode, never the user or password.
func databaseTLSWarning(dsn, envHost, envMode string) string {
	if dsn == "" {
		return ""
	}
	hosts, mode := pgHostsAndSSLMode(dsn)
	if len(hosts) == 0 && envHost != "" {
		hosts = strings.Split(envHost, ",")
	}
	if mode == "" {
		mode = envMode
	}
	var remote []string
	for _, h := range hosts {
		if !isLocalDatabaseHost(h) {
			remote = append(remote, h)
		}
	}
	if len(remote) == 0 {
		return ""
	}
	shown := mode
	if shown == "" {
		shown = "unset, so prefer"
	}
	switch mode {
	case "verify-full", "verify-ca":
		return ""
	case "", "prefer", "allow":
		return fmt.Sprintf("DATABASE_URL: host %s with sslmode %s: the connection falls back to plaintext when the server offers no TLS, and the server is not verified; use sslmode=verify-full",
			strings.Join(remote, ", "), shown)
	case "require":
		return fmt.Sprintf("DATABASE_URL: host %s with sslmode require: encrypted, but the server's certificate is not verified (anyone in between can pose as the database); use sslmode=verify-full",
			strings.Join(remote, ", "))
	default: // disable, or a mode the driver will refuse itself
		return fmt.Sprintf("DATABASE_URL: host %s with sslmode %s: the connection is plaintext; use sslmode=verify-full",
			strings.Join(remote, ", "), shown)
	}
}

// pgHostsAndSSLMode reads the hosts and the sslmode of a connection string in either of
// PostgreSQL's forms: a URL (postgres://user:pw@h1:5432,h2/db?sslmode=...) or keyword=value
// pairs (host=h1,h2 sslmode=...). No host means the driver's default, a Unix socket or
// localhost: nothing is reported for it. It reads nothing else (the password is never
// looked at, let alone kept).
func pgHostsAndSSLMode(dsn string) (hosts []string, mode string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// A URL net/url cannot parse: its host part cannot be told apart from its
			// credentials reliably, so it is reported without one.
			return []string{"(unparsable URL)"}, ""
		}
		for _, h := range strings.Split(u.Host, ",") {
			if h != "" {
				hosts = append(hosts, h)
			}
		}
		q := u.Query()
		if h := q.Get("host"); h != "" {
			hosts = append(hosts[:0], strings.Split(h, ",")...)
		}
		return hosts, q.Get("sslmode")
	}
	for _, f := range strings.Fields(dsn) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, "'")
		switch k {
		case "host", "hostaddr":
			hosts = strings.Split(v, ",")
		case "sslmode":
			mode = v
		}
	}
	return hosts, mode
}

// isLocalDatabaseHost: a Unix socket directory, localhost, or a loopback IP (host or
// host:port).
func isLocalDatabaseHost(h string) bool {
	if strings.HasPrefix(h, "/") || strings.HasPrefix(h, "@") {
		return true
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExposureSettings: a service without authentication, or without TLS, is refused on a
// listen address other than loopback unless its override says so; on loopback it needs
// neither. Demo mode listens on loopback unless told otherwise.
func TestExposureSettings(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("billing tok-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	esign := map[string]string{"ESIGN_ENV": "sandbox", "ESIGN_APP_ID": "1", "ESIGN_APP_SECRET": "s"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const authErr, tlsErr = "AUTH_DISABLED_ALLOW_REMOTE (-auth-disabled-allow-remote)", "TLS_CERT_FILE (-tls-cert-file)"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		// refused: the settings each error names; none: accepted.
		refused []string
	}{
		{"auth off, default addresses", nil, with(esign, "AUTH_DISABLED", "true"), []string{authErr, tlsErr, `GRPC_ADDR ":9090", HTTP_ADDR ":8080"`}},
		{"auth off, plaintext allowed", nil, with(esign, "AUTH_DISABLED", "true", "PLAINTEXT_ALLOW_REMOTE", "true"), []string{authErr}},
		{"auth off, with TLS", nil, with(esign, "AUTH_DISABLED", "true", "TLS_CERT_FILE", "/c", "TLS_KEY_FILE", "/k"), []string{authErr}},
		{"auth off, both overrides", nil, with(esign, "AUTH_DISABLED", "true", "AUTH_DISABLED_ALLOW_REMOTE", "true", "PLAINTEXT_ALLOW_REMOTE", "true"), nil},
		{"auth off, loopback", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "127.0.0.1:9090", "HTTP_ADDR", "localhost:8080"), nil},
		{"auth off, IPv6 loopback", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "[::1]:9090", "HTTP_ADDR", "127.0.0.2:8080"), nil},
		{"auth off, one listener beyond", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "127.0.0.1:9090", "HTTP_ADDR", "0.0.0.0:8080"), []string{authErr, tlsErr, `HTTP_ADDR "0.0.0.0:8080"`}},
		{"auth off, every IPv6 interface", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "[::]:9090", "HTTP_ADDR", "127.0.0.1:8080"), []string{authErr, tlsErr}},
		{"auth off, a host name", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "evidence.internal:9090", "HTTP_ADDR", "127.0.0.1:8080"), []string{authErr, tlsErr}},
		{"auth off, a private address", nil, with(esign, "AUTH_DISABLED", "true", "GRPC_ADDR", "10.1.2.3:9090", "HTTP_ADDR", "127.0.0.1:8080"), []string{authErr, tlsErr}},
		{"AUTH_DISABLED=1", nil, with(esign, "AUTH_DISABLED", "1", "GRPC_ADDR", "127.0.0.1:9090", "HTTP_ADDR", "127.0.0.1:8080"), []string{`AUTH_DISABLED (-auth-disabled): "1" is not true or false`}},
		{"AUTH_DISABLED=T", nil, with(esign, "AUTH_DISABLED", "T", "GRPC_ADDR", "127.0.0.1:9090", "HTTP_ADDR", "127.0.0.1:8080"), []string{`"T" is not true or false`}},
		{"override spelled 1", nil, with(esign, "AUTH_DISABLED", "true", "AUTH_DISABLED_ALLOW_REMOTE", "1", "PLAINTEXT_ALLOW_REMOTE", "true"), []string{`AUTH_DISABLED_ALLOW_REMOTE (-auth-disabled-allow-remote): "1" is not true or false`}},
		{"tokens, no TLS", nil, with(esign, "AUTH_TOKENS_FILE", tokens), []string{tlsErr}},
		{"tokens, plaintext allowed", nil, with(esign, "AUTH_TOKENS_FILE", tokens, "PLAINTEXT_ALLOW_REMOTE", "true"), nil},
		{"tokens, TLS", nil, with(esign, "AUTH_TOKENS_FILE", tokens, "TLS_CERT_FILE", "/c", "TLS_KEY_FILE", "/k"), nil},
		{"tokens, loopback", nil, with(esign, "AUTH_TOKENS_FILE", tokens, "GRPC_ADDR", "127.0.0.1:9090", "HTTP_ADDR", "127.0.0.1:8080"), nil},
		{"demo mode", []string{"-simulate"}, nil, nil},
		{"demo mode beyond this host", []string{"-simulate", "-grpc-addr", ":9090"}, nil, []string{authErr, tlsErr, "demo mode without"}},
		{"demo mode beyond this host, overrides", []string{"-simulate", "-http-addr", ":8080"},
			map[string]string{"AUTH_DISABLED_ALLOW_REMOTE": "true", "PLAINTEXT_ALLOW_REMOTE": "true"}, nil},
		{"demo mode with tokens beyond this host over TLS", []string{"-simulate", "-http-addr", ":8080"},
			map[string]string{"AUTH_TOKENS_FILE": tokens, "TLS_CERT_FILE": "/c", "TLS_KEY_FILE": "/k"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			c, err := loadSettings(tc.args, io.Discard)
			if len(tc.refused) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Simulate && !slices.Contains(tc.args, "-grpc-addr") && c.Server.GRPCAddr != "127.0.0.1:9090" {
					t.Errorf("demo mode listens on %q", c.Server.GRPCAddr)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.refused {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %s:\n%v", w, err)
				}
			}
			names := func(s string) bool {
				return slices.ContainsFunc(tc.refused, func(w string) bool { return strings.Contains(w, s) })
			}
			if !names(authErr) && strings.Contains(err.Error(), authErr) {
				t.Errorf("refused for authentication as well: %v", err)
			}
			if !names(tlsErr) && strings.Contains(err.Error(), tlsErr) {
				t.Errorf("refused for TLS as well: %v", err)
			}
		})
	}
}

// TestDatabaseTLSWarning: a database beyond this host without a verifying sslmode is
// warned about, naming the host and the mode and never the credentials.
func TestDatabaseTLSWarning(t *testing.T) {
	const pw = "pw-sentinel-4711"
	for _, tc := range []struct {
		dsn, envHost, envMode string
		want                  string // "" for no warning
	}{
		{"postgres://u:" + pw + "@db.internal:5432/esign", "", "", "host db.internal:5432 with sslmode unset, so prefer"},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=prefer", "", "", "sslmode prefer"},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=disable", "", "", "sslmode disable: the connection is plaintext"},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=require", "", "", "sslmode require: encrypted, but the server's certificate is not verified"},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=verify-full", "", "", ""},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=verify-ca", "", "", ""},
		{"postgres://u:" + pw + "@db.internal/esign", "", "verify-full", ""},
		{"postgres://u:" + pw + "@db1:5432,db2:5432/esign?sslmode=allow", "", "", "host db1:5432, db2:5432 with sslmode allow"},
		{"postgresql://u:" + pw + "@127.0.0.1:5432/esign", "", "", ""},
		{"postgres://u:" + pw + "@[::1]:5432/esign?sslmode=disable", "", "", ""},
		{"postgres://u:" + pw + "@localhost/esign", "", "", ""},
		{"postgres:///esign?host=/var/run/postgresql", "", "", ""},
		{"postgres:///esign", "db.internal", "", "host db.internal with sslmode unset"},
		{"postgres:///esign", "", "", ""},
		{"host=db.internal user=u password=" + pw + " dbname=esign", "", "", "host db.internal with sslmode unset"},
		{"host=db.internal password='" + pw + "' sslmode=verify-full", "", "", ""},
		{"host=/tmp user=u password=" + pw, "", "", ""},
		{"postgres://u:" + pw + "@db.internal/esign?sslmode=disable", "", "verify-full", "sslmode disable"},
		{"", "", "", ""},
	} {
		got := databaseTLSWarning(tc.dsn, tc.envHost, tc.envMode)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%q (PGHOST %q, PGSSLMODE %q): %q, want %q", strings.ReplaceAll(tc.dsn, pw, "…"), tc.envHost, tc.envMode, got, tc.want)
		}
		if strings.Contains(got, pw) || strings.Contains(got, "u:") {
			t.Errorf("the warning quotes the credentials: %q", got)
		}
	}
}

// TestBinaryRefusesOpenListeners runs the built binary: without authentication or without
// TLS beyond this host it exits at once naming the setting and listens on nothing; with
// the overrides it serves and says so in its log; with tokens and TLS it serves with no
// warning; a database beyond this host without sslmode=verify-full is warned about without
// the password; AUTH_DISABLED=1 is refused.
func TestBinaryRefusesOpenListeners(t *testing.T) {
	bin := buildBinary(t)
	refused := func(t *testing.T, env []string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("not refused (%v):\n%s", err, out)
		}
		if strings.Contains(string(out), `"msg":"serving"`) {
			t.Errorf("served before refusing:\n%s", out)
		}
		return string(out)
	}
	demoBeyond := []string{"-simulate", "-grpc-addr", ":0", "-http-addr", ":0", "-admin-addr", ""}

	t.Run("demo beyond this host", func(t *testing.T) {
		out := refused(t, nil, demoBeyond...)
		for _, w := range []string{"AUTH_DISABLED_ALLOW_REMOTE", "TLS_CERT_FILE", `GRPC_ADDR ":0", HTTP_ADDR ":0"`} {
			if !strings.Contains(out, w) {
				t.Errorf("the refusal does not name %s:\n%s", w, out)
			}
		}
	})
	t.Run("AUTH_DISABLED=1", func(t *testing.T) {
		out := refused(t, []string{"AUTH_DISABLED=1"}, "-simulate", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "")
		if !strings.Contains(out, `AUTH_DISABLED (-auth-disabled): "1" is not true or false`) {
			t.Errorf("AUTH_DISABLED=1 not refused by name:\n%s", out)
		}
	})
	t.Run("demo beyond this host with the overrides", func(t *testing.T) {
		r := startBinaryArgs(t, bin, []string{"AUTH_DISABLED_ALLOW_REMOTE=true", "PLAINTEXT_ALLOW_REMOTE=true"}, demoBeyond...)
		_, port, _ := net.SplitHostPort(r.httpAddr)
		resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz: %s", resp.Status)
		}
		log := r.stderr.String()
		for _, w := range []string{"authentication is OFF and the service listens beyond this host", "listens beyond this host without TLS (GRPC_ADDR"} {
			if !strings.Contains(log, w) {
				t.Errorf("no warning %q in the log:\n%s", w, log)
			}
		}
	})
	t.Run("tokens and TLS beyond this host", func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile, pool := selfSignedCert(t, dir)
		tokens := filepath.Join(dir, "tokens")
		if err := os.WriteFile(tokens, []byte("billing tok-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := startBinaryArgs(t, bin, []string{"AUTH_TOKENS_FILE=" + tokens, "TLS_CERT_FILE=" + certFile, "TLS_KEY_FILE=" + keyFile}, demoBeyond...)
		_, port, _ := net.SplitHostPort(r.httpAddr)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://127.0.0.1:" + port + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz over TLS: %s", resp.Status)
		}
		if log := r.stderr.String(); strings.Contains(log, "beyond this host") {
			t.Errorf("a warning about exposure with tokens and TLS:\n%s", log)
		}
	})
	t.Run("check-config prints the warnings", func(t *testing.T) {
		const pw = "pw-sentinel-4711"
		cmd := exec.Command(bin, "-check-config", "-simulate", "-grpc-addr", ":0", "-http-addr", "127.0.0.1:0")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "AUTH_DISABLED_ALLOW_REMOTE=true", "PLAINTEXT_ALLOW_REMOTE=true",
			"DATABASE_URL=postgres://esign:" + pw + "@db.example.internal/esign?sslmode=require", "FINGERPRINT_KEY=a-fingerprint-key-0123"}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configuration OK") {
			t.Fatalf("-check-config: %v\n%s", err, out)
		}
		for _, w := range []string{"warning: authentication is OFF", "warning: the service listens beyond this host without TLS (GRPC_ADDR \":0\"",
			"warning: DATABASE_URL: host db.example.internal with sslmode require"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("-check-config does not print %q:\n%s", w, out)
			}
		}
		if strings.Contains(string(out), pw) {
			t.Errorf("the password is printed:\n%s", out)
		}
	})
	t.Run("database beyond this host without sslmode", func(t *testing.T) {
		const pw = "pw-sentinel-4711"
		// 192.0.2.1 (TEST-NET-1) answers nothing: the start fails after the warning.
		out := refused(t, []string{"DATABASE_URL=postgres://esign:" + pw + "@192.0.2.1:5432/esign?connect_timeout=1",
			"FINGERPRINT_KEY=a-fingerprint-key-0123"}, "-simulate", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "")
		if !strings.Contains(out, "DATABASE_URL: host 192.0.2.1:5432 with sslmode unset, so prefer") {
			t.Errorf("no warning about the database's TLS:\n%s", out)
		}
		if strings.Contains(out, pw) {
			t.Errorf("the password is printed:\n%s", out)
		}
	})
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esign-evidence test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

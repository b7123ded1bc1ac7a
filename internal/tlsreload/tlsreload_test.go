package tlsreload_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
)

// writePair writes a self-signed certificate with the given serial and its key.
func writePair(t *testing.T, dir string, serial int64) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "esign-evidence"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cp, kp := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kp
}

func serial(t *testing.T, r *tlsreload.Reloader) int64 {
	t.Helper()
	c, _ := r.GetCertificate(nil)
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

func TestWatchPicksUpRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	cp, kp := writePair(t, dir, 1)
	r, err := tlsreload.New(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))

	// A broken file during rotation keeps the current certificate.
	time.Sleep(20 * time.Millisecond)
	if err := os.WriteFile(cp, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := serial(t, r); got != 1 {
		t.Fatalf("serial %d after a broken rotation, want the old 1", got)
	}
	writePair(t, dir, 2)
	deadline := time.Now().Add(3 * time.Second)
	for serial(t, r) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerConfigNeedsAUsableCA(t *testing.T) {
	dir := t.TempDir()
	cp, kp := writePair(t, dir, 1)
	r, err := tlsreload.New(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "ca.pem")
	_ = os.WriteFile(bad, []byte("nothing here"), 0o600)
	if _, err := tlsreload.NewClientTrust(bad, ""); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
	trust, err := tlsreload.NewClientTrust(cp, "")
	if err != nil {
		t.Fatalf("a CA file with a certificate: %v", err)
	}
	if cfg := tlsreload.ServerConfig(r, trust); cfg.ClientCAs == nil || cfg.GetConfigForClient == nil {
		t.Error("the configuration does not verify client certificates against the CA")
	}
	if _, err := tlsreload.New(filepath.Join(dir, "missing.crt"), kp); err == nil {
		t.Error("a missing certificate file was accepted")
	}
}

package tlsreload_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
)

// TestDenyList: certificates are refused by serial number (hex, with or without colons,
// openssl's "serial=" spelling too) or by SHA-256 fingerprint; a reload that cannot be
// used keeps the previous list and its error quotes nothing from the file.
func TestDenyList(t *testing.T) {
	dir := t.TempDir()
	ca, _ := writePair(t, dir, 1)
	deny := filepath.Join(dir, "deny")
	byFingerprint := &x509.Certificate{SerialNumber: big.NewInt(7), Raw: []byte("the certificate's DER")}
	fp := sha256.Sum256(byFingerprint.Raw)
	if err := os.WriteFile(deny, []byte("# revoked\n0A:1B\nserial:ff\n\nsha256:"+hex.EncodeToString(fp[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	trust, err := tlsreload.NewClientTrust(ca, deny)
	if err != nil {
		t.Fatal(err)
	}
	for serial, want := range map[int64]bool{0x0a1b: true, 0xff: true, 0x0a1c: false} {
		if got := trust.Denied(&x509.Certificate{SerialNumber: big.NewInt(serial), Raw: []byte{1}}); got != want {
			t.Errorf("serial %x: denied %v, want %v", serial, got, want)
		}
	}
	if !trust.Denied(byFingerprint) {
		t.Error("the certificate listed by fingerprint is not denied")
	}
	if trust.Len() != 3 {
		t.Errorf("%d certificates on the list, want 3", trust.Len())
	}

	const secretish = "zz-not-hex-but-maybe-a-token"
	if err := os.WriteFile(deny, []byte("0a1b\n"+secretish+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = trust.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), secretish) {
		t.Errorf("a broken list: %v", err)
	}
	if !trust.Denied(byFingerprint) || trust.Len() != 3 {
		t.Error("a refused reload changed the list")
	}
	if err := os.WriteFile(deny, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := trust.Reload(); err != nil || trust.Denied(byFingerprint) {
		t.Errorf("an emptied list: %v, still denied %v", err, trust.Denied(byFingerprint))
	}
}

package tlsreload

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync/atomic"
)

// ClientTrust is what a client certificate is checked against: the client CA, which a
// new connection's handshake verifies it with, and a deny-list of certificates refused
// although the CA signed them, which authentication asks on every call (a connection
// outlives a change to the list). Reload reads both again, all or nothing.
type ClientTrust struct {
	caFile, denyFile string
	pool             atomic.Pointer[x509.CertPool]
	deny             atomic.Pointer[denyList]
}

// denyList holds refused certificates by serial number (with their issuer's CA in
// mind, a serial is unique) and by SHA-256 fingerprint of the whole certificate.
type denyList struct {
	serials      map[string]bool // big.Int text, base 16
	fingerprints map[[32]byte]bool
}

// NewClientTrust reads caFile (PEM certificates) and denyFile (may be empty).
func NewClientTrust(caFile, denyFile string) (*ClientTrust, error) {
	c := &ClientTrust{caFile: caFile, denyFile: denyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the CA and the deny-list again; on any error both stay as they were.
// Errors name the file and line, and quote nothing from either file.
func (c *ClientTrust) Reload() error {
	pem, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("client CA: cannot read %q", c.caFile)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("client CA: no PEM certificate found")
	}
	deny := &denyList{serials: map[string]bool{}, fingerprints: map[[32]byte]bool{}}
	if c.denyFile != "" {
		if deny, err = readDenyList(c.denyFile); err != nil {
			return err
		}
	}
	c.pool.Store(pool)
	c.deny.Store(deny)
	return nil
}

// readDenyList reads a deny-list: one certificate a line, as its serial number in hex
// (colons allowed, as openssl prints it: "serial:0A:1B" or "0a1b") or as the SHA-256 of
// its DER form ("sha256:" and 64 hex digits, colons allowed); blank lines and # comments
// are skipped.
func readDenyList(file string) (*denyList, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("client certificate deny-list: cannot read %q", file)
	}
	d := &denyList{serials: map[string]bool{}, fingerprints: map[[32]byte]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "sha256:"); ok {
			raw, err := hex.DecodeString(strings.ReplaceAll(v, ":", ""))
			if err != nil || len(raw) != 32 {
				return nil, fmt.Errorf("client certificate deny-list %s line %d: want sha256: and 64 hex digits", file, n)
			}
			d.fingerprints[[32]byte(raw)] = true
			continue
		}
		v, _ := strings.CutPrefix(strings.ToLower(line), "serial:")
		serial, ok := new(big.Int).SetString(strings.ReplaceAll(v, ":", ""), 16)
		if !ok || serial.Sign() < 0 {
			return nil, fmt.Errorf("client certificate deny-list %s line %d: want a serial number in hex or sha256:<hex>", file, n)
		}
		d.serials[serial.Text(16)] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("client certificate deny-list %s: %w", file, err)
	}
	return d, nil
}

// Denied reports whether cert is on the deny-list.
func (c *ClientTrust) Denied(cert *x509.Certificate) bool {
	d := c.deny.Load()
	if d == nil || cert == nil {
		return false
	}
	return d.serials[cert.SerialNumber.Text(16)] || d.fingerprints[sha256.Sum256(cert.Raw)]
}

// Len is the number of certificates on the deny-list.
func (c *ClientTrust) Len() int {
	d := c.deny.Load()
	if d == nil {
		return 0
	}
	return len(d.serials) + len(d.fingerprints)
}

// verifyWith makes cfg verify client certificates, when given, against the CA as it is
// at each handshake.
func (c *ClientTrust) verifyWith(cfg *tls.Config) {
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.ClientCAs = c.pool.Load()
	base := cfg.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		hc := base.Clone()
		hc.ClientCAs = c.pool.Load()
		return hc, nil
	}
}

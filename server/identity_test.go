package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// certFor issues a client certificate with common name cn, DNS SAN san ("" for none) and
// serial.
func (ca *testCA) certFor(t *testing.T, cn, san string, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if san != "" {
		tmpl.DNSNames = []string{san}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// certClient is a gRPC client of st presenting cert (trusting server CA serverCA).
func certClient(t *testing.T, st *stack, serverCA *testCA, cert tls.Certificate) evidencev1.EvidenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: serverCA.pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return evidencev1.NewEvidenceServiceClient(conn)
}

// TestCertificateAndTokenCallersAreApart: a certificate naming token caller "billing"
// does not read billing's submissions (certificate callers are cert:<name>); the DNS SAN
// names the caller before the CN; a certificate naming no valid caller is no credential;
// a certificate put on the deny-list is refused on its open connection at the next call
// once the list is reloaded, and accepted again when taken off; a client CA added to the
// CA file is trusted for new connections once reloaded.
func TestCertificateAndTokenCallersAreApart(t *testing.T) {
	ca := newCA(t)
	st, _, trust, dir := tlsStackTrust(t, ca, nil)
	ctx := context.Background()
	req := seedRequest(t)
	req.CustomBizId = "billing-owned-1"
	if _, err := certClient(t, st, ca, ca.certFor(t, "nobody", "", 200)).CreatePersonalEvidencePoint(ctx, req); err != nil {
		t.Fatalf("a certificate caller's create: %v", err)
	}
	tokenConn := tlsTokenClient(t, st, ca)
	if _, err := tokenConn.CreatePersonalEvidencePoint(bearer(billingToken), req); err != nil {
		t.Fatalf("token caller billing's create: %v", err)
	}

	billingCert := certClient(t, st, ca, ca.certFor(t, "billing", "", 201))
	_, err := billingCert.GetSubmission(ctx, &evidencev1.GetSubmissionRequest{CustomBizId: "billing-owned-1"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("a certificate with CN billing reading token caller billing's key: %v", err)
	}
	for _, tc := range []struct {
		name, cn, san, caller string
		serial                int64
	}{
		{"CN", "crm-service", "", "cert:crm-service", 202},
		{"SAN before CN", "ignored-cn", "crm.internal", "cert:crm.internal", 203},
		{"anonymous", "anonymous", "", "", 204},
		{"invalid name", "two words", "", "", 205},
	} {
		_, err := certClient(t, st, ca, ca.certFor(t, tc.cn, tc.san, tc.serial)).GetSubmission(ctx, &evidencev1.GetSubmissionRequest{CustomBizId: "x"})
		want := codes.NotFound
		if tc.caller == "" {
			want = codes.Unauthenticated
		}
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", tc.name, err, want)
		}
		if tc.caller != "" && !strings.Contains(st.logs.String(), `"caller":"`+tc.caller+`"`) {
			t.Errorf("%s: no access line with caller %s", tc.name, tc.caller)
		}
	}
	if strings.Contains(st.logs.String(), `"caller":"billing","request_id"`) && strings.Count(st.logs.String(), `"caller":"cert:billing"`) == 0 {
		t.Error("the certificate billing was logged as the token caller billing")
	}

	// The deny-list, on an open connection.
	revoked := certClient(t, st, ca, ca.certFor(t, "revoked-svc", "", 0x5a5a))
	get := func() error {
		_, err := revoked.GetSubmission(ctx, &evidencev1.GetSubmissionRequest{CustomBizId: "x"})
		return err
	}
	if err := get(); status.Code(err) != codes.NotFound {
		t.Fatalf("before the deny-list: %v", err)
	}
	deny := filepath.Join(dir, "deny")
	if err := os.WriteFile(deny, []byte("5A:5A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := trust.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := get(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a denied certificate on its open connection: %v", err)
	}
	if err := os.WriteFile(deny, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := trust.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := get(); status.Code(err) != codes.NotFound {
		t.Errorf("taken off the deny-list: %v", err)
	}

	// A second CA, trusted once the CA file holds it and is reloaded.
	other := newCA(t)
	newcomer := func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := certClient(t, st, ca, other.certFor(t, "newcomer", "", 300)).GetSubmission(cctx, &evidencev1.GetSubmissionRequest{CustomBizId: "x"})
		return err
	}
	if err := newcomer(); status.Code(err) == codes.NotFound {
		t.Fatal("a certificate of an untrusted CA was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), append(append([]byte{}, ca.pem...), other.pem...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := trust.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := newcomer(); status.Code(err) != codes.NotFound {
		t.Errorf("a certificate of the CA added on reload: %v", err)
	}
}

// tlsTokenClient is a gRPC client over TLS presenting no certificate.
func tlsTokenClient(t *testing.T, st *stack, ca *testCA) evidencev1.EvidenceServiceClient {
	t.Helper()
	c, _, _ := tlsStackClient(t, st, ca)
	return c
}

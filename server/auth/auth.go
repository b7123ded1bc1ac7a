// Package auth authenticates callers: bearer tokens (compared by their SHA-256, in
// constant time) and verified client certificates. The identity it establishes names the
// caller in logs and metrics and is the namespace of its customBizIds.
package auth

import (
	"context"
	"crypto/x509"
	"strings"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/internal/authtoken"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/observe"
)

// Config configures caller authentication.
type Config struct {
	// Disabled turns authentication off. Only an explicit setting (or demo mode) does.
	Disabled bool
	// Tokens are the accepted bearer tokens, by the SHA-256 of the token. The set may be
	// replaced while the server runs.
	Tokens *authtoken.Set
	// ClientCerts accepts callers presenting a client certificate that the TLS layer
	// verified against the configured CA; the identity is CertPrefix and the
	// certificate's name (CertName).
	ClientCerts bool
	// CertDenied, when set, refuses a verified client certificate it reports (the
	// deny-list, which may change while connections stay open: it is asked on every call).
	CertDenied func(*x509.Certificate) bool
	// PublicHealth and PublicReflection let health checks and server reflection through
	// without credentials.
	PublicHealth     bool
	PublicReflection bool
}

// anonymous is the identity of every caller when authentication is off.
const anonymous = "anonymous"

// CertPrefix begins the identity of every caller known by a client certificate. Token
// callers' names cannot hold a ':' (authtoken.ValidIdentity), so a certificate can never
// take a token caller's identity, nor the namespace of its customBizIds, and no name
// gets the shared namespace of authentication off.
const CertPrefix = "cert:"

type callerKey struct{}

// Caller returns the authenticated identity of the call ("anonymous" with
// authentication off, "" before authentication ran).
func Caller(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(string)
	return c
}

var errUnauthenticated = apierror.WithDetails(status.New(codes.Unauthenticated, "authentication required: a valid bearer token or client certificate"),
	apierror.Info("UNAUTHENTICATED", nil))

// authenticate returns the caller's identity, or an error that says nothing about which
// tokens or certificates exist.
func (a *Config) authenticate(ctx context.Context, method string) (string, error) {
	if a.Disabled {
		return anonymous, nil
	}
	if (a.PublicHealth && strings.HasPrefix(method, "/grpc.health.v1.Health/")) ||
		(a.PublicReflection && (strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
			strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/"))) {
		return "public", nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	// The peer is the network connection of the call, gRPC's or (for REST) the HTTP one.
	if p, _ := peer.FromContext(ctx); a.ClientCerts {
		// A certificate that names no valid caller, or a denied one, is no credential; a
		// token on the same call still is.
		if cert := verifiedCert(p); cert != nil {
			if name, ok := CertName(cert); ok && (a.CertDenied == nil || !a.CertDenied(cert)) {
				return CertPrefix + name, nil
			}
		}
	}
	values := md.Get("authorization")
	if id, ok := a.tokenIdentity(values); ok {
		return id, nil
	}
	if len(values) == 1 && !strings.HasPrefix(values[0], "Bearer ") {
		// A credential in the wrong form (a bare token, another scheme): say what to send.
		// The hint depends only on the header's form, never on which tokens exist.
		return "", errNotBearer.Err()
	}
	return "", errUnauthenticated.Err()
}

var errNotBearer = apierror.WithDetails(status.New(codes.Unauthenticated,
	`authentication required: send the token as "Authorization: Bearer <token>"; the Authorization header sent does not start with "Bearer "`),
	apierror.Info("UNAUTHENTICATED", nil))

// tokenIdentity checks a bearer token against every configured hash in constant time.
func (a *Config) tokenIdentity(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	tok, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok {
		return "", false
	}
	return a.Tokens.Identity(tok)
}

// verifiedCert is the client certificate the TLS handshake verified, or nil.
func verifiedCert(p *peer.Peer) *x509.Certificate {
	if p == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	chains := ti.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil
	}
	return chains[0][0]
}

// CertName is the caller a client certificate names: its first DNS subject alternative
// name, else its subject's common name (SANs are where names belong; RFC 6125 leaves the
// CN for compatibility). ok is false when that name is not a valid caller name
// (authtoken.ValidIdentity).
func CertName(cert *x509.Certificate) (name string, ok bool) {
	name = cert.Subject.CommonName
	if len(cert.DNSNames) > 0 {
		name = cert.DNSNames[0]
	}
	return name, authtoken.ValidIdentity(name)
}

// Authenticate authenticates a call to method at the edge of its transport, before its
// message is read: ctx carries the call's peer and incoming metadata. It returns ctx
// with the caller's identity, which the interceptors then take as it is, or the
// Unauthenticated status.
func (a *Config) Authenticate(ctx context.Context, method string) (context.Context, error) {
	id, err := a.authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, callerKey{}, id), nil
}

// authFunc is the interceptors' AuthFunc: it puts the caller's identity into the
// call's context, and into the access line. A call authenticated at its transport's
// edge (Authenticate) keeps that identity; any other is authenticated here.
func (a *Config) authFunc(ctx context.Context) (context.Context, error) {
	if id := Caller(ctx); id != "" {
		observe.SetCaller(ctx, id)
		return ctx, nil
	}
	method, _ := grpc.Method(ctx)
	ctx, err := a.Authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	observe.SetCaller(ctx, Caller(ctx))
	return ctx, nil
}

// UnaryServerInterceptor authenticates unary calls.
func (a *Config) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return grpcauth.UnaryServerInterceptor(a.authFunc)
}

// StreamServerInterceptor authenticates streaming calls.
func (a *Config) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return grpcauth.StreamServerInterceptor(a.authFunc)
}

// Namespace is the caller's identity, which keeps callers' customBizIds apart. With
// authentication off, every caller shares the empty namespace.
func Namespace(ctx context.Context) string {
	if c := Caller(ctx); c != anonymous {
		return c
	}
	return ""
}

package check

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// standInTLS is a certificate for 127.0.0.1 and its key (PEM), made once per run: the
// stand-in for a deployment's TLS files, good enough for the binary to serve with.
var standInTLS = sync.OnceValues(func() (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esign-evidence deploy-check"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
})

// writeStandInTLS writes the stand-in certificate and key into dir and returns their paths.
func writeStandInTLS(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	cert, key := standInTLS()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, []byte(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// checkTransportSettings: the deployment serves gRPC and REST over TLS from files in a
// mounted Secret (mounted whole, so a renewed certificate reaches the pod), with no
// override of the binary's refusals in force.
func checkTransportSettings(t *testing.T, spec corev1.PodSpec, c corev1.Container, env map[string]string) {
	t.Helper()
	for _, name := range []string{"TLS_CERT_FILE", "TLS_KEY_FILE"} {
		f := env[name]
		if f == "" {
			t.Errorf("%s is not set: gRPC and REST would be plaintext", name)
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" && (path.Clean(m.MountPath) == path.Clean(f) || path.Clean(m.MountPath) == path.Dir(f)) {
				t.Errorf("%s is mounted by subPath: a renewed certificate would never reach the pod", name)
			}
		}
	}
	for _, name := range []string{"PLAINTEXT_ALLOW_REMOTE", "AUTH_DISABLED", "AUTH_DISABLED_ALLOW_REMOTE"} {
		if v, ok := env[name]; ok && v != "false" {
			t.Errorf("%s=%s in a shipped deployment", name, v)
		}
	}
}

// checkHTTPSProbe starts the binary in demo mode the way the deployment serves (TLS from
// the stand-in files when it sets TLS_CERT_FILE, callers authenticating by token,
// AUTH_PUBLIC_HEALTH as it sets it) and probes it as the kubelet does: GET on the REST
// listener, over HTTPS without verifying the certificate, without credentials. It must
// answer 200 while serving, a plaintext request must not, and once SIGTERM starts the
// drain the probe must answer 503 (readiness fails before the listeners close).
func checkHTTPSProbe(t *testing.T, bin *binary, env map[string]string, probePath string, scheme corev1.URIScheme) {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("billing a-token-of-enough-length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runEnv := []string{"AUTH_TOKENS_FILE=" + tokens, "SHUTDOWN_DRAIN_DELAY=5s"}
	if env["TLS_CERT_FILE"] != "" {
		certFile, keyFile := writeStandInTLS(t, dir)
		runEnv = append(runEnv, "TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile)
	}
	if v, ok := env["AUTH_PUBLIC_HEALTH"]; ok {
		runEnv = append(runEnv, "AUTH_PUBLIC_HEALTH="+v)
	}
	d := startDemoAll(t, bin.path, runEnv...)
	// The kubelet's HTTPS probe does not verify the certificate.
	kubelet := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	probe := func() (int, error) {
		resp, err := kubelet.Get(strings.ToLower(string(scheme)) + "://" + d.http + probePath)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := probe(); err != nil || code != http.StatusOK {
		t.Fatalf("the probe (%s %s) answers %d, %v; want 200", scheme, probePath, code, err)
	}
	if scheme == corev1.URISchemeHTTPS {
		if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + d.http + probePath); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("the REST listener answers plaintext HTTP: it does not serve TLS")
			}
		}
	}
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Second) // inside SHUTDOWN_DRAIN_DELAY
	for {
		code, err := probe()
		if err == nil && code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("during the drain the probe answers %d, %v; want 503 (the pod must leave the endpoints)", code, err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNetworkPolicy: gRPC and REST only from selected callers, the admin port only from
// its named peers; egress only to DNS in kube-system, PostgreSQL when the deployment uses
// it, and HTTPS to public addresses (e签宝), never to the cluster's or private ranges.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, podLabels labels.Set, resolve func(string, intstr.IntOrString) int32,
	apiPorts []int32, adminPort int32, postgres bool) {
	t.Helper()
	if sel, err := metaSelector(&np.Spec.PodSelector); err != nil || !sel.Matches(podLabels) {
		t.Error("the NetworkPolicy does not select the pods")
	}
	for _, pt := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
		if !slices.Contains(np.Spec.PolicyTypes, pt) {
			t.Errorf("the NetworkPolicy does not restrict %s", pt)
		}
	}
	covers := func(ports []networkingv1.NetworkPolicyPort, want int32) bool {
		if len(ports) == 0 {
			return true
		}
		for _, p := range ports {
			if p.Port == nil || resolve("NetworkPolicy port", *p.Port) == want {
				return true
			}
		}
		return false
	}
	empty := func(s interface{ String() string }) bool { return s.String() == "" }
	reached := map[int32]bool{}
	for i, rule := range np.Spec.Ingress {
		for _, port := range append(slices.Clone(apiPorts), adminPort) {
			if port == 0 || !covers(rule.Ports, port) {
				continue
			}
			reached[port] = true
			if len(rule.From) == 0 {
				t.Errorf("NetworkPolicy ingress rule %d lets anyone reach port %d", i, port)
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil {
					t.Errorf("NetworkPolicy ingress rule %d opens port %d to an address range; select callers by label", i, port)
					continue
				}
				var pods, nss labels.Selector = labels.Everything(), labels.Everything()
				if peer.PodSelector != nil {
					pods, _ = metaSelector(peer.PodSelector)
				}
				if peer.NamespaceSelector != nil {
					nss, _ = metaSelector(peer.NamespaceSelector)
				}
				if pods == nil || nss == nil || empty(pods) {
					t.Errorf("NetworkPolicy ingress rule %d opens port %d to every pod of a namespace (or of every namespace): select them by a label", i, port)
				} else if pods.Matches(podLabels) {
					t.Errorf("NetworkPolicy ingress rule %d opens port %d to the service's own pods", i, port)
				}
				if port == adminPort && (peer.NamespaceSelector == nil || empty(nss)) {
					t.Errorf("NetworkPolicy ingress rule %d opens the admin port beyond one named namespace (Prometheus's)", i)
				}
			}
		}
	}
	for _, port := range apiPorts {
		if !reached[port] {
			t.Errorf("no NetworkPolicy ingress rule lets callers reach port %d", port)
		}
	}

	if len(np.Spec.Egress) == 0 {
		t.Fatal("the NetworkPolicy has no egress rule: with Egress restricted, the pods could not resolve names or reach e签宝")
	}
	allowed := map[string]bool{}
	for i, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy egress rule %d allows every port", i)
			continue
		}
		for _, p := range rule.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if p.Port == nil || p.EndPort != nil {
				t.Errorf("NetworkPolicy egress rule %d allows a range of ports", i)
				continue
			}
			key := fmt.Sprintf("%d/%s", p.Port.IntValue(), proto)
			switch key {
			case "53/UDP", "53/TCP":
				// DNS: the cluster's DNS pods only.
				if len(rule.To) == 0 {
					t.Errorf("NetworkPolicy egress rule %d: DNS to any address; allow the cluster's DNS in kube-system only", i)
				}
				for _, peer := range rule.To {
					if peer.NamespaceSelector == nil || peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "kube-system" {
						t.Errorf("NetworkPolicy egress rule %d: DNS beyond kube-system", i)
					}
				}
			case "5432/TCP":
				if !postgres {
					t.Errorf("NetworkPolicy egress rule %d allows PostgreSQL, which this deployment does not use", i)
				}
			case "443/TCP":
				checkPublicOnly(t, i, rule.To)
			default:
				t.Errorf("NetworkPolicy egress rule %d allows %s, which the service does not need (add it to this check if it does)", i, key)
			}
			allowed[key] = true
		}
	}
	want := []string{"53/UDP", "53/TCP", "443/TCP"}
	if postgres {
		want = append(want, "5432/TCP")
	}
	for _, k := range want {
		if !allowed[k] {
			t.Errorf("no NetworkPolicy egress rule allows %s", k)
		}
	}
}

// privateRanges are what e签宝's HTTPS rule must not reach: private and shared address
// space (the cluster's pods and services live there), loopback, and link-local (cloud
// metadata services answer at 169.254.169.254).
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "fc00::/7", "fe80::/10"}

// checkPublicOnly: HTTPS egress goes to address blocks that leave out every private range.
func checkPublicOnly(t *testing.T, rule int, to []networkingv1.NetworkPolicyPeer) {
	t.Helper()
	if len(to) == 0 {
		t.Errorf("NetworkPolicy egress rule %d allows HTTPS to every address, the cluster's included", rule)
		return
	}
	for _, peer := range to {
		if peer.IPBlock == nil {
			continue // pods selected by label: in the cluster by name, fine
		}
		cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			t.Errorf("NetworkPolicy egress rule %d: cidr %q: %v", rule, peer.IPBlock.CIDR, err)
			continue
		}
		for _, r := range privateRanges {
			private := netip.MustParsePrefix(r)
			if private.Addr().Is4() != cidr.Addr().Is4() || !cidr.Overlaps(private) {
				continue
			}
			excluded := slices.ContainsFunc(peer.IPBlock.Except, func(e string) bool {
				p, err := netip.ParsePrefix(e)
				return err == nil && p.Bits() <= private.Bits() && p.Contains(private.Addr())
			})
			if !excluded {
				t.Errorf("NetworkPolicy egress rule %d: HTTPS to %s reaches %s", rule, cidr, private)
			}
		}
	}
}

// postgresURL matches a PostgreSQL connection URL in prose or YAML.
var postgresURL = regexp.MustCompile(`postgres(?:ql)?://[^\s"'\x60)]+`)

// TestDatabaseURLExamplesVerifyTheServer: every PostgreSQL URL the docs and the deployment
// files show uses sslmode=verify-full (encrypted, and the server's certificate and name
// checked); anything less is what a reader copies.
func TestDatabaseURLExamplesVerifyTheServer(t *testing.T) {
	files := []string{"../../README.md", "../../CONFIGURATION.md", "../../OPERATIONS.md", "../../ARCHITECTURE.md", "../../API.md"}
	for _, dir := range []string{"../kubernetes", "../systemd"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range postgresURL.FindAllString(string(b), -1) {
			n++
			if !strings.Contains(u, "sslmode=verify-full") {
				t.Errorf("%s: %s does not use sslmode=verify-full", f, u)
			}
		}
	}
	if n == 0 {
		t.Error("no PostgreSQL URL found in the docs: the pattern is wrong")
	}
}

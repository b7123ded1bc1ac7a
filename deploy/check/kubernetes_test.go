// Package check tests the deployment files in deploy/ against the official Kubernetes API
// types and against the esign-evidence binary itself. It is a module of its own so that
// k8s.io/api and kustomize never enter the service's go.mod.
//
// ESIGN_EVIDENCE_BIN names the binary to check against and GRPCURL the grpcurl to probe
// it with (`make deploy-check` sets both).
package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// objects is one rendered kustomization, decoded into the official types.
type objects struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	pvcs        []*corev1.PersistentVolumeClaim
	pdbs        []*policyv1.PodDisruptionBudget
	netpols     []*networkingv1.NetworkPolicy
	monitors    []*monitoringv1.ServiceMonitor
	jobs        []*batchv1.Job
}

// render builds a kustomization with the kustomize library (the engine of `kubectl
// kustomize`, at the version go.mod pins) and returns each object's YAML by "Kind/name".
func render(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	out := map[string][]byte{}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		out[r.GetKind()+"/"+r.GetName()] = y
	}
	return out
}

// decode strictly decodes every object into its k8s.io/api type: an unknown field, a
// wrong type or an unknown kind fails.
func decode(t *testing.T, rendered map[string][]byte) *objects {
	t.Helper()
	o := &objects{}
	for id, y := range rendered {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(y, &meta); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		var into any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			o.deployments, into = append(o.deployments, d), d
		case "v1 Service":
			s := &corev1.Service{}
			o.services, into = append(o.services, s), s
		case "v1 ConfigMap":
			c := &corev1.ConfigMap{}
			o.configMaps, into = append(o.configMaps, c), c
		case "v1 PersistentVolumeClaim":
			p := &corev1.PersistentVolumeClaim{}
			o.pvcs, into = append(o.pvcs, p), p
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			o.pdbs, into = append(o.pdbs, p), p
		case "networking.k8s.io/v1 NetworkPolicy":
			n := &networkingv1.NetworkPolicy{}
			o.netpols, into = append(o.netpols, n), n
		case "batch/v1 Job":
			j := &batchv1.Job{}
			o.jobs, into = append(o.jobs, j), j
		case "monitoring.coreos.com/v1 ServiceMonitor":
			m := &monitoringv1.ServiceMonitor{}
			o.monitors, into = append(o.monitors, m), m
		default:
			t.Fatalf("%s: no check knows %s %s", id, meta.APIVersion, meta.Kind)
		}
		if err := decodeStrict(y, into); err != nil {
			t.Errorf("%s does not decode strictly into %T: %v", id, into, err)
		}
	}
	return o
}

// decodeStrict decodes YAML into a k8s.io/api object as the API server does in strict
// mode: field names match case-sensitively (encoding/json would take
// readOnlyRootFileSystem for readOnlyRootFilesystem), and unknown or duplicate fields fail.
func decodeStrict(y []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// binary is what the esign-evidence binary says about its settings.
type binary struct {
	path     string
	env      map[string]bool   // every environment variable it reads
	defaults map[string]string // each setting's default, by environment variable
}

func theBinary(t *testing.T) *binary {
	t.Helper()
	p := os.Getenv("ESIGN_EVIDENCE_BIN")
	if p == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ESIGN_EVIDENCE_BIN is not set (`make deploy-check` sets it)")
		}
		t.Skip("ESIGN_EVIDENCE_BIN is not set; run `make deploy-check`")
	}
	cmd := exec.Command(p, "-help")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput() // -help exits 0 or 2 depending on the flag package's mood; the text is what counts
	b := &binary{path: p, env: map[string]bool{}, defaults: map[string]string{}}
	line := regexp.MustCompile(`(?m)^\s+-(\S+)\s+([A-Z][A-Z0-9_]*)\s+default\s+(\S+)`)
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		b.env[m[2]] = true
		if m[3] != "(none)" {
			b.defaults[m[2]] = m[3]
		}
	}
	if m := regexp.MustCompile(`Environment only: ([A-Z0-9_, ]+)`).FindStringSubmatch(string(out)); m != nil {
		for _, e := range strings.Split(m[1], ",") {
			b.env[strings.TrimSpace(e)] = true
		}
	}
	if len(b.env) < 10 || !b.env["GRPC_ADDR"] {
		t.Fatalf("could not read the settings from `%s -help`:\n%s", p, out)
	}
	return b
}

// containerEnv is a container's environment as the pod gets it: envFrom ConfigMaps, then
// env entries.
func containerEnv(t *testing.T, o *objects, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("container %s: envFrom other than a ConfigMap", c.Name)
			continue
		}
		i := slices.IndexFunc(o.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == from.ConfigMapRef.Name })
		if i < 0 {
			t.Errorf("container %s: envFrom names ConfigMap %s, which is not rendered", c.Name, from.ConfigMapRef.Name)
			continue
		}
		for k, v := range o.configMaps[i].Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("container %s: %s comes from valueFrom; secrets are mounted files (*_FILE), settings are values", c.Name, e.Name)
		}
		env[e.Name] = e.Value
	}
	return env
}

func port(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("%s: %q is not host:port", what, addr)
	}
	return int32(n)
}

func TestKubernetesBase(t *testing.T) {
	o := checkKustomization(t, "../kubernetes/base")
	d := o.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("the base runs %v replicas; it is the several-replica deployment", d.Spec.Replicas)
	}
	env := containerEnv(t, o, d.Spec.Template.Spec.Containers[0])
	if env["DATABASE_URL_FILE"] == "" {
		t.Error("several replicas need the shared PostgreSQL store: DATABASE_URL_FILE is not set")
	}
	if len(o.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, have %d", len(o.pdbs))
	}
	pdb := o.pdbs[0]
	sel, err := metaSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget does not select the pods (%v)", err)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
	// The replicas spread over nodes (a hard rule) and zones, counting the service's own pods.
	spread := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		sel, err := metaSelector(c.LabelSelector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("topology spread over %s does not count the service's pods (%v)", c.TopologyKey, err)
		}
		if c.MaxSkew != 1 {
			t.Errorf("topology spread over %s: maxSkew %d, want 1", c.TopologyKey, c.MaxSkew)
		}
		spread[c.TopologyKey] = c.WhenUnsatisfiable
	}
	if spread[corev1.LabelHostname] != corev1.DoNotSchedule {
		t.Errorf("replicas are not kept on different nodes (topology spread over %s: %q)", corev1.LabelHostname, spread[corev1.LabelHostname])
	}
	if _, ok := spread[corev1.LabelTopologyZone]; !ok {
		t.Errorf("replicas are not spread over zones (%s)", corev1.LabelTopologyZone)
	}
}

func TestKubernetesSingleNode(t *testing.T) {
	o := checkKustomization(t, "../kubernetes/single-node")
	d := o.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1 (the embedded store admits one process)", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q: a rolling update would start a second process on the same store", d.Spec.Strategy.Type)
	}
	if len(o.pdbs) != 0 {
		t.Error("a PodDisruptionBudget on one replica only blocks node drains")
	}
	spec := d.Spec.Template.Spec
	env := containerEnv(t, o, spec.Containers[0])
	if env["DATABASE_URL_FILE"] != "" || env["DATABASE_URL"] != "" {
		t.Error("the single-node overlay still points at PostgreSQL")
	}
	dbPath := env["DB_PATH"]
	if dbPath == "" {
		t.Fatal("DB_PATH is not set")
	}
	// The store's directory is a mounted PersistentVolumeClaim, rendered alongside.
	vol := mountedVolume(spec, spec.Containers[0], path.Dir(dbPath))
	if vol == nil || vol.PersistentVolumeClaim == nil {
		t.Fatalf("DB_PATH's directory %s is not a mounted PersistentVolumeClaim", path.Dir(dbPath))
	}
	if !slices.ContainsFunc(o.pvcs, func(p *corev1.PersistentVolumeClaim) bool { return p.Name == vol.PersistentVolumeClaim.ClaimName }) {
		t.Errorf("claim %s is not rendered", vol.PersistentVolumeClaim.ClaimName)
	}
}

// mountedVolume is the volume mounted exactly at dir in container c.
func mountedVolume(spec corev1.PodSpec, c corev1.Container, dir string) *corev1.Volume {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == m.Name {
				return &spec.Volumes[i]
			}
		}
	}
	return nil
}

// checkKustomization renders dir and checks what every deployment of the service must hold.
func checkKustomization(t *testing.T, dir string) *objects {
	t.Helper()
	rendered := render(t, dir)
	crossCheckKubectl(t, dir, rendered)
	o := decode(t, rendered)
	bin := theBinary(t)
	if len(o.deployments) != 1 || len(o.netpols) != 1 {
		t.Fatalf("want one Deployment and NetworkPolicy; have %d, %d", len(o.deployments), len(o.netpols))
	}
	svcIndex := slices.IndexFunc(o.services, func(s *corev1.Service) bool { return s.Name == "esign-evidence" })
	if svcIndex < 0 {
		t.Fatal("no Service esign-evidence for callers")
	}
	d := o.deployments[0]
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	podLabels := labels.Set(d.Spec.Template.Labels)
	if sel, err := metaSelector(d.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector does not match its pods (%v)", err)
	}

	// Every environment variable is one the binary reads, and the binary accepts them all.
	env := containerEnv(t, o, c)
	for name := range env {
		if !bin.env[name] && !runtimeEnv[name] {
			t.Errorf("environment variable %s is not a setting of the binary (see `esign-evidence -help`)", name)
		}
	}
	checkConfigAccepted(t, bin, spec, c, env)
	checkMemLimit(t, "the container", env["GOMEMLIMIT"], c.Resources.Limits.Memory().Value())
	checkTransportSettings(t, spec, c, env)

	// Ports: each container port is one of the binary's listeners.
	setting := func(name string) string {
		if v, ok := env[name]; ok {
			return v
		}
		return bin.defaults[name]
	}
	grpcPort, httpPort := port(t, "GRPC_ADDR", setting("GRPC_ADDR")), port(t, "HTTP_ADDR", setting("HTTP_ADDR"))
	listeners := map[int32]string{grpcPort: "GRPC_ADDR", httpPort: "HTTP_ADDR"}
	adminPort := int32(0)
	if a := setting("ADMIN_ADDR"); a != "" {
		adminPort = port(t, "ADMIN_ADDR", a)
		listeners[adminPort] = "ADMIN_ADDR"
	}
	named := map[string]int32{}
	for _, p := range c.Ports {
		if _, ok := listeners[p.ContainerPort]; !ok {
			t.Errorf("container port %s (%d) is none of the binary's listeners %v", p.Name, p.ContainerPort, listeners)
		}
		named[p.Name] = p.ContainerPort
	}
	resolve := func(what string, p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			n, ok := named[p.StrVal]
			if !ok {
				t.Errorf("%s names port %q, which the container does not have", what, p.StrVal)
			}
			return n
		}
		return p.IntVal
	}

	// Probes: the health check over REST (/healthz) on the REST listener, over HTTPS when
	// the listeners serve TLS (the kubelet's gRPC probes cannot speak TLS), answering 200
	// while serving and 503 once the drain starts; without TLS, a native gRPC health check
	// on the gRPC listener, for a service the binary reports SERVING.
	tlsOn := env["TLS_CERT_FILE"] != ""
	httpProbes := map[string]bool{}
	for what, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if p == nil {
			if what != "startupProbe" {
				t.Errorf("no %s", what)
			}
			continue
		}
		if what == "readinessProbe" && p.FailureThreshold < 2 {
			t.Errorf("readinessProbe failureThreshold %d: one slow probe takes the pod out of the endpoints", p.FailureThreshold)
		}
		switch {
		case p.HTTPGet != nil:
			if n := resolve(what, p.HTTPGet.Port); n != httpPort {
				t.Errorf("%s probes port %d; REST listens on %d", what, n, httpPort)
			}
			want := corev1.URISchemeHTTP
			if tlsOn {
				want = corev1.URISchemeHTTPS
			}
			if p.HTTPGet.Scheme != want {
				t.Errorf("%s probes with scheme %q; the REST listener speaks %s", what, p.HTTPGet.Scheme, want)
			}
			if p.HTTPGet.Path != "/healthz" {
				t.Errorf("%s probes %q; the health check is /healthz", what, p.HTTPGet.Path)
			}
			httpProbes[string(p.HTTPGet.Scheme)+" "+p.HTTPGet.Path] = true
		case p.GRPC != nil:
			if tlsOn {
				t.Errorf("%s is a gRPC probe: the kubelet's gRPC probes cannot speak TLS, which the listeners serve", what)
			}
			if p.GRPC.Port != grpcPort {
				t.Errorf("%s probes port %d; gRPC listens on %d", what, p.GRPC.Port, grpcPort)
			}
			service := ""
			if p.GRPC.Service != nil {
				service = *p.GRPC.Service
			}
			checkHealthService(t, bin, service)
		default:
			t.Errorf("%s is neither an HTTP(S) probe of /healthz nor a gRPC probe", what)
		}
	}
	for probe := range httpProbes {
		scheme, probePath, _ := strings.Cut(probe, " ")
		checkHTTPSProbe(t, bin, env, probePath, corev1.URIScheme(scheme))
	}

	// Shutdown: the grace period covers the drain delay and the drain.
	drain, err1 := time.ParseDuration(setting("SHUTDOWN_DRAIN_DELAY"))
	timeout, err2 := time.ParseDuration(setting("SHUTDOWN_TIMEOUT"))
	if err1 != nil || err2 != nil {
		t.Errorf("SHUTDOWN_DRAIN_DELAY / SHUTDOWN_TIMEOUT: %v %v", err1, err2)
	}
	if drain <= 0 {
		t.Error("SHUTDOWN_DRAIN_DELAY is 0: pods would stop accepting calls before endpoints stop sending them")
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drain+timeout {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed SHUTDOWN_DRAIN_DELAY + SHUTDOWN_TIMEOUT (%v)", g, drain+timeout)
	}

	// Security context: non-root, read-only root filesystem, no capabilities, RuntimeDefault.
	psc, csc := spec.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || csc == nil:
		t.Fatal("pod or container securityContext missing")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Error("the pod does not run as a non-root user")
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("the pod's seccomp profile is not RuntimeDefault")
	case csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0:
		t.Error("capabilities are not all dropped")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token it never uses")
	}
	// Volumes and mounts are well formed: the API server refuses duplicates and mounts of
	// volumes that do not exist, which strict decoding alone does not catch.
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			t.Errorf("volume %s is declared twice", v.Name)
		}
		volumes[v.Name] = true
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if mounts[path.Clean(m.MountPath)] {
			t.Errorf("two volumes are mounted at %s", m.MountPath)
		}
		mounts[path.Clean(m.MountPath)] = true
		if !volumes[m.Name] {
			t.Errorf("mount %s names volume %s, which is not declared", m.MountPath, m.Name)
		}
	}
	// With a read-only root, uploads need a writable /tmp, big enough for the uploads the
	// binary admits at once (a full emptyDir gets the pod evicted).
	if v := mountedVolume(spec, c, "/tmp"); v == nil || v.EmptyDir == nil {
		t.Error("/tmp is not a mounted emptyDir (UploadFile spools there)")
	} else {
		uploads, err1 := strconv.ParseInt(setting("MAX_CONCURRENT_UPLOADS"), 10, 64)
		fileBytes, err2 := strconv.ParseInt(setting("MAX_FILE_BYTES"), 10, 64)
		switch {
		case err1 != nil || err2 != nil:
			t.Errorf("MAX_CONCURRENT_UPLOADS %q and MAX_FILE_BYTES %q must be numbers to size /tmp", setting("MAX_CONCURRENT_UPLOADS"), setting("MAX_FILE_BYTES"))
		case v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Value() < uploads*fileBytes:
			t.Errorf("/tmp's sizeLimit %v is under MAX_CONCURRENT_UPLOADS × MAX_FILE_BYTES (%d bytes)", v.EmptyDir.SizeLimit, uploads*fileBytes)
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	// The emptyDirs on disk count against the pod's ephemeral storage: a limit below their
	// sizes would evict the pod before a volume is full.
	var emptyDirs int64
	for _, v := range spec.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
			continue
		}
		if v.EmptyDir.SizeLimit == nil {
			t.Errorf("emptyDir %s has no sizeLimit", v.Name)
			continue
		}
		emptyDirs += v.EmptyDir.SizeLimit.Value()
	}
	if l, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; !ok || l.Value() <= emptyDirs {
		t.Errorf("ephemeral-storage limit %v does not exceed the emptyDirs' sizeLimits (%d bytes) and leave room for logs", c.Resources.Limits.StorageEphemeral(), emptyDirs)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if c.Image == "" {
		t.Error("no image")
	}

	// The callers' Service serves gRPC and REST and never the admin port.
	svc := o.services[svcIndex]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Error("the Service does not select the pods")
	}
	for _, p := range svc.Spec.Ports {
		n := resolve("Service port "+p.Name, p.TargetPort)
		if n == adminPort {
			t.Errorf("the Service exposes the admin port (%s)", p.Name)
		}
	}

	// The NetworkPolicy: callers by label, admin for Prometheus only, egress to DNS,
	// PostgreSQL (when used) and e签宝.
	postgres := env["DATABASE_URL_FILE"] != "" || env["DATABASE_URL"] != ""
	checkNetworkPolicy(t, o.netpols[0], podLabels, resolve, []int32{grpcPort, httpPort}, adminPort, postgres)
	return o
}

// checkConfigAccepted runs the binary's -check-config with the container's environment:
// every value must be accepted. Secret files are stood in for by files with plausible
// content, at paths that must lie in a mounted Secret.
func checkConfigAccepted(t *testing.T, bin *binary, spec corev1.PodSpec, c corev1.Container, env map[string]string) {
	t.Helper()
	dir := t.TempDir()
	stand := map[string]string{
		"ESIGN_APP_SECRET_FILE": "an-app-secret",
		"FINGERPRINT_KEY_FILE":  "a-fingerprint-key-of-enough-length",
		"AUTH_TOKENS_FILE":      "billing a-token-of-enough-length\n",
		"DATABASE_URL_FILE":     "postgres://esign:pw@db:5432/esign?sslmode=verify-full",
	}
	stand["TLS_CERT_FILE"], stand["TLS_KEY_FILE"] = standInTLS()
	cmdEnv := []string{"PATH=" + os.Getenv("PATH")}
	for name, v := range env {
		if strings.HasSuffix(name, "_FILE") && v != "" {
			vol := mountedVolume(spec, c, path.Dir(v))
			if vol == nil || vol.Secret == nil {
				t.Errorf("%s=%s is not in a mounted Secret", name, v)
			}
			content, ok := stand[name]
			if !ok {
				t.Errorf("%s: no stand-in content known; add one to this test", name)
				continue
			}
			f := filepath.Join(dir, name)
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			v = f
		}
		cmdEnv = append(cmdEnv, name+"="+v)
	}
	cmd := exec.Command(bin.path, "-check-config")
	cmd.Env = cmdEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the binary refuses the manifest's settings: %v\n%s", err, out)
	}
}

// checkHealthService starts the binary in demo mode and asks its gRPC health service for
// service: a probe on a name the binary does not serve would never pass.
func checkHealthService(t *testing.T, bin *binary, service string) {
	t.Helper()
	grpcurl := os.Getenv("GRPCURL")
	if grpcurl == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("GRPCURL is not set (`make deploy-check` sets it)")
		}
		t.Skip("GRPCURL is not set; run `make deploy-check`")
	}
	addr := startDemo(t, bin.path)
	req, _ := json.Marshal(map[string]string{"service": service})
	out, err := exec.Command(grpcurl, "-plaintext", "-d", string(req), addr, "grpc.health.v1.Health/Check").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"SERVING"`)) {
		t.Errorf("health check of service %q: %v\n%s", service, err, out)
	}
}

// demo is a running demo-mode binary's listeners.
type demo struct {
	grpc, http, admin string
	proc              *os.Process
	// stop ends the process with SIGTERM and waits for it to exit.
	stop func()
}

// startDemo runs the binary in demo mode on loopback port 0 and returns its gRPC address.
func startDemo(t *testing.T, bin string) string { return startDemoAll(t, bin).grpc }

// startDemoAll runs the binary in demo mode on loopback port 0 (all three listeners), with
// env added to its environment, and reads the addresses from its "serving" log line.
func startDemoAll(t *testing.T, bin string, env ...string) demo {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-simulate", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	end := func(sig os.Signal) {
		once.Do(func() { _ = cmd.Process.Signal(sig); _ = cmd.Wait(); f.Close() })
	}
	t.Cleanup(func() { end(os.Kill) })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logFile)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "serving" {
				str := func(k string) string { s, _ := m[k].(string); return s }
				return demo{grpc: str("grpc_addr"), http: str("http_addr"), admin: str("admin_addr"), proc: cmd.Process,
					stop: func() { end(syscall.SIGTERM) }}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logFile)
	t.Fatalf("the demo did not start:\n%s", b)
	return demo{}
}

// crossCheckKubectl renders dir with `kubectl kustomize` as well, when a kubectl whose
// kustomize is v5 or newer is installed, and requires the same objects.
func crossCheckKubectl(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	v, err := exec.Command("kubectl", "version", "--client").CombinedOutput()
	if err != nil || !regexp.MustCompile(`Kustomize Version: v([5-9]|\d\d)\.`).Match(v) {
		t.Logf("no kubectl with kustomize v5+ here; rendered with the kustomize library only")
		return
	}
	out, err := exec.Command("kubectl", "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	got := map[string]any{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		md, _ := obj["metadata"].(map[string]any)
		got[fmt.Sprint(obj["kind"], "/", md["name"])] = obj
	}
	if len(got) != len(want) {
		t.Errorf("kubectl kustomize rendered %d objects, the library %d", len(got), len(want))
	}
	for id, y := range want {
		var obj any
		if err := yaml.Unmarshal(y, &obj); err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(obj)
		b, _ := json.Marshal(got[id])
		if !bytes.Equal(a, b) {
			t.Errorf("%s: kubectl kustomize and the library disagree:\n%s\n%s", id, a, b)
		}
	}
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

// TestKubernetesServiceMonitor renders the base with the ServiceMonitor component, as an
// overlay includes it: the ServiceMonitor finds the pods' admin port through a headless
// Service of its own, and the pods are no longer annotated for scraping (a Prometheus doing
// both would scrape them twice).
func TestKubernetesServiceMonitor(t *testing.T) {
	o := checkKustomization(t, "testdata/servicemonitor")
	if len(o.monitors) != 1 {
		t.Fatalf("want one ServiceMonitor, have %d", len(o.monitors))
	}
	sm, d := o.monitors[0], o.deployments[0]
	c := d.Spec.Template.Spec.Containers[0]
	if v := d.Spec.Template.Annotations["prometheus.io/scrape"]; v == "true" {
		t.Error("the pods are still annotated prometheus.io/scrape=true beside the ServiceMonitor")
	}
	if sm.Spec.NamespaceSelector.Any || len(sm.Spec.NamespaceSelector.MatchNames) > 0 {
		t.Error("the ServiceMonitor looks beyond its own namespace")
	}
	sel, err := metaSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("the ServiceMonitor's selector is empty or invalid (%v)", err)
	}
	var selected []*corev1.Service
	for _, s := range o.services {
		if sel.Matches(labels.Set(s.Labels)) {
			selected = append(selected, s)
		}
	}
	if len(selected) != 1 {
		t.Fatalf("the ServiceMonitor selects %d Services, want 1 (the metrics Service)", len(selected))
	}
	ms := selected[0]
	if ms.Name == "esign-evidence" {
		t.Error("the ServiceMonitor selects the callers' Service")
	}
	if ms.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the metrics Service %s is not headless", ms.Name)
	}
	if !labels.SelectorFromSet(ms.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(ms.Spec.Selector) == 0 {
		t.Errorf("the metrics Service %s does not select the pods", ms.Name)
	}
	adminPort := int32(0)
	containerPorts := map[string]int32{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p.ContainerPort
		if p.Name == "admin" {
			adminPort = p.ContainerPort
		}
	}
	if adminPort == 0 {
		t.Fatal("the container has no port named admin")
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("the ServiceMonitor has no endpoint")
	}
	for _, ep := range sm.Spec.Endpoints {
		i := slices.IndexFunc(ms.Spec.Ports, func(p corev1.ServicePort) bool { return ep.Port != "" && p.Name == ep.Port })
		if i < 0 {
			t.Errorf("endpoint port %q is not a port of %s", ep.Port, ms.Name)
			continue
		}
		tp := ms.Spec.Ports[i].TargetPort
		target := tp.IntVal
		if tp.Type == intstr.String {
			target = containerPorts[tp.StrVal]
		}
		if target != adminPort {
			t.Errorf("endpoint port %s reaches container port %d, not the admin port %d", ep.Port, target, adminPort)
		}
		if ep.Path != "" && ep.Path != "/metrics" {
			t.Errorf("endpoint path %q: the metrics are at /metrics", ep.Path)
		}
	}
}

// TestKubernetesMigrationJob renders the base with the migration Job component: the Job
// runs the same image with -migrate and nothing but the migrating role's connection string
// (from a Secret of its own), locked down like the replicas; the replicas start with
// STORE_MIGRATE=false (checkKustomization has the binary accept their settings) and their
// Secret is not the Job's.
func TestKubernetesMigrationJob(t *testing.T) {
	o := checkKustomization(t, "testdata/migration-job")
	bin := theBinary(t)
	if len(o.jobs) != 1 {
		t.Fatalf("want one Job, have %d", len(o.jobs))
	}
	job, d := o.jobs[0], o.deployments[0]
	server := d.Spec.Template.Spec.Containers[0]
	if env := containerEnv(t, o, server); env["STORE_MIGRATE"] != "false" {
		t.Errorf("the replicas start with STORE_MIGRATE=%q, want false: their role would need DDL", env["STORE_MIGRATE"])
	}
	if sel, err := metaSelector(d.Spec.Selector); err == nil && sel.Matches(labels.Set(job.Spec.Template.Labels)) {
		t.Error("the Deployment's selector matches the Job's pods")
	}
	spec := job.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("want one container in the Job, have %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	// The overlay sets the image as OPERATIONS.md says: the replicas and the Job follow it.
	if want := "registry.example.com/esign-evidence:1.0.0"; c.Image != want || server.Image != want {
		t.Errorf("the Job runs %s, the replicas %s, the overlay set %s: the Job must migrate to the replicas' version", c.Image, server.Image, want)
	}
	if !slices.Equal(c.Args, []string{"-migrate"}) || len(c.Command) > 0 {
		t.Errorf("the Job runs command %v args %v, want the entrypoint with -migrate", c.Command, c.Args)
	}
	env := containerEnv(t, o, c)
	for name := range env {
		if !bin.env[name] {
			t.Errorf("the Job's %s is not a setting of the binary", name)
		}
	}
	if len(env) != 1 || env["DATABASE_URL_FILE"] == "" {
		t.Errorf("the Job's environment is %v: it needs DATABASE_URL_FILE only", env)
	}
	jobSecret := mountedVolume(spec, c, path.Dir(env["DATABASE_URL_FILE"]))
	if jobSecret == nil || jobSecret.Secret == nil {
		t.Fatalf("DATABASE_URL_FILE=%s is not in a mounted Secret", env["DATABASE_URL_FILE"])
	}
	serverEnv := containerEnv(t, o, server)
	if v := mountedVolume(d.Spec.Template.Spec, server, path.Dir(serverEnv["DATABASE_URL_FILE"])); v == nil || v.Secret == nil ||
		v.Secret.SecretName == jobSecret.Secret.SecretName {
		t.Errorf("the replicas' connection string is not in a Secret apart from the Job's %s", jobSecret.Secret.SecretName)
	}
	switch psc, csc := spec.SecurityContext, c.SecurityContext; {
	case spec.RestartPolicy != corev1.RestartPolicyNever && spec.RestartPolicy != corev1.RestartPolicyOnFailure:
		t.Errorf("restartPolicy %q", spec.RestartPolicy)
	case job.Spec.BackoffLimit == nil || job.Spec.ActiveDeadlineSeconds == nil:
		t.Error("the Job has no backoffLimit or activeDeadlineSeconds: a failing migration would retry without end")
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		t.Error("the Job's pod does not run as non-root")
	case csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL"):
		t.Error("the Job's container is not locked down like the replicas'")
	case spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken:
		t.Error("the Job's pod mounts a service account token")
	}
	// The binary accepts exactly this invocation: -migrate with the Job's settings reads
	// the connection string and tries the database (a stand-in no server answers).
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "database-url")
	if err := os.WriteFile(dsnFile, []byte("postgres://migrator@127.0.0.1:1/esign?sslmode=disable&connect_timeout=2"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.path, c.Args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL_FILE=" + dsnFile}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DATABASE_URL: ") || strings.Contains(string(out), "FINGERPRINT_KEY") || strings.Contains(string(out), "ESIGN_APP") {
		t.Errorf("-migrate with the Job's settings should get as far as the database and need nothing else: %v\n%s", err, out)
	}
}

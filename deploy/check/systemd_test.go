package check

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "../systemd/esign-evidence.service"

// unit reads a unit file's [Service] settings as key → values (a key may repeat).
func unit(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit in a scratch root
// holding the host's system units and the binary at the unit's ExecStart path. verify
// exits 0 even for unknown keys or bad values, so any output fails too.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing (Debian's systemd package)")
		}
		t.Skip("systemd-analyze is missing")
	}
	bin := theBinary(t)
	root := t.TempDir()
	exec1 := unit(t, unitFile)["ExecStart"]
	if len(exec1) != 1 {
		t.Fatalf("want one ExecStart, have %v", exec1)
	}
	for _, c := range [][]string{
		{"mkdir", "-p", root + "/usr/lib/systemd", root + "/etc/systemd/system", filepath.Dir(root + exec1[0])},
		{"cp", "-a", "/usr/lib/systemd/system", root + "/usr/lib/systemd/"},
		{"cp", bin.path, root + exec1[0]},
		{"cp", unitFile, root + "/etc/systemd/system/"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, "esign-evidence.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitSettings checks what the unit must hold, and that the binary accepts its
// environment (with the example environment file and stand-ins for the credentials).
func TestSystemdUnitSettings(t *testing.T) {
	u := unit(t, unitFile)
	for k, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "esign-evidence", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "KillSignal": "SIGTERM", "Type": "exec",
	} {
		if got := u[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if len(u["TimeoutStopSec"]) != 1 {
		t.Error("no TimeoutStopSec: the graceful stop needs a bound above SHUTDOWN_TIMEOUT")
	}
	bin := theBinary(t)
	dir := t.TempDir()
	creds := map[string]bool{}
	for _, lc := range u["LoadCredential"] {
		name, _, _ := strings.Cut(lc, ":")
		creds[name] = true
		cert, key := standInTLS()
		stand := map[string]string{"app-secret": "an-app-secret", "fingerprint-key": "a-fingerprint-key-of-enough-length",
			"auth-tokens": "billing a-token-of-enough-length\n", "tls.crt": cert, "tls.key": key}[name]
		if stand == "" {
			t.Fatalf("credential %s: no stand-in content known; add one to this test", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(stand), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{}
	example, err := os.ReadFile("../systemd/esign-evidence.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(example), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	for _, e := range u["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		if strings.HasPrefix(v, "%d/") {
			if !creds[strings.TrimPrefix(v, "%d/")] {
				t.Errorf("%s names credential %s, which no LoadCredential= provides", k, v)
			}
			v = filepath.Join(dir, strings.TrimPrefix(v, "%d/"))
		}
		env[k] = v
	}
	// gRPC and REST serve TLS from credentials (the binary refuses plaintext beyond this
	// host; -check-config below holds it to that), with no override in force.
	for _, k := range []string{"TLS_CERT_FILE", "TLS_KEY_FILE"} {
		if !strings.HasPrefix(env[k], dir+"/") {
			t.Errorf("%s=%q is not a credential of the unit", k, env[k])
		}
	}
	for _, k := range []string{"PLAINTEXT_ALLOW_REMOTE", "AUTH_DISABLED", "AUTH_DISABLED_ALLOW_REMOTE"} {
		if v, ok := env[k]; ok && v != "false" {
			t.Errorf("%s=%s in the shipped unit", k, v)
		}
	}
	if env["DB_PATH"] != "/var/lib/esign-evidence/submissions.db" {
		t.Errorf("DB_PATH=%q is not in the StateDirectory", env["DB_PATH"])
	}
	cmdEnv := []string{"PATH=" + os.Getenv("PATH")}
	memoryMax := int64(0)
	if v := u["MemoryMax"]; len(v) == 1 {
		memoryMax = systemdBytes(t, v[0])
	}
	checkMemLimit(t, "the unit", env["GOMEMLIMIT"], memoryMax)
	for k, v := range env {
		if runtimeEnv[k] {
			cmdEnv = append(cmdEnv, k+"="+v)
			continue
		}
		if !bin.env[k] {
			t.Errorf("environment variable %s is not a setting of the binary", k)
		}
		cmdEnv = append(cmdEnv, k+"="+v)
	}
	cmd := exec.Command(bin.path, "-check-config")
	cmd.Env = cmdEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the binary refuses the unit's settings: %v\n%s", err, out)
	}
}

// systemdBytes parses a systemd size (MemoryMax=): bytes with an optional K, M, G or T
// suffix, powers of 1024.
func systemdBytes(t *testing.T, v string) int64 {
	t.Helper()
	shift := map[byte]uint{'K': 10, 'M': 20, 'G': 30, 'T': 40}
	n, s := v, uint(0)
	if len(v) > 0 {
		if sh, ok := shift[v[len(v)-1]]; ok {
			n, s = v[:len(v)-1], sh
		}
	}
	i, err := strconv.ParseInt(n, 10, 64)
	if err != nil || i <= 0 {
		t.Fatalf("MemoryMax=%s is not a size", v)
	}
	return i << s
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

// buildBinary compiles the real binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "esign-evidence-bin-")
		if binErr != nil {
			return
		}
		// -buildvcs=auto: stamp the VCS revision (-version reports it) even where GOFLAGS turns it off.
		cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", filepath.Join(binDir, "esign-evidence"), ".")
		cmd.Stderr = os.Stderr
		binErr = cmd.Run()
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return filepath.Join(binDir, "esign-evidence")
}

// grpcurlPath finds grpcurl as installed by `make tools`. CI must have it.
func grpcurlPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GRPCURL"), "../../bin/grpcurl"} {
		if p == "" {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs
			}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("grpcurl not found: `make tools` installs it into bin/")
	}
	t.Skip("grpcurl not installed (run `make tools`); skipping the grpcurl test")
	return ""
}

type running struct {
	cmd       *exec.Cmd
	grpcAddr  string
	httpAddr  string
	adminAddr string
	stderr    *lockedBuffer
	exited    chan error
}

// lockedBuffer collects the binary's log while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDemo starts the binary in demo mode on loopback port 0 and reads the addresses
// it serves on from its log.
func startDemo(t *testing.T, bin string) *running {
	t.Helper()
	return startBinary(t, bin, nil, "-simulate")
}

// startBinary starts the binary with extra environment and arguments on loopback port 0.
func startBinary(t *testing.T, bin string, env []string, args ...string) *running {
	t.Helper()
	return startBinaryArgs(t, bin, env, append(args, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")...)
}

// startBinaryArgs starts the binary with exactly these arguments (they must put the
// listeners on loopback) and reads the addresses it serves on from its log.
func startBinaryArgs(t *testing.T, bin string, env []string, args ...string) *running {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	go func() { r.exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	addrs := make(chan [3]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = r.stderr.Write(append(line, '\n'))
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "serving" {
				admin, _ := m["admin_addr"].(string)
				addrs <- [3]string{m["grpc_addr"].(string), m["http_addr"].(string), admin}
			}
		}
	}()
	select {
	case a := <-addrs:
		r.grpcAddr, r.httpAddr, r.adminAddr = a[0], a[1], a[2]
	case err := <-r.exited:
		t.Fatalf("exited early: %v\n%s", err, r.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("did not start\n%s", r.stderr)
	}
	return r
}

func TestBinaryDemoModeWithGrpcurlAndREST(t *testing.T) {
	grpcurl := grpcurlPath(t)
	bin := buildBinary(t)
	r := startDemo(t, bin)
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}

	run := func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command(grpcurl, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(nil, "-plaintext", r.grpcAddr, "list"); !strings.Contains(out, "esign.evidence.v1.EvidenceService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Errorf("list: %s", out)
	}
	if out := run(nil, "-plaintext", r.grpcAddr, "describe", "esign.evidence.v1.EvidenceService"); !strings.Contains(out, "CreatePersonalEvidencePoint") {
		t.Errorf("describe: %s", out)
	}
	if out := run(nil, "-plaintext", r.grpcAddr, "describe", "esign.evidence.v1.CreatePersonalEvidencePointRequest"); !strings.Contains(out, "json_name = \"certAgreementReadIP\"") {
		t.Errorf("describe request: %s", out)
	}
	out := run(seed, "-plaintext", "-d", "@", r.grpcAddr, "esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint")
	var resp map[string]string
	if err := json.Unmarshal([]byte(out), &resp); err != nil || !strings.HasPrefix(resp["eviPointId"], "P") {
		t.Errorf("call: %s", out)
	}

	hr, err := http.Post("http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != 200 || !eviPointID.Match(b) {
		t.Errorf("REST: %d %s", hr.StatusCode, b)
	}

	// Demo mode says loudly that it is not e签宝.
	if !strings.Contains(r.stderr.String(), "DEMO MODE: NOT TALKING TO e签宝") {
		t.Errorf("no demo-mode warning in\n%s", r.stderr)
	}
	// SIGTERM: a clean, prompt exit.
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	// No personal data from the seed in any log line.
	for _, pii := range []string{"130401199601018395", "测试张三", "19800002222", "123456\""} {
		if strings.Contains(r.stderr.String(), pii) {
			t.Errorf("log contains %q", pii)
		}
	}
}

func TestBinaryRefusesToStartWithoutConfiguration(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ESIGN_APP_SECRET=do-not-print-me"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("started without configuration:\n%s", out)
	}
	for _, want := range []string{"ESIGN_ENV", "ESIGN_APP_ID"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not name %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "do-not-print-me") {
		t.Errorf("secret printed:\n%s", out)
	}
}

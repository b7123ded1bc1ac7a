package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// TestBinaryVersion: -version prints the build (module version, VCS revision, Go version)
// and exits 0 without needing any configuration.
func TestBinaryVersion(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "-version")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("-version: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "esign-evidence ") || !strings.Contains(line, "built with "+runtime.Version()) {
		t.Errorf("-version printed %q; want the module version and %s", line, runtime.Version())
	}
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if rev := strings.TrimSpace(string(head)); !strings.Contains(line, "revision "+rev) {
			t.Errorf("-version printed %q; want revision %s", line, rev)
		}
	}
}

// TestBinaryBuildInfoMetric: the admin listener exports the same build as -version.
func TestBinaryBuildInfoMetric(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^esign-evidence (\S+), revision (\S+)( \(modified\))?, built with (\S+)$`).FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		t.Fatalf("unexpected -version output %q", out)
	}
	rev := m[2]
	if m[3] != "" {
		rev += "-modified"
	}
	want := `esign_evidence_build_info{go_version="` + m[4] + `",revision="` + rev + `",version="` + m[1] + `"} 1`

	r := startDemo(t, bin)
	resp, err := http.Get("http://" + r.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s; build lines:\n%s", want, grepLines(string(body), "build_info"))
	}
}

// eviPointID finds the evidence point in a REST answer; protojson may put a space after
// the colon, differently from one build to the next.
var eviPointID = regexp.MustCompile(`"eviPointId":\s*"(P\d+)"`)

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBinaryShutdownDrainDelay is the Kubernetes shutdown sequence against the built
// binary: on SIGTERM health turns NOT_SERVING at once, yet for SHUTDOWN_DRAIN_DELAY the
// listeners still accept new connections and serve new calls (endpoints take a moment to
// stop routing to a terminating pod); only then does the process drain and exit 0.
func TestBinaryShutdownDrainDelay(t *testing.T) {
	const delay = 3 * time.Second
	bin := buildBinary(t)
	r := startBinary(t, bin, []string{"SHUTDOWN_DRAIN_DELAY=" + delay.String()}, "-simulate")
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	health := func() (grpc_health_v1.HealthCheckResponse_ServingStatus, error) {
		// A new connection each time: the listener itself must still accept.
		conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		if err != nil {
			return 0, err
		}
		return res.GetStatus(), nil
	}
	if st, err := health(); err != nil || st != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("before SIGTERM: %v %v", st, err)
	}

	sent := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(delay)
	for {
		st, err := health()
		if err == nil && st == grpc_health_v1.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health did not turn NOT_SERVING within the drain delay: %v %v\n%s", st, err, r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// NOT_SERVING, and still serving: a new REST connection and a new call succeed.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(seed))
	if err != nil {
		t.Fatalf("REST call during the drain delay: %v\n%s", err, r.stderr)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !eviPointID.Match(b) {
		t.Errorf("REST call during the drain delay: %d %s", resp.StatusCode, b)
	}

	select {
	case err := <-r.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, r.stderr)
		}
		if since := time.Since(sent); since < delay {
			t.Errorf("exited %v after SIGTERM, before the %v drain delay ended", since, delay)
		}
	case <-time.After(delay + 30*time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr.String(), `"drain_delay":"3s"`) {
		t.Errorf("the drain delay is not logged:\n%s", r.stderr)
	}
}

// TestBinaryCheckConfig: -check-config validates the settings and exits without serving:
// 0 for good settings, 1 naming the setting for bad ones.
func TestBinaryCheckConfig(t *testing.T) {
	bin := buildBinary(t)
	run := func(env ...string) (string, error) {
		cmd := exec.Command(bin, "-check-config", "-grpc-addr", "127.0.0.1:0")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("SIMULATE=true", "SHUTDOWN_DRAIN_DELAY=5s")
	if err != nil || !strings.Contains(out, "configuration OK") {
		t.Errorf("good settings: %v\n%s", err, out)
	}
	out, err = run("SIMULATE=true", "SHUTDOWN_DRAIN_DELAY=forever")
	if err == nil || !strings.Contains(out, "SHUTDOWN_DRAIN_DELAY") {
		t.Errorf("bad settings: %v\n%s", err, out)
	}
}

// TestBinaryOnlineBackupAndRestore: GET /backup on the admin listener is there only with
// ADMIN_BACKUP_TOKEN_FILE, answers 401 without that token and logs every request; it
// copies the embedded store while the service runs and keeps serving; a service started
// on the copy knows the submissions made before the copy and not those made after.
func TestBinaryOnlineBackupAndRestore(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	create := func(r *running, key string) string {
		t.Helper()
		body := strings.Replace(string(seed), `"eviName"`, `"customBizId": "`+key+`", "eviName"`, 1)
		resp, err := http.Post("http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := eviPointID.FindSubmatch(b)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("create %s: %d %s", key, resp.StatusCode, b)
		}
		return string(m[1])
	}
	lookup := func(r *running, key string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + r.httpAddr + "/v1/submissions/" + key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	stop := func(r *running) {
		t.Helper()
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-r.exited:
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, r.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
	}

	// Without ADMIN_BACKUP_TOKEN_FILE there is no /backup.
	off := startBinary(t, bin, []string{"DB_PATH=" + filepath.Join(dir, "off.db")}, "-simulate")
	if resp, err := http.Get("http://" + off.adminAddr + "/backup"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/backup without ADMIN_BACKUP_TOKEN_FILE: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	const backupToken = "backup-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "backup-token")
	if err := os.WriteFile(tokenFile, []byte(backupToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	live := startBinary(t, bin, []string{"DB_PATH=" + filepath.Join(dir, "live.db"), "ADMIN_BACKUP_TOKEN_FILE=" + tokenFile}, "-simulate")
	before := create(live, "order-before")
	for _, tok := range []string{"", "wrong-token-0123456789abcdef"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+live.adminAddr+"/backup", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(b) > 100 {
			t.Errorf("/backup with token %q: HTTP %d, %d bytes", tok, resp.StatusCode, len(b))
		}
	}
	// The log is read on its own goroutine: wait for the lines.
	waitUntil(t, 10*time.Second, "both refused backups logged", func() (bool, string) {
		got := strings.Count(live.stderr.String(), "store backup refused")
		return got == 2, fmt.Sprintf("%d logged", got)
	})
	req, _ := http.NewRequest(http.MethodGet, "http://"+live.adminAddr+"/backup", nil)
	req.Header.Set("Authorization", "Bearer "+backupToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(copied)) || len(copied) == 0 {
		t.Fatalf("backup: %d, %v, Content-Length %d, %d bytes", resp.StatusCode, err, resp.ContentLength, len(copied))
	}
	create(live, "order-after") // still serving, still writing
	stop(live)
	waitUntil(t, 10*time.Second, "the download logged", func() (bool, string) {
		return strings.Contains(live.stderr.String(), `"msg":"store backup downloaded"`), ""
	})
	if strings.Contains(live.stderr.String(), backupToken) {
		t.Errorf("the log quotes the backup token:\n%s", live.stderr)
	}

	backup := filepath.Join(dir, "restored.db")
	if err := os.WriteFile(backup, copied, 0o600); err != nil {
		t.Fatal(err)
	}
	restored := startBinary(t, bin, []string{"DB_PATH=" + backup}, "-simulate")
	if code, body := lookup(restored, "order-before"); code != 200 || !strings.Contains(body, before) {
		t.Errorf("order-before after restore: %d %s", code, body)
	}
	if code, body := lookup(restored, "order-after"); code != 404 {
		t.Errorf("order-after, made after the backup, after restore: %d %s", code, body)
	}
}

package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/synthetic"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the service and the importer once per test run.
func binaries(t *testing.T) (service, importer string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "esign-import-bin-"); binErr != nil {
			return
		}
		for _, b := range [][2]string{{"esign-evidence", "../esign-evidence"}, {"esign-import", "."}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[0]), b[1])
			cmd.Stderr = os.Stderr
			if binErr = cmd.Run(); binErr != nil {
				return
			}
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return filepath.Join(binDir, "esign-evidence"), filepath.Join(binDir, "esign-import")
}

// esign is the simulator behind a recorder of when each signed e签宝 call arrived and
// how many uploads' bytes were stored.
type esign struct {
	sim *esignsim.Simulator
	srv *httptest.Server

	mu     sync.Mutex
	calls  []time.Time // evidence-point and upload-URL calls
	putsOK int         // file bytes stored
}

func newEsign(t *testing.T) *esign {
	e := &esign{sim: esignsim.New(esignsim.Config{AppID: "import-app", AppSecret: "import-secret", RecordLimit: 4096})}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		e.sim.ServeHTTP(rec, r)
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case r.URL.Path == upstream.PathPsnRealname || r.URL.Path == upstream.PathFileUploadURL:
			e.calls = append(e.calls, now)
		case r.Method == http.MethodPut && rec.status == http.StatusOK:
			e.putsOK++
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (e *esign) snapshot() (calls []time.Time, puts int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls), e.putsOK
}

// issuedIDs lists the eviPointIds the simulator issued.
func (e *esign) issuedIDs() []string {
	var ids []string
	for _, r := range e.sim.Received() {
		if r.EviPointID != "" {
			ids = append(ids, r.EviPointID)
		}
	}
	slices.Sort(ids)
	return ids
}

const importToken = "import-test-token-0123456789"

// startService runs the built service against e on loopback port 0 with a token for
// the importer, and returns its gRPC address.
func startService(t *testing.T, bin string, e *esign, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.txt")
	if err := os.WriteFile(tokens, []byte("importer "+importToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "")
	cmd.Env = append(os.Environ(), append([]string{
		"ESIGN_BASE_URL=" + e.srv.URL, "ESIGN_APP_ID=import-app", "ESIGN_APP_SECRET=import-secret",
		"AUTH_TOKENS_FILE=" + tokens, "DB_PATH=" + filepath.Join(dir, "sub.db"),
	}, env...)...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	var log lockedBuffer
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			log.write(sc.Text())
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "serving" {
				addr <- m["grpc_addr"].(string)
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case err := <-exited:
		t.Fatalf("the service exited: %v\n%s", err, log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the service did not start\n%s", log.String())
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) write(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s + "\n")
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

// The 200-row input: rows built by internal/synthetic, every one naming the same two
// images (whose names carry a sentinel, as real file names carry people's names), and
// five broken on purpose.
const (
	rows        = 200
	frontImage  = "SENTINEL张三-身份证正面.png"
	backImage   = "SENTINEL张三-身份证反面.png"
	sentinelTag = "SENTINEL"
)

// invalidLines are the broken lines and the field each must be reported at.
var invalidLines = map[int]string{
	17:  "cardNo",               // wrong check character
	42:  "threeElements.mobile", // not a mobile number
	88:  "customBizId",          // missing
	123: "cardType",             // unknown enum value
	160: "cardPortraitFile",     // the image does not exist
}

type input struct {
	path string
	// personal are values from the rows that must never show in a report or a log.
	personal []string
}

func writeInput(t *testing.T, prefix string) input {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{frontImage: "sample-portrait.png", backImage: "sample-emblem.png"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/import", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := input{path: filepath.Join(dir, "rows.jsonl"), personal: []string{sentinelTag, "张三", "身份证"}}
	var buf bytes.Buffer
	img := synthetic.Images{CardPortrait: frontImage, CardNationalEmblem: backImage, Face: frontImage}
	for i := 1; i <= rows; i++ {
		m := synthetic.Row(i, fmt.Sprintf("%s-%04d", prefix, i), img)
		in.personal = append(in.personal, m["name"].(string), m["cardNo"].(string))
		for _, block := range []string{"threeElements", "bankCardFour"} {
			if b, ok := m[block].(map[string]any); ok {
				in.personal = append(in.personal, b["mobile"].(string))
				if c, ok := b["bankCard"].(string); ok {
					in.personal = append(in.personal, c)
				}
			}
		}
		switch i {
		case 17:
			no := m["cardNo"].(string)
			last := byte('0')
			if no[17] == '0' {
				last = '1'
			}
			m["cardNo"] = no[:17] + string(last)
		case 42:
			m["threeElements"].(map[string]any)["mobile"] = "12345"
		case 88:
			delete(m, "customBizId")
		case 123:
			m["cardType"] = "FOO"
		case 160:
			m["cardPortraitFile"] = "SENTINEL张三-missing.png"
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(in.path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// importer is one run of the built esign-import.
type importer struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
	code   int
}

func startImport(t *testing.T, bin string, args ...string) *importer {
	t.Helper()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(importToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	im := &importer{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	im.cmd = exec.Command(bin, append([]string{"-token-file", tok}, args...)...)
	// The upload ledger's default place, one per test, kept across the test's runs as on
	// one machine.
	im.cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cacheDir(t))
	im.cmd.Stderr = im.stderr
	if err := im.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := im.cmd.Wait()
		im.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			im.code = ee.ExitCode()
		} else if err != nil {
			im.code = -1
		}
		close(im.exited)
	}()
	t.Cleanup(func() {
		_ = im.cmd.Process.Kill()
		<-im.exited
	})
	return im
}

// wait waits for the run to end and returns its exit status.
func (im *importer) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-im.exited:
		return im.code
	case <-time.After(3 * time.Minute):
		t.Fatalf("esign-import did not finish\n%s", im.stderr.String())
		return 0
	}
}

func runImport(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	im := startImport(t, bin, args...)
	code := im.wait(t)
	return code, im.stderr.String()
}

var cacheDirs sync.Map // test name → its cache directory

// cacheDir is the test's own cache directory (XDG_CACHE_HOME).
func cacheDir(t *testing.T) string {
	if d, ok := cacheDirs.Load(t.Name()); ok {
		return d.(string)
	}
	d := t.TempDir()
	cacheDirs.Store(t.Name(), d)
	return d
}

type reportRow struct {
	line                                            int
	key, outcome, eviPointID, reason, fields, rules string
}

func readReport(t *testing.T, path string) ([]reportRow, string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("report is not CSV: %v", err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "line,customBizId,outcome,eviPointId,reason,fields,rules" {
		t.Fatalf("report header: %v", recs)
	}
	var out []reportRow
	for _, r := range recs[1:] {
		n, err := strconv.Atoi(r[0])
		if err != nil {
			t.Fatalf("report line %v", r)
		}
		out = append(out, reportRow{line: n, key: r[1], outcome: r[2], eviPointID: r[3], reason: r[4], fields: r[5], rules: r[6]})
	}
	// In input order, whatever order the rows finished in.
	if !slices.IsSortedFunc(out, func(a, b reportRow) int { return a.line - b.line }) {
		var lines []int
		for _, r := range out {
			lines = append(lines, r.line)
		}
		t.Errorf("report rows are not in input order: lines %v", lines)
	}
	return out, string(raw)
}

// outcomes counts a report's rows by outcome and checks its invalid rows are exactly
// invalidLines, each naming its field.
func outcomes(t *testing.T, rep []reportRow) map[string]int {
	t.Helper()
	n := map[string]int{}
	lines := map[int]bool{}
	for _, r := range rep {
		if lines[r.line] {
			t.Errorf("line %d reported twice", r.line)
		}
		lines[r.line] = true
		n[r.outcome]++
		want, bad := invalidLines[r.line]
		switch {
		case bad && (r.outcome != outcomeInvalid || !slices.Contains(strings.Fields(r.fields), want)):
			t.Errorf("line %d: %+v, want invalid at %s", r.line, r, want)
		case bad && r.rules == "":
			t.Errorf("line %d: invalid with no rule id: %+v", r.line, r)
		case !bad && r.outcome == outcomeInvalid:
			t.Errorf("line %d reported invalid: %+v", r.line, r)
		case (r.outcome == outcomeSucceeded || r.outcome == outcomeReplayed) && !strings.HasPrefix(r.eviPointID, "P"):
			t.Errorf("line %d: no eviPointId: %+v", r.line, r)
		}
	}
	return n
}

// assertNoPersonalData fails if any personal value of the input shows in text.
func assertNoPersonalData(t *testing.T, what, text string, in input) {
	t.Helper()
	for _, v := range in.personal {
		if strings.Contains(text, v) {
			t.Errorf("%s contains the personal value %q", what, v)
		}
	}
}

// -check names each broken line and its field, and opens no connection at all.
func TestCheckReportsInvalidLinesAndSendsNothing(t *testing.T) {
	_, bin := binaries(t)
	in := writeInput(t, "check")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	report := filepath.Join(t.TempDir(), "check.csv")
	code, stderr := runImport(t, bin, "-check", "-addr", ln.Addr().String(), "-report", report, in.path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	rep, raw := readReport(t, report)
	if len(rep) != len(invalidLines) {
		t.Errorf("report has %d rows, want the %d invalid ones:\n%s", len(rep), len(invalidLines), raw)
	}
	outcomes(t, rep)
	for line, field := range invalidLines {
		if !strings.Contains(stderr, fmt.Sprintf("line %d: invalid: %s [", line, field)) {
			t.Errorf("output does not name line %d at %s:\n%s", line, field, stderr)
		}
	}
	if !strings.Contains(stderr, "checked 200 rows: 195 valid, 5 invalid; nothing was sent") {
		t.Errorf("no summary:\n%s", stderr)
	}
	assertNoPersonalData(t, "the report", raw, in)
	assertNoPersonalData(t, "the output", stderr, in)
	// Nothing connected: any connection attempt would be waiting in the backlog.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Error("-check connected to the service")
	}
}

// One run creates exactly one evidence point per valid row, uploads each image once,
// keeps to the quota, rides out unknown outcomes; a second run creates nothing.
func TestRunCreatesEachOnceWithinTheQuota(t *testing.T) {
	svc, bin := binaries(t)
	e := newEsign(t)
	const qps = 20
	addr := startService(t, svc, e, fmt.Sprintf("ESIGN_QPS=%d", qps))
	in := writeInput(t, "run")
	// The first three e签宝 calls answer 503: an upload retried, or an evidence point
	// whose outcome is unknown, sent again under the same customBizId.
	e.sim.Inject(esignsim.Fault{Status: http.StatusServiceUnavailable, Times: 3})

	report := filepath.Join(t.TempDir(), "run1.csv")
	code, stderr := runImport(t, bin, "-addr", addr, "-concurrency", "16", "-report", report, in.path)
	if code != 1 { // five rows are invalid
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	rep, raw := readReport(t, report)
	if n := outcomes(t, rep); n[outcomeSucceeded]+n[outcomeReplayed] != 195 || n[outcomeInvalid] != 5 || len(rep) != rows {
		t.Errorf("outcomes %v in %d rows\n%s", n, len(rep), stderr)
	}
	if n := e.sim.Issued(); n != 195 {
		t.Errorf("e签宝 created %d evidence points, want 195", n)
	}
	calls, puts := e.snapshot()
	if puts != 2 {
		t.Errorf("%d images stored, want 2 (each image once)", puts)
	}
	assertNoPersonalData(t, "the report", raw, in)
	assertNoPersonalData(t, "the output", stderr, in)
	first := map[string]string{}
	for _, r := range rep {
		first[r.key] = r.eviPointID
	}

	// The quota, as e签宝 sees it: calls are counted when they arrive, in every window
	// of one second. The service's limiter starts with a full bucket (burst =
	// ESIGN_QPS), so the first second may carry up to twice the quota: windows are
	// counted from the end of that first second. Arrival times carry the delay, on a
	// loaded two-core machine, between the limiter's grant and the call reaching the
	// simulator (signing, scheduling): a call delayed by J lets a window catch J × qps
	// more grants. Up to 250 ms is allowed here, so a window may hold qps/4 + 1 more
	// than the quota; the mean rate after the first second, which such delays distort
	// only at its ends, must keep within 10 % of the quota.
	start := calls[0]
	worst, after := 0, 0
	for i, c := range calls {
		if c.Sub(start) < time.Second {
			continue
		}
		after++
		n := 0
		for _, d := range calls[i:] {
			if d.Sub(c) >= time.Second {
				break
			}
			n++
		}
		worst = max(worst, n)
	}
	if worst > qps+qps/4+1 {
		t.Errorf("%d e签宝 calls within one second, quota %d", worst, qps)
	}
	span := calls[len(calls)-1].Sub(start.Add(time.Second)).Seconds()
	if rate := float64(after-1) / span; rate > qps*1.1 {
		t.Errorf("%.1f e签宝 calls per second after the first second, quota %d", rate, qps)
	}
	t.Logf("%d e签宝 calls in %s, at most %d in a second after the first", len(calls), calls[len(calls)-1].Sub(start).Round(time.Millisecond), worst)

	// Again: every row is looked up and found done; nothing reaches e签宝.
	report2 := filepath.Join(t.TempDir(), "run2.csv")
	code, stderr = runImport(t, bin, "-addr", addr, "-report", report2, in.path)
	if code != 1 {
		t.Fatalf("second run: exit %d, want 1\n%s", code, stderr)
	}
	rep2, _ := readReport(t, report2)
	if n := outcomes(t, rep2); n[outcomeReplayed] != 195 {
		t.Errorf("second run: outcomes %v, want 195 replayed", n)
	}
	for _, r := range rep2 {
		if r.outcome == outcomeReplayed && r.eviPointID != first[r.key] {
			t.Errorf("line %d: replayed %s, first run %s", r.line, r.eviPointID, first[r.key])
		}
	}
	calls2, puts2 := e.snapshot()
	if len(calls2) != len(calls) || puts2 != puts || e.sim.Issued() != 195 {
		t.Errorf("second run reached e签宝: %d calls (was %d), %d uploads (was %d), %d evidence points",
			len(calls2), len(calls), puts2, puts, e.sim.Issued())
	}
}

// Interrupted (SIGINT), then killed (SIGKILL), then run to the end: exactly one evidence
// point per valid row, and every report complete for what its run did.
func TestInterruptedAndKilledRunsResume(t *testing.T) {
	svc, bin := binaries(t)
	e := newEsign(t)
	addr := startService(t, svc, e, "ESIGN_QPS=20")
	in := writeInput(t, "resume")
	waitIssued := func(n int, im *importer) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for e.sim.Issued() < n {
			select {
			case <-im.exited:
				t.Fatalf("esign-import ended before %d evidence points existed\n%s", n, im.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d evidence points after 2 minutes", e.sim.Issued())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// SIGINT: the rows in flight finish, the report holds every row done.
	report1 := filepath.Join(t.TempDir(), "interrupted.csv")
	im := startImport(t, bin, "-addr", addr, "-report", report1, in.path)
	waitIssued(30, im)
	if err := im.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := im.wait(t); code != 1 {
		t.Fatalf("interrupted run: exit %d, want 1\n%s", code, im.stderr.String())
	}
	issued := e.sim.Issued()
	if issued >= 195 {
		t.Fatalf("the run finished before the interrupt (%d evidence points)", issued)
	}
	rep1, _ := readReport(t, report1)
	n1 := outcomes(t, rep1)
	if n1[outcomeSucceeded] != issued || n1[outcomeFailed]+n1[outcomeUnknown] != 0 {
		t.Errorf("interrupted run: report %v, e签宝 created %d", n1, issued)
	}
	if !strings.Contains(im.stderr.String(), "rows not attempted: run the same command again to continue") {
		t.Errorf("no word of the rows left:\n%s", im.stderr.String())
	}

	// SIGKILL mid-way: nothing of the run's own is trusted afterwards.
	im = startImport(t, bin, "-addr", addr, in.path)
	waitIssued(issued+40, im)
	if err := im.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	im.wait(t)
	if n := e.sim.Issued(); n >= 195 {
		t.Fatalf("the run finished before SIGKILL (%d evidence points)", n)
	}

	// Resumed to the end.
	report3 := filepath.Join(t.TempDir(), "resumed.csv")
	code, stderr := runImport(t, bin, "-addr", addr, "-report", report3, in.path)
	if code != 1 {
		t.Fatalf("resumed run: exit %d, want 1\n%s", code, stderr)
	}
	rep3, _ := readReport(t, report3)
	n3 := outcomes(t, rep3)
	if n3[outcomeSucceeded]+n3[outcomeReplayed] != 195 || n3[outcomeReplayed] < issued+40 {
		t.Errorf("resumed run: %v", n3)
	}
	if n := e.sim.Issued(); n != 195 {
		t.Errorf("e签宝 created %d evidence points in all, want 195", n)
	}
	// The eviPointIds reported are exactly those e签宝 issued: none lost, none twice.
	var reported []string
	for _, r := range rep3 {
		if r.eviPointID != "" {
			reported = append(reported, r.eviPointID)
		}
	}
	slices.Sort(reported)
	if issuedIDs := e.issuedIDs(); !slices.Equal(reported, issuedIDs) {
		t.Errorf("reported %d eviPointIds, e签宝 issued %d (or different ones)", len(reported), len(issuedIDs))
	}
}

// writeTLS writes a CA and a server certificate for 127.0.0.1 signed by it into dir.
func writeTLS(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "esign-import test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "esign-evidence"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for path, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// As against a remote deployment: TLS verified against -cacert, a bearer token. The
// README's example file goes through whole; a wrong token stops the run.
func TestTLSAndTokenWithTheExampleFile(t *testing.T) {
	svc, bin := binaries(t)
	e := newEsign(t)
	caFile, certFile, keyFile := writeTLS(t, t.TempDir())
	addr := startService(t, svc, e, "TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile)

	report := filepath.Join(t.TempDir(), "example.csv")
	code, stderr := runImport(t, bin, "-addr", addr, "-cacert", caFile, "-report", report, "../../testdata/import/people.jsonl")
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, stderr)
	}
	rep, _ := readReport(t, report)
	if n := outcomes(t, rep); n[outcomeSucceeded] != 6 || e.sim.Issued() != 6 {
		t.Errorf("outcomes %v, %d evidence points; want 6 of each", n, e.sim.Issued())
	}
	if _, puts := e.snapshot(); puts != 2 {
		t.Errorf("%d images stored, want the 2 sample images once each", puts)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-right-token-0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr = runImport(t, bin, "-addr", addr, "-cacert", caFile, "-token-file", wrong, "../../testdata/import/people.jsonl")
	if code != 1 || !strings.Contains(stderr, "the service refused the credentials (UNAUTHENTICATED)") {
		t.Errorf("wrong token: exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "not-the-right-token") {
		t.Error("the output shows the token")
	}
}

// Off a terminal, a summary line comes every period.
func TestLineProgress(t *testing.T) {
	var out lockedBuffer
	tl := &tally{total: 10}
	tl.add(outcomeSucceeded)
	tl.add(outcomeInvalid)
	p := newLineProgress(&out, tl, 10*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "progress: 2/10 rows") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line in %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.stop()
	if s := out.String(); !strings.Contains(s, "succeeded 1, replayed 0, conflict 0, unverified 0, invalid 1, failed 0, unknown 0, retrying 0") {
		t.Errorf("line %q", s)
	}
}

// A row edited after its submission succeeded is a conflict, never "replayed": the run
// reports it with IDEMPOTENCY_KEY_REUSED, exits 1 and sends nothing to e签宝. Rows are
// reported in input order with the rule id of each violation. Without the ledger of the
// run that uploaded the images, a row cannot be shown to be unchanged: it is "unverified",
// and still nothing is sent.
func TestEditedRowIsAConflict(t *testing.T) {
	svc, bin := binaries(t)
	e := newEsign(t)
	addr := startService(t, svc, e)
	dir := t.TempDir()
	for _, f := range []string{"people.jsonl", "sample-portrait.png", "sample-emblem.png"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/import", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if f == "sample-portrait.png" { // an image no run has uploaded
			if err := os.WriteFile(filepath.Join(dir, "new-portrait.png"), append(b, 0), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	in := filepath.Join(dir, "people.jsonl")
	report1 := filepath.Join(t.TempDir(), "first.csv")
	if code, stderr := runImport(t, bin, "-addr", addr, "-report", report1, in); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	rep1, _ := readReport(t, report1)
	first := map[int]string{}
	for _, r := range rep1 {
		first[r.line] = r.eviPointID
	}
	calls1, puts1 := e.snapshot()

	// Line 3: another name. Line 5: another image the ledger knows. Line 6: an image
	// never uploaded. Line 8, after a blank line: a new row with a broken mobile number.
	raw, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	edit := func(i int, f func(m map[string]any)) {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i-1]), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		lines[i-1] = string(b)
	}
	edit(3, func(m map[string]any) { m["name"] = "王小明" })
	edit(5, func(m map[string]any) { m["cardPortraitFile"] = "sample-emblem.png" })
	edit(6, func(m map[string]any) { m["cardPortraitFile"] = "new-portrait.png" })
	var extra map[string]any
	_ = json.Unmarshal([]byte(lines[2]), &extra)
	extra["customBizId"] = "example-0000008"
	extra["threeElements"].(map[string]any)["mobile"] = "12345"
	b, _ := json.Marshal(extra)
	lines = append(lines, "", string(b))
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	report2 := filepath.Join(t.TempDir(), "second.csv")
	code, stderr := runImport(t, bin, "-addr", addr, "-concurrency", "3", "-report", report2, in)
	if code != 1 {
		t.Fatalf("second run: exit %d, want 1\n%s", code, stderr)
	}
	rep2, raw2 := readReport(t, report2)
	want := map[int][2]string{ // line → outcome, reason
		1: {outcomeReplayed, ""}, 2: {outcomeReplayed, ""}, 4: {outcomeReplayed, ""},
		3: {outcomeConflict, reasonKeyReused}, 5: {outcomeConflict, reasonKeyReused},
		6: {outcomeUnverified, reasonUploadsUnknown}, 8: {outcomeInvalid, reasonInvalidRequest},
	}
	if len(rep2) != len(want) {
		t.Errorf("second run: %d report rows, want %d:\n%s", len(rep2), len(want), raw2)
	}
	for _, r := range rep2 {
		w := want[r.line]
		if r.outcome != w[0] || r.reason != w[1] {
			t.Errorf("line %d: %s (%s), want %s (%s)", r.line, r.outcome, r.reason, w[0], w[1])
		}
		switch {
		case r.outcome == outcomeReplayed && r.eviPointID != first[r.line]:
			t.Errorf("line %d: replayed %s, first run %s", r.line, r.eviPointID, first[r.line])
		case r.outcome != outcomeReplayed && r.eviPointID != "":
			t.Errorf("line %d: %s with eviPointId %s", r.line, r.outcome, r.eviPointID)
		}
		if r.line == 6 && r.fields != "cardPortraitFile" {
			t.Errorf("line 6: fields %q, want the image not in the ledger", r.fields)
		}
		if r.line == 8 {
			m := regexp.MustCompile(`line 8: invalid: threeElements\.mobile \[([^\]]+)\]`).FindStringSubmatch(stderr)
			if m == nil || r.rules != m[1] || r.fields != "threeElements.mobile" {
				t.Errorf("line 8: report fields %q rules %q; the output says %v\n%s", r.fields, r.rules, m, stderr)
			}
		}
	}
	if !strings.Contains(stderr, "replayed 3, conflict 2, unverified 1, invalid 1") {
		t.Errorf("summary:\n%s", stderr)
	}
	calls2, puts2 := e.snapshot()
	if len(calls2) != len(calls1) || puts2 != puts1 || e.sim.Issued() != 6 {
		t.Errorf("the second run reached e签宝: %d calls (was %d), %d uploads (was %d), %d evidence points",
			len(calls2), len(calls1), puts2, puts1, e.sim.Issued())
	}

	// The unchanged first rows, from a machine without the first run's ledger: the file
	// IDs their requests were made with are unknown, so they are not claimed replayed.
	report3 := filepath.Join(t.TempDir(), "elsewhere.csv")
	code, stderr = runImport(t, bin, "-addr", addr, "-uploads", filepath.Join(t.TempDir(), "fresh.jsonl"), "-report", report3, in)
	if code != 1 {
		t.Fatalf("run without the ledger: exit %d, want 1\n%s", code, stderr)
	}
	rep3, _ := readReport(t, report3)
	for _, r := range rep3 {
		if r.line != 8 && r.outcome != outcomeUnverified {
			t.Errorf("without the ledger, line %d: %s (%s), want unverified", r.line, r.outcome, r.reason)
		}
	}
	calls3, puts3 := e.snapshot()
	if len(calls3) != len(calls1) || puts3 != puts1 || e.sim.Issued() != 6 {
		t.Errorf("the run without the ledger reached e签宝: %d calls, %d uploads, %d evidence points", len(calls3), puts3, e.sim.Issued())
	}
}

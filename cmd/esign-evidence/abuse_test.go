package main

// The abuse suite: attacks a caller holding one valid token could make, each bounded in
// count and time and sent only to loopback, against the built binary in demo mode. While
// an attack runs, a normal caller keeps calling and must be answered within
// normalCallBudget; afterwards the process's descriptors and memory must come back to
// their level and e签宝's circuit breaker must still be closed (read from /metrics).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

const (
	// normalCallBudget is the latency every normal call must meet while an attack runs.
	// Generous for a loaded 2-core machine running other tests in parallel; an exhausted
	// service fails calls or stalls for the attack's whole length, well past it.
	normalCallBudget = 3 * time.Second
	// probeEvery is how often the normal caller calls during an attack.
	probeEvery = 200 * time.Millisecond
	// fdSlack is how many descriptors above the level before the attack still count as
	// "back to the level" (pooled keep-alive connections of the normal caller, timers).
	fdSlack = 16
	// settleWithin bounds how long the process may take to come back to its level.
	settleWithin = 20 * time.Second

	abuseToken    = "abuse-token-0123456789abcdef"
	abuseNewToken = "abuse-new-token-0123456789ab"
	// shortToken is too short to accept; a refusal must not quote it.
	shortToken = "tiny-7f3a9c"
)

// target is the binary under attack and a normal caller of it.
type target struct {
	*running
	t     *testing.T
	token string
	conn  *grpc.ClientConn
	api   evidencev1.EvidenceServiceClient
	seed  []byte
	req   *evidencev1.CreatePersonalEvidencePointRequest
	http  *http.Client
}

// startTarget starts the binary in demo mode on loopback with callers authenticating by
// token, plus env.
func startTarget(t *testing.T, tokensFile string, env ...string) *target {
	t.Helper()
	if tokensFile == "" {
		tokensFile = writeTokens(t, "abuser "+abuseToken)
	}
	r := startBinary(t, buildBinary(t), append([]string{"AUTH_TOKENS_FILE=" + tokensFile}, env...), "-simulate")
	if r.adminAddr == "" {
		t.Fatal("no admin listener")
	}
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	req := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(seed, req); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tg := &target{running: r, t: t, token: abuseToken, conn: conn, api: evidencev1.NewEvidenceServiceClient(conn),
		seed: seed, req: req, http: &http.Client{Timeout: 10 * time.Second}}
	// Warm up: the first calls build pools and caches that are not an attack's doing.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := tg.normalCall(ctx)
		cancel()
		if err != nil {
			t.Fatalf("warm-up call: %v\n%s", err, r.stderr)
		}
	}
	return tg
}

func writeTokens(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (tg *target) auth(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// normalCall is what a well-behaved caller does: create an evidence point over gRPC and
// over REST.
func (tg *target) normalCall(ctx context.Context) error {
	if _, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, tg.token), tg.req); err != nil {
		return fmt.Errorf("gRPC: %w", err)
	}
	code, body, err := tg.rest(ctx, http.MethodPost, "/v3/evidence/evi-point/psn-realname", tg.seed, tg.token)
	if err != nil {
		return fmt.Errorf("REST: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("REST: HTTP %d %s", code, body)
	}
	return nil
}

func (tg *target) rest(ctx context.Context, method, path string, body []byte, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+tg.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(path, "/v1/files") {
		req.Header.Set("Content-Type", "application/octet-stream") // a file's bytes
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := tg.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// fds is the number of open descriptors of the process.
func (tg *target) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", tg.cmd.Process.Pid))
	if err != nil {
		tg.t.Fatalf("reading the process's descriptors: %v", err)
	}
	return len(ents)
}

// rssKiB is the process's resident memory.
func (tg *target) rssKiB() int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", tg.cmd.Process.Pid))
	if err != nil {
		tg.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	tg.t.Fatal("no VmRSS")
	return 0
}

// metrics reads the admin listener's /metrics.
func (tg *target) metrics() string {
	tg.t.Helper()
	resp, err := http.Get("http://" + tg.adminAddr + "/metrics")
	if err != nil {
		tg.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric is the value of the sample whose name and labels are exactly series (as
// /metrics prints them), 0 when absent.
func metric(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// metricSum adds every sample of a metric whose line contains all of parts.
func metricSum(body, name string, parts ...string) float64 {
	sum := 0.0
next:
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		sum += f
	}
	return sum
}

// waitUntil polls cond until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (%s)", what, within, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prober is the normal caller during an attack.
type prober struct {
	mu       sync.Mutex
	calls    int
	failures []string
	slowest  time.Duration
	stop     chan struct{}
	done     chan struct{}
}

func (tg *target) startProber() *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for first := true; ; first = false {
			if !first {
				select {
				case <-p.stop:
					return
				case <-tick.C:
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), normalCallBudget)
			start := time.Now()
			err := tg.normalCall(ctx)
			took := time.Since(start)
			cancel()
			p.mu.Lock()
			p.calls++
			if took > p.slowest {
				p.slowest = took
			}
			if err != nil && len(p.failures) < 5 {
				p.failures = append(p.failures, fmt.Sprintf("after %v: %v", took.Round(time.Millisecond), err))
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *prober) finish(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("normal caller during the attack: %d calls, slowest %v", p.calls, p.slowest.Round(time.Millisecond))
	if p.calls == 0 {
		t.Error("the normal caller made no call during the attack")
	}
	if len(p.failures) > 0 {
		t.Errorf("normal calls failed during the attack (budget %v): %s", normalCallBudget, strings.Join(p.failures, "; "))
	}
}

// underAttack runs attack while a normal caller calls, then checks that the service
// comes back: descriptors to their level, memory near it, the breaker closed.
func (tg *target) underAttack(attack func()) {
	t := tg.t
	t.Helper()
	fds0, rss0 := tg.fds(), tg.rssKiB()
	p := tg.startProber()
	attack()
	p.finish(t)
	peakFDs, peakRSS := tg.fds(), tg.rssKiB()
	waitUntil(t, settleWithin, "descriptors back to their level", func() (bool, string) {
		n := tg.fds()
		return n <= fds0+fdSlack, fmt.Sprintf("%d open, %d before", n, fds0)
	})
	// Go returns freed memory to the system gradually; what must not happen is growth
	// that stays. The bound is twice the level or 64 MiB above it, whichever is larger.
	limit := max(2*rss0, rss0+64<<10)
	waitUntil(t, settleWithin, "memory back near its level", func() (bool, string) {
		n := tg.rssKiB()
		return n <= limit, fmt.Sprintf("RSS %d KiB, %d before, limit %d", n, rss0, limit)
	})
	body := tg.metrics()
	if v := metric(body, "esign_evidence_circuit_breaker_state"); v != 0 {
		t.Errorf("e签宝's circuit breaker is not closed after the attack: state %v", v)
	}
	if !strings.Contains(body, "esign_evidence_circuit_breaker_state 0") {
		t.Errorf("no breaker state in /metrics")
	}
	t.Logf("descriptors %d before, %d after the attack, %d settled; RSS %d KiB before, %d after, %d settled",
		fds0, peakFDs, tg.fds(), rss0, peakRSS, tg.rssKiB())
	ctx, cancel := context.WithTimeout(context.Background(), normalCallBudget)
	defer cancel()
	if err := tg.normalCall(ctx); err != nil {
		t.Errorf("normal call after the attack: %v", err)
	}
}

// hangup sends SIGHUP and waits for the log line that says what came of it.
func (tg *target) hangup(want string) {
	t := tg.t
	t.Helper()
	before := strings.Count(tg.stderr.String(), want)
	if err := tg.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "log line "+want, func() (bool, string) {
		select {
		case err := <-tg.exited:
			t.Fatalf("the process exited on SIGHUP: %v\n%s", err, tg.stderr)
		default:
		}
		return strings.Count(tg.stderr.String(), want) > before, ""
	})
}

// TestAbuseSIGHUPReloadsTokens: SIGHUP re-reads AUTH_TOKENS_FILE without a restart; a
// broken file keeps the previous tokens and the log says why; the process never exits.
func TestAbuseSIGHUPReloadsTokens(t *testing.T) {
	file := writeTokens(t, "abuser "+abuseToken)
	tg := startTarget(t, file)
	check := func(token string, want int) {
		t.Helper()
		code, body, err := tg.rest(context.Background(), http.MethodGet, "/v1/submissions/none", nil, token)
		if err != nil || code != want {
			t.Errorf("token %.10s…: HTTP %d (want %d) %v %s", token, code, want, err, body)
		}
	}
	check(abuseNewToken, http.StatusUnauthorized)
	tg.underAttack(func() {
		if err := os.WriteFile(file, []byte("abuser "+abuseToken+"\nnewcomer "+abuseNewToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tg.hangup("AUTH_TOKENS_FILE reloaded")
		check(abuseNewToken, http.StatusNotFound) // authenticated: the key is unknown
		check(abuseToken, http.StatusNotFound)
		reloadOK := `esign_evidence_config_last_reload_successful{files="auth_tokens"}`
		if v := metric(tg.metrics(), reloadOK); v != 1 {
			t.Errorf("%s = %v after a good reload", reloadOK, v)
		}

		// The last one swaps the fields: a token (with a '/', as base64 has) stands where
		// the caller name goes.
		for _, broken := range []string{"newcomer " + shortToken + "\n", "", "bad/name " + abuseNewToken + "\n",
			abuseNewToken + "/x newcomer-0123456789abcdef\n"} {
			if err := os.WriteFile(file, []byte(broken), 0o600); err != nil {
				t.Fatal(err)
			}
			tg.hangup("the previous tokens stay in force")
			check(abuseNewToken, http.StatusNotFound)
			check(abuseToken, http.StatusNotFound)
			if v := metric(tg.metrics(), reloadOK); v != 0 {
				t.Errorf("%s = %v after a refused reload", reloadOK, v)
			}
		}
		if got := metric(tg.metrics(), `esign_evidence_config_reload_failures_total{files="auth_tokens"}`); got != 4 {
			t.Errorf("%v refused reloads counted, want 4", got)
		}
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		tg.hangup("the previous tokens stay in force")
		check(abuseToken, http.StatusNotFound)
	})
	if strings.Contains(tg.stderr.String(), shortToken) || strings.Contains(tg.stderr.String(), abuseNewToken) {
		t.Errorf("the log quotes a token:\n%s", tg.stderr)
	}
}

// TestAbuseAdminListener: the admin listener serves metrics but no profiler unless
// ADMIN_PPROF=true, and ADMIN_ADDR set but empty means no admin listener at all.
func TestAbuseAdminListener(t *testing.T) {
	tg := startTarget(t, "")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline", "/debug/pprof/trace"} {
		resp, err := http.Get("http://" + tg.adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s without ADMIN_PPROF: HTTP %d", path, resp.StatusCode)
		}
	}

	withPprof := startTarget(t, "", "ADMIN_PPROF=true")
	resp, err := http.Get("http://" + withPprof.adminAddr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline with ADMIN_PPROF=true: HTTP %d", resp.StatusCode)
	}

	none := startBinaryArgs(t, buildBinary(t), []string{"ADMIN_ADDR=", "AUTH_TOKENS_FILE=" + writeTokens(t, "abuser "+abuseToken)},
		"-simulate", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0")
	if none.adminAddr != "" {
		t.Errorf("ADMIN_ADDR= (set, empty) still serves admin on %s", none.adminAddr)
	}
	if strings.Contains(none.stderr.String(), `:9091"`) {
		t.Errorf("ADMIN_ADDR= fell back to the default:\n%s", none.stderr)
	}
}

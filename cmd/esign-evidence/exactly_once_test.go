package main

// Exactly-once under real timing and store faults, against the built binary: replicas
// are separate processes, e签宝 is the simulator behind a counting recorder, and the
// PostgreSQL tests that stop or freeze the database run their own server.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// esign is the simulator behind a recorder of every evidence-point request it receives.
type esign struct {
	sim *esignsim.Simulator
	url string
	mu  sync.Mutex
	// override, when set, answers every evidence-point request instead of the simulator.
	override func(w http.ResponseWriter)

	calls []esignCall
	// unstamped counts the calls recorded when read, for want of a kernel timestamp.
	unstamped int
}

// excuses is stalls when some calls were recorded when read (they bunch after a pause of
// this process), and nil when every call was counted at its arrival: a pause of this
// process then moves no call, and excuses no window.
func (e *esign) excuses(stalls *stallWatch) *stallWatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unstamped == 0 {
		return nil
	}
	return stalls
}

type esignCall struct {
	at          time.Time
	customBizID string
}

func newEsign(t *testing.T) *esign {
	e := &esign{sim: esignsim.New(esignsim.Config{AppID: "eo-app", AppSecret: "eo-secret"})}
	// A call is counted at its arrival (the kernel's receive timestamp), as e签宝's edge
	// counts it, not when this busy test process gets round to reading it.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		at, ok := esignsim.TakeArrival(r.Context()) // for every request: see TakeArrival
		if !ok {
			at = time.Now()
		}
		if r.URL.Path == upstream.PathPsnRealname {
			var m struct {
				CustomBizID string `json:"customBizId"`
			}
			_ = json.Unmarshal(body, &m)
			e.mu.Lock()
			e.calls = append(e.calls, esignCall{at: at, customBizID: m.CustomBizID})
			if !ok {
				e.unstamped++
			}
			override := e.override
			e.mu.Unlock()
			if override != nil {
				override(w)
				return
			}
		}
		e.sim.ServeHTTP(w, r)
	}))
	l, err := esignsim.ListenArrivals("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Config.ConnContext = esignsim.ArrivalConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// count is how many evidence-point requests with customBizId id e签宝 received ("" for
// every request).
func (e *esign) count(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if id == "" || c.customBizID == id {
			n++
		}
	}
	return n
}

func (e *esign) times() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]time.Time, len(e.calls))
	for i, c := range e.calls {
		out[i] = c.at
	}
	return out
}

// replicaEnv is the environment of one replica against e: its own journal, the shared
// fingerprint key, and store (DB_PATH=… or DATABASE_URL=…).
func replicaEnv(t *testing.T, e *esign, store string, extra ...string) []string {
	return append([]string{
		"ESIGN_BASE_URL=" + e.url, "ESIGN_APP_ID=eo-app", "ESIGN_APP_SECRET=eo-secret", "AUTH_DISABLED=true",
		"FINGERPRINT_KEY=exactly-once-fingerprint-key", "JOURNAL_PATH=" + filepath.Join(t.TempDir(), "journal"), store,
	}, extra...)
}

func seedWithKey(t *testing.T, id string) []byte {
	t.Helper()
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		return seed
	}
	b, _ := json.Marshal(id)
	return bytes.Replace(seed, []byte(`"eviName"`), []byte(`"customBizId": `+string(b)+`, "eviName"`), 1)
}

type answer struct {
	code int
	body map[string]any
	took time.Duration
}

func (a answer) reason() string {
	details, _ := a.body["details"].([]any)
	for _, d := range details {
		if m, ok := d.(map[string]any); ok && m["reason"] != nil {
			if s, ok := m["reason"].(string); ok {
				return s
			}
		}
	}
	return ""
}

func (a answer) id() string { s, _ := a.body["eviPointId"].(string); return s }

// post sends body to the replica's REST endpoint with deadline as the call's deadline
// (Grpc-Timeout, which grpc-gateway passes on); 0 means none.
func post(r *running, body []byte, deadline time.Duration) answer {
	c := http.Client{}
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if deadline > 0 {
		req.Header.Set("Grpc-Timeout", fmt.Sprintf("%dm", deadline.Milliseconds()))
		c.Timeout = deadline + 5*time.Second
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return answer{took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return answer{code: resp.StatusCode, body: m, took: time.Since(start)}
}

func submissionState(t *testing.T, r *running, id string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + r.httpAddr + "/v1/submissions/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// eventually waits for cond, up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stores runs f against the embedded store (one replica: the second "replica" is the
// same process) and against PostgreSQL (two replicas).
func stores(t *testing.T, f func(t *testing.T, e *esign, start func(extra ...string) (a, b *running))) {
	t.Run("bolt", func(t *testing.T) {
		e := newEsign(t)
		db := "DB_PATH=" + filepath.Join(t.TempDir(), "sub.db")
		f(t, e, func(extra ...string) (*running, *running) {
			a := startBinary(t, buildBinary(t), replicaEnv(t, e, db, extra...))
			return a, a
		})
	})
	t.Run("postgres", func(t *testing.T) {
		e := newEsign(t)
		db := "DATABASE_URL=" + pgtest.DSN(t)
		f(t, e, func(extra ...string) (*running, *running) {
			a := startBinary(t, buildBinary(t), replicaEnv(t, e, db, extra...))
			b := startBinary(t, buildBinary(t), replicaEnv(t, e, db, extra...))
			return a, b
		})
	})
}

// Why 1: SUBMISSION_LEASE=2s, ESIGN_TIMEOUT=10s, e签宝 answering in 4 s; K to replica A,
// again to replica B 2.5 s later: one e签宝 call, and both callers get the same ID (the
// holder renews its lease while its call is in flight).
func TestExactlyOnceLeaseShorterThanTheCall(t *testing.T) {
	stores(t, func(t *testing.T, e *esign, start func(extra ...string) (a, b *running)) {
		a, b := start("SUBMISSION_LEASE=2s", "STORE_TIMEOUT=1s", "ESIGN_TIMEOUT=10s")
		e.sim.Inject(esignsim.Fault{Latency: 4 * time.Second, Times: 1})
		body := seedWithKey(t, "lease-short-1")
		first := make(chan answer, 1)
		go func() { first <- post(a, body, 0) }()
		eventually(t, 10*time.Second, "the first call reaching e签宝", func() bool { return e.count("lease-short-1") == 1 })
		time.Sleep(2500 * time.Millisecond) // past the 2 s lease
		second := post(b, body, 0)
		one := <-first
		if one.code != 200 || second.code != 200 || one.id() == "" || one.id() != second.id() {
			t.Fatalf("first %d %v, second %d %v: both must get the same eviPointId", one.code, one.body, second.code, second.body)
		}
		if n := e.count("lease-short-1"); n != 1 {
			t.Errorf("e签宝 received %d calls for one customBizId", n)
		}
	})
}

// Start-up refuses a lease that could not be renewed in time, naming the settings.
func TestStartupRefusesLeaseShorterThanStoreBound(t *testing.T) {
	e := newEsign(t)
	cmd := execBinary(t, replicaEnv(t, e, "DB_PATH="+filepath.Join(t.TempDir(), "sub.db"), "SUBMISSION_LEASE=2s", "STORE_TIMEOUT=2s"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("started:\n%s", out)
	}
	for _, want := range []string{"SUBMISSION_LEASE", "STORE_TIMEOUT"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not name %s:\n%s", want, out)
		}
	}
}

// With DATABASE_URL the fingerprint key is required: derived from the app secret, it
// would change with every rotation of the secret.
func TestStartupRequiresFingerprintKeyWithDatabase(t *testing.T) {
	e := newEsign(t)
	env := []string{"ESIGN_BASE_URL=" + e.url, "ESIGN_APP_ID=eo-app", "ESIGN_APP_SECRET=eo-secret", "AUTH_DISABLED=true",
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none"}
	out, err := execBinary(t, env).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FINGERPRINT_KEY") {
		t.Fatalf("started or did not name FINGERPRINT_KEY (%v):\n%s", err, out)
	}
}

// Why 1, second case: ESIGN_QPS=2 and a queue of keyless calls ahead; K waits behind the
// limiter for longer than the lease, on two replicas. K is taken only once admitted, so
// it is sent once and both callers get the same ID.
func TestExactlyOnceQueuedBehindTheLimiterPastTheLease(t *testing.T) {
	stores(t, func(t *testing.T, e *esign, start func(extra ...string) (a, b *running)) {
		a, b := start("SUBMISSION_LEASE=2s", "STORE_TIMEOUT=1s", "ESIGN_QPS=2")
		keyless := seedWithKey(t, "")
		var wg sync.WaitGroup
		for i := range 12 { // 6 s of quota at 2/s, across the replicas
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := a
				if i%2 == 1 {
					r = b
				}
				post(r, keyless, 30*time.Second)
			}()
		}
		body := seedWithKey(t, "queued-1")
		answers := make(chan answer, 2)
		time.Sleep(200 * time.Millisecond)
		go func() { answers <- post(a, body, 30*time.Second) }()
		time.Sleep(2500 * time.Millisecond)
		go func() { answers <- post(b, body, 30*time.Second) }()
		one, two := <-answers, <-answers
		wg.Wait()
		if one.code != 200 || two.code != 200 || one.id() != two.id() {
			t.Fatalf("answers %d %v and %d %v: both must get the same eviPointId", one.code, one.body, two.code, two.body)
		}
		if n := e.count("queued-1"); n != 1 {
			t.Errorf("e签宝 received %d calls for one customBizId", n)
		}
	})
}

// Why 5: a NUL (or newline) in customBizId is the caller's error, a 400 naming the
// field, never a store error; nothing is sent.
func TestCustomBizIDWithControlCharacters(t *testing.T) {
	stores(t, func(t *testing.T, e *esign, start func(extra ...string) (a, b *running)) {
		a, _ := start()
		for _, id := range []string{"order\x0042", "order-42\n", "tab\there"} {
			got := post(a, seedWithKey(t, id), 0)
			if got.code != 400 || got.reason() != "INVALID_REQUEST" || !strings.Contains(toJSON(got.body), `"field":"customBizId"`) {
				t.Errorf("%q: %d %v", id, got.code, got.body)
			}
		}
		resp, err := http.Get("http://" + a.httpAddr + "/v1/submissions/order%0042")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("GetSubmission with NUL: %d", resp.StatusCode)
		}
		if n := e.count(""); n != 0 {
			t.Errorf("e签宝 received %d calls", n)
		}
	})
}

// Why 6: e签宝 answering an undocumented 202 may have created the evidence point: the
// caller is told the outcome is unknown (not retry-safe) and the record says so; a
// retry is then handled as after any unknown outcome.
func TestUndocumented202IsOutcomeUnknown(t *testing.T) {
	stores(t, func(t *testing.T, e *esign, start func(extra ...string) (a, b *running)) {
		a, b := start("UNKNOWN_OUTCOME_RETRY=refuse")
		e.sim.Inject(esignsim.Fault{Status: 202, Times: 1})
		body := seedWithKey(t, "accepted-1")
		got := post(a, body, 0)
		if got.code != 503 || got.reason() != "ESIGN_OUTCOME_UNKNOWN" || !strings.Contains(toJSON(got.body), `"retry_safe":"false"`) ||
			!strings.Contains(toJSON(got.body), `"cause":"http_202"`) {
			t.Fatalf("202: %d %v", got.code, got.body)
		}
		if st := submissionState(t, b, "accepted-1"); st["state"] != "SUBMISSION_STATE_OUTCOME_UNKNOWN" {
			t.Fatalf("recorded %v", st)
		}
		if again := post(b, body, 0); again.code != 400 || again.reason() != "OUTCOME_UNKNOWN_RETRY_REFUSED" {
			t.Fatalf("retry: %d %v", again.code, again.body)
		}
		if n := e.count("accepted-1"); n != 1 {
			t.Errorf("e签宝 received %d calls", n)
		}
	})
}

// Why 2: e签宝 answers in 3 s; PostgreSQL is stopped at 1 s and started at 4 s. The
// caller gets its ID, the other replica cannot send the key meanwhile, and the ID ends up
// recorded: written back by the replica once the store answers again, or, when the
// replica is killed before that, replayed from its journal at start-up. A retry on the
// other replica replays it; e签宝 got one call.
func TestExactlyOnceStoreStoppedDuringTheCall(t *testing.T) {
	for _, killed := range []bool{false, true} {
		name := "replica keeps running"
		if killed {
			name = "replica killed before the store is back"
		}
		t.Run(name, func(t *testing.T) {
			pg := pgtest.Dedicated(t)
			e := newEsign(t)
			db := "DATABASE_URL=" + pg.DSN()
			aEnv := replicaEnv(t, e, db)
			a := startBinary(t, buildBinary(t), aEnv)
			b := startBinary(t, buildBinary(t), replicaEnv(t, e, db))
			e.sim.Inject(esignsim.Fault{Latency: 3 * time.Second, Times: 1})
			body := seedWithKey(t, "store-down-1")
			first := make(chan answer, 1)
			go func() { first <- post(a, body, 0) }()
			eventually(t, 10*time.Second, "the call reaching e签宝", func() bool { return e.count("store-down-1") == 1 })
			stopped := time.Now()
			time.Sleep(time.Second)
			pg.Stop()
			got := <-first
			if got.code != 200 || got.id() == "" {
				t.Fatalf("the caller: %d %v", got.code, got.body)
			}
			// Until it is recorded, nobody sends the key again.
			if during := post(b, body, 0); during.code != 503 || during.reason() != "STORE_UNAVAILABLE" {
				t.Errorf("the other replica during the outage: %d %v", during.code, during.body)
			}
			if killed {
				// The result waits in the journal; the replica dies before the store is back.
				kill(t, a)
			}
			time.Sleep(time.Until(stopped.Add(4 * time.Second)))
			pg.Start()
			if killed {
				startBinary(t, buildBinary(t), aEnv)
			}
			eventually(t, 20*time.Second, "the result recorded", func() bool {
				return submissionState(t, b, "store-down-1")["state"] == "SUBMISSION_STATE_SUCCEEDED"
			})
			if st := submissionState(t, b, "store-down-1"); st["eviPointId"] != got.id() {
				t.Fatalf("recorded %v, the caller was told %s", st, got.id())
			}
			if again := post(b, body, 0); again.code != 200 || again.id() != got.id() || again.body["replayed"] != true {
				t.Fatalf("retry: %d %v", again.code, again.body)
			}
			if n := e.count("store-down-1"); n != 1 {
				t.Errorf("e签宝 received %d calls", n)
			}
		})
	}
}

// A replica killed while it still retries the store with e签宝's answer in hand keeps
// the answer: it is journaled the moment the first write fails, and replayed at the
// restart. e签宝 answers in 2 s; PostgreSQL is frozen before that, so the write hangs
// until STORE_TIMEOUT (1 s) and is retried; the replica is killed 1.6 s after the answer,
// in the middle of those retries (before, the journal was written only after them: the
// key stayed in progress and was sent again after the grace, the first id recorded
// nowhere; found by internal/simulation).
func TestExactlyOnceKilledWhileRetryingTheStore(t *testing.T) {
	pg := pgtest.Dedicated(t)
	e := newEsign(t)
	db := "DATABASE_URL=" + pg.DSN()
	aEnv := replicaEnv(t, e, db, "STORE_TIMEOUT=1s")
	a := startBinary(t, buildBinary(t), aEnv)
	b := startBinary(t, buildBinary(t), replicaEnv(t, e, db, "STORE_TIMEOUT=1s"))
	e.sim.Inject(esignsim.Fault{Latency: 2 * time.Second, Times: 1})
	body := seedWithKey(t, "killed-retrying-1")
	go post(a, body, 0) // its caller is never answered: the replica dies first
	eventually(t, 10*time.Second, "the call reaching e签宝", func() bool { return e.count("killed-retrying-1") == 1 })
	sent := time.Now()
	pg.Freeze()
	time.Sleep(time.Until(sent.Add(3600 * time.Millisecond)))
	kill(t, a)
	pg.Thaw()
	startBinary(t, buildBinary(t), aEnv)
	eventually(t, 20*time.Second, "the result recorded", func() bool {
		return submissionState(t, b, "killed-retrying-1")["state"] == "SUBMISSION_STATE_SUCCEEDED"
	})
	st := submissionState(t, b, "killed-retrying-1")
	if again := post(b, body, 0); again.code != 200 || again.id() != st["eviPointId"] || again.body["replayed"] != true {
		t.Fatalf("retry: %d %v, recorded %v", again.code, again.body, st)
	}
	if n := e.count("killed-retrying-1"); n != 1 {
		t.Errorf("e签宝 received %d calls", n)
	}
}

// Why 4: a frozen PostgreSQL (SIGSTOP) holds no call: a keyed call without a deadline
// fails within the store bound, retry-safe, health stays SERVING and keyless calls
// still work; after SIGCONT keyed calls work again.
func TestFrozenStore(t *testing.T) {
	pg := pgtest.Dedicated(t)
	e := newEsign(t)
	a := startBinary(t, buildBinary(t), replicaEnv(t, e, "DATABASE_URL="+pg.DSN(), "STORE_TIMEOUT=1s"))
	if got := post(a, seedWithKey(t, "frozen-0"), 0); got.code != 200 {
		t.Fatalf("before: %d %v", got.code, got.body)
	}
	pg.Freeze()
	got := post(a, seedWithKey(t, "frozen-1"), 30*time.Second)
	if got.code != 503 || got.reason() != "STORE_UNAVAILABLE" || !strings.Contains(toJSON(got.body), `"retry_safe":"true"`) {
		t.Fatalf("keyed call on a frozen store: %d %v after %v", got.code, got.body, got.took)
	}
	if got.took > 8*time.Second {
		t.Errorf("the keyed call took %v; store operations are bounded by STORE_TIMEOUT=1s", got.took)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a.httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	hb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(hb), "SERVING") {
		t.Errorf("health while the store is frozen: %d %s", resp.StatusCode, hb)
	}
	if kl := post(a, seedWithKey(t, ""), 30*time.Second); kl.code != 200 || kl.id() == "" {
		t.Errorf("keyless call on a frozen store: %d %v", kl.code, kl.body)
	}
	if n := e.count("frozen-1"); n != 0 {
		t.Errorf("e签宝 received %d calls for the refused key", n)
	}
	pg.Thaw()
	eventually(t, 20*time.Second, "keyed calls after SIGCONT", func() bool {
		return post(a, seedWithKey(t, "frozen-1"), 10*time.Second).code == 200
	})
	if n := e.count("frozen-1"); n != 1 {
		t.Errorf("e签宝 received %d calls for the key", n)
	}
}

// Why 3: more keyless calls than the quota serves, each with a 1.5 s deadline. A call is
// started only when its caller's remaining deadline covers it (ESIGN_MIN_REMAINING), so
// every evidence point e签宝 creates reaches a caller: e签宝's calls equal the callers'
// successes, and the rest are refused unsent (RATE_LIMITED, retry-safe).
func TestNoCallStartedThatCannotMeetItsDeadline(t *testing.T) {
	e := newEsign(t)
	a := startBinary(t, buildBinary(t), replicaEnv(t, e, "DB_PATH="+filepath.Join(t.TempDir(), "sub.db"), "ESIGN_QPS=5"))
	e.sim.Inject(esignsim.Fault{Latency: 100 * time.Millisecond})
	body := seedWithKey(t, "")
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 60 { // 20/s for 3 s against a quota of 5/s
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := post(a, body, 1500*time.Millisecond)
			mu.Lock()
			codes[got.code]++
			mu.Unlock()
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("answers by HTTP status: %v; e签宝 calls: %d", codes, e.count(""))
	if n := e.count(""); n != codes[200] {
		t.Errorf("e签宝 created %d evidence points but callers received %d", n, codes[200])
	}
	if codes[200] == 0 || codes[429] == 0 || codes[200]+codes[429] != 60 {
		t.Errorf("want successes and RATE_LIMITED refusals only: %v", codes)
	}
}

// Rotating the app secret does not change idempotency: the embedded store keeps its own
// fingerprint key, so a retry after the rotation is still a replay.
func TestAppSecretRotationKeepsIdempotency(t *testing.T) {
	e := newEsign(t)
	db := filepath.Join(t.TempDir(), "sub.db")
	env := func(secret string) []string {
		return []string{"ESIGN_BASE_URL=" + e.url, "ESIGN_APP_ID=eo-app", "ESIGN_APP_SECRET=" + secret, "AUTH_DISABLED=true", "DB_PATH=" + db}
	}
	a := startBinary(t, buildBinary(t), env("eo-secret"))
	body := seedWithKey(t, "rotate-1")
	first := post(a, body, 0)
	if first.code != 200 {
		t.Fatalf("first: %d %v", first.code, first.body)
	}
	kill(t, a)
	b := startBinary(t, buildBinary(t), env("eo-secret-rotated"))
	again := post(b, body, 0)
	if again.code != 200 || again.body["replayed"] != true || again.id() != first.id() {
		t.Fatalf("after rotating the app secret: %d %v", again.code, again.body)
	}
}

// execBinary is the binary with env (on loopback port 0), not started.
func execBinary(t *testing.T, env []string) *exec.Cmd {
	cmd := exec.Command(buildBinary(t), "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// quotaRun drives each replica at 40 calls/s for d and returns e签宝's call times.
func quotaRun(t *testing.T, replicas []*running, e *esign, d time.Duration) []time.Time {
	body := seedWithKey(t, "")
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for _, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			var calls sync.WaitGroup
			for time.Now().Before(stop) {
				<-tick.C
				calls.Add(1)
				go func() {
					defer calls.Done()
					req, _ := http.NewRequest(http.MethodPost, "http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					// The caller's deadline reaches the service (grpc-gateway reads
					// Grpc-Timeout), so a call the quota cannot serve in time is refused
					// at once instead of holding a slot it will not use.
					req.Header.Set("Grpc-Timeout", "2S")
					resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			calls.Wait()
		}()
	}
	wg.Wait()
	return e.times()
}

// perSecond counts calls in consecutive 1 s windows from the first call.
func perSecond(times []time.Time) []int {
	if len(times) == 0 {
		return nil
	}
	t0 := times[0]
	for _, t := range times {
		if t.Before(t0) {
			t0 = t
		}
	}
	var out []int
	for _, t := range times {
		w := int(t.Sub(t0) / time.Second)
		for len(out) <= w {
			out = append(out, 0)
		}
		out[w]++
	}
	return out
}

// Why 7: the quota is the app's, shared by every replica through PostgreSQL. Two
// replicas with ESIGN_QPS=20, each driven at 40/s for 10 s: e签宝 sees at most 20 calls
// in any 1 s window, at any offset, the first included (no burst). One replica alone at
// 40/s uses the whole quota: at least 16/s.
func TestQuotaSharedByReplicas(t *testing.T) {
	const drive = 10 * time.Second
	t.Run("two replicas", func(t *testing.T) {
		t.Parallel()
		stalls := watchStalls(t)
		e := newEsign(t)
		db := "DATABASE_URL=" + pgtest.DSN(t)
		a := startBinary(t, buildBinary(t), replicaEnv(t, e, db, "ESIGN_QPS=20"))
		b := startBinary(t, buildBinary(t), replicaEnv(t, e, db, "ESIGN_QPS=20"))
		times := quotaRun(t, []*running{a, b}, e, drive)
		windows := perSecond(times)
		t.Logf("e签宝 calls per second: %v", windows)
		if len(windows) < 9 {
			t.Fatalf("only %d windows", len(windows))
		}
		checkWindows(t, times, 20, sharedQuotaExcuses(stalls), "two replicas")
	})
	t.Run("one replica alone", func(t *testing.T) {
		t.Parallel()
		e := newEsign(t)
		a := startBinary(t, buildBinary(t), replicaEnv(t, e, "DATABASE_URL="+pgtest.DSN(t), "ESIGN_QPS=20"))
		windows := perSecond(quotaRun(t, []*running{a}, e, drive))
		t.Logf("e签宝 calls per second: %v", windows)
		full := windows[1:min(len(windows), 9)]
		sum := 0
		for _, n := range full {
			sum += n
		}
		if len(full) < 8 || float64(sum)/float64(len(full)) < 16 {
			t.Errorf("one busy replica reached %d calls in %d s, want at least 16/s", sum, len(full))
		}
	})
}

// Why 8, first half: records are not kept forever. Submissions last changed longer ago
// than SUBMISSION_RETENTION are removed by the running service (both stores); recent
// ones stay.
func TestRetentionRemovesOldSubmissions(t *testing.T) {
	put := func(t *testing.T, s submission.Store, id string, updated time.Time) {
		k := submission.Key{Op: legacyOp, CustomBizID: id}
		err := s.Mutate(context.Background(), k, func(*submission.Record) (*submission.Record, error) {
			return &submission.Record{Key: k, Fingerprint: []byte("fp"), State: submission.StateSucceeded, Result: "P-" + id,
				Attempts: 1, CreatedAt: updated, UpdatedAt: updated}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, open := range map[string]func(t *testing.T) (submission.Store, string){
		"bolt": func(t *testing.T) (submission.Store, string) {
			path := filepath.Join(t.TempDir(), "sub.db")
			s, err := submission.OpenBolt(path, submission.BoltOptions{LegacyOp: legacyOp})
			if err != nil {
				t.Fatal(err)
			}
			return s, "DB_PATH=" + path
		},
		"postgres": func(t *testing.T) (submission.Store, string) {
			dsn := pgtest.DSN(t)
			s, err := submission.OpenPostgres(context.Background(), dsn, submission.PostgresOptions{LegacyOp: legacyOp})
			if err != nil {
				t.Fatal(err)
			}
			return s, "DATABASE_URL=" + dsn
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEsign(t)
			s, env := open(t)
			put(t, s, "retained-old", time.Now().Add(-2*time.Hour))
			put(t, s, "retained-new", time.Now().Add(-10*time.Minute))
			_ = s.Close()
			a := startBinary(t, buildBinary(t), replicaEnv(t, e, env, "SUBMISSION_RETENTION=1h"))
			eventually(t, 10*time.Second, "the old submission removed", func() bool {
				return submissionState(t, a, "retained-old")["code"] == float64(5) // NOT_FOUND
			})
			if st := submissionState(t, a, "retained-new"); st["eviPointId"] != "P-retained-new" {
				t.Errorf("the recent submission: %v", st)
			}
		})
	}
}

// Why 6, second half: a 401 from e签宝 is a refusal of the service's credentials even
// when its body is larger than the response cap; nothing was created, and the record
// says so (failed, not outcome unknown).
func TestOversized401IsACredentialsRefusal(t *testing.T) {
	e := newEsign(t)
	e.mu.Lock()
	e.override = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"success":false,"code":401,"message":"INVALID_SIGNATURE","padding":"` + strings.Repeat("x", 2<<20) + `"}`))
	}
	e.mu.Unlock()
	a := startBinary(t, buildBinary(t), replicaEnv(t, e, "DB_PATH="+filepath.Join(t.TempDir(), "sub.db")))
	got := post(a, seedWithKey(t, "big-401"), 0)
	if got.code != 500 || got.reason() != "ESIGN_CREDENTIALS_REJECTED" || !strings.Contains(toJSON(got.body), `"retry_safe":"true"`) {
		t.Fatalf("oversized 401: %d %v", got.code, got.body)
	}
	if st := submissionState(t, a, "big-401"); st["state"] != "SUBMISSION_STATE_FAILED" {
		t.Errorf("recorded %v", st)
	}
}

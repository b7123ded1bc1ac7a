package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// crashRig runs the real binary against an external simulator, so that the binary can
// be killed and restarted while e签宝 (the simulator) keeps its state.
type crashRig struct {
	t    *testing.T
	bin  string
	sim  *esignsim.Simulator
	env  []string
	seed []byte
}

func newCrashRig(t *testing.T, storeEnv []string) *crashRig {
	sim := esignsim.New(esignsim.Config{AppID: "crash-app", AppSecret: "crash-secret"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	seed = bytes.Replace(seed, []byte(`"eviName"`), []byte(`"customBizId": "crash-0001", "eviName"`), 1)
	env := append([]string{
		"ESIGN_BASE_URL=" + srv.URL, "ESIGN_APP_ID=crash-app", "ESIGN_APP_SECRET=crash-secret",
		"SUBMISSION_LEASE=2s", "STORE_TIMEOUT=1s", "ESIGN_TIMEOUT=10s", "AUTH_DISABLED=true",
		"FINGERPRINT_KEY=crash-test-fingerprint-key", "JOURNAL_PATH=" + filepath.Join(t.TempDir(), "journal"),
	}, storeEnv...)
	return &crashRig{t: t, bin: buildBinary(t), sim: sim, env: env, seed: seed}
}

func (c *crashRig) start(extra ...string) *running {
	return startBinary(c.t, c.bin, append(append([]string{}, c.env...), extra...))
}

func (c *crashRig) post(r *running) (int, map[string]any) {
	resp, err := http.Post("http://"+r.httpAddr+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(c.seed))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (c *crashRig) state(r *running) map[string]any {
	resp, err := http.Get("http://" + r.httpAddr + "/v1/submissions/crash-0001")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

func kill(t *testing.T, r *running) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
		t.Fatal(err)
	}
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("not dead after SIGKILL")
	}
}

func storeEnvs(t *testing.T) map[string]func() []string {
	return map[string]func() []string{
		"bolt":     func() []string { return []string{"DB_PATH=" + filepath.Join(t.TempDir(), "sub.db")} },
		"postgres": func() []string { return []string{"DATABASE_URL=" + pgtest.DSN(t)} },
	}
}

// An eviPointId e签宝 returned survives a SIGKILL: the retry after the restart replays it.
func TestCrashAfterSuccessLosesNothing(t *testing.T) {
	for name, env := range storeEnvs(t) {
		t.Run(name, func(t *testing.T) {
			c := newCrashRig(t, env())
			r := c.start()
			code, first := c.post(r)
			if code != 200 {
				t.Fatalf("first call: %d %v", code, first)
			}
			kill(t, r)
			r2 := c.start()
			code, again := c.post(r2)
			if code != 200 || again["replayed"] != true || again["eviPointId"] != first["eviPointId"] {
				t.Fatalf("after restart: %d %v (first %v)", code, again, first)
			}
			if n := c.sim.Count(); n != 1 {
				t.Errorf("e签宝 received %d requests", n)
			}
		})
	}
}

// A replica killed mid-call leaves an in-progress record; after its lease the retry is
// an outcome unknown: sent again by default, refused under UNKNOWN_OUTCOME_RETRY=refuse.
func TestCrashMidCall(t *testing.T) {
	for name, env := range storeEnvs(t) {
		for _, policy := range []string{"resend", "refuse"} {
			t.Run(name+"/"+policy, func(t *testing.T) {
				c := newCrashRig(t, append(env(), "UNKNOWN_OUTCOME_RETRY="+policy))
				c.sim.Inject(esignsim.Fault{Latency: 5 * time.Second, Times: 1})
				r := c.start()
				go c.post(r) // dies with the process
				// The record is in progress before e签宝 is called; give the request time to
				// reach the simulator, which holds it for 5 s.
				deadline := time.Now().Add(10 * time.Second)
				for c.state(r)["state"] != "SUBMISSION_STATE_IN_PROGRESS" {
					if time.Now().After(deadline) {
						t.Fatal("the submission never showed as in progress")
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(300 * time.Millisecond)
				kill(t, r)

				r2 := c.start()
				if st := c.state(r2); st["state"] != "SUBMISSION_STATE_IN_PROGRESS" {
					t.Fatalf("after restart: %v", st)
				}
				time.Sleep(2100 * time.Millisecond) // the dead replica's lease runs out
				code, m := c.post(r2)
				switch policy {
				case "resend":
					if code != 200 || !strings.HasPrefix(m["eviPointId"].(string), "P") {
						t.Fatalf("retry: %d %v", code, m)
					}
					st := c.state(r2)
					if st["state"] != "SUBMISSION_STATE_SUCCEEDED" || st["attempts"] != float64(2) {
						t.Errorf("state %v", st)
					}
				case "refuse":
					if code != 400 || !strings.Contains(toJSON(m), "OUTCOME_UNKNOWN_RETRY_REFUSED") {
						t.Fatalf("retry: %d %v", code, m)
					}
					if st := c.state(r2); st["state"] != "SUBMISSION_STATE_OUTCOME_UNKNOWN" {
						t.Errorf("state %v", st)
					}
				}
			})
		}
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

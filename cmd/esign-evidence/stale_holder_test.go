package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// GetSubmission tells a live holder from a dead one: while the replica holding the key
// runs (or its lease and the takeover grace after it last), the submission is
// IN_PROGRESS; once a killed holder's lease (2 s) and the grace (2 s + 3 × 1 s + 1 s) have
// run out unrenewed, it reads as OUTCOME_UNKNOWN, as the next attempt will take it,
// instead of IN_PROGRESS forever (which invited a caller to resubmit under a new key).
func TestGetSubmissionTellsAStaleHolder(t *testing.T) {
	c := newCrashRig(t, []string{"DB_PATH=" + filepath.Join(t.TempDir(), "sub.db")})
	c.sim.Inject(esignsim.Fault{Latency: 5 * time.Second, Times: 1})
	r := c.start()
	go c.post(r) // dies with the process
	eventually(t, 10*time.Second, "the call in progress", func() bool { return c.state(r)["state"] == "SUBMISSION_STATE_IN_PROGRESS" })
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	kill(t, r)
	r2 := c.start()
	if st := c.state(r2); st["state"] != "SUBMISSION_STATE_IN_PROGRESS" {
		t.Fatalf("within the lease and grace: %v", st)
	}
	eventually(t, 20*time.Second, "the dead holder's record read as outcome unknown", func() bool {
		return c.state(r2)["state"] == "SUBMISSION_STATE_OUTCOME_UNKNOWN"
	})
	if waited := time.Since(killed); waited < 6*time.Second {
		t.Errorf("read as outcome unknown %v after the kill, before the lease and grace (8 s after the last renewal) ran out", waited)
	}
	if n := c.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests; reading the state sends nothing", n)
	}
}

package check

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	corev1 "k8s.io/api/core/v1"
)

// sizedFor is the annotation on the single-node overlay's PersistentVolumeClaim that
// states the traffic its size was chosen for: calls with a customBizId per second,
// sustained over SUBMISSION_RETENTION.
const sizedFor = "esign-evidence/sized-for-keyed-calls-per-second"

// storeHeadroom is the room left over the records themselves: bbolt keeps the pages that
// retention frees for reuse (the file never shrinks), a write copies the pages it changes
// before it commits, and the journal and the backup endpoint's snapshot need room too.
const storeHeadroom = 2

// TestSingleNodeVolumeSize measures what a submission costs the embedded store (the
// built binary in demo mode makes records through REST, each with a customBizId of the
// longest length allowed, in random order as real keys arrive), and requires the
// single-node overlay's volume to hold the traffic its annotation states for
// SUBMISSION_RETENTION, with storeHeadroom.
func TestSingleNodeVolumeSize(t *testing.T) {
	bin := theBinary(t)
	const records = 3000
	perRecord := measureRecordBytes(t, bin.path, records)

	o := decode(t, render(t, "../kubernetes/single-node"))
	d := o.deployments[0]
	env := containerEnv(t, o, d.Spec.Template.Spec.Containers[0])
	retentionText := env["SUBMISSION_RETENTION"]
	if retentionText == "" {
		retentionText = bin.defaults["SUBMISSION_RETENTION"]
	}
	retention, err := time.ParseDuration(retentionText)
	if err != nil {
		t.Fatalf("SUBMISSION_RETENTION %q: %v", retentionText, err)
	}
	if len(o.pvcs) != 1 {
		t.Fatalf("want one PersistentVolumeClaim, have %d", len(o.pvcs))
	}
	pvc := o.pvcs[0]
	rate, err := strconv.ParseFloat(pvc.Annotations[sizedFor], 64)
	if err != nil || rate <= 0 {
		t.Fatalf("the claim's annotation %s is %q: it must state the calls per second the volume is sized for", sizedFor, pvc.Annotations[sizedFor])
	}
	need := perRecord * rate * retention.Seconds() * storeHeadroom
	have := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	t.Logf("%.0f bytes per record; %g keyed calls/s for %s = %.0f records, ×%d headroom: %.1f GiB; the claim asks %s",
		perRecord, rate, retention, rate*retention.Seconds(), storeHeadroom, need/(1<<30), have.String())
	if float64(have.Value()) < need {
		t.Errorf("the claim's %s does not hold %g keyed calls/s for %s (%.1f GiB at %.0f bytes per record, ×%d)",
			have.String(), rate, retention, need/(1<<30), perRecord, storeHeadroom)
	}
}

// measureRecordBytes makes n keyed calls through a demo-mode binary storing into a bbolt
// file of its own, stops it, and returns the store's growth per record: the database's
// size (its high-water mark of pages, which the file never falls below) after the calls,
// less its size before any, over n.
func measureRecordBytes(t *testing.T, bin string, n int) float64 {
	t.Helper()
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	var req map[string]any
	if err := json.Unmarshal(seed, &req); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "submissions.db")
	size := func() int64 {
		db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var s int64
		if err := db.View(func(tx *bolt.Tx) error { s = tx.Size(); return nil }); err != nil {
			t.Fatal(err)
		}
		return s
	}
	run := func(calls int) {
		d, stop := startDemoStore(t, bin, dbPath)
		defer stop()
		keys := make(chan string)
		go func() {
			defer close(keys)
			for range calls {
				b := make([]byte, 18)
				_, _ = rand.Read(b)
				keys <- hex.EncodeToString(b) // 36 characters, customBizId's longest
			}
		}()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range keys {
					body := map[string]any{}
					for f, v := range req {
						body[f] = v
					}
					body["customBizId"] = k
					b, _ := json.Marshal(body)
					resp, err := http.Post("http://"+d.http+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(b))
					if err == nil {
						out, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("%d %s", resp.StatusCode, out)
						}
					}
					if err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if failed != nil {
			t.Fatalf("a keyed call failed: %v", failed)
		}
	}
	run(0)
	empty := size()
	start := time.Now()
	run(n)
	full := size()
	t.Logf("%d records in %s: store %d bytes empty, %d after", n, time.Since(start).Round(time.Millisecond), empty, full)
	return float64(full-empty) / float64(n)
}

// startDemoStore runs the binary in demo mode with its embedded store at dbPath (and no
// quota to speak of) and returns its listeners and a function that stops it with SIGTERM
// and waits for it to exit, releasing the store's lock.
func startDemoStore(t *testing.T, bin, dbPath string) (demo, func()) {
	t.Helper()
	d := startDemoAll(t, bin, "DB_PATH="+dbPath, "ESIGN_QPS=5000")
	return d, d.stop
}

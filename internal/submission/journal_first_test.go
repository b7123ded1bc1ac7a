package submission_test

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// A result e签宝 returned is in the journal as soon as its first store write has failed,
// not only once the foreground retries are over: a replica killed while it still
// retries the store cannot lose it. (Found by internal/simulation, TestRegressionSeeds:
// the replica crashed between the answer and the end of the retries; the key was sent
// again after the grace and the first evidence point was recorded nowhere.) On
// simulated time.
func TestResultJournaledAtTheFirstFailedWrite(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		base, err := submission.OpenBolt(filepath.Join(dir, "s.db"), boltOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		fa := &partitioned{Store: base}
		j, err := submission.OpenJournal(filepath.Join(dir, "j"))
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		sub, err := submission.New(submission.Config{Store: fa, FingerprintKeys: [][]byte{fpKey}, Lease: 3 * time.Second,
			StoreTimeout: 500 * time.Millisecond, Journal: j})
		if err != nil {
			t.Fatal(err)
		}
		g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
		answered := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, err := submission.Submit(context.Background(), sub, g, evidencePoint, key, sub.Fingerprint([]byte("p")),
				func(context.Context) (*upstream.PsnEvidencePointResult, error) {
					fa.down.Store(true) // the store goes as e签宝 answers
					close(answered)
					return &upstream.PsnEvidencePointResult{EviPointID: "A"}, nil
				})
			if err != nil || r.Value.EviPointID != "A" {
				t.Errorf("Submit: %+v %v", r.Value, err)
			}
		}()
		<-answered
		// The first write fails at once; the foreground retries take 300 ms more.
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
			t.Error("Submit returned before its foreground retries of the store were over")
		default:
		}
		if n := j.Len(); n != 1 {
			t.Errorf("journal holds %d results after the first failed write, want 1: a kill now would lose e签宝's answer", n)
		}
		fa.down.Store(false)
		<-done
		time.Sleep(time.Second) // any write-back
		rec, err := base.Get(context.Background(), key)
		if err != nil || rec == nil || rec.Result != "A" {
			t.Fatalf("record: %+v %v", rec, err)
		}
		if n := j.Len(); n != 0 {
			t.Errorf("journal still holds %d results once the store has it", n)
		}
	})
}

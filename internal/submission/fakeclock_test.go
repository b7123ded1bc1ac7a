package submission_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// The lease runs on the injected clock: a key left in progress by a holder that died is
// taken over once Lease + TakeoverGrace have passed on that clock, and not before,
// however little wall time that takes.
func TestLeaseRunsOnTheInjectedClock(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(t0)
	store := storeKinds["bolt"](t)
	r := newRig(t, store, "")
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Clock: fake,
		StoreTimeout: 20 * time.Second, MaxWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fp := sub.Fingerprint([]byte("p"))
	// The dead holder's claim, made at t0.
	if err := store.Mutate(context.Background(), key, func(*submission.Record) (*submission.Record, error) {
		return &submission.Record{Key: key, Fingerprint: fp[0], State: submission.StateInProgress, Attempts: 1, AttemptID: "dead",
			LeaseUntil: t0.Add(submission.DefaultLease), CreatedAt: t0, UpdatedAt: t0}, nil
	}); err != nil {
		t.Fatal(err)
	}

	// The fake time moves on until the call is made; then it stands still.
	stop := make(chan struct{})
	var once sync.Once
	var advancer sync.WaitGroup
	advancer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			fake.Advance(50 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	})
	defer func() { once.Do(func() { close(stop) }); advancer.Wait() }()
	var sentAt time.Time
	wall := time.Now()
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond, Clock: fake})
	res, err := submission.Submit(context.Background(), sub, g, evidencePoint, key, fp, func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		once.Do(func() { close(stop) })
		advancer.Wait()
		sentAt = fake.Now()
		return r.send(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || evi(res) == "" || r.sim.Count() != 1 {
		t.Fatalf("result %+v, e签宝 received %d", res, r.sim.Count())
	}
	if held := submission.DefaultLease + sub.TakeoverGrace(); sentAt.Before(t0.Add(held)) {
		t.Errorf("sent at %v on the clock, %v after the dead claim; the key is held for %v", sentAt, sentAt.Sub(t0), held)
	}
	if took := time.Since(wall); took > time.Minute {
		t.Errorf("took %v of wall time: the lease ran on the wall clock", took)
	}
	if rec := r.record(t); rec.State != submission.StateSucceeded || !rec.UpdatedAt.Equal(sentAt) {
		t.Errorf("record %+v: not stamped by the injected clock (%v)", rec, sentAt)
	}
}

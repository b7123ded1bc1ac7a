package submission_test

import (
	"context"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// offsetClock is the real clock off by d: a replica whose clock is wrong.
type offsetClock struct {
	clock.Clock
	d time.Duration
}

func (c offsetClock) Now() time.Time                  { return time.Now().Add(c.d) }
func (c offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c offsetClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// With PostgreSQL, leases are written on the database's clock: a replica whose clock is
// 30 s ahead writes the lease PostgreSQL's now + SUBMISSION_LEASE, not its own, so another
// replica does not wait 30 s too long — nor, with a clock behind, take a key over while
// its holder may still be sending. (Found by internal/simulation with clocks seconds apart,
// seeds 4345 and 4902 of TestRegressionSeeds: two calls in flight for one key.)
func TestLeaseOnTheStoresClock(t *testing.T) {
	store, err := submission.OpenPostgres(context.Background(), pgtest.DSN(t), pgOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	skewed := offsetClock{clock.Real(), 30 * time.Second}
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Lease: 2 * time.Second,
		StoreTimeout: 500 * time.Millisecond, Clock: skewed})
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond, Clock: skewed})
	var seen *submission.Record
	_, err = submission.Submit(context.Background(), sub, g, evidencePoint, key, sub.Fingerprint([]byte("p")),
		func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
			seen, _ = store.Get(ctx, key) // the claim, as stored
			return &upstream.PsnEvidencePointResult{EviPointID: "E"}, nil
		})
	if err != nil || seen == nil {
		t.Fatalf("Submit: %v, claim %+v", err, seen)
	}
	if ahead := time.Until(seen.LeaseUntil) - 2*time.Second; ahead > 5*time.Second || ahead < -5*time.Second {
		t.Errorf("the lease ends %v off the database's now + lease: written on the replica's clock (30 s ahead)", ahead.Round(time.Second))
	}
}

package submission_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// lateClaim is a store whose first write (the claim of the key) runs during.
type lateClaim struct {
	submission.Store
	writes atomic.Int64
	during func()
}

func (s *lateClaim) Mutate(ctx context.Context, key submission.Key, fn func(*submission.Record) (*submission.Record, error)) error {
	if s.writes.Add(1) == 1 {
		s.during()
	}
	return s.Store.Mutate(ctx, key, fn)
}

// A keyed call whose claim took so long that its slot of the shared quota went by, with
// no fresh slot left within its caller's deadline (the other replicas took them), is
// refused RATE_LIMITED with nothing sent: its record reads failed, not in progress (no
// stuck key), and a retry with the same customBizId is sent, once.
func TestStaleSlotRefusedAfterClaimIsCleanlyUnsent(t *testing.T) {
	const qps = 100
	quota := guard.NewLocalQuota(qps, nil) // shared, as through PostgreSQL
	store := &lateClaim{Store: storeKinds["bolt"](t)}
	r := newRig(t, store, "")
	r.guard = guard.New(guard.Config{Settings: guard.Settings{QPS: qps, MinRemaining: 100 * time.Millisecond}, Quota: quota})
	store.during = func() {
		// Meanwhile the other replicas take the next 2 s of slots; the claim ends late.
		for range 2 * qps {
			if _, ok, _ := quota.Reserve(context.Background(), time.Minute); !ok {
				t.Error("the other replicas could not take a slot")
			}
		}
		time.Sleep(50 * time.Millisecond) // the slow claim
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := r.submit(ctx, "p")
	if !errors.Is(err, guard.ErrRateLimited) {
		t.Fatalf("a late send with no fresh slot in time: %v, want ErrRateLimited", err)
	}
	if n := r.sim.Count(); n != 0 {
		t.Fatalf("e签宝 received %d", n)
	}
	if rec := r.record(t); rec.State != submission.StateFailed || rec.AttemptID != "" {
		t.Fatalf("recorded %+v, want failed and not held", rec)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.submit(ctx, "p")
	if err != nil || res.Replayed || evi(res) == "" {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if n := r.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d", n)
	}
}

package submission_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// runsStore records when retention runs start (on the fake clock), and makes the first
// run last until its deadline, as a run with a backlog does.
type runsStore struct {
	submission.Store
	clock *clock.Fake
	mu    sync.Mutex
	at    []time.Time
}

func (s *runsStore) DeleteBefore(ctx context.Context, _ time.Time) (int64, error) {
	s.mu.Lock()
	s.at = append(s.at, s.clock.Now())
	first := len(s.at) == 1
	s.mu.Unlock()
	if !first {
		return 0, nil
	}
	<-ctx.Done()
	return 5, ctx.Err()
}

func (s *runsStore) runs() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// A retention run whose time is up before its end is followed by the next a minute
// later, not after the usual interval (an hour here).
func TestRetentionRunCutShortGoesOnSoon(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(t0)
	store := &runsStore{Store: storeKinds["bolt"](t), clock: fake}
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Clock: fake, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for len(store.runs()) < 2 && fake.Now().Before(t0.Add(30*time.Minute)) {
		fake.Advance(time.Second)
		time.Sleep(time.Millisecond)
	}
	runs := store.runs()
	if len(runs) < 2 {
		t.Fatalf("no second run within 30 min of the first, cut short at its deadline (runs at %v)", runs)
	}
	if gap := runs[1].Sub(runs[0]); gap > 2*time.Minute+5*time.Second {
		t.Errorf("the second run began %v after the first, which was cut short after a minute: want about 2 min", gap)
	}
}

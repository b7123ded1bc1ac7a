package guard

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

type callerKey struct{}

func callerOf(ctx context.Context) string { s, _ := ctx.Value(callerKey{}).(string); return s }

// slot is a reservation the quota handed out: for whom, and when it falls due.
type slot struct {
	caller string
	at     time.Time
}

// recordingQuota is a Quota that notes every slot it hands out.
type recordingQuota struct {
	Quota
	clock clock.Clock
	mu    sync.Mutex
	slots []slot
}

func (q *recordingQuota) Reserve(ctx context.Context, maxWait time.Duration) (time.Duration, bool, error) {
	wait, ok, err := q.Quota.Reserve(ctx, maxWait)
	if ok && err == nil {
		q.mu.Lock()
		q.slots = append(q.slots, slot{callerOf(ctx), q.clock.Now().Add(wait)})
		q.mu.Unlock()
	}
	return wait, ok, err
}

func (q *recordingQuota) taken() []slot {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.slots)
}

// fairRig runs calls of named callers through a guard on a fake clock, and moves the
// clock only once every call is parked (waiting in its caller's queue or for its slot).
type fairRig struct {
	t       *testing.T
	g       *Guard
	fc      *clock.Fake
	q       *recordingQuota
	started atomic.Int64
	done    atomic.Int64
	refused atomic.Int64
	callers []string
}

func newFairRig(t *testing.T, qps float64, share float64, callers ...string) *fairRig {
	// Deadlines are read on the fake clock; the contexts' own timers run on the real one,
	// so that the fake clock's timers are the guard's alone (see settle). The fake clock
	// starts now, so a deadline a minute ahead on it is a minute ahead for real too.
	fc := clock.NewFake(time.Now())
	q := &recordingQuota{Quota: NewLocalQuota(qps, fc), clock: fc}
	g := New(Config{Settings: Settings{QPS: qps, MinRemaining: 10 * time.Millisecond, CallerShare: share},
		Quota: q, Clock: fc, CallerOf: callerOf})
	return &fairRig{t: t, g: g, fc: fc, q: q, callers: callers}
}

// call starts one call of caller with deadline on the fake clock; done is closed when it
// has been admitted (or refused).
func (r *fairRig) call(caller string, deadline time.Duration) (done chan error) {
	done = make(chan error, 1)
	r.started.Add(1)
	go func() {
		ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), callerKey{}, caller), r.fc.Now().Add(deadline))
		defer cancel()
		err := r.g.Admit(ctx)
		if err != nil {
			r.refused.Add(1)
		}
		r.done.Add(1)
		done <- err
	}()
	return done
}

// settle waits until every call is parked: each one not done holds a timer of the fake
// clock, and each one out of its caller's queue has reserved its slot.
func (r *fairRig) settle() {
	r.t.Helper()
	give := time.Now().Add(20 * time.Second)
	for {
		running := int(r.started.Load() - r.done.Load())
		queued := 0
		for _, c := range r.callers {
			_, w := r.g.fair.holding(c)
			queued += w
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		err := r.fc.BlockUntilContext(ctx, running)
		cancel()
		if err == nil && running == int(r.started.Load()-r.done.Load()) &&
			len(r.q.taken())+queued+int(r.refused.Load()) == int(r.started.Load()) {
			return
		}
		if time.Now().After(give) {
			r.t.Fatalf("calls never settled: %d running, %d queued, %d slots, %d refused of %d", running, queued, len(r.q.taken()), r.refused.Load(), r.started.Load())
		}
	}
}

// A caller with a backlog holds at most its share of the quota ahead: another caller's
// call takes the slot right behind it, not behind the backlog; and no slot goes unused
// (the busy caller alone gets every slot, one interval apart). With ESIGN_QPS=2 and the
// default share, the light caller's call waits at most two slot intervals (about 1 s),
// where the busy caller's 20 queued calls would otherwise put it about 10 s back.
func TestFairShareOfTheQuota(t *testing.T) {
	const qps, heavy = 2, 20
	r := newFairRig(t, qps, DefaultCallerShare, "heavy", "light")
	iv := SlotInterval(qps)
	t0 := r.fc.Now()
	var heavyDone []chan error
	for range heavy {
		heavyDone = append(heavyDone, r.call("heavy", time.Minute))
	}
	r.settle()
	if held, waiting := r.g.fair.holding("heavy"); held != 1 || waiting != heavy-2 {
		t.Errorf("the busy caller holds %d slots ahead and has %d calls queued, want 1 and %d", held, waiting, heavy-2)
	}
	// A call of the busy caller's that its queue leaves no slot for within its deadline
	// is refused at once, without taking one.
	if err := <-r.call("heavy", 2*time.Second); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a busy caller's call past its queue: %v, want ErrRateLimited", err)
	}
	light := r.call("light", time.Minute)
	r.settle()
	slots := r.q.taken()
	last := slots[len(slots)-1]
	if last.caller != "light" {
		t.Fatalf("the last slot taken is %q's", last.caller)
	}
	if wait := last.at.Sub(t0); wait > 2*iv+time.Microsecond {
		t.Errorf("the light caller's call waits %v for its slot behind the busy caller's backlog, want at most %v", wait, 2*iv)
	}
	// Let every call reach its slot.
	for r.started.Load() != r.done.Load() {
		r.fc.Advance(iv)
		r.settle()
	}
	if err := <-light; err != nil {
		t.Errorf("the light caller's call: %v", err)
	}
	for _, d := range heavyDone {
		if err := <-d; err != nil {
			t.Errorf("a busy caller's call: %v", err)
		}
	}
	// Work-conserving: slot k of the 21 falls due k intervals after the first.
	slots = r.q.taken()
	if len(slots) != heavy+1 {
		t.Fatalf("%d slots taken, want %d", len(slots), heavy+1)
	}
	slices.SortFunc(slots, func(a, b slot) int { return a.at.Compare(b.at) })
	for k, s := range slots {
		if want := t0.Add(time.Duration(k) * iv); s.at.Sub(want).Abs() > time.Microsecond {
			t.Errorf("slot %d (%s's) due at +%v, want +%v: a slot went unused", k, s.caller, s.at.Sub(t0), want.Sub(t0))
		}
	}
	if held, waiting := r.g.fair.holding("heavy"); held != 0 || waiting != 0 || len(r.g.fair.callers) != 0 {
		t.Errorf("places left behind: heavy %d held %d waiting; %d callers", held, waiting, len(r.g.fair.callers))
	}
}

// A call that leaves before its slot is due keeps its caller's place until the slot is
// due: leaving and calling again cannot pile up slots ahead of other callers.
func TestFairShareLeavingKeepsThePlace(t *testing.T) {
	const qps = 2
	r := newFairRig(t, qps, DefaultCallerShare, "heavy", "light")
	iv := SlotInterval(qps)
	t0 := r.fc.Now()
	// The first slot is free at once; the second is one interval ahead.
	if err := <-r.call("heavy", time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), callerKey{}, "heavy"))
	left := make(chan error, 1)
	r.started.Add(1)
	go func() {
		err := r.g.Admit(ctx)
		r.done.Add(1)
		left <- err
	}()
	waitParked := func(want int) {
		t.Helper()
		give := time.Now().Add(20 * time.Second)
		for len(r.q.taken()) != want {
			if time.Now().After(give) {
				t.Fatalf("%d slots taken, want %d", len(r.q.taken()), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitParked(2)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("the call that left: %v", err)
	}
	if held, _ := r.g.fair.holding("heavy"); held != 1 {
		t.Fatalf("the caller that left holds %d places before its slot is due, want 1", held)
	}
	// A new call of the same caller waits in its queue; the light caller's goes right
	// behind the abandoned slot.
	again := r.call("heavy", time.Minute)
	light := r.call("light", time.Minute)
	r.settle()
	if _, waiting := r.g.fair.holding("heavy"); waiting != 1 {
		t.Fatalf("the caller's new call is not queued behind its abandoned slot (%d queued)", waiting)
	}
	slots := r.q.taken()
	if s := slots[len(slots)-1]; s.caller != "light" || s.at.Sub(t0.Add(2*iv)).Abs() > time.Microsecond {
		t.Fatalf("the light caller's slot: %s's at +%v", s.caller, s.at.Sub(t0))
	}
	for r.started.Load() != r.done.Load() {
		r.fc.Advance(iv)
		r.settle()
	}
	if err := <-again; err != nil {
		t.Error(err)
	}
	if err := <-light; err != nil {
		t.Error(err)
	}
}

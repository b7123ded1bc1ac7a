package guard

import (
	"container/list"
	"context"
	"math"
	"sync"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// DefaultCallerShare is the share of a second's quota one caller may hold reserved ahead
// (Settings.CallerShare): a quarter. A busy caller then makes another one wait at most
// about a quarter of a second (plus one slot) for the quota, whatever its backlog, while a
// caller alone still gets every slot: its next call reserves as soon as one of its slots
// falls due. At 50 a second that is 13 slots ahead, far more than a PostgreSQL round trip
// of the shared quota needs to keep the slots taken.
const DefaultCallerShare = 0.25

// slotsAhead is how many slots one caller may hold reserved ahead at qps and share: at
// least one, so that a caller alone gets the whole quota.
func slotsAhead(qps, share float64) int {
	return max(1, int(math.Ceil(qps*share*QuotaWindow.Seconds())))
}

// fairQueue keeps the quota's first-come-first-served reservations from letting one
// caller stand in front of everyone: each caller holds at most per slots reserved and not
// yet due; its further calls wait in a queue of the caller's own, in order, and reserve
// as its slots fall due. Another caller's call therefore reserves behind at most per
// slots of each busy caller, not behind all of their backlog.
//
// It is work-conserving: it never leaves a slot unused that a waiting call could take
// (a caller's queue moves as soon as one of its slots is due, and the quota remembers the
// slot's time, so the next reservation lands one interval after it).
type fairQueue struct {
	per int
	// interval is the quota's slot spacing: a call with n of its caller's calls ahead of
	// it (held or queued) gets its slot n intervals from now at the earliest.
	interval time.Duration
	clock    clock.Clock
	mu       sync.Mutex
	callers  map[string]*callerSlots
}

// callerSlots is one caller's slots reserved ahead and its calls waiting for one.
type callerSlots struct {
	held    int
	waiting list.List // of *fairWaiter, in order of arrival
}

type fairWaiter struct {
	ready   chan struct{}
	granted bool
}

func newFairQueue(per int, interval time.Duration, c clock.Clock) *fairQueue {
	return &fairQueue{per: per, interval: interval, clock: c, callers: map[string]*callerSlots{}}
}

// acquire takes one of caller's places to reserve a slot, waiting for one in the caller's
// queue up to maxWait. The returned release gives the place back; it is to be called once
// the slot reserved with it is due (or was not taken). It refuses with ErrRateLimited at
// once when the caller's calls ahead leave no slot within maxWait, and after maxWait
// when none came; it returns ctx's error if ctx ends first.
func (f *fairQueue) acquire(ctx context.Context, caller string, maxWait time.Duration) (release func(), err error) {
	f.mu.Lock()
	c := f.callers[caller]
	if c == nil {
		c = &callerSlots{}
		f.callers[caller] = c
	}
	if c.held < f.per && c.waiting.Len() == 0 {
		c.held++
		f.mu.Unlock()
		return f.releaser(caller), nil
	}
	// Each call ahead of this one takes a slot of its own, one interval after another.
	if time.Duration(c.held+c.waiting.Len())*f.interval > maxWait {
		f.mu.Unlock()
		return nil, ErrRateLimited
	}
	w := &fairWaiter{ready: make(chan struct{})}
	e := c.waiting.PushBack(w)
	f.mu.Unlock()

	t := f.clock.NewTimer(maxWait)
	defer t.Stop()
	select {
	case <-w.ready:
		return f.releaser(caller), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.Chan():
		err = ErrRateLimited
	}
	f.mu.Lock()
	if w.granted {
		// Handed a place as it gave up: pass it on.
		f.mu.Unlock()
		f.release(caller)
		return nil, err
	}
	c.waiting.Remove(e)
	f.mu.Unlock()
	return nil, err
}

func (f *fairQueue) releaser(caller string) func() {
	var once sync.Once
	return func() { once.Do(func() { f.release(caller) }) }
}

// release gives one of caller's places back: to its first waiting call, or free.
func (f *fairQueue) release(caller string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.callers[caller]
	if e := c.waiting.Front(); e != nil {
		w := c.waiting.Remove(e).(*fairWaiter)
		w.granted = true
		close(w.ready)
		return
	}
	c.held--
	if c.held == 0 {
		delete(f.callers, caller)
	}
}

// holding reports how many slots caller holds ahead and how many of its calls wait (tests).
func (f *fairQueue) holding(caller string) (held, waiting int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.callers[caller]; c != nil {
		return c.held, c.waiting.Len()
	}
	return 0, 0
}

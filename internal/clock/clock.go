// Package clock is the one time source of the exactly-once layer and the e签宝 guard:
// every reading of the time, timer, ticker and sleep there goes through a Clock, so a
// test or a simulator can run them on a fake one.
//
// It is github.com/jonboulle/clockwork under the project's names. The real clock is the
// time package itself, so code run inside a testing/synctest bubble sees the bubble's
// fake time through it.
package clock

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// Clock tells the time and makes timers, tickers and sleeps.
type Clock = clockwork.Clock

// Timer is a Clock's timer (Chan, Reset, Stop).
type Timer = clockwork.Timer

// Ticker is a Clock's ticker (Chan, Reset, Stop).
type Ticker = clockwork.Ticker

// Fake is a clock that moves only when told to (Advance), for tests and simulators.
type Fake = clockwork.FakeClock

var realClock = clockwork.NewRealClock()

// Real is the time package's clock.
func Real() Clock { return realClock }

// Or returns c, or the real clock when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return realClock
	}
	return c
}

// NewFake returns a fake clock standing at t.
func NewFake(t time.Time) *Fake { return clockwork.NewFakeClockAt(t) }

// WithTimeout is context.WithTimeout on c. On the real clock it is context.WithTimeout
// itself; on any other clock the context ends (context.DeadlineExceeded) when c's time
// reaches the deadline, or when its parent ends or cancel is called, as the standard
// one does.
//
// (clockwork.WithTimeout is not used: its fake-clock context's Err blocks until the
// context ends, where a store checks Err before starting.)
func WithTimeout(ctx context.Context, c Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if c == nil || c == realClock {
		return context.WithTimeout(ctx, d)
	}
	return withDeadline(ctx, c, c.Now().Add(d), d)
}

// WithDeadline is context.WithDeadline on c (see WithTimeout).
func WithDeadline(ctx context.Context, c Clock, t time.Time) (context.Context, context.CancelFunc) {
	if c == nil || c == realClock {
		return context.WithDeadline(ctx, t)
	}
	return withDeadline(ctx, c, t, c.Until(t))
}

func withDeadline(parent context.Context, c Clock, deadline time.Time, d time.Duration) (context.Context, context.CancelFunc) {
	if cur, ok := parent.Deadline(); ok && cur.Before(deadline) {
		// Reported as the standard context does; the parent ends it by itself.
		deadline = cur
	}
	inner, cancel := context.WithCancelCause(parent)
	ctx := &deadlineCtx{Context: inner, deadline: deadline}
	if d <= 0 {
		cancel(context.DeadlineExceeded)
		return ctx, func() {}
	}
	t := c.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() {
		t.Stop()
		cancel(context.Canceled)
	}
}

// deadlineCtx is a context ended by a clock's timer: it reports the clock's deadline,
// and context.DeadlineExceeded once the timer ended it.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlineCtx) Err() error {
	err := c.Context.Err()
	if err == context.Canceled && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}

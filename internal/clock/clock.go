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

// WithTimeout is context.WithTimeout on c: a fake clock's context ends when the fake
// time passes the deadline.
func WithTimeout(ctx context.Context, c Clock, d time.Duration) (context.Context, context.CancelFunc) {
	return clockwork.WithTimeout(ctx, c, d)
}

// WithDeadline is context.WithDeadline on c.
func WithDeadline(ctx context.Context, c Clock, t time.Time) (context.Context, context.CancelFunc) {
	return clockwork.WithDeadline(ctx, c, t)
}

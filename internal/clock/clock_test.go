package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

func TestOrIsTheRealClockWhenNil(t *testing.T) {
	before := time.Now()
	now := clock.Or(nil).Now()
	if now.Before(before) || now.Sub(before) > time.Second {
		t.Fatalf("Or(nil).Now() = %v, time.Now() was %v", now, before)
	}
	fake := clock.NewFake(time.Unix(0, 0))
	if clock.Or(fake) != clock.Clock(fake) {
		t.Fatal("Or replaced a clock it was given")
	}
}

// A store timeout on a fake clock ends when the fake time passes it, not before.
func TestWithTimeoutFollowsTheClock(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	ctx, cancel := clock.WithTimeout(context.Background(), fake, 2*time.Second)
	defer cancel()
	fake.Advance(time.Second)
	select {
	case <-ctx.Done():
		t.Fatal("ended a second early")
	case <-time.After(20 * time.Millisecond):
	}
	fake.Advance(time.Second)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("did not end when the fake time reached the deadline")
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Errorf("err %v", ctx.Err())
	}
}

// A live context's Err does not wait: it is nil until the context ends.
func TestWithTimeoutErrDoesNotBlock(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	ctx, cancel := clock.WithTimeout(context.Background(), fake, time.Hour)
	done := make(chan error, 1)
	go func() { done <- ctx.Err() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("live context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Err blocked on a live context")
	}
	if d, ok := ctx.Deadline(); !ok || !d.Equal(time.Unix(0, 0).Add(time.Hour)) {
		t.Errorf("deadline %v %v", d, ok)
	}
	cancel()
	if ctx.Err() != context.Canceled {
		t.Errorf("after cancel: %v", ctx.Err())
	}
}

// The parent ending ends the context, whatever the reason.
func TestWithTimeoutEndsWithItsParent(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	parent, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	ctx, cancel := clock.WithTimeout(parent, fake, time.Hour)
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's deadline did not end the context")
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Errorf("err %v", ctx.Err())
	}
}

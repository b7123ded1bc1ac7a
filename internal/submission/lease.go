package submission

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
)

// sendHolding makes the call while holding key: the lease, taken at claimed, is renewed
// every third of it, and the call's context ends before the last lease renewed runs
// out (less ClockAllowance), so no other attempt can take the key while this one may
// still be sending. The call is not ended by the caller leaving. The lease is renewed
// until record (which records the call's result, told when the last request started)
// has returned too, so that a result being written keeps its key.
func (s *Submitter) sendHolding(ctx context.Context, g *guard.Guard, key Key, attemptID string, claimed time.Time, call func(context.Context) (string, error), record func(res string, err error, lastSent time.Time) error) error {
	sendCtx, cancelCause := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelCause(nil)
	// Every stop of the call but its own end is the key's lease: at the cut-off, or when
	// a renewal finds another attempt holds the key.
	cancel := func() { cancelCause(errLeaseLost) }
	lease := s.cfg.Lease
	stopAt := func(from time.Time) time.Duration {
		if bugNoCutoff {
			return 1<<63 - 1
		}
		return s.clock.Until(from.Add(lease - ClockAllowance))
	}
	cutoff := s.clock.AfterFunc(stopAt(claimed), cancel)
	defer cutoff.Stop()

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := s.clock.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.Chan():
			}
			from := s.clock.Now() // the cut-off, on this replica's clock
			held := true
			err := s.mutateAt(sendCtx, key, func(cur *Record, now time.Time) (*Record, error) {
				v, next := renew(cur, renewEvent{AttemptID: attemptID, Lease: lease}, now)
				held = v != notHeld
				return next, nil
			})
			switch {
			case err != nil:
				// Not renewed: the cut-off stays where the last renewal put it.
			case !held:
				cancel()
				return
			default:
				cutoff.Reset(stopAt(from))
			}
		}
	}()
	// The result is recorded for the caller's retry, so an unsent attempt is tried again
	// while the lease holds, whatever the caller does.
	var lastSent time.Time // when the last request started (the guard sends one at a time)
	res, err := guard.Send(sendCtx, sendCtx, g, key.Op, func(c context.Context) (string, error) {
		lastSent = s.clock.Now()
		return call(c)
	})
	if err != nil && context.Cause(sendCtx) == errLeaseLost {
		err = &LeaseLostError{Err: err}
	}
	err = record(res, err, lastSent)
	close(done)
	wg.Wait()
	return err
}

// errLeaseLost is the cause the call's context ends with when the key's lease stops it.
var errLeaseLost = errors.New("the key's lease could not be renewed in time")

// LeaseLostError is a call the exactly-once layer stopped because the key's lease could
// not be kept: the store did not renew it before the cut-off (or another attempt holds
// the key). It wraps what the call ended with, whose outcome stands: nothing was sent,
// or (an unknown outcome) the request may have reached e签宝 before the stop.
type LeaseLostError struct{ Err error }

func (e *LeaseLostError) Error() string {
	return "stopped at the end of the key's lease, which the submission store did not renew: " + e.Err.Error()
}

// Unwrap returns what the call ended with.
func (e *LeaseLostError) Unwrap() error { return e.Err }

// releaseClaim gives back a key this attempt claimed but never sent (release), before
// being the record as the claim found it.
func (s *Submitter) releaseClaim(key Key, attemptID string, before *Record) {
	err := s.mutateAt(context.Background(), key, func(cur *Record, now time.Time) (*Record, error) {
		_, next := release(cur, releaseEvent{AttemptID: attemptID, Before: before}, now)
		return next, nil
	})
	if err != nil {
		// The lease runs out by itself; the record then reads as outcome unknown.
		s.cfg.Logger.Warn("could not release a claim that was not sent", "op", string(key.Op), "custom_biz_id", key.CustomBizID,
			"namespace", key.Namespace, "err", err.Error())
	}
}

package submission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Operation describes an e签宝 operation for Submit: its name and how its result is kept
// in a record (Encode) and given back on a replay (Decode).
type Operation[R any] struct {
	Name   Op
	Encode func(R) string
	Decode func(string) R
}

// Result is a submission's outcome.
type Result[R any] struct {
	Value R
	// Replayed is true when the stored result of an earlier attempt was returned.
	Replayed bool
	// Attempts is the number of attempts recorded so far.
	Attempts int
}

// Submit runs one operation for key through g, exactly once per key: it admits the call
// (g's deadline rule and quota), claims the key, calls call at most once (g's breaker
// and retry of provably unsent attempts apply), and records the result. fp is the
// request's Fingerprint. key.Op is set to op.Name, which is required. A key with an
// empty CustomBizID is not de-duplicated: the call goes through g alone (guard.Call)
// and nothing is stored.
//
// call must not abandon a request that may be on its way when its context ends for the
// caller's sake: Submit gives it a context that ends only when the key's lease could no
// longer be renewed, so that an answer e签宝 returns is recorded even if the caller hung
// up; the caller's retry then gets it as a replay. Submit then returns the caller's
// context error.
//
// Every caller of one key is told the same result: an attempt whose success finds
// another one already recorded returns the recorded one (and reports the extra one
// through Config.OnDuplicate and the log).
func Submit[R any](ctx context.Context, s *Submitter, g *guard.Guard, op Operation[R], key Key, fp Fingerprint, call func(context.Context) (R, error)) (Result[R], error) {
	key.Op = op.Name
	if err := key.check(); err != nil {
		return Result[R]{}, err
	}
	if key.CustomBizID == "" {
		v, err := guard.Call(ctx, g, op.Name, call)
		if err != nil {
			return Result[R]{}, err
		}
		return Result[R]{Value: v, Attempts: 1}, nil
	}
	var fresh R
	got, err := s.submit(ctx, g, key, fp, func(ctx context.Context) (string, error) {
		v, err := call(ctx)
		if err != nil {
			return "", err
		}
		fresh = v
		return op.Encode(v), nil
	})
	res := Result[R]{Replayed: got.replayed, Attempts: got.attempts}
	if err != nil {
		return res, err
	}
	if got.fresh {
		res.Value = fresh
	} else {
		res.Value = op.Decode(got.result)
	}
	return res, nil
}

type outcome struct {
	result   string
	fresh    bool // result is this attempt's own
	replayed bool
	attempts int
}

// submit is the attempt loop: look, wait for a holder, be admitted, claim, then send
// while holding the key and record what came back.
func (s *Submitter) submit(ctx context.Context, g *guard.Guard, key Key, fp Fingerprint, call func(context.Context) (string, error)) (outcome, error) {
	attemptID := newAttemptID()
	backoff := 20 * time.Millisecond
	waitUntil := s.clock.Now().Add(s.cfg.MaxWait)
	if d, ok := ctx.Deadline(); ok {
		waitUntil = d
	}
	waitInFlight := func() error {
		if !s.clock.Now().Add(backoff).Before(waitUntil) {
			return ErrInFlight
		}
		t := s.clock.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.Chan():
		}
		backoff = min(backoff*2, 500*time.Millisecond)
		return nil
	}
	var rec *Record
	var claimed time.Time
	sendFrom := ctx // ctx, carrying the slot the call was admitted to
	for {
		// A result this process holds but could not record yet is the key's result.
		if p, ok := s.pendingFor(key); ok && fp.matches(p.fingerprint) {
			return outcome{result: p.result, replayed: true}, nil
		}
		// Look first, without writing: a replay, a conflict or a call in flight needs
		// no quota slot.
		cur, err := s.get(ctx, key)
		if err != nil {
			return outcome{}, storeErr(ctx, err)
		}
		v, _ := decide(cur, s.claimEvent("", fp), s.clock.Now())
		switch v {
		case replay:
			return outcome{result: cur.Result, replayed: true, attempts: cur.Attempts}, nil
		case conflict:
			return outcome{}, ErrConflict
		case inFlight:
			if err := waitInFlight(); err != nil {
				return outcome{}, err
			}
			continue
		case proceed:
			// The key is taken only once the call is admitted past the quota, so that
			// waiting for a slot never eats into the lease; the slot leaves time for the
			// claim, so that it is not wasted on a call the recheck below would stop.
			admitted, err := g.AdmitSlot(ctx, s.claimAhead())
			if err != nil {
				return outcome{}, err
			}
			// The send goes on the slot taken (or a fresh one if the claim takes long).
			sendFrom = admitted
			if err := ctx.Err(); err != nil {
				return outcome{}, err
			}
		}
		// The claim runs on a context the caller cannot cancel (still bounded by
		// StoreTimeout): a caller hanging up must not cut a commit in half.
		var last *Record
		// The cut-off is measured on this replica's clock from before the claim, whatever
		// clock the lease is written on.
		claimed = s.clock.Now()
		err = s.mutateAt(context.WithoutCancel(ctx), key, func(cur *Record, now time.Time) (*Record, error) {
			var write *Record
			v, write = decide(cur, s.claimEvent(attemptID, fp), now)
			last = cur
			if write != nil {
				write.Key = key
				rec = write
			}
			return write, nil
		})
		s.observeClaim(s.clock.Since(claimed))
		if err != nil {
			// The claim may have committed all the same (an acknowledgement lost to the
			// timeout): if this attempt holds the key, give it back as not sent.
			go s.releaseClaim(key, attemptID, last)
			return outcome{}, storeErr(ctx, err)
		}
		switch v {
		case proceed:
			// The claim took store time out of the caller's deadline: the admission rule
			// applies again before anything is sent.
			if d, ok := ctx.Deadline(); ok && s.clock.Until(d) < g.MinRemaining() {
				s.releaseClaim(key, attemptID, last)
				return outcome{}, guard.ErrDeadlineTooShort
			}
		case replay:
			return outcome{result: last.Result, replayed: true, attempts: last.Attempts}, nil
		case conflict:
			return outcome{}, ErrConflict
		case unknownRefused:
			return outcome{}, ErrUnknownRefused
		case inFlight:
			// Another attempt claimed the key since the look: wait for it.
			if err := waitInFlight(); err != nil {
				return outcome{}, err
			}
			continue
		}
		break
	}

	var out outcome
	err := s.sendHolding(sendFrom, g, key, attemptID, claimed, call, func(res string, sendErr error, lastSent time.Time) error {
		// A request sent may reach e签宝 for about as long as e签宝 takes to answer (the
		// guard's admission minimum), read on any replica's clock.
		var quiet time.Time
		if !lastSent.IsZero() {
			quiet = lastSent.Add(g.MinRemaining() + ClockAllowance)
		}
		out = s.recordOutcome(key, attemptID, fp.current(), res, sendErr, quiet)
		return sendErr
	})
	out.attempts = rec.Attempts
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller has gone; the result is recorded for its retry.
		return out, ctxErr
	}
	if out.result != "" {
		return out, nil
	}
	return out, err
}

// classify turns a send result into the state to record and e签宝's code, from the
// outcome the error states: only an unknown outcome may have created something.
func classify(err error) (State, int) {
	switch upstream.OutcomeOf(err) {
	case upstream.OutcomeOK:
		return StateSucceeded, 0
	case upstream.OutcomeUnknown:
		return StateOutcomeUnknown, 0
	}
	var be *upstream.BusinessError
	if errors.As(err, &be) {
		return StateFailed, be.Code
	}
	return StateFailed, 0
}

func storeErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, ErrStoreUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

func newAttemptID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

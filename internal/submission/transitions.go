package submission

import (
	"fmt"
	"time"
)

// The transitions of a record. Each is pure: given the stored record (nil if none), what
// happens and the record to write (nil: nothing is written). The stores run them inside
// their atomic read-modify-write of one key, so every store applies the same rules, and
// the rules can be read, tested and simulated without a store or a clock.

// verdict is what a transition decided.
type verdict int

const (
	// proceed: the attempt has claimed the key and sends.
	proceed verdict = iota + 1
	// replay: a result is recorded (the record's Result); the caller is told that one.
	replay
	// conflict: the key was used for a different request.
	conflict
	// inFlight: another attempt holds the key.
	inFlight
	// unknownRefused: an earlier attempt's outcome is unknown and the policy refuses to
	// send again.
	unknownRefused
	// takenOver: the holder's lease and the grace after it ran out unrenewed; the record
	// now reads outcome unknown.
	takenOver
	// written: the record is changed as the transition asks (renewed, released, the
	// attempt's outcome or result recorded).
	written
	// notHeld: the attempt no longer holds the key (takeover: no attempt holds it);
	// nothing is written.
	notHeld
)

func (v verdict) String() string {
	switch v {
	case proceed:
		return "proceed"
	case replay:
		return "replay"
	case conflict:
		return "conflict"
	case inFlight:
		return "in-flight"
	case unknownRefused:
		return "unknown-refused"
	case takenOver:
		return "taken-over"
	case written:
		return "written"
	case notHeld:
		return "not-held"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// holds reports whether the attempt attemptID still holds the key whose record is cur:
// the one check before an attempt writes anything about its own call.
func holds(cur *Record, attemptID string) bool {
	return cur != nil && cur.State == StateInProgress && cur.AttemptID == attemptID
}

// claimEvent is an attempt asking for a key, with the rules it is judged by.
type claimEvent struct {
	// AttemptID names the attempt ("" for a look that will not write).
	AttemptID string
	// Fingerprint is the request's, under every fingerprint key.
	Fingerprint Fingerprint
	// Lease is how long a claim holds the key unrenewed.
	Lease time.Duration
	// Grace is how long after a lease ran out its key still counts as held
	// (Submitter.TakeoverGrace).
	Grace time.Duration
	// Unknown says whether a key whose outcome is unknown is sent again.
	Unknown UnknownPolicy
}

// decide is the whole state machine of an attempt asking for a key: replay a recorded
// result, refuse a different request, wait for a holder, take over from a holder that
// died, refuse or resend after an unknown outcome, or claim.
func decide(cur *Record, e claimEvent, now time.Time) (verdict, *Record) {
	if cur == nil {
		return claim(nil, e, now)
	}
	same := e.Fingerprint.matches(cur.Fingerprint)
	switch cur.State {
	case StateSucceeded:
		if same {
			return replay, nil
		}
		return conflict, nil
	case StateFailed:
		// Nothing exists at e签宝 under this key: a retry is sent, and may carry a
		// corrected request.
		return claim(cur, e, now)
	case StateInProgress:
		if !same {
			return conflict, nil
		}
		v, next := takeover(cur, e.Grace, now)
		if v != takenOver {
			return v, nil
		}
		return afterUnknown(next, true, e, now)
	case StateOutcomeUnknown:
		if !same {
			return conflict, nil
		}
		if now.Before(cur.LeaseUntil) {
			// The last request sent may still reach e签宝 (finish): wait for that.
			return inFlight, nil
		}
		return afterUnknown(cur, false, e, now)
	}
	return conflict, nil
}

// afterUnknown applies the unknown-outcome policy to cur (outcome unknown; changed when
// a takeover just made it so, and it must be written even if nothing is sent).
func afterUnknown(cur *Record, changed bool, e claimEvent, now time.Time) (verdict, *Record) {
	if e.Unknown == RefuseUnknown {
		if changed {
			return unknownRefused, cur
		}
		return unknownRefused, nil
	}
	return claim(cur, e, now)
}

// claim takes the key for the attempt: a new record when there is none, or cur (failed,
// or outcome unknown under the resend policy) as a further attempt. It holds the key for
// a lease.
func claim(cur *Record, e claimEvent, now time.Time) (verdict, *Record) {
	next := Record{CreatedAt: now}
	if cur != nil {
		next = *cur
	}
	next.Fingerprint = e.Fingerprint.current()
	next.State = StateInProgress
	next.Attempts++
	next.AttemptID = e.AttemptID
	next.LeaseUntil = now.Add(e.Lease)
	next.UpdatedAt = now
	return proceed, &next
}

// takeover judges an in-progress record (any other is notHeld): while its lease and the
// grace after it last, the key is held (inFlight). After, the replica holding the lease
// stopped renewing it, and the grace in which a holder cut off from the store keeps
// trying to record a result e签宝 returned has passed too: it died mid-call, or its
// result was never recorded. The outcome is unknown (takenOver), and no attempt holds
// the key.
func takeover(cur *Record, grace time.Duration, now time.Time) (verdict, *Record) {
	if cur == nil || cur.State != StateInProgress {
		return notHeld, nil
	}
	if now.Before(cur.LeaseUntil.Add(grace)) {
		return inFlight, nil
	}
	next := *cur
	next.State = StateOutcomeUnknown
	next.AttemptID, next.UpdatedAt = "", now
	return takenOver, &next
}

// renewEvent is a holder renewing its lease.
type renewEvent struct {
	AttemptID string
	Lease     time.Duration
}

// renew extends the holder's lease to a Lease from now (when the renewal started);
// an attempt that no longer holds the key renews nothing.
func renew(cur *Record, e renewEvent, now time.Time) (verdict, *Record) {
	if !holds(cur, e.AttemptID) {
		return notHeld, nil
	}
	next := *cur
	next.LeaseUntil = now.Add(e.Lease)
	return written, &next
}

// releaseEvent is a claim given back unsent.
type releaseEvent struct {
	AttemptID string
	// Before is the record as the claim found it (nil when there was none).
	Before *Record
}

// release gives back a key the attempt claimed but never sent: if the attempt still
// holds it, the record returns to what it said before the claim (failed when there was
// none or nothing had been sent, outcome unknown when an earlier attempt's outcome was
// unknown) and the claim's attempt is not counted.
func release(cur *Record, e releaseEvent, now time.Time) (verdict, *Record) {
	if !holds(cur, e.AttemptID) {
		return notHeld, nil
	}
	next := *cur
	next.State, next.EsignCode = StateFailed, 0
	if e.Before != nil {
		next.EsignCode = e.Before.EsignCode
		if e.Before.State != StateFailed {
			next.State = StateOutcomeUnknown
		}
	}
	if next.Attempts > 0 {
		next.Attempts--
	}
	next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, now
	return written, &next
}

// finishEvent is an attempt's call ending without a result: failed or outcome unknown.
type finishEvent struct {
	AttemptID string
	State     State
	EsignCode int
	// Quiet is, for an unknown outcome, until when the last request the attempt sent
	// may still reach e签宝 (zero when none was sent).
	Quiet time.Time
}

// finish records a failure or unknown outcome while the attempt still holds the key. A
// result another attempt recorded meanwhile wins (replay: every caller is told it). An
// unknown outcome keeps the key until its Quiet time: a request sent just before the call
// was cut off (or stopped, or timed out) can still reach e签宝, and no other attempt may
// be sent meanwhile (decide waits for it).
func finish(cur *Record, e finishEvent, now time.Time) (verdict, *Record) {
	if cur == nil {
		return notHeld, nil
	}
	if cur.State == StateSucceeded {
		return replay, nil
	}
	if !holds(cur, e.AttemptID) {
		return notHeld, nil
	}
	next := *cur
	next.State, next.EsignCode = e.State, e.EsignCode
	next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, now
	if e.State == StateOutcomeUnknown && e.Quiet.After(now) {
		next.LeaseUntil = e.Quiet
	}
	return written, &next
}

// recordEvent is a result e签宝 returned.
type recordEvent struct {
	Key         Key
	Fingerprint []byte
	Result      string
}

// record writes a success whoever holds the key (a result e签宝 returned is never
// dropped): anew when the record was removed meanwhile (retention), over any other state
// otherwise. A result already recorded is kept (replay: the first recorded is every
// caller's).
func record(cur *Record, e recordEvent, now time.Time) (verdict, *Record) {
	if cur == nil {
		return written, &Record{Key: e.Key, Fingerprint: e.Fingerprint, State: StateSucceeded, Result: e.Result, Attempts: 1,
			CreatedAt: now, UpdatedAt: now}
	}
	if cur.State == StateSucceeded {
		return replay, nil
	}
	next := *cur
	// The request that produced the result owns the record, whichever attempt held it
	// last.
	next.Fingerprint = e.Fingerprint
	next.State, next.Result, next.EsignCode = StateSucceeded, e.Result, 0
	next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, now
	return written, &next
}

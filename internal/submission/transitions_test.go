package submission

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// The transitions, each as a table: the record found, the event, and the verdict and
// record written. Each case also checks that the record found is left as it was (the
// stores may call a transition more than once).

var (
	t0    = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	lease = 45 * time.Second
	grace = 2 * time.Minute
	// fp is a request's fingerprint under the current key (first) and an older one.
	fp      = Fingerprint{[]byte("hmac-current"), []byte("hmac-older")}
	otherFP = []byte("hmac-of-another-request")
	k       = Key{Op: "op", Namespace: "ns", CustomBizID: "biz-1"}
)

// at is t0 moved by d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// held is a record in progress under attempt "a1", claimed at t0 after attempts-1
// earlier attempts.
func held(attempts int) *Record {
	return &Record{Key: k, Fingerprint: fp[0], State: StateInProgress, Attempts: attempts, AttemptID: "a1",
		LeaseUntil: at(lease), CreatedAt: t0, UpdatedAt: t0}
}

func rec(state State, mod func(*Record)) *Record {
	r := &Record{Key: k, Fingerprint: fp[0], State: state, Attempts: 1, CreatedAt: t0, UpdatedAt: at(time.Second)}
	if state == StateSucceeded {
		r.Result = "E-1"
	}
	if mod != nil {
		mod(r)
	}
	return r
}

func clone(r *Record) *Record {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

type transitionCase[E any] struct {
	name        string
	cur         *Record
	event       E
	now         time.Time
	wantVerdict verdict
	want        *Record
}

func runTransition[E any](t *testing.T, f func(*Record, E, time.Time) (verdict, *Record), cases []transitionCase[E]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := clone(c.cur)
			v, next := f(c.cur, c.event, c.now)
			if v != c.wantVerdict {
				t.Errorf("verdict %v, want %v", v, c.wantVerdict)
			}
			if !reflect.DeepEqual(next, c.want) {
				t.Errorf("wrote\n  %s\nwant\n  %s", show(next), show(c.want))
			}
			if !reflect.DeepEqual(c.cur, before) {
				t.Errorf("the record found was changed: %s", show(c.cur))
			}
		})
	}
}

func show(r *Record) string {
	if r == nil {
		return "nothing"
	}
	return fmt.Sprintf("%+v", *r)
}

func TestDecide(t *testing.T) {
	resend := claimEvent{AttemptID: "a2", Fingerprint: fp, Lease: lease, Grace: grace, Unknown: ResendUnknown}
	refuse := resend
	refuse.Unknown = RefuseUnknown
	other := resend
	other.Fingerprint = Fingerprint{otherFP}
	rotated := resend
	rotated.Fingerprint = Fingerprint{[]byte("hmac-under-a-new-key"), fp[0]}
	now := at(10 * time.Second)
	claimed := func(r *Record) *Record {
		r.Fingerprint, r.State, r.AttemptID, r.LeaseUntil, r.UpdatedAt = fp[0], StateInProgress, "a2", now.Add(lease), now
		return r
	}
	expired := at(lease + grace)
	runTransition(t, decide, []transitionCase[claimEvent]{
		{name: "no record: claimed", cur: nil, event: resend, now: now, wantVerdict: proceed,
			want: &Record{Fingerprint: fp[0], State: StateInProgress, Attempts: 1, AttemptID: "a2", LeaseUntil: now.Add(lease), CreatedAt: now, UpdatedAt: now}},
		{name: "succeeded, same request: replay", cur: rec(StateSucceeded, nil), event: resend, now: now, wantVerdict: replay},
		{name: "succeeded, same request under an older key: replay", cur: rec(StateSucceeded, nil), event: rotated, now: now, wantVerdict: replay},
		{name: "succeeded, another request: conflict", cur: rec(StateSucceeded, nil), event: other, now: now, wantVerdict: conflict},
		{name: "failed: a further attempt", cur: rec(StateFailed, func(r *Record) { r.EsignCode = 1435002 }), event: resend, now: now, wantVerdict: proceed,
			want: claimed(rec(StateFailed, func(r *Record) { r.EsignCode, r.Attempts = 1435002, 2 }))},
		{name: "failed, corrected request: sent, the new request owns the record", cur: rec(StateFailed, func(r *Record) { r.Fingerprint = otherFP }), event: resend, now: now, wantVerdict: proceed,
			want: claimed(rec(StateFailed, func(r *Record) { r.Attempts = 2 }))},
		{name: "in progress, lease running: in flight", cur: held(1), event: resend, now: now, wantVerdict: inFlight},
		{name: "in progress, lease out but within the grace: in flight", cur: held(1), event: resend, now: expired.Add(-time.Nanosecond), wantVerdict: inFlight},
		{name: "in progress, another request: conflict", cur: held(1), event: other, now: expired, wantVerdict: conflict},
		{name: "in progress, grace over, resend: taken over and claimed", cur: held(1), event: resend, now: expired, wantVerdict: proceed,
			want: &Record{Key: k, Fingerprint: fp[0], State: StateInProgress, Attempts: 2, AttemptID: "a2", LeaseUntil: expired.Add(lease), CreatedAt: t0, UpdatedAt: expired}},
		{name: "in progress, grace over, refuse: recorded as unknown, refused", cur: held(1), event: refuse, now: expired, wantVerdict: unknownRefused,
			want: &Record{Key: k, Fingerprint: fp[0], State: StateOutcomeUnknown, Attempts: 1, LeaseUntil: at(lease), CreatedAt: t0, UpdatedAt: expired}},
		{name: "unknown, resend: a further attempt", cur: rec(StateOutcomeUnknown, nil), event: resend, now: now, wantVerdict: proceed,
			want: claimed(rec(StateOutcomeUnknown, func(r *Record) { r.Attempts = 2 }))},
		{name: "unknown, refuse: refused, nothing written", cur: rec(StateOutcomeUnknown, nil), event: refuse, now: now, wantVerdict: unknownRefused},
		{name: "unknown, its last request may still reach e签宝: wait", cur: rec(StateOutcomeUnknown, func(r *Record) { r.LeaseUntil = now.Add(time.Millisecond) }),
			event: resend, now: now, wantVerdict: inFlight},
		{name: "unknown, refuse, its last request may still reach e签宝: wait", cur: rec(StateOutcomeUnknown, func(r *Record) { r.LeaseUntil = now.Add(time.Millisecond) }),
			event: refuse, now: now, wantVerdict: inFlight},
		{name: "unknown, another request: conflict", cur: rec(StateOutcomeUnknown, nil), event: other, now: now, wantVerdict: conflict},
		{name: "a state this version does not know: conflict", cur: rec("archived", nil), event: resend, now: now, wantVerdict: conflict},
	})
}

func TestClaim(t *testing.T) {
	e := claimEvent{AttemptID: "a2", Fingerprint: fp, Lease: lease}
	now := at(time.Minute)
	runTransition(t, claim, []transitionCase[claimEvent]{
		{name: "anew", cur: nil, event: e, now: now, wantVerdict: proceed,
			want: &Record{Fingerprint: fp[0], State: StateInProgress, Attempts: 1, AttemptID: "a2", LeaseUntil: now.Add(lease), CreatedAt: now, UpdatedAt: now}},
		{name: "after a failure: counted, the code kept until the answer", cur: rec(StateFailed, func(r *Record) { r.EsignCode = 1435002; r.Fingerprint = otherFP }), event: e, now: now, wantVerdict: proceed,
			want: &Record{Key: k, Fingerprint: fp[0], State: StateInProgress, EsignCode: 1435002, Attempts: 2, AttemptID: "a2", LeaseUntil: now.Add(lease), CreatedAt: t0, UpdatedAt: now}},
		{name: "after an unknown outcome", cur: rec(StateOutcomeUnknown, func(r *Record) { r.Attempts = 3 }), event: e, now: now, wantVerdict: proceed,
			want: &Record{Key: k, Fingerprint: fp[0], State: StateInProgress, Attempts: 4, AttemptID: "a2", LeaseUntil: now.Add(lease), CreatedAt: t0, UpdatedAt: now}},
	})
}

func TestTakeover(t *testing.T) {
	expired := at(lease + grace)
	runTransition(t, takeover, []transitionCase[time.Duration]{
		{name: "no record: nobody holds it", cur: nil, event: grace, now: expired, wantVerdict: notHeld},
		{name: "not in progress: nobody holds it", cur: rec(StateFailed, nil), event: grace, now: expired, wantVerdict: notHeld},
		{name: "lease running", cur: held(1), event: grace, now: at(time.Second), wantVerdict: inFlight},
		{name: "lease out, grace running", cur: held(1), event: grace, now: at(lease + time.Second), wantVerdict: inFlight},
		{name: "last instant of the grace", cur: held(1), event: grace, now: expired.Add(-time.Nanosecond), wantVerdict: inFlight},
		{name: "grace over: outcome unknown, no holder", cur: held(2), event: grace, now: expired, wantVerdict: takenOver,
			want: &Record{Key: k, Fingerprint: fp[0], State: StateOutcomeUnknown, Attempts: 2, LeaseUntil: at(lease), CreatedAt: t0, UpdatedAt: expired}},
	})
}

func TestRenew(t *testing.T) {
	e := renewEvent{AttemptID: "a1", Lease: lease}
	from := at(lease / 3)
	renewed := held(1)
	renewed.LeaseUntil = from.Add(lease)
	runTransition(t, renew, []transitionCase[renewEvent]{
		{name: "held: the lease runs a Lease from the renewal's start", cur: held(1), event: e, now: from, wantVerdict: written, want: renewed},
		{name: "removed", cur: nil, event: e, now: from, wantVerdict: notHeld},
		{name: "another attempt took over", cur: held(1), event: renewEvent{AttemptID: "a0", Lease: lease}, now: from, wantVerdict: notHeld},
		{name: "result recorded meanwhile", cur: rec(StateSucceeded, func(r *Record) { r.AttemptID = "a1" }), event: e, now: from, wantVerdict: notHeld},
		{name: "marked unknown by a takeover", cur: rec(StateOutcomeUnknown, func(r *Record) { r.AttemptID = "a1" }), event: e, now: from, wantVerdict: notHeld},
	})
}

func TestRelease(t *testing.T) {
	now := at(time.Second)
	given := func(state State, code, attempts int) *Record {
		return &Record{Key: k, Fingerprint: fp[0], State: state, EsignCode: code, Attempts: attempts, CreatedAt: t0, UpdatedAt: now}
	}
	runTransition(t, release, []transitionCase[releaseEvent]{
		{name: "claimed anew: failed, not counted", cur: held(1), event: releaseEvent{AttemptID: "a1"}, now: now, wantVerdict: written, want: given(StateFailed, 0, 0)},
		{name: "claimed after a failure: that failure again", cur: held(2), event: releaseEvent{AttemptID: "a1", Before: rec(StateFailed, func(r *Record) { r.EsignCode = 1435002 })}, now: now,
			wantVerdict: written, want: given(StateFailed, 1435002, 1)},
		{name: "claimed after an unknown outcome: unknown again", cur: held(2), event: releaseEvent{AttemptID: "a1", Before: rec(StateOutcomeUnknown, nil)}, now: now,
			wantVerdict: written, want: given(StateOutcomeUnknown, 0, 1)},
		{name: "claimed by a takeover: unknown", cur: held(2), event: releaseEvent{AttemptID: "a1", Before: held(1)}, now: now,
			wantVerdict: written, want: given(StateOutcomeUnknown, 0, 1)},
		{name: "a count already at 0 stays 0", cur: held(0), event: releaseEvent{AttemptID: "a1"}, now: now, wantVerdict: written, want: given(StateFailed, 0, 0)},
		{name: "no longer held", cur: held(1), event: releaseEvent{AttemptID: "a0"}, now: now, wantVerdict: notHeld},
		{name: "removed", cur: nil, event: releaseEvent{AttemptID: "a1"}, now: now, wantVerdict: notHeld},
		{name: "another attempt's result recorded", cur: rec(StateSucceeded, nil), event: releaseEvent{AttemptID: "a1"}, now: now, wantVerdict: notHeld},
	})
}

func TestFinish(t *testing.T) {
	now := at(3 * time.Second)
	ended := func(state State, code int) *Record {
		return &Record{Key: k, Fingerprint: fp[0], State: state, EsignCode: code, Attempts: 1, CreatedAt: t0, UpdatedAt: now}
	}
	runTransition(t, finish, []transitionCase[finishEvent]{
		{name: "held, refused: failed with e签宝's code", cur: held(1), event: finishEvent{AttemptID: "a1", State: StateFailed, EsignCode: 1435002}, now: now,
			wantVerdict: written, want: ended(StateFailed, 1435002)},
		{name: "held, no answer: unknown", cur: held(1), event: finishEvent{AttemptID: "a1", State: StateOutcomeUnknown}, now: now,
			wantVerdict: written, want: ended(StateOutcomeUnknown, 0)},
		{name: "held, no answer, a request sent just before: unknown, the key kept until it can no longer arrive", cur: held(1),
			event: finishEvent{AttemptID: "a1", State: StateOutcomeUnknown, Quiet: now.Add(time.Second)}, now: now,
			wantVerdict: written, want: func() *Record { r := ended(StateOutcomeUnknown, 0); r.LeaseUntil = now.Add(time.Second); return r }()},
		{name: "held, no answer, the last request long sent: unknown, free", cur: held(1),
			event: finishEvent{AttemptID: "a1", State: StateOutcomeUnknown, Quiet: now.Add(-time.Second)}, now: now,
			wantVerdict: written, want: ended(StateOutcomeUnknown, 0)},
		{name: "held, refused: failed and free whatever was sent", cur: held(1),
			event: finishEvent{AttemptID: "a1", State: StateFailed, Quiet: now.Add(time.Second)}, now: now,
			wantVerdict: written, want: ended(StateFailed, 0)},
		{name: "another attempt's result recorded: that one wins", cur: rec(StateSucceeded, nil), event: finishEvent{AttemptID: "a1", State: StateFailed}, now: now, wantVerdict: replay},
		{name: "taken over by another attempt", cur: held(1), event: finishEvent{AttemptID: "a0", State: StateFailed}, now: now, wantVerdict: notHeld},
		{name: "marked unknown by a takeover", cur: rec(StateOutcomeUnknown, nil), event: finishEvent{AttemptID: "a1", State: StateFailed}, now: now, wantVerdict: notHeld},
		{name: "removed", cur: nil, event: finishEvent{AttemptID: "a1", State: StateFailed}, now: now, wantVerdict: notHeld},
	})
}

func TestRecord(t *testing.T) {
	now := at(4 * time.Second)
	e := recordEvent{Key: k, Fingerprint: fp[0], Result: "E-2"}
	succeeded := func(attempts int, created time.Time) *Record {
		return &Record{Key: k, Fingerprint: fp[0], State: StateSucceeded, Result: "E-2", Attempts: attempts, CreatedAt: created, UpdatedAt: now}
	}
	runTransition(t, record, []transitionCase[recordEvent]{
		{name: "held: recorded", cur: held(1), event: e, now: now, wantVerdict: written, want: succeeded(1, t0)},
		{name: "removed meanwhile: recorded anew", cur: nil, event: e, now: now, wantVerdict: written, want: succeeded(1, now)},
		{name: "another attempt holds it now: recorded all the same, the producing request owns it",
			cur:   &Record{Key: k, Fingerprint: otherFP, State: StateInProgress, Attempts: 2, AttemptID: "a9", LeaseUntil: at(time.Minute), CreatedAt: t0, UpdatedAt: t0},
			event: e, now: now, wantVerdict: written, want: succeeded(2, t0)},
		{name: "marked failed: recorded, the code cleared", cur: rec(StateFailed, func(r *Record) { r.EsignCode = 1435002 }), event: e, now: now, wantVerdict: written, want: succeeded(1, t0)},
		{name: "marked unknown: recorded", cur: rec(StateOutcomeUnknown, nil), event: e, now: now, wantVerdict: written, want: succeeded(1, t0)},
		{name: "a result already recorded: kept", cur: rec(StateSucceeded, nil), event: e, now: now, wantVerdict: replay},
		{name: "the same result already recorded (a lost acknowledgement): kept", cur: rec(StateSucceeded, func(r *Record) { r.Result = "E-2" }), event: e, now: now, wantVerdict: replay},
	})
}

package guard

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// The quota's promise: never more than QPS e签宝 calls in any window of QuotaWindow, at
// any offset, after idle periods too. e签宝 does not document how it counts, so this is
// the only safe reading of "QPS calls per second".
const (
	// QuotaWindow is the window the promise holds over.
	QuotaWindow = time.Second
	// QuotaSlack is added to the window by the slots' spacing: QPS slots span
	// QuotaWindow plus QuotaSlack. It covers the jitter between the instant a slot falls
	// due and the instant e签宝 receives its call, and costs 1.5 % of the quota (a
	// backlog gets 98.5 %).
	QuotaSlack = 15 * time.Millisecond
	// sendSlack is added to the window by each process's own count of its sends: a send
	// waits until the one QPS before it (in this process) is QuotaWindow plus sendSlack
	// old. Being shorter than QuotaSlack, it lets sends that a pause held back catch up
	// with their slots (5 ms a second) instead of trailing them for good.
	sendSlack = 10 * time.Millisecond
)

// SlotInterval is the spacing of the quota's slots for qps calls per second: qps slots
// span QuotaWindow plus QuotaSlack. Every Quota hands out one slot per interval, with no
// burst: a full bucket after an idle period would let a window carry up to twice the
// quota.
func SlotInterval(qps float64) time.Duration {
	return time.Duration(float64(QuotaWindow+QuotaSlack) / qps)
}

// Quota hands out the app's e签宝 send slots. Implementations: the in-process limiter
// (NewLocalQuota) and the one every replica shares through PostgreSQL
// (submission.PostgresStore.Quota).
type Quota interface {
	// Reserve takes the next free slot if it comes within maxWait, and returns how long
	// to wait for it. ok is false (and nothing is taken) when the next slot is later.
	Reserve(ctx context.Context, maxWait time.Duration) (wait time.Duration, ok bool, err error)
}

// localQuota is golang.org/x/time/rate's token bucket, for one process, read on a clock.
type localQuota struct {
	l     *rate.Limiter
	clock clock.Clock
}

// NewLocalQuota is a quota of qps per second for this process alone, on c (the real
// clock when nil): one slot every SlotInterval(qps), no burst.
func NewLocalQuota(qps float64, c clock.Clock) Quota {
	return &localQuota{l: rate.NewLimiter(rate.Every(SlotInterval(qps)), 1), clock: clock.Or(c)}
}

func (q *localQuota) Reserve(_ context.Context, maxWait time.Duration) (time.Duration, bool, error) {
	now := q.clock.Now()
	r := q.l.ReserveN(now, 1)
	if !r.OK() {
		return 0, false, nil
	}
	d := r.DelayFrom(now)
	if d > maxWait {
		r.CancelAt(now)
		return d, false, nil
	}
	return d, true, nil
}

// sendLog is this process's count of its own sends: the instants of the last n. A send
// goes no earlier than QuotaWindow plus sendSlack after the one n before it, so no
// window of this process's sends, however they bunched (a claim that took long, a timer
// that fired late, a pause of the process), carries more than n. The slots keep the
// average rate; this keeps each window.
//
// Sends are numbered in the order they ask; each is planned from the instant of the one
// n before it, and its own instant is stamped when it actually goes, so that a send that
// went later than planned holds back the one n after it.
type sendLog struct {
	n    uint64
	at   []time.Time // the instants of sends seq-2n .. seq-1, by number mod 2n
	seq  uint64      // the next send's number
	span time.Duration
}

// maxSendLog bounds the sends a sendLog remembers: a quota lifted out of the way (the
// benchmarks' 1,000,000 a second) is counted over a shorter window instead.
const maxSendLog = 4096

// newSendLog counts at most qps sends (at least one) per window; above maxSendLog a
// second, at most maxSendLog per the same share of the window.
func newSendLog(qps float64) *sendLog {
	n := uint64(min(maxSendLog, max(1, int(qps))))
	span := QuotaWindow + sendSlack
	if qps < 1 || qps > maxSendLog {
		span = time.Duration(float64(span) * float64(n) / qps)
	}
	return &sendLog{n: n, at: make([]time.Time, 2*n), span: span}
}

// plan numbers a new send and places it at or after now.
func (l *sendLog) plan(now time.Time) (seq uint64, at time.Time) {
	seq = l.seq
	l.seq++
	at = l.earliest(seq, now)
	l.at[seq%uint64(len(l.at))] = at
	return seq, at
}

// earliest is the first instant at or after t at which send seq keeps the count.
func (l *sendLog) earliest(seq uint64, t time.Time) time.Time {
	if seq < l.n {
		return t
	}
	if e := l.at[(seq-l.n)%uint64(len(l.at))].Add(l.span); e.After(t) {
		return e
	}
	return t
}

// stamp records that send seq went at t.
func (l *sendLog) stamp(seq uint64, t time.Time) {
	l.at[seq%uint64(len(l.at))] = t
}

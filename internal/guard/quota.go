package guard

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

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

// NewLocalQuota is a quota of qps per second (burst qps) for this process alone, on c
// (the real clock when nil).
func NewLocalQuota(qps float64, c clock.Clock) Quota {
	return &localQuota{l: rate.NewLimiter(rate.Limit(qps), max(1, int(qps))), clock: clock.Or(c)}
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

package submission

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// Defaults of the upstream policy.
const (
	// DefaultQPS is e签宝's default quota per app ID: 50 requests per second.
	DefaultQPS = 50
	// maxLimiterWait bounds a wait for the rate limiter when the caller set no deadline.
	maxLimiterWait = 5 * time.Second
	// breakerFailures consecutive failures of e签宝 to answer open the breaker.
	breakerFailures = 5
	// breakerOpenFor is how long the breaker fails fast before letting a probe through.
	breakerOpenFor = 10 * time.Second
	// unsentRetries is how many times an attempt that provably never reached e签宝 is
	// tried again, within the caller's deadline.
	unsentRetries = 2
)

var (
	// ErrRateLimited: the app's quota would be exceeded within the caller's deadline.
	ErrRateLimited = errors.New("e签宝 request quota exhausted for now")
	// ErrCircuitOpen: e签宝 keeps failing; calls fail fast until a probe succeeds.
	ErrCircuitOpen = errors.New("e签宝 is failing; not sending for now")
)

// Sender is the e签宝 call the guard protects.
type Sender interface {
	CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error)
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// QPS is the app's quota; DefaultQPS when 0. Burst is the same number.
	QPS float64
	// OnBreakerChange, when set, is told of every breaker state change (for metrics).
	OnBreakerChange func(from, to string)
	// OnLimiter, when set, is told how long each call waited for the limiter and whether
	// it was refused.
	OnLimiter func(waited time.Duration, refused bool)
	// BreakerOpenFor is how long the open breaker fails fast; 10 s when zero.
	BreakerOpenFor time.Duration
}

// Guard applies the upstream policy around a Sender: a rate limiter matching e签宝's
// per-app quota (golang.org/x/time/rate), a circuit breaker that fails fast while e签宝
// keeps failing (sony/gobreaker), and automatic retry of attempts that provably never
// reached e签宝 — never of one that may have.
type Guard struct {
	next    Sender
	limiter *rate.Limiter
	breaker *gobreaker.CircuitBreaker[*upstream.PsnEvidencePointResult]
	cfg     GuardConfig
}

// NewGuard wraps next.
func NewGuard(next Sender, cfg GuardConfig) *Guard {
	if cfg.QPS <= 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = breakerOpenFor
	}
	g := &Guard{next: next, cfg: cfg, limiter: rate.NewLimiter(rate.Limit(cfg.QPS), max(1, int(cfg.QPS)))}
	g.breaker = gobreaker.NewCircuitBreaker[*upstream.PsnEvidencePointResult](gobreaker.Settings{
		Name:    "esign",
		Timeout: cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerFailures
		},
		// Only e签宝 failing to answer counts: a business error or a refusal is e签宝
		// answering, and the caller's own cancellation says nothing about e签宝.
		IsSuccessful: func(err error) bool { return err == nil || !upstreamDown(err) },
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, ErrRateLimited)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if cfg.OnBreakerChange != nil {
				cfg.OnBreakerChange(from.String(), to.String())
			}
		},
	})
	return g
}

// BreakerState reports "closed", "half-open" or "open".
func (g *Guard) BreakerState() string { return g.breaker.State().String() }

// upstreamDown reports whether err means e签宝 did not answer definitively.
func upstreamDown(err error) bool {
	var (
		se *upstream.SendError
		uo *upstream.UnknownOutcomeError
		me *upstream.MalformedResponseError
	)
	return errors.As(err, &se) || errors.As(err, &uo) || errors.As(err, &me)
}

// CreatePsnEvidencePoint sends p through the limiter and the breaker.
//
// The wait for the limiter honours ctx. The e签宝 call itself does not stop when ctx is
// cancelled (the client's own timeout bounds it): once a request may be on its way, its
// answer is worth having, so that an eviPointId is recorded even if the caller hung up.
func (g *Guard) CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	callCtx := context.WithoutCancel(ctx)
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := g.breaker.Execute(func() (*upstream.PsnEvidencePointResult, error) {
			return g.next.CreatePsnEvidencePoint(callCtx, p)
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return nil, ErrCircuitOpen
		}
		var se *upstream.SendError
		if err == nil || !errors.As(err, &se) || ctx.Err() != nil || attempt == unsentRetries {
			return res, err
		}
		// Provably never reached e签宝: safe to send again, if time allows.
		if d, ok := ctx.Deadline(); ok && time.Until(d) < backoff {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(backoff):
		}
		backoff *= 3
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// Wait takes a token of the e签宝 quota for a call the guard does not make itself (a
// file upload), on the same terms: ErrRateLimited if none is free within ctx's deadline.
func (g *Guard) Wait(ctx context.Context) error { return g.wait(ctx) }

// wait takes a token, waiting only as long as the caller's deadline (or maxLimiterWait)
// allows; rate.Limiter refuses at once when the wait would overrun it.
func (g *Guard) wait(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxLimiterWait)
		defer cancel()
	}
	start := time.Now()
	err := g.limiter.Wait(ctx)
	if g.cfg.OnLimiter != nil {
		g.cfg.OnLimiter(time.Since(start), err != nil)
	}
	if err != nil {
		return ErrRateLimited
	}
	return nil
}

// Package guard applies the upstream policy to every e签宝 call: admission by the
// caller's remaining deadline, the app's quota, a circuit breaker that fails fast while
// e签宝 keeps failing (sony/gobreaker), automatic retry of attempts that provably never
// reached e签宝 (never of one that may have), and a report of each call for metrics and
// the debug log.
//
// It knows no operation: a call is named by the caller (Op) only for its report. Every
// reading of the time goes through Config.Clock.
package guard

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// Defaults of the upstream policy.
const (
	// DefaultQPS is e签宝's default quota per app ID: 50 requests per second.
	DefaultQPS = 50
	// DefaultMinRemaining is the least remaining deadline a call must have for the
	// service to start an e签宝 call for it: about what e签宝 takes to answer. A call
	// started with less would most likely outlive its caller, who then retries and
	// creates the same thing again (or, keyless, never learns the first one's ID).
	DefaultMinRemaining = time.Second
	// maxLimiterWait bounds a wait for the quota when the caller set no deadline.
	maxLimiterWait = 5 * time.Second
	// breakerFailures consecutive failures of e签宝 to answer open the breaker.
	breakerFailures = 5
	// breakerOpenFor is how long the breaker fails fast before letting a probe through.
	breakerOpenFor = 10 * time.Second
	// unsentRetries is how many times an attempt that provably never reached e签宝 is
	// tried again, within the caller's deadline.
	unsentRetries = 2
)

// Op names an e签宝 operation in the guard's reports (metrics and log lines).
type Op string

// refusal is a call the guard refused before sending. It states its outcome like an
// upstream error: nothing was sent, for a reason of this service's own.
type refusal struct {
	kind, msg string
}

func (r *refusal) Error() string             { return r.msg }
func (r *refusal) Outcome() upstream.Outcome { return upstream.OutcomeLocal }
func (r *refusal) RetrySafe() bool           { return true }
func (r *refusal) TraceID() string           { return "" }
func (r *refusal) Kind() string              { return r.kind }

func newRefusal(kind, msg string) *refusal { return &refusal{kind: kind, msg: msg} }

var _ upstream.Error = (*refusal)(nil)

// The guard's refusals. Each is an upstream.Error with OutcomeLocal: nothing was sent.
var (
	// ErrRateLimited: the app's quota leaves no slot within the caller's deadline.
	ErrRateLimited error = newRefusal("rate_limited", "e签宝 request quota exhausted for now")
	// ErrCircuitOpen: e签宝 keeps failing; calls fail fast until a probe succeeds.
	ErrCircuitOpen error = newRefusal("circuit_open", "e签宝 is failing; not sending for now")
	// ErrDeadlineTooShort: the caller's remaining deadline is shorter than the admission
	// minimum (Config.MinRemaining), so the call would most likely outlive it.
	ErrDeadlineTooShort error = newRefusal("deadline_too_short", "the call's remaining deadline is too short for an e签宝 call")
)

// CallInfo describes one e签宝 call the guard made, for metrics and the debug log. It
// carries no request or response content.
type CallInfo struct {
	Op      Op
	Outcome upstream.Outcome
	// Kind is "success" or the error's Kind.
	Kind string
	// EsignCode is e签宝's business code when it answered with one (0 on success).
	EsignCode int
	// TraceID is e签宝's trace ID when the answer carried one.
	TraceID string
	Elapsed time.Duration
}

// Config configures a Guard.
type Config struct {
	// Settings are the quota and the admission rule (DefaultSettings, or as configured);
	// a field left zero in a Config built in code takes DefaultSettings' value.
	Settings
	// Quota, when set, hands out the slots instead of an in-process limiter at QPS (a
	// quota shared by every replica).
	Quota Quota
	// OnBreakerChange, when set, is told of every breaker state change (for metrics).
	OnBreakerChange func(from, to string)
	// OnLimiter, when set, is told how long each call waited for the quota and whether
	// it was refused.
	OnLimiter func(waited time.Duration, refused bool)
	// OnCall, when set, is told of every e签宝 call made (for metrics and the debug
	// log). ctx is the call's context.
	OnCall func(ctx context.Context, info CallInfo)
	// BreakerOpenFor is how long the open breaker fails fast; 10 s when zero.
	BreakerOpenFor time.Duration
	// CallerOf names the caller a call's context is for (its authenticated identity), so
	// that each caller holds at most its share of the quota ahead (Settings.CallerShare);
	// when nil, every call is one caller's.
	CallerOf func(context.Context) string
	// Clock is the guard's time source (waits, deadlines, the in-process quota);
	// the real clock when nil. The breaker's open period runs on the time package.
	Clock clock.Clock
}

// Guard applies the upstream policy to every e签宝 operation.
//
// The breaker counts only outcomes that mean e签宝 failed (upstream.Outcome's
// UpstreamFailure: not sent, unknown); a refusal means e签宝 is up, and a local failure
// (upstream.OutcomeLocal: the caller left, a local resource ran out) is ignored.
//
// Use Call for a keyless operation; the exactly-once layer (submission.Submit) uses
// Admit and Send.
type Guard struct {
	quota   Quota
	breaker *gobreaker.CircuitBreaker[any]
	cfg     Config
	clock   clock.Clock
	// local is this process's own limiter at its share, while a shared Quota is down.
	local Quota
	// sends counts this process's sends against QPS; shareSends against its share,
	// counted only while the shared quota is down (see sendLog).
	sends, shareSends *sendLog
	paceMu            sync.Mutex
	// fallbackUntil (unix nanoseconds): sends until then were admitted by local.
	fallbackUntil atomic.Int64
	// fair bounds the slots each caller holds reserved ahead.
	fair *fairQueue
}

// New builds a Guard.
func New(cfg Config) *Guard {
	d := DefaultSettings()
	if cfg.QPS <= 0 {
		cfg.QPS = d.QPS
	}
	if cfg.MinRemaining <= 0 {
		cfg.MinRemaining = d.MinRemaining
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = breakerOpenFor
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = d.Replicas
	}
	if cfg.CallerShare <= 0 {
		cfg.CallerShare = d.CallerShare
	}
	cfg.Clock = clock.Or(cfg.Clock)
	share := cfg.QPS / float64(cfg.Replicas)
	g := &Guard{cfg: cfg, quota: cfg.Quota, clock: cfg.Clock, sends: newSendLog(cfg.QPS), shareSends: newSendLog(share)}
	if g.quota == nil {
		g.quota = NewLocalQuota(cfg.QPS, cfg.Clock)
		g.local = g.quota
	} else {
		g.local = NewLocalQuota(share, cfg.Clock)
	}
	g.fair = newFairQueue(slotsAhead(cfg.QPS, cfg.CallerShare), SlotInterval(cfg.QPS), cfg.Clock)
	g.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:    "esign",
		Timeout: cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerFailures
		},
		IsSuccessful: func(err error) bool { return !upstream.OutcomeOf(err).UpstreamFailure() },
		IsExcluded:   func(err error) bool { return upstream.OutcomeOf(err) == upstream.OutcomeLocal },
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

// MinRemaining is the admission minimum: the least remaining deadline a caller must have
// for an e签宝 call to be started for it.
func (g *Guard) MinRemaining() time.Duration { return g.cfg.MinRemaining }

// Call makes one keyless e签宝 operation through g: it is admitted (deadline rule and
// quota), not sent at all if the caller has gone meanwhile, then sent through the
// breaker, with provably unsent attempts retried.
//
// Once the request may be on its way, it is not abandoned when ctx ends (the client's
// own timeout bounds it): its answer is still reported to metrics. Whether an unsent
// attempt is tried again is decided on ctx: not once the caller has gone, and only
// when it is admitted again by its remaining deadline.
func Call[R any](ctx context.Context, g *Guard, op Op, call func(context.Context) (R, error)) (R, error) {
	var zero R
	ctx, err := g.AdmitSlot(ctx, 0)
	if err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		// The caller has gone while waiting for its slot: nobody would learn the result.
		return zero, err
	}
	v, err := Send(ctx, context.WithoutCancel(ctx), g, op, call)
	if err != nil {
		return zero, err
	}
	return v, nil
}

// Admit applies the admission rule and takes a quota slot, waiting for it. It refuses
// with ErrDeadlineTooShort when ctx's remaining deadline is below MinRemaining, and with
// ErrRateLimited when the next slot would leave less than that (or, without a deadline,
// would take longer than 5 s). A quota that fails (its store is unreachable) is
// replaced by this process's own limiter at its share (Config.Replicas) for the call.
func (g *Guard) Admit(ctx context.Context) error { return g.AdmitBefore(ctx, 0) }

// slotTolerance is how much later than its slot of a shared quota a send may go: a
// later one takes a fresh slot (see freshen). Within QuotaSlack, leaving 5 ms for the
// request to reach e签宝.
const slotTolerance = 10 * time.Millisecond

// slotTicket is the slot a call was admitted to: when it falls due, whether the shared
// quota handed it out, and the caller's deadline (zero when none).
type slotTicket struct {
	due, deadline time.Time
	shared        bool
}

type slotKey struct{}

// slotOf is the slot ctx carries (AdmitSlot), if any.
func slotOf(ctx context.Context) slotTicket {
	s, _ := ctx.Value(slotKey{}).(slotTicket)
	return s
}

// stale reports whether a send at now is too late for s: other replicas' sends on time
// would bunch with it, and each replica counts only its own sends (sendLog).
func (s slotTicket) stale(now time.Time) bool {
	return s.shared && now.Sub(s.due) > slotTolerance
}

// AdmitSlot is AdmitBefore, returning ctx carrying the slot for Send, and returning ahead
// before the slot falls due: what the caller spends until it sends (its claim) is spent
// while the slot comes, and Send waits for the rest. A send that goes later than its
// slot of a shared quota takes a fresh one instead (see freshen).
func (g *Guard) AdmitSlot(ctx context.Context, ahead time.Duration) (context.Context, error) {
	s, err := g.admit(ctx, ahead, ahead)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, slotKey{}, s), nil
}

// AdmitBefore is Admit for a caller that spends up to ahead between being admitted and
// sending (the exactly-once layer's claim of the key): the slot it waits for must leave
// MinRemaining plus ahead, so that a slot is not taken by a call the admission rule
// would stop once it is ready to send. A call with less than that left is admitted
// only if a slot is free at once.
func (g *Guard) AdmitBefore(ctx context.Context, ahead time.Duration) error {
	_, err := g.admit(ctx, ahead, 0)
	return err
}

// admit is AdmitBefore, returning lead before the slot falls due, and the slot.
func (g *Guard) admit(ctx context.Context, ahead, lead time.Duration) (slotTicket, error) {
	maxWait := maxLimiterWait
	var sl slotTicket
	if d, ok := ctx.Deadline(); ok {
		sl.deadline = d
		remaining := g.clock.Until(d)
		if remaining < g.cfg.MinRemaining {
			return sl, ErrDeadlineTooShort
		}
		maxWait = max(0, remaining-g.cfg.MinRemaining-ahead)
	}
	start := g.clock.Now()
	// The caller's own calls ahead first: it holds at most its share of slots reserved.
	var caller string
	if g.cfg.CallerOf != nil {
		caller = g.cfg.CallerOf(ctx)
	}
	release, err := g.fair.acquire(ctx, caller, maxWait)
	if err != nil {
		g.reportLimiter(g.clock.Since(start), err == ErrRateLimited)
		return sl, err
	}
	// The place is given back once the slot is due (or not taken): the caller's next
	// call then reserves the slot after it. A caller that leaves before its slot does not
	// free its place before the slot is due, so that leaving cannot pile up slots ahead.
	due := g.clock.Now()
	defer func() {
		if d := due.Sub(g.clock.Now()); d > 0 {
			g.clock.AfterFunc(d, release)
			return
		}
		release()
	}()
	maxWait = max(0, maxWait-g.clock.Since(start))
	s, ok := g.reserve(ctx, maxWait)
	if !ok {
		g.reportLimiter(g.clock.Since(start), true)
		return sl, ErrRateLimited
	}
	sl.due, sl.shared = s.due, s.shared
	due = s.due
	err = g.waitUntil(ctx, due.Add(-lead))
	g.reportLimiter(g.clock.Since(start), false)
	return sl, err
}

// reserve takes the next slot within maxWait from the quota, or from this process's own
// limiter at its share while the quota fails (its store is unreachable).
func (g *Guard) reserve(ctx context.Context, maxWait time.Duration) (slotTicket, bool) {
	wait, ok, err := g.quota.Reserve(ctx, maxWait)
	shared := g.cfg.Quota != nil
	if err != nil {
		g.fallbackUntil.Store(g.clock.Now().Add(QuotaWindow + QuotaSlack + maxWait).UnixNano())
		wait, ok, _ = g.local.Reserve(ctx, maxWait)
		shared = false
	}
	return slotTicket{due: g.clock.Now().Add(wait), shared: shared}, ok
}

// waitUntil waits on ctx until t; it returns ctx's error if ctx ends first.
func (g *Guard) waitUntil(ctx context.Context, t time.Time) error {
	wait := g.clock.Until(t)
	if wait <= 0 {
		return nil
	}
	tm := g.clock.NewTimer(wait)
	select {
	case <-ctx.Done():
		tm.Stop()
		return ctx.Err()
	case <-tm.Chan():
		return nil
	}
}

// freshen gives a send that would go too late for its slot of the shared quota (a
// pause of the process, a long claim of its key, a timer that fired late) a fresh slot
// within maxWait, and waits for it; a stale slot is not used: the other replicas' sends
// on time fill the window it was in, and each replica counts only its own sends. It
// returns ErrRateLimited when no slot is free within maxWait (nothing is sent), or ctx's
// error if ctx ends first.
func (g *Guard) freshen(ctx context.Context, sl *slotTicket, maxWait time.Duration) error {
	if !sl.stale(g.clock.Now()) {
		return nil
	}
	start := g.clock.Now()
	s, ok := g.reserve(ctx, maxWait)
	if !ok {
		g.reportLimiter(0, true)
		return ErrRateLimited
	}
	sl.due, sl.shared = s.due, s.shared
	err := g.waitUntil(ctx, s.due)
	g.reportLimiter(g.clock.Since(start), false)
	return err
}

// maxWaitFor is how long a call admitted with sl may wait for a fresh slot: until its
// caller's deadline less the admission minimum.
func (g *Guard) maxWaitFor(sl slotTicket) time.Duration {
	if sl.deadline.IsZero() {
		return maxLimiterWait
	}
	return max(0, g.clock.Until(sl.deadline)-g.cfg.MinRemaining)
}

func (g *Guard) reportLimiter(waited time.Duration, refused bool) {
	if g.cfg.OnLimiter != nil {
		g.cfg.OnLimiter(waited, refused)
	}
}

// pace waits, on ctx, until this send keeps this process's count of its sends within
// QPS per window, and within its share too while the shared quota is down (see
// sendLog), then stamps the send's instant. It returns ctx's error if ctx ends first.
// The send's numbers in the counts are returned for restamp.
//
// A send later than its slot of the shared quota (sl) by more than slotTolerance first
// takes a fresh slot and waits for it (freshen), trying a few times; send has refused
// before the request was started when no slot was left within the caller's deadline,
// so this covers only a pause since then, and waits rather than refuses: the request is
// already on its way to the connection.
func (g *Guard) pace(ctx context.Context, sl slotTicket) (paceTicket, error) {
	for try := 0; try < freshTries && sl.stale(g.clock.Now()); try++ {
		switch err := g.freshen(ctx, &sl, maxLimiterWait); {
		case err == ErrRateLimited:
			if err := g.waitUntil(ctx, g.clock.Now().Add(SlotInterval(g.cfg.QPS))); err != nil {
				return paceTicket{}, err
			}
		case err != nil:
			return paceTicket{}, err
		}
	}
	g.paceMu.Lock()
	now := g.clock.Now()
	var tk paceTicket
	var at time.Time
	tk.seq, at = g.sends.plan(now)
	tk.share = now.UnixNano() < g.fallbackUntil.Load()
	if tk.share {
		var shareAt time.Time
		tk.shareSeq, shareAt = g.shareSends.plan(now)
		at = later(at, shareAt)
	}
	g.paceMu.Unlock()
	for {
		if wait := at.Sub(now); wait > 0 {
			t := g.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				g.restamp(tk, g.clock.Now())
				return tk, ctx.Err()
			case <-t.Chan():
			}
		}
		// The sends this one was planned from may have gone later than planned.
		g.paceMu.Lock()
		now = g.clock.Now()
		at = g.sends.earliest(tk.seq, now)
		if tk.share {
			at = later(at, g.shareSends.earliest(tk.shareSeq, now))
		}
		if !at.After(now) {
			g.sends.stamp(tk.seq, now)
			if tk.share {
				g.shareSends.stamp(tk.shareSeq, now)
			}
			g.paceMu.Unlock()
			return tk, nil
		}
		g.paceMu.Unlock()
	}
}

// freshTries bounds the fresh slots pace takes for one send, for a machine so loaded
// that its timers keep firing late.
const freshTries = 3

// paceTicket is a send's place in the counts of sends.
type paceTicket struct {
	seq, shareSeq uint64
	share         bool
}

// paced returns ctx with an HTTP client trace that paces the call's first request (see
// pace) once it has its connection, the last moment before the request is written: what
// comes before (the body, its signature, a dial) does not move the instant e签宝 sees.
// The send is stamped again each time a write to the connection returns until the answer
// starts (the connections upstream's transport dials are watched: upstream.WatcherOf),
// and once net/http reports the request written, so that a write that came late (a busy
// process, the transport's writing goroutine waiting for a core) holds back the send QPS
// after it: the stamp is never earlier than the instant the request's last bytes left
// this process. (net/http's WroteRequest alone comes before its HTTP/1.1 buffer is
// flushed.) done ends the watch; call it once the call has returned.
func (g *Guard) paced(ctx context.Context, sl slotTicket) (_ context.Context, done func()) {
	var (
		once sync.Once
		tk   paceTicket
		ok   bool
		mu   sync.Mutex
		stop func()
	)
	unwatch := func() {
		mu.Lock()
		defer mu.Unlock()
		if stop != nil {
			stop()
			stop = nil
		}
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			once.Do(func() {
				var err error
				tk, err = g.pace(ctx, sl) // an ended ctx ends the request too
				ok = err == nil
				if w, watched := upstream.WatcherOf(info.Conn); ok && watched {
					mu.Lock()
					stop = w.WatchWrites(func() { g.restamp(tk, g.clock.Now()) })
					mu.Unlock()
				}
			})
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			if ok {
				g.restamp(tk, g.clock.Now())
			}
		},
		GotFirstResponseByte: unwatch,
	}), unwatch
}

// restamp moves a send's instant in the counts to at.
func (g *Guard) restamp(tk paceTicket, at time.Time) {
	g.paceMu.Lock()
	defer g.paceMu.Unlock()
	g.sends.stamp(tk.seq, at)
	if tk.share {
		g.shareSends.stamp(tk.shareSeq, at)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Send makes call on sendCtx through g's breaker, reports it, and retries an attempt
// that provably never reached e签宝 while the caller's ctx allows: not after ctx has
// ended, and only once admitted again on ctx (its deadline rule and a new quota slot).
// The caller must have been admitted once (Admit, or AdmitSlot to carry its slot). sendCtx may outlive ctx, so that a
// request already on its way is not abandoned; it never starts a new one.
//
// A ctx from AdmitSlot carries the slot the call was admitted to: Send waits for it if
// it is still ahead, and a send too late for its slot of a shared quota takes a fresh one
// (see freshen), or is refused with ErrRateLimited before anything is sent.
//
// Its error is call's own (an upstream.Error stating its outcome), ErrCircuitOpen, or
// ErrRateLimited.
func Send[R any](ctx, sendCtx context.Context, g *Guard, op Op, call func(context.Context) (R, error)) (R, error) {
	v, err := g.send(ctx, sendCtx, op, func(c context.Context) (any, error) { return call(c) })
	r, _ := v.(R)
	return r, err
}

func (g *Guard) send(ctx, sendCtx context.Context, op Op, call func(context.Context) (any, error)) (any, error) {
	backoff := 100 * time.Millisecond
	sl := slotOf(ctx)
	for attempt := 0; ; attempt++ {
		// The slot may be ahead still (AdmitSlot); a stale slot is not used: a fresh one
		// within the caller's deadline, or nothing is sent. Nothing has started yet, so
		// these waits end with the caller's ctx.
		if err := g.waitUntil(ctx, sl.due); err != nil {
			return nil, err
		}
		if err := g.freshen(ctx, &sl, g.maxWaitFor(sl)); err != nil {
			return nil, err
		}
		start := g.clock.Now()
		v, err := g.breaker.Execute(func() (any, error) {
			pctx, done := g.paced(sendCtx, sl)
			defer done()
			return call(pctx)
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return nil, ErrCircuitOpen
		}
		g.report(sendCtx, op, v, err, g.clock.Since(start))
		if err == nil || !sendAgain(err) || ctx.Err() != nil || sendCtx.Err() != nil || attempt == unsentRetries {
			return v, err
		}
		// Provably never reached e签宝, or of an operation a repeat cannot do twice: safe
		// to send again, if time allows.
		if d, ok := ctx.Deadline(); ok && g.clock.Until(d) < backoff {
			return v, err
		}
		t := g.clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-sendCtx.Done():
			t.Stop()
			return v, err
		case <-t.Chan():
		}
		backoff *= 3
		next, aerr := g.admit(ctx, 0, 0)
		if aerr != nil || ctx.Err() != nil {
			return v, err
		}
		sl = next
	}
}

// sendAgain reports whether a failed attempt may be sent again: one that provably never
// reached e签宝, or one whose outcome is unknown for an operation whose kind makes a repeat
// harmless (a read, an upload: the error says so, upstream.Send stamps it). An attempt of
// a create that may have arrived is never sent again.
func sendAgain(err error) bool {
	switch upstream.OutcomeOf(err) {
	case upstream.OutcomeNotSent:
		return true
	case upstream.OutcomeUnknown:
		return upstream.IsRetrySafe(err)
	}
	return false
}

// traced is implemented by results that carry e签宝's trace ID.
type traced interface{ EsignTraceID() string }

func (g *Guard) report(ctx context.Context, op Op, v any, err error, elapsed time.Duration) {
	if g.cfg.OnCall == nil {
		return
	}
	info := CallInfo{Op: op, Outcome: upstream.OutcomeOf(err), Kind: "success", Elapsed: elapsed}
	var ue upstream.Error
	switch {
	case err == nil:
		if t, ok := v.(traced); ok {
			info.TraceID = t.EsignTraceID()
		}
	case errors.As(err, &ue):
		info.Kind, info.TraceID = ue.Kind(), ue.TraceID()
	default:
		info.Kind = "error"
	}
	var be *upstream.BusinessError
	if errors.As(err, &be) {
		info.EsignCode = be.Code
	}
	g.cfg.OnCall(ctx, info)
}

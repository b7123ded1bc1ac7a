package submission_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func simClient(t *testing.T) (*esignsim.Simulator, *upstream.Client) {
	t.Helper()
	sim := esignsim.New(esignsim.Config{AppID: "app", AppSecret: "secret"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: "app", AppSecret: "secret", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

// guarded is the evidence-point call through a Guard, as the service makes it.
type guarded struct {
	*submission.Guard
	next sender
}

type sender interface {
	CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error)
}

func newGuard(next sender, cfg submission.GuardConfig) guarded {
	return guarded{submission.NewGuard(cfg), next}
}

func (g guarded) CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error) {
	return submission.Call(ctx, g.Guard, submission.OpPsnRealname, func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		return g.next.CreatePsnEvidencePoint(ctx, p)
	})
}

func TestRateLimiterWaitsWithinDeadlineOnly(t *testing.T) {
	sim, c := simClient(t)
	var waits, refusals int
	g := newGuard(c, submission.GuardConfig{QPS: 2, MinRemaining: 10 * time.Millisecond, OnLimiter: func(_ time.Duration, refused bool) {
		waits++
		if refused {
			refusals++
		}
	}})
	// The burst (2) passes at once; the third waits ~500 ms: fine with a 2 s deadline.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := g.CreatePsnEvidencePoint(ctx, point()); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	// The next would wait ~500 ms: refused at once under a 100 ms deadline, unsent.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := g.CreatePsnEvidencePoint(ctx, point())
	if !errors.Is(err, submission.ErrRateLimited) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 80*time.Millisecond {
		t.Errorf("refusal took %v: it should not wait when the wait cannot fit", time.Since(start))
	}
	if sim.Count() != 3 || refusals != 1 || waits != 4 {
		t.Errorf("sent %d, waits %d, refusals %d", sim.Count(), waits, refusals)
	}
}

func TestCircuitBreakerFailsFast(t *testing.T) {
	sim, c := simClient(t)
	var changes []string
	g := newGuard(c, submission.GuardConfig{QPS: 1000, OnBreakerChange: func(from, to string) { changes = append(changes, from+">"+to) }})
	sim.Inject(esignsim.Fault{Status: 503})
	for range 5 {
		_, _ = g.CreatePsnEvidencePoint(context.Background(), point())
	}
	if g.BreakerState() != "open" {
		t.Fatalf("breaker %s after 5 failures", g.BreakerState())
	}
	_, err := g.CreatePsnEvidencePoint(context.Background(), point())
	if !errors.Is(err, submission.ErrCircuitOpen) {
		t.Fatalf("got %v", err)
	}
	if sim.Count() != 5 {
		t.Errorf("e签宝 received %d; the open breaker should send nothing", sim.Count())
	}
	if len(changes) != 1 || changes[0] != "closed>open" {
		t.Errorf("changes %v", changes)
	}
}

func TestBusinessErrorsDoNotOpenTheBreaker(t *testing.T) {
	sim, c := simClient(t)
	g := newGuard(c, submission.GuardConfig{QPS: 1000})
	sim.Inject(esignsim.Fault{BusinessCode: 1435002})
	for range 8 {
		_, _ = g.CreatePsnEvidencePoint(context.Background(), point())
	}
	if g.BreakerState() != "closed" {
		t.Errorf("breaker %s: e签宝 answering with a business error is e签宝 working", g.BreakerState())
	}
}

// flakySender fails before sending a given number of times, then delegates.
type flakySender struct {
	failures int
	calls    int
	next     sender
}

func (f *flakySender) CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error) {
	f.calls++
	if f.calls <= f.failures {
		return nil, &upstream.SendError{Err: errors.New("connection refused")}
	}
	return f.next.CreatePsnEvidencePoint(ctx, p)
}

func TestOnlyUnsentAttemptsAreRetried(t *testing.T) {
	sim, c := simClient(t)
	f := &flakySender{failures: 2, next: c}
	g := newGuard(f, submission.GuardConfig{QPS: 1000})
	if _, err := g.CreatePsnEvidencePoint(context.Background(), point()); err != nil {
		t.Fatalf("after two unsent attempts: %v", err)
	}
	if f.calls != 3 || sim.Count() != 1 {
		t.Errorf("calls %d, sent %d", f.calls, sim.Count())
	}
	// A request that may have arrived is never sent again.
	sim.Inject(esignsim.Fault{ResetAfterBody: true, Times: 1})
	_, err := g.CreatePsnEvidencePoint(context.Background(), point())
	var uo *upstream.UnknownOutcomeError
	if !errors.As(err, &uo) {
		t.Fatalf("got %v", err)
	}
	if sim.Count() != 2 {
		t.Errorf("e签宝 received %d; the reset request must not be re-sent", sim.Count())
	}
}

// Admission: no call is started for a caller whose remaining deadline (after its wait
// for the quota) is below the minimum; such calls are refused at once, unsent, and
// retry-safe.
func TestAdmissionByRemainingDeadline(t *testing.T) {
	sim, c := simClient(t)
	g := newGuard(c, submission.GuardConfig{QPS: 2, MinRemaining: time.Second})
	call := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := g.CreatePsnEvidencePoint(ctx, point())
		return err
	}
	start := time.Now()
	if err := call(500 * time.Millisecond); !errors.Is(err, submission.ErrDeadlineTooShort) || !upstream.IsRetrySafe(err) {
		t.Fatalf("500 ms left: %v", err)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Errorf("refusal took %v", time.Since(start))
	}
	// The burst of 2 passes; the third would wait ~500 ms, leaving < 1 s of 1.3 s.
	for range 2 {
		if err := call(3 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(1300 * time.Millisecond); !errors.Is(err, submission.ErrRateLimited) {
		t.Fatalf("queued past the minimum: %v", err)
	}
	// Without a deadline there is no minimum.
	if err := call(time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := sim.Count(); n != 3 {
		t.Errorf("e签宝 received %d, want 3", n)
	}
	// A keyless caller that leaves while waiting for its slot is not sent.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := g.CreatePsnEvidencePoint(ctx, point()); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gone while queued: %v", err)
	}
	time.Sleep(600 * time.Millisecond) // its slot comes and goes
	if n := sim.Count(); n != 3 {
		t.Errorf("e签宝 received %d after the caller left, want 3", n)
	}
}

// Local failures (the caller leaving, a local resource running out) never open the
// breaker: they say nothing about e签宝.
func TestLocalFailuresDoNotOpenTheBreaker(t *testing.T) {
	g := submission.NewGuard(submission.GuardConfig{QPS: 1000})
	for range 10 {
		_, err := submission.Call(context.Background(), g, "test-op", func(context.Context) (int, error) {
			return 0, &upstream.LocalError{What: "opening a temporary file", Err: errors.New("too many open files")}
		})
		if upstream.OutcomeOf(err) != upstream.OutcomeLocal {
			t.Fatalf("got %v", err)
		}
	}
	if g.BreakerState() != "closed" {
		t.Errorf("breaker %s after local failures", g.BreakerState())
	}
}

// BenchmarkQuota compares taking a slot from the in-process limiter with taking one
// from the quota shared through PostgreSQL (one statement per call).
func BenchmarkQuota(b *testing.B) {
	pg, err := submission.OpenPostgres(context.Background(), pgtest.DSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	for name, q := range map[string]submission.Quota{
		"local":    submission.NewLocalQuota(1e9),
		"postgres": pg.Quota("bench-app", 1e9, time.Second),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, ok, err := q.Reserve(context.Background(), time.Second); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

package guard_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
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
	*guard.Guard
	next sender
}

type sender interface {
	CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error)
}

func newGuard(next sender, cfg guard.Config) guarded {
	return guarded{guard.New(cfg), next}
}

// point is a valid personal evidence point.
func point() *upstream.PsnEvidencePoint {
	return &upstream.PsnEvidencePoint{
		EviName: "证据", RealNameMethod: upstream.MethodThreeElements, TimeStamp: time.UnixMilli(1742809059000),
		Name: "测试张三", CardNo: "130401199601018395", CardType: upstream.CardTypeMainlandID,
		CardPortrait: "a", CardNationalEmblem: "b",
		ThreeElements: &upstream.ThreeElements{InfoVerifySupplier: "s", VerifyTime: "t", VerifySerialNumber: "n", Mobile: "19800002222", SMSCode: "1", SMSSupplier: "x"},
	}
}

func (g guarded) CreatePsnEvidencePoint(ctx context.Context, p *upstream.PsnEvidencePoint) (*upstream.PsnEvidencePointResult, error) {
	return guard.Call(ctx, g.Guard, "evidence-point", func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		return g.next.CreatePsnEvidencePoint(ctx, p)
	})
}

func TestRateLimiterWaitsWithinDeadlineOnly(t *testing.T) {
	sim, c := simClient(t)
	var waits, refusals int
	g := newGuard(c, guard.Config{QPS: 2, MinRemaining: 10 * time.Millisecond, OnLimiter: func(_ time.Duration, refused bool) {
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
	if !errors.Is(err, guard.ErrRateLimited) {
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
	g := newGuard(c, guard.Config{QPS: 1000, OnBreakerChange: func(from, to string) { changes = append(changes, from+">"+to) }})
	sim.Inject(esignsim.Fault{Status: 503})
	for range 5 {
		_, _ = g.CreatePsnEvidencePoint(context.Background(), point())
	}
	if g.BreakerState() != "open" {
		t.Fatalf("breaker %s after 5 failures", g.BreakerState())
	}
	_, err := g.CreatePsnEvidencePoint(context.Background(), point())
	if !errors.Is(err, guard.ErrCircuitOpen) {
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
	g := newGuard(c, guard.Config{QPS: 1000})
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
	g := newGuard(f, guard.Config{QPS: 1000})
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

// An unknown outcome is sent again only for an operation whose kind makes a repeat
// harmless (upstream stamps it on the error); a create's is never.
func TestUnknownOutcomeRetriedOnlyWhenRepeatable(t *testing.T) {
	for _, repeatable := range []bool{false, true} {
		g := guard.New(guard.Config{QPS: 1000})
		calls := 0
		_, err := guard.Call(context.Background(), g, "op", func(context.Context) (string, error) {
			calls++
			if calls == 1 {
				return "", &upstream.UnknownOutcomeError{Status: 502, Repeatable: repeatable}
			}
			return "ok", nil
		})
		switch {
		case repeatable && (err != nil || calls != 2):
			t.Errorf("repeatable: %d calls, %v", calls, err)
		case !repeatable && (err == nil || calls != 1):
			t.Errorf("create: %d calls, %v", calls, err)
		}
	}
}

// Admission: no call is started for a caller whose remaining deadline (after its wait
// for the quota) is below the minimum; such calls are refused at once, unsent, and
// retry-safe.
func TestAdmissionByRemainingDeadline(t *testing.T) {
	sim, c := simClient(t)
	g := newGuard(c, guard.Config{QPS: 2, MinRemaining: time.Second})
	call := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := g.CreatePsnEvidencePoint(ctx, point())
		return err
	}
	start := time.Now()
	if err := call(500 * time.Millisecond); !errors.Is(err, guard.ErrDeadlineTooShort) || !upstream.IsRetrySafe(err) {
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
	if err := call(1300 * time.Millisecond); !errors.Is(err, guard.ErrRateLimited) {
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
	g := guard.New(guard.Config{QPS: 1000})
	for range 10 {
		_, err := guard.Call(context.Background(), g, "test-op", func(context.Context) (int, error) {
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

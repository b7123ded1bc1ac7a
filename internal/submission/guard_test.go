package submission_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

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

func TestRateLimiterWaitsWithinDeadlineOnly(t *testing.T) {
	sim, c := simClient(t)
	var waits, refusals int
	g := submission.NewGuard(c, submission.GuardConfig{QPS: 2, OnLimiter: func(_ time.Duration, refused bool) {
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
	g := submission.NewGuard(c, submission.GuardConfig{QPS: 1000, OnBreakerChange: func(from, to string) { changes = append(changes, from+">"+to) }})
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
	g := submission.NewGuard(c, submission.GuardConfig{QPS: 1000})
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
	next     submission.Sender
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
	g := submission.NewGuard(f, submission.GuardConfig{QPS: 1000})
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

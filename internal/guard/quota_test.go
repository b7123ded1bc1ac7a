package guard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// mostIn is the most times in any 1 s window.
func mostIn(times []time.Time) int {
	n, _ := esignsim.MostInWindow(times, time.Second)
	return n
}

// recordingSim is the simulator behind a server that notes when each request arrives.
func recordingSim(t *testing.T) (*upstream.Client, func() []time.Time) {
	t.Helper()
	sim := esignsim.New(esignsim.Config{AppID: "app", AppSecret: "secret"})
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: "app", AppSecret: "secret", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(at)
	}
}

// No window of 1 s, at any offset, carries more than QPS calls: not with a backlog, not
// after an idle period (no full bucket to spend at once), and at least 98 % of it over
// the backlog. The windows are counted at the instants the requests were written (an
// HTTP client trace of the caller's), this side of the loopback: what the simulator's
// clock adds on a busy machine is the binary tests' concern (cmd/esign-evidence).
func TestNoWindowOverQPS(t *testing.T) {
	const qps = 20
	c, received := recordingSim(t)
	g := newGuard(c, guard.Config{QPS: qps, MinRemaining: 10 * time.Millisecond})
	var mu sync.Mutex
	var written []time.Time
	times := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(written)
	}
	wave := func(n int, deadline time.Duration) {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() {
					mu.Lock()
					written = append(written, time.Now())
					mu.Unlock()
				}})
				_, _ = g.CreatePsnEvidencePoint(ctx, point())
			}()
		}
		wg.Wait()
	}
	start := time.Now()
	wave(4*qps, 4*time.Second) // a backlog of 4 s
	backlog := times()
	if took := time.Since(start); len(backlog) < int(0.98*qps*took.Seconds())-1 {
		t.Errorf("a backlog of %v got %d calls: less than 98 %% of %d/s", took.Round(time.Millisecond), len(backlog), qps)
	}
	for range 2 {
		time.Sleep(1200 * time.Millisecond) // idle: a full bucket would allow a burst now
		wave(2*qps, 1500*time.Millisecond)
	}
	if n := mostIn(times()); n > qps {
		t.Errorf("a 1 s window carried %d calls, more than QPS=%d", n, qps)
	}
	t.Logf("written %d, received %d; most received in a 1 s window: %d", len(times()), len(received()), mostIn(received()))
}

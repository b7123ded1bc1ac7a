package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const (
	// fairQPS is the quota of the fairness test: small, so that a backlog builds at once.
	fairQPS = 2
	// lightP99Bound is what the light caller's calls must meet at the 99th percentile
	// while the heavy one floods: at ESIGN_QPS=2 the default ESIGN_CALLER_SHARE lets the
	// heavy caller hold one slot ahead, so a light call waits at most two slots (1.015 s)
	// plus the call itself. Without the share it would queue behind the heavy caller's
	// whole backlog (about 10 s for 20 calls).
	lightP99Bound = 1500 * time.Millisecond
	// heavyCallers is how many calls the heavy caller keeps going at once.
	heavyCallers = 24
	// lightCalls is how many calls the light caller makes, one after another.
	lightCalls = 25
)

// TestAbuseQuotaFairness: two token callers and ESIGN_QPS=2. The heavy caller keeps 24
// calls going at once, each with a 10 s deadline, calling again as soon as one ends; the
// light caller meanwhile makes one call at a time. The light caller's calls all succeed
// with a 99th percentile under lightP99Bound, and the quota stays used (the heavy caller
// gets the rest: at least 90 % of ESIGN_QPS over the flood, counting both callers).
func TestAbuseQuotaFairness(t *testing.T) {
	const heavyToken = "heavy-token-0123456789abcdef"
	tg := startTarget(t, writeTokens(t, "light "+abuseToken, "heavy "+heavyToken), "ESIGN_QPS=2")

	stop := make(chan struct{})
	flooding, endFlood := context.WithCancel(context.Background())
	defer endFlood()
	var heavyOK, heavyRefused atomic.Int64
	var unexpected sync.Map
	var wg sync.WaitGroup
	for range heavyCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(flooding, 10*time.Second)
				_, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, heavyToken), tg.req)
				cancel()
				switch code, reason := reasonOf(err); {
				case err == nil:
					heavyOK.Add(1)
				case flooding.Err() != nil:
					return
				case code == codes.ResourceExhausted && reason == "RATE_LIMITED":
					// Its own queue leaves no slot within its deadline: refused at once.
					// A flood, not a spin: a moment before the next.
					heavyRefused.Add(1)
					time.Sleep(50 * time.Millisecond)
				default:
					unexpected.Store(code.String()+" "+reason, true)
				}
			}
		}()
	}
	// The heavy caller's backlog is there before the light caller starts.
	waitUntil(t, 10*time.Second, "the heavy caller's backlog", func() (bool, string) {
		return heavyOK.Load() >= 2, fmt.Sprintf("%d created", heavyOK.Load())
	})

	floodStart := time.Now()
	okBefore := heavyOK.Load()
	var took []time.Duration
	for range lightCalls {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, tg.token), tg.req)
		d := time.Since(start)
		cancel()
		if err != nil {
			t.Errorf("a light caller's call failed after %v: %v", d.Round(time.Millisecond), err)
		}
		took = append(took, d)
		// One call at a time, with a pause as a real light caller has.
		time.Sleep(200 * time.Millisecond)
	}
	flood := time.Since(floodStart)
	heavyDuring := heavyOK.Load() - okBefore
	close(stop)
	endFlood()
	wg.Wait()

	slices.Sort(took)
	p99 := took[(len(took)*99+99)/100-1]
	t.Logf("light caller: %d calls, median %v, p99 %v, slowest %v; heavy caller: %d created, %d refused RATE_LIMITED (%d created during the light caller's %v)",
		len(took), took[len(took)/2].Round(time.Millisecond), p99.Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		heavyOK.Load(), heavyRefused.Load(), heavyDuring, flood.Round(time.Millisecond))
	if p99 > lightP99Bound {
		t.Errorf("the light caller's p99 is %v while the heavy caller floods, above %v", p99.Round(time.Millisecond), lightP99Bound)
	}
	unexpected.Range(func(k, _ any) bool {
		t.Errorf("a heavy caller's call: %v", k)
		return true
	})
	// Work-conserving: the two callers together used the quota over the light caller's
	// run (one slot each 507.5 ms; 90 % for what the start and end cut off).
	if used, want := float64(heavyDuring+int64(len(took))), 0.9*flood.Seconds()*fairQPS*1000/1015; used < want {
		t.Errorf("%v calls created in %v, fewer than %.0f: the quota went unused", used, flood.Round(time.Millisecond), want)
	}
}

// TestAbuseCallsInFlightPerCaller: with MAX_CALLS_IN_FLIGHT=40 (so 20 a caller by
// default), one caller's 30 stalled uploads hold 20 calls and 10 are refused
// CALLER_OVERLOADED; its further calls are refused the same way over gRPC and REST (429),
// while another caller's calls are served normally; once the stalled calls end, the first
// caller is served again.
func TestAbuseCallsInFlightPerCaller(t *testing.T) {
	const (
		limit     = 40
		perCaller = limit / 2
		stalled   = 30
		busyToken = "busy-token-0123456789abcdef0"
	)
	tg := startTarget(t, writeTokens(t, "normal "+abuseToken, "busy "+busyToken), fmt.Sprintf("MAX_CALLS_IN_FLIGHT=%d", limit), "UPLOAD_IDLE_TIMEOUT=5s")
	var refused, timedOut atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stallUploads(t, ctx, tg, busyToken, stalled, "CALLER_OVERLOADED", &wg, &refused, &timedOut)
	waitUntil(t, 10*time.Second, "the caller's bound reached", func() (bool, string) {
		return refused.Load() >= stalled-perCaller, fmt.Sprint(refused.Load())
	})
	_, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, busyToken), tg.req)
	if code, reason := reasonOf(err); code != codes.ResourceExhausted || reason != "CALLER_OVERLOADED" {
		t.Errorf("the busy caller's call beyond its bound: %v %q", code, reason)
	}
	code, body, _ := tg.rest(ctx, http.MethodPost, "/v3/evidence/evi-point/psn-realname", tg.seed, busyToken)
	if code != http.StatusTooManyRequests {
		t.Errorf("the busy caller's REST call beyond its bound: HTTP %d %s", code, body)
	} else if ei := errorInfo(restStatus(t, body)); ei.GetReason() != "CALLER_OVERLOADED" {
		t.Errorf("the busy caller's REST call beyond its bound: reason %q", ei.GetReason())
	}
	// The other caller is served while the busy one holds its share.
	start := time.Now()
	if err := tg.normalCall(ctx); err != nil || time.Since(start) > normalCallBudget {
		t.Errorf("another caller's calls while one holds its share: %v after %v", err, time.Since(start))
	}
	wg.Wait()
	if int(refused.Load()) != stalled-perCaller || int(timedOut.Load()) != perCaller {
		t.Errorf("%d refused and %d admitted, want %d and %d", refused.Load(), timedOut.Load(), stalled-perCaller, perCaller)
	}
	if _, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, busyToken), tg.req); err != nil {
		t.Errorf("the busy caller after its stalled calls ended: %v", err)
	}
}

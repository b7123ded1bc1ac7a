package server_test

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// TestFaultsUnderLoad drives concurrent calls through each simulator fault: every call
// gets its documented code and reason, the service serves cleanly afterwards, no
// goroutine is left behind, and the heap returns to its level.
func TestFaultsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cases := []struct {
		name   string
		fault  esignsim.Fault
		qps    int
		code   codes.Code
		reason string
	}{
		{"HTTP 503", esignsim.Fault{Status: 503}, 0, codes.Unavailable, apierror.ReasonEsignOutcomeUnknown},
		{"reset after the body", esignsim.Fault{ResetAfterBody: true}, 0, codes.Unavailable, apierror.ReasonEsignOutcomeUnknown},
		{"malformed JSON", esignsim.Fault{MalformedJSON: true}, 0, codes.Unavailable, apierror.ReasonEsignOutcomeUnknown},
		{"parameter error", esignsim.Fault{BusinessCode: 1435002, BusinessMessage: "参数错误"}, 0, codes.InvalidArgument, apierror.ReasonEsignParameterError},
		{"timeout", esignsim.Fault{Latency: 10 * time.Second}, 0, codes.Unavailable, apierror.ReasonEsignOutcomeUnknown},
		{"quota", esignsim.Fault{}, 5, codes.ResourceExhausted, apierror.ReasonEsignRateLimited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Only the timeout case needs e签宝's answer to outlast the client's timeout;
			// the others keep a timeout that a loaded two-core machine running the race
			// detector never reaches, so that each call gets its fault's own answer.
			timeout := 10 * time.Second
			if tc.fault.Latency > 0 {
				timeout = time.Second
			}
			st := startStack(t, stackOpt{
				upstreamCfg: func(c *upstream.Config) { c.Timeout = timeout },
				configure:   func(o *server.Options) { o.BreakerOpenFor = 500 * time.Millisecond },
			})
			const workers, perWorker = 16, 8
			// Warm up at the same concurrency, so that pooled connections (two goroutines
			// each, kept for reuse) are counted in the baseline, not as a leak.
			var warm sync.WaitGroup
			for range workers {
				warm.Add(1)
				go func() {
					defer warm.Done()
					if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t)); err != nil {
						t.Error(err)
					}
				}()
			}
			warm.Wait()
			settle(st)
			goroutines := runtime.NumGoroutine()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			if tc.qps > 0 {
				st.sim.SetQPSLimit(esignsim.QPSLimit{QPS: tc.qps})
			} else {
				st.sim.Inject(tc.fault)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			counts := map[string]int{}
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range perWorker {
						_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
						ei, _ := grpcDetails(err)
						key := status.Code(err).String() + "/" + ei.GetReason()
						mu.Lock()
						counts[key]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			want := tc.code.String() + "/" + tc.reason
			// Once e签宝 has failed five times in a row the breaker answers for it, with
			// its own documented code; every other answer is the fault's own. Under a
			// quota some calls succeed.
			for key, n := range counts {
				switch key {
				case want, "Unavailable/" + apierror.ReasonEsignCircuitOpen:
				case "OK/":
					if tc.qps == 0 {
						t.Errorf("%d calls succeeded under %s", n, tc.name)
					}
				default:
					t.Errorf("%d calls answered %s, want %s", n, key, want)
				}
			}
			if counts[want] == 0 {
				t.Errorf("no call got %s: %v", want, counts)
			}

			// The service keeps serving once e签宝 behaves again.
			st.sim.ClearFaults()
			st.sim.SetQPSLimit(esignsim.QPSLimit{})
			deadline := time.Now().Add(15 * time.Second)
			for {
				_, err := st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not serving after the fault: %v", err)
				}
				time.Sleep(200 * time.Millisecond) // the breaker's open period ends
			}

			settle(st)
			if n := runtime.NumGoroutine(); n > goroutines+8 {
				t.Errorf("goroutines: %d before, %d after", goroutines, n)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 8<<20 {
				t.Errorf("heap grew by %d bytes and stayed", grown)
			}
		})
	}
}

// settle closes idle pooled connections to e签宝 (kept for reuse, not leaked), waits for
// finished calls' goroutines to exit and collects garbage.
func settle(st *stack) {
	for range 3 {
		st.upstream.CloseIdleConnections()
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		debug.FreeOSMemory()
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

const (
	// unknownKeys is how many unknown keys the flood's body holds: about 1 MB of JSON,
	// just under MAX_REQUEST_BYTES.
	unknownKeys = 90000
	// floodConcurrency is how many such bodies are in flight at once; each sender sends
	// at least floodRounds and keeps sending for at least floodFor, so that the normal
	// caller calls several times during the flood.
	floodConcurrency = 12
	floodRounds      = 4
	floodFor         = 3 * time.Second
	// edgeRefusalBudget bounds the answer to one refused request, sent while eleven
	// others are (the body is never read, so this is the time to send headers and get
	// 401 back on a loaded machine).
	edgeRefusalBudget = 2 * time.Second
	// refusedRSSGrowthKiB bounds how far the process's resident memory may rise above
	// its level while bodies without a valid token flood it: those bodies are never read;
	// what remains is the connections (net/http closes one whose body was left unread,
	// lingering half a second), a few hundred at once at this rate.
	refusedRSSGrowthKiB = 24 << 10
	// acceptedRSSGrowthKiB bounds the rise while a valid caller sends the same bodies:
	// each is read (1 MB), decoded until the first unknown key and checked until
	// validation.MaxJSONViolations violations, 12 at once.
	acceptedRSSGrowthKiB = 96 << 10
	// maxInvalidBodyAnswer bounds the 400 answered to a body with 90,000 unknown keys.
	maxInvalidBodyAnswer = 16 << 10
)

// unknownKeysBody is a JSON object of n unknown keys.
func unknownKeysBody(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%05d":0`, i)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// peakRSS samples the process's resident memory every 10 ms until stop is closed and
// returns the highest sample.
func (tg *target) peakRSS(stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		peak := tg.rssKiB()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				out <- max(peak, tg.rssKiB())
				return
			case <-tick.C:
				peak = max(peak, tg.rssKiB())
			}
		}
	}()
	return out
}

// flood sends body floodConcurrency at a time, floodRounds times each, to path with
// token ("" for none) and returns each answer's status, size and latency.
type floodAnswer struct {
	code    int
	size    int
	took    time.Duration
	err     error
	body    []byte
	headers http.Header
}

func (tg *target) flood(path string, body []byte, token string) []floodAnswer {
	var (
		mu  sync.Mutex
		out []floodAnswer
		wg  sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	until := time.Now().Add(floodFor)
	for range floodConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < floodRounds || time.Now().Before(until); i++ {
				req, _ := http.NewRequest(http.MethodPost, "http://"+tg.httpAddr+path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				start := time.Now()
				resp, err := client.Do(req)
				a := floodAnswer{err: err}
				if err == nil {
					a.body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					a.code, a.size, a.headers = resp.StatusCode, len(a.body), resp.Header
				}
				a.took = time.Since(start)
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// TestAbuseUnauthenticatedBodies: a 1 MB body of 90,000 unknown keys, 12 at once, 4 times
// each. Without a token (or with a wrong one) every one is 401 within edgeRefusalBudget,
// its body never read, and resident memory rises at most refusedRSSGrowthKiB; with a
// token every one is a 400 of at most maxInvalidBodyAnswer bytes listing at most
// MaxJSONViolations fields (and one saying the list stops), memory rising at most
// acceptedRSSGrowthKiB. A normal caller is answered within normalCallBudget throughout.
func TestAbuseUnauthenticatedBodies(t *testing.T) {
	tg := startTarget(t, "")
	body := unknownKeysBody(unknownKeys)
	if len(body) > 1<<20 {
		t.Fatalf("the flood's body is %d bytes, over MAX_REQUEST_BYTES", len(body))
	}
	const route = "/v3/evidence/evi-point/psn-realname"
	for _, tc := range []struct {
		name      string
		token     string
		growthKiB int
		check     func(a floodAnswer) string
	}{
		{"no token", "", refusedRSSGrowthKiB, func(a floodAnswer) string {
			if a.code != http.StatusUnauthorized || a.took > edgeRefusalBudget {
				return fmt.Sprintf("HTTP %d after %v", a.code, a.took)
			}
			if a.headers.Get("WWW-Authenticate") == "" {
				return "no WWW-Authenticate challenge"
			}
			return ""
		}},
		{"wrong token", "wrong-token-0123456789abcdef", refusedRSSGrowthKiB, func(a floodAnswer) string {
			if a.code != http.StatusUnauthorized || a.took > edgeRefusalBudget {
				return fmt.Sprintf("HTTP %d after %v", a.code, a.took)
			}
			return ""
		}},
		{"valid token", tg.token, acceptedRSSGrowthKiB, func(a floodAnswer) string {
			if a.code != http.StatusBadRequest || a.size > maxInvalidBodyAnswer {
				return fmt.Sprintf("HTTP %d, %d bytes", a.code, a.size)
			}
			st := restStatus(t, a.body)
			fields := badRequestFields(st)
			if len(fields) == 0 || len(fields) > validation.MaxJSONViolations+1 || fields[0] != "k00000" {
				return fmt.Sprintf("%d field violations, first %v", len(fields), fields[:min(len(fields), 1)])
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answers []floodAnswer
			var rss0, peak int
			tg.t = t
			unauth0 := metricSum(tg.metrics(), "esign_evidence_calls_total", `code="Unauthenticated"`)
			tg.underAttack(func() {
				rss0 = tg.rssKiB()
				stop := make(chan struct{})
				peakc := tg.peakRSS(stop)
				answers = tg.flood(route, body, tc.token)
				close(stop)
				peak = <-peakc
			})
			var bad []string
			var slowest time.Duration
			var biggest int
			for _, a := range answers {
				if a.err != nil {
					bad = append(bad, a.err.Error())
					continue
				}
				slowest, biggest = max(slowest, a.took), max(biggest, a.size)
				if why := tc.check(a); why != "" {
					bad = append(bad, why)
				}
			}
			t.Logf("%d requests of %d bytes: slowest answer %v, largest answer %d bytes; RSS %d KiB before, peak %d KiB (+%d KiB)",
				len(answers), len(body), slowest.Round(time.Millisecond), biggest, rss0, peak, peak-rss0)
			if len(bad) > 0 {
				t.Errorf("%d of %d answers wrong, e.g. %s", len(bad), len(answers), strings.Join(bad[:min(len(bad), 3)], "; "))
			}
			// Each refusal is counted as a call, as any refused call is.
			refused := 0
			for _, a := range answers {
				if a.code == http.StatusUnauthorized {
					refused++
				}
			}
			if got := metricSum(tg.metrics(), "esign_evidence_calls_total", `code="Unauthenticated"`) - unauth0; int(got) != refused {
				t.Errorf("%v calls counted Unauthenticated for %d answered 401", got, refused)
			}
			if peak-rss0 > tc.growthKiB {
				t.Errorf("resident memory rose %d KiB during the flood (bound %d KiB)", peak-rss0, tc.growthKiB)
			}
		})
	}
	tg.t = t
}

// TestAbuseUnauthenticatedGRPC: unauthenticated gRPC calls are refused before their
// message is read: 12 at once carrying 1 MB of unknown fields are UNAUTHENTICATED within
// edgeRefusalBudget, with the ErrorInfo, and resident memory rises at most
// refusedRSSGrowthKiB; 128 KiB of metadata is refused (the header list is capped at
// 64 KiB, like REST's headers).
func TestAbuseUnauthenticatedGRPC(t *testing.T) {
	tg := startTarget(t, "")
	// Field 1000, length-delimited, about 1 MB: unknown to every request message.
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), bytes.Repeat([]byte("u"), 1<<20-64))
	var wrong, slow atomic.Int64
	var rss0, peak int
	var total int64
	tg.underAttack(func() {
		rss0 = tg.rssKiB()
		stop := make(chan struct{})
		peakc := tg.peakRSS(stop)
		var wg sync.WaitGroup
		var calls atomic.Int64
		until := time.Now().Add(floodFor)
		for range floodConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < floodRounds || time.Now().Before(until); i++ {
					calls.Add(1)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					start := time.Now()
					var reply []byte
					err := tg.conn.Invoke(ctx, "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", &msg, &reply, grpc.ForceCodecV2(rawCodec{}))
					cancel()
					if code, reason := reasonOf(err); code != codes.Unauthenticated || reason != "UNAUTHENTICATED" {
						wrong.Add(1)
						t.Logf("unauthenticated 1 MB call: %v %q", code, reason)
					}
					if time.Since(start) > edgeRefusalBudget {
						slow.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		peak = <-peakc
		total = calls.Load()

		ctx := metadata.AppendToOutgoingContext(tg.auth(context.Background(), tg.token), "x-padding", strings.Repeat("p", 128<<10))
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := tg.api.GetSubmission(ctx, &evidencev1.GetSubmissionRequest{CustomBizId: "x"})
		if code := status.Code(err); code == codes.NotFound || code == codes.OK {
			t.Errorf("128 KiB of metadata was accepted: %v", err)
		}
	})
	t.Logf("%d unauthenticated 1 MB gRPC calls: %d wrong, %d slower than %v; RSS %d KiB before, peak %d KiB (+%d KiB)",
		total, wrong.Load(), slow.Load(), edgeRefusalBudget, rss0, peak, peak-rss0)
	if got := metricSum(tg.metrics(), "esign_evidence_calls_total", `code="Unauthenticated"`); int64(got) != total {
		t.Errorf("%v calls counted Unauthenticated for %d refused", got, total)
	}
	if got := int64(strings.Count(tg.stderr.String(), `"code":"Unauthenticated"`)); got != total {
		t.Errorf("%d access lines with code Unauthenticated for %d refused calls", got, total)
	}
	if wrong.Load() > 0 || slow.Load() > 0 {
		t.Errorf("%d answers wrong, %d slow", wrong.Load(), slow.Load())
	}
	if peak-rss0 > refusedRSSGrowthKiB {
		t.Errorf("resident memory rose %d KiB during the flood (bound %d KiB)", peak-rss0, refusedRSSGrowthKiB)
	}
}

// Command baseline is what a caller does without esign-evidence: it signs e签宝's request
// itself and posts the same JSON straight to e签宝 (here, the simulator). The benchmark
// compares the service against it, measured in the same run.
//
//	baseline -url http://127.0.0.1:8000 -app-id bench -app-secret s -c 50 -d 10s -body seed.json
//
// It prints one JSON object: requests, errors, rps, p50_ms, p99_ms (and, with -rate,
// latencies_us: every successful call's latency in µs).
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // e签宝's Content-MD5
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8000", "e签宝 base URL")
	appID := flag.String("app-id", "bench-app", "app ID")
	secret := flag.String("app-secret", "bench-secret", "app secret")
	conc := flag.Int("c", 50, "concurrent callers")
	dur := flag.Duration("d", 10*time.Second, "duration")
	bodyFile := flag.String("body", "testdata/seed_request.json", "request body")
	rate := flag.Int("rate", 0, "open loop: start this many calls a second, whatever the answers (instead of -c closed-loop callers)")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const path = "/v3/evidence/evi-point/psn-realname"
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc}}

	call := func() bool {
		sum := md5.Sum(body) //nolint:gosec // see import
		contentMD5 := base64.StdEncoding.EncodeToString(sum[:])
		mac := hmac.New(sha256.New, []byte(*secret))
		mac.Write([]byte("POST\n*/*\n" + contentMD5 + "\napplication/json; charset=UTF-8\n\n" + path))
		req, _ := http.NewRequest(http.MethodPost, *url+path, bytes.NewReader(body))
		req.Header.Set("X-Tsign-Open-App-Id", *appID)
		req.Header.Set("X-Tsign-Open-Auth-Mode", "Signature")
		req.Header.Set("X-Tsign-Open-Ca-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
		req.Header.Set("X-Tsign-Open-Ca-Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		req.Header.Set("Accept", "*/*")
		req.Header.Set("Content-Type", "application/json; charset=UTF-8")
		req.Header.Set("Content-MD5", contentMD5)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct {
			Code int `json:"code"`
			Data struct {
				EviPointID string `json:"eviPointId"`
			} `json:"data"`
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &out) == nil && out.Code == 0 && out.Data.EviPointID != ""
	}

	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	end := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	if *rate > 0 {
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		for time.Now().Before(end) {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				ok := call()
				d := time.Since(t0)
				mu.Lock()
				if ok {
					lat = append(lat, d)
				} else {
					errs++
				}
				mu.Unlock()
			}()
		}
		tick.Stop()
		*conc = 0
	}
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				if call() {
					mine = append(mine, time.Since(t0))
				} else {
					bad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	out := map[string]any{
		"requests": len(lat), "errors": errs, "rps": float64(len(lat)) / elapsed.Seconds(),
		"p50_ms": pct(0.50), "p99_ms": pct(0.99),
	}
	if *rate > 0 {
		// Open loop: every call's latency too, so that runs can be pooled.
		us := make([]int64, len(lat))
		for i, d := range lat {
			us[i] = d.Microseconds()
		}
		out["latencies_us"] = us
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

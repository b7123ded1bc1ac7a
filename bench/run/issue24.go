package main

// The figures issue 24 asks of `make bench` besides the load table, each for this build and
// (with -before) the earlier one in the same run: validation's CPU per request, the latency
// the service adds over e签宝 at 50 calls/s open loop, and how the quota is used (the most
// e签宝 calls in any 1 s window, the share of the quota over the worst 10 s) after idle
// periods and under a sustained backlog.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// validationMicros is BenchmarkValidateSeed's CPU per call in µs, from the module at src:
// the CPU time of a run of 40,000 calls less that of 2,000 (start-up), the median of three,
// the builds alternated. CPU time rather than ns/op: on a shared machine wall time
// measures the neighbours.
func validationMicros(srcs []string) ([]float64, error) {
	bins := make([]string, len(srcs))
	for i, src := range srcs {
		bins[i] = filepath.Join(os.TempDir(), fmt.Sprintf("esign-bench-validation-%d.test", i))
		cmd := exec.Command("go", "test", "-c", "-o", bins[i], "./validation/")
		cmd.Dir, cmd.Stderr = src, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building %s/validation tests: %w", src, err)
		}
	}
	cpu := func(i, n int) (float64, error) {
		cmd := exec.Command(bins[i], "-test.run", "^$", "-test.bench", "^BenchmarkValidateSeed$", "-test.benchtime", strconv.Itoa(n)+"x", "-test.cpu", "1")
		cmd.Dir = filepath.Join(srcs[i], "validation")
		if err := cmd.Run(); err != nil {
			return 0, err
		}
		ps := cmd.ProcessState
		return (ps.UserTime() + ps.SystemTime()).Seconds(), nil
	}
	runs := make([][]float64, len(srcs))
	for range 3 {
		for i := range srcs {
			a, err := cpu(i, 2000)
			if err != nil {
				return nil, err
			}
			b, err := cpu(i, 40000)
			if err != nil {
				return nil, err
			}
			runs[i] = append(runs[i], (b-a)/38000*1e6)
		}
	}
	out := make([]float64, len(srcs))
	for i, r := range runs {
		sort.Float64s(r)
		out[i] = r[len(r)/2]
	}
	return out, nil
}

// recorder is a reverse proxy in front of the simulator that notes when each evidence
// point request reaches it: e签宝's view of the quota. It runs in a process of its own
// (this program with -record), so that the load generator's bursts in this process do not
// delay its readings.
type recorder struct {
	addr string
	cmd  *exec.Cmd
}

// receiptsPath is where the recorder process hands over (and forgets) its readings.
const receiptsPath = "/__receipts"

func startRecorder(simAddr string) (*recorder, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-record", simAddr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("recorder: %w", err)
	}
	return &recorder{addr: strings.TrimSpace(line), cmd: cmd}, nil
}

func (r *recorder) close() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// receipts are the recorder's readings of e签宝 calls: when each arrived (the kernel's
// receive timestamp of its first bytes, what e签宝's edge would count) and when the
// recorder's handler got to it (later by however long this process waited for a core).
type receipts struct {
	arrived, read []time.Time
}

// take returns the receipts recorded since the last take.
func (r *recorder) take() receipts {
	var out receipts
	resp, err := http.Get("http://" + r.addr + receiptsPath)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var ns [][2]int64
	_ = json.NewDecoder(resp.Body).Decode(&ns)
	for _, n := range ns {
		out.arrived = append(out.arrived, time.Unix(0, n[0]))
		out.read = append(out.read, time.Unix(0, n[1]))
	}
	return out
}

// runRecorder is the recorder process: it prints its address and serves until killed.
func runRecorder(simAddr string) error {
	target, _ := url.Parse("http://" + simAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var (
		mu    sync.Mutex
		times [][2]int64
	)
	l, err := esignsim.ListenArrivals("127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(l.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		read := time.Now()
		// The whole request is read before its arrival is taken, in every request (see
		// TakeArrival).
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, "recorder: "+err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		arrived, ok := esignsim.TakeArrival(req.Context())
		if req.URL.Path == receiptsPath {
			mu.Lock()
			out := times
			times = nil
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		if !ok {
			arrived = read
		}
		if req.URL.Path == restURL {
			mu.Lock()
			times = append(times, [2]int64{arrived.UnixNano(), read.UnixNano()})
			mu.Unlock()
		}
		proxy.ServeHTTP(w, req)
	}), ReadHeaderTimeout: 10 * time.Second, ConnContext: esignsim.ArrivalConnContext}
	return srv.Serve(l)
}

// leastShare is the fewest calls in any window [t, t+w) between the first and the last
// call (t stepping by 10 ms), as a share of qps × w.
func leastShare(times []time.Time, qps int, w time.Duration) float64 {
	if len(times) == 0 {
		return 0
	}
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	least := -1
	for t := ts[0]; !t.Add(w).After(ts[len(ts)-1]); t = t.Add(10 * time.Millisecond) {
		i, _ := slices.BinarySearchFunc(ts, t, func(a, b time.Time) int { return a.Compare(b) })
		j, _ := slices.BinarySearchFunc(ts, t.Add(w), func(a, b time.Time) int { return a.Compare(b) })
		if least < 0 || j-i < least {
			least = j - i
		}
	}
	return float64(least) / (float64(qps) * w.Seconds())
}

// callers is the HTTP client of the open-loop and burst callers. It keeps as many idle
// connections as calls can be in flight, as bench/baseline's does: with net/http's default
// of two, every call beyond two in flight opened (and later closed) a connection of its
// own, and the latency measured was partly the load generator's.
var callers = &http.Client{Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000}}

// post sends the seed (with customBizId id when not "") to the service's REST route with
// deadline, and returns how long the answer took and whether it succeeded.
func post(httpAddr string, body []byte, id string, deadline time.Duration) (time.Duration, bool) {
	if id != "" {
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		m["customBizId"] = id
		body, _ = json.Marshal(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline+5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+restURL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Grpc-Timeout", fmt.Sprintf("%dm", deadline.Milliseconds()))
	t0 := time.Now()
	resp, err := callers.Do(req)
	if err != nil {
		return time.Since(t0), false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(t0), resp.StatusCode == http.StatusOK
}

// openLoop starts rate calls a second for d, each in its own goroutine, and waits for
// every answer; keyed makes every second call carry a fresh customBizId.
func openLoop(httpAddr string, body []byte, rate int, d, deadline time.Duration, keyed bool, prefix string) []time.Duration {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		lat []time.Duration
		n   atomic.Int64
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := n.Add(1)
			id := ""
			if keyed && i%2 == 0 {
				id = fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), i)
			}
			took, ok := post(httpAddr, body, id, deadline)
			if ok {
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat
}

func percentile(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
}

// addedLatency is the service's REST latency at 50 calls/s open loop (quota lifted, as in
// the load table) less the baseline's (a caller signing and posting to e签宝 itself) at
// the same rate against the same simulator: p50 and p99 in ms. Each round runs the
// baseline, then each build, one after the other. added is each build's p50 and p99 over
// every round's calls pooled, less the baseline's over its pooled calls: with 3 rounds of
// 10 s the p99 is the 15th-worst of 1,500 calls rather than the 5th-worst of 500, which
// one stalled moment of a shared machine moves by milliseconds. byRound is each round's
// figures against the same round's baseline.
func addedLatency(bins []string, dur time.Duration, rounds int) (base [2]float64, added [][2]float64, byRound [][][2]float64, err error) {
	simAddr, stopSim, err := startSim(0)
	if err != nil {
		return base, nil, nil, err
	}
	defer stopSim()
	body, err := os.ReadFile(seed)
	if err != nil {
		return base, nil, nil, err
	}
	var baseAll []time.Duration
	all := make([][]time.Duration, len(bins))
	byRound = make([][][2]float64, len(bins))
	for range rounds {
		cmd := exec.Command("bin/baseline", "-url", "http://"+simAddr, "-app-id", appID, "-app-secret", secret,
			"-rate", "50", "-d", dur.String(), "-body", seed)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Run(); err != nil {
			return base, nil, nil, fmt.Errorf("baseline: %w", err)
		}
		var b struct {
			P50 float64 `json:"p50_ms"`
			P99 float64 `json:"p99_ms"`
			Lat []int64 `json:"latencies_us"`
		}
		if err := json.Unmarshal(out.Bytes(), &b); err != nil {
			return base, nil, nil, err
		}
		if len(b.Lat) == 0 {
			return base, nil, nil, errors.New("baseline: no latencies (an old bin/baseline?)")
		}
		for _, us := range b.Lat {
			baseAll = append(baseAll, time.Duration(us)*time.Microsecond)
		}
		for i, bin := range bins {
			svc, _, httpAddr, err := startService(bin, simAddr)
			if err != nil {
				return base, nil, nil, err
			}
			openLoop(httpAddr, body, 50, time.Second, 5*time.Second, false, "") // warm up
			lat := openLoop(httpAddr, body, 50, dur, 5*time.Second, false, "")
			_ = svc.Process.Kill()
			_ = svc.Wait()
			all[i] = append(all[i], lat...)
			byRound[i] = append(byRound[i], [2]float64{percentile(lat, 0.5) - b.P50, percentile(lat, 0.99) - b.P99})
		}
	}
	base = [2]float64{percentile(baseAll, 0.5), percentile(baseAll, 0.99)}
	for _, lat := range all {
		added = append(added, [2]float64{percentile(lat, 0.5) - base[0], percentile(lat, 0.99) - base[1]})
	}
	return base, added, byRound, nil
}

// quotaUse is what e签宝 sees of the quota (ESIGN_QPS=50, e签宝 answering in 50 ms):
// bursts of 150 calls after 1.5 s idle, three times, and a backlog of twice the quota for
// 15 s (half keyed, 5 s deadlines).
//
// Each figure is counted twice: by arrival (the kernel's receive timestamps, what e签宝's
// edge sees; the target) and by the instants the recorder read the calls (later by its
// own waits for a core on this shared machine).
type quotaUse struct {
	burstMost, backlogMost         int
	backlogShare                   float64
	burstMostRead, backlogMostRead int
	backlogShareRead               float64
}

func measureQuota(bin string) (quotaUse, error) {
	const qps = 50
	var q quotaUse
	simAddr, stopSim, err := startSim(50 * time.Millisecond)
	if err != nil {
		return q, err
	}
	defer stopSim()
	rec, err := startRecorder(simAddr)
	if err != nil {
		return q, err
	}
	defer rec.close()
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	dir, _ := os.MkdirTemp("", "esign-bench-quota-")
	cmd := exec.Command(bin, "-grpc-addr", grpcAddr, "-http-addr", httpAddr, "-admin-addr", "")
	logFile, _ := os.Create(filepath.Join(dir, "service.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "ESIGN_BASE_URL=http://"+rec.addr, "ESIGN_APP_ID="+appID, "ESIGN_APP_SECRET="+secret,
		"AUTH_DISABLED=true", "ESIGN_QPS="+strconv.Itoa(qps), "DB_PATH="+filepath.Join(dir, "sub.db"), "LOG_LEVEL=warn")
	if err := cmd.Start(); err != nil {
		return q, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitTCP(httpAddr); err != nil {
		return q, err
	}
	body, err := os.ReadFile(seed)
	if err != nil {
		return q, err
	}
	for range 3 {
		time.Sleep(1500 * time.Millisecond)
		var wg sync.WaitGroup
		for range 3 * qps {
			wg.Add(1)
			go func() { defer wg.Done(); post(httpAddr, body, "", 3*time.Second) }()
		}
		wg.Wait()
	}
	burst := rec.take()
	q.burstMost, _ = esignsim.MostInWindow(burst.arrived, time.Second)
	q.burstMostRead, _ = esignsim.MostInWindow(burst.read, time.Second)
	time.Sleep(1500 * time.Millisecond)
	openLoop(httpAddr, body, 2*qps, 15*time.Second, 5*time.Second, true, "bench-backlog")
	backlog := rec.take()
	q.backlogMost, _ = esignsim.MostInWindow(backlog.arrived, time.Second)
	q.backlogShare = leastShare(backlog.arrived, qps, 10*time.Second)
	q.backlogMostRead, _ = esignsim.MostInWindow(backlog.read, time.Second)
	q.backlogShareRead = leastShare(backlog.read, qps, 10*time.Second)
	return q, nil
}

// issue24 measures and prints the figures above for this build and, when given, the
// earlier one (beforeBin built from beforeSrc).
func issue24(dur time.Duration, beforeBin, beforeSrc string, rounds int) error {
	names, bins, srcs := []string{"this"}, []string{serviceBin}, []string{"."}
	if beforeBin != "" {
		names, bins = append(names, "before"), append(bins, beforeBin)
	}
	if beforeSrc != "" {
		srcs = append(srcs, beforeSrc)
	}
	val, err := validationMicros(srcs)
	if err != nil {
		return err
	}
	base, added, byRound, err := addedLatency(bins, dur, rounds)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("Baseline at 50 calls/s open loop (0 ms e签宝): p50 %.2f ms, p99 %.2f ms (the calls of %d rounds pooled; so are the table's added p50 and p99). Quota runs: ESIGN_QPS=50, e签宝 at 50 ms.\n", base[0], base[1], rounds)
	for i, rs := range byRound {
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("%+.2f / %+.2f", r[0], r[1]))
		}
		fmt.Printf("Added latency p50 / p99 ms by round (against that round's baseline), %s: %s; their medians %+.2f / %+.2f.\n", names[i], strings.Join(parts, ", "), medianOf(rs, 0), medianOf(rs, 1))
	}
	fmt.Println()
	fmt.Println("Quota figures by arrival (kernel receive timestamps at e签宝's side; the targets), then in brackets by the instant the recorder read each call.")
	fmt.Println()
	fmt.Println("| build | validation µs CPU / request (≤ 6) | added p50 ms at 50/s | added p99 ms at 50/s (≤ 2) | burst after idle: most calls in a 1 s window (≤ 50) | backlog: most in a 1 s window (≤ 50) | backlog: least share of the quota in 10 s (≥ 98 %) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for i, bin := range bins {
		q, err := measureQuota(bin)
		if err != nil {
			return err
		}
		v := "—"
		if i < len(val) {
			v = fmt.Sprintf("%.1f", val[i])
		}
		fmt.Printf("| %s | %s | %.2f | %.2f | %d (%d) | %d (%d) | %.1f %% (%.1f %%) |\n", names[i], v, added[i][0], added[i][1],
			q.burstMost, q.burstMostRead, q.backlogMost, q.backlogMostRead, 100*q.backlogShare, 100*q.backlogShareRead)
	}
	return nil
}

// medianOf is the median of the k-th figure of rs.
func medianOf(rs [][2]float64, k int) float64 {
	var vs []float64
	for _, r := range rs {
		vs = append(vs, r[k])
	}
	return median(vs)
}

// repeatQuota measures the quota use n times for this build and, when given, the
// earlier one, alternated, and prints one line per run.
func repeatQuota(n int, beforeBin string) error {
	names, bins := []string{"this"}, []string{serviceBin}
	if beforeBin != "" {
		names, bins = append(names, "before"), append(bins, beforeBin)
	}
	fmt.Println("| run | build | burst: most in 1 s by arrival (read) | backlog: most in 1 s by arrival (read) | backlog: least share in 10 s by arrival (read) |")
	fmt.Println("|---:|---|---:|---:|---:|")
	for run := 1; run <= n; run++ {
		for i, bin := range bins {
			q, err := measureQuota(bin)
			if err != nil {
				return err
			}
			fmt.Printf("| %d | %s | %d (%d) | %d (%d) | %.1f %% (%.1f %%) |\n", run, names[i],
				q.burstMost, q.burstMostRead, q.backlogMost, q.backlogMostRead, 100*q.backlogShare, 100*q.backlogShareRead)
		}
	}
	return nil
}

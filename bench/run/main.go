// Command run drives `make bench`: for each upstream setting it starts the simulator,
// measures the baseline (a caller signing and posting to the simulator itself), the floor
// (bench/floor: a bare gRPC proxy to e签宝 with the service's upstream client), then the
// service's gRPC path (ghz) and REST path (hey), each in a fresh process, and prints one
// table with every path's ratio to the baseline, and the targets' ratios (service ÷
// floor, REST ÷ gRPC, share of Little's-law limit), all measured in the same run. With
// -before, an earlier build of the service is measured in the same run too.
// A soak run then samples the service's RSS over a longer gRPC load.
package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	appID   = "bench-app"
	secret  = "bench-secret-0123456789"
	seed    = "testdata/seed_request.json"
	restURL = "/v3/evidence/evi-point/psn-realname"
	method  = "esign.evidence.v1.EvidenceService.CreatePersonalEvidencePoint"
)

type scenario struct {
	name    string
	latency time.Duration
	conc    int
}

type result struct {
	scenario, path     string
	rps, p50, p99      float64
	calls, errs        int
	cpuPer1000, rssMiB float64
}

func main() {
	dur := flag.Duration("d", 10*time.Second, "duration of each load run")
	soak := flag.Duration("soak", 60*time.Second, "duration of the RSS soak run (0: none)")
	before := flag.String("before", "", "an earlier build of bin/esign-evidence to measure in the same run (before/after)")
	beforeSrc := flag.String("before-src", "", "a checkout of that earlier build, for its validation benchmark")
	record := flag.String("record", "", "run as the quota runs' recording proxy in front of this simulator address (used by the bench itself)")
	rounds := flag.Int("rounds", 5, "rounds of the load runs, each running every path once in turn; the tables give the median round")
	quotaRuns := flag.Int("quota", 0, "only measure the quota use, this many times for each build (alternated), and print each run")
	flag.Parse()
	if *quotaRuns > 0 {
		if err := repeatQuota(*quotaRuns, *before); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *record != "" {
		if err := runRecorder(*record); err != nil {
			fmt.Fprintln(os.Stderr, "recorder:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*dur, *soak, *before, *beforeSrc, max(1, *rounds)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(dur, soak time.Duration, before, beforeSrc string, rounds int) error {
	scenarios := []scenario{
		{"0 ms e签宝 latency, 50 concurrent", 0, 50},
		{"50 ms e签宝 latency, 200 concurrent", 50 * time.Millisecond, 200},
	}
	// Each round runs every path once, one after the other, so that the paths a ratio
	// compares ran minutes apart at most; the ratios are taken within a round, and each
	// ratio's median over the rounds is reported (a shared two-core machine moves single
	// runs by ±15 %). The load table shows each path's median-CPU run, so its "÷ baseline"
	// columns may divide runs of different rounds.
	byRound := make([][]result, rounds)
	for _, sc := range scenarios {
		simAddr, stopSim, err := startSim(sc.latency)
		if err != nil {
			return err
		}
		for round := range rounds {
			rs, err := runRound(sc, simAddr, dur, before)
			if err != nil {
				stopSim()
				return err
			}
			byRound[round] = append(byRound[round], rs...)
		}
		stopSim()
	}
	results := medianRows(byRound)
	printTable(results)
	printTargets(scenarios, byRound)
	if err := issue24(dur, before, beforeSrc, rounds); err != nil {
		return err
	}
	if soak > 0 {
		return soakRun(soak)
	}
	return nil
}

// runRound measures every path of sc once: the baseline, the floor, then the service's
// gRPC and REST paths (and the earlier build's, with before).
func runRound(sc scenario, simAddr string, dur time.Duration, before string) ([]result, error) {
	var rs []result
	base, err := baseline(sc, simAddr, dur)
	if err != nil {
		return nil, err
	}
	rs = append(rs, base)
	fl, err := floor(sc, simAddr, dur)
	if err != nil {
		return nil, err
	}
	rs = append(rs, fl)
	paths := []struct{ bin, path string }{{serviceBin, pathGRPC}, {serviceBin, pathREST}}
	if before != "" {
		paths = append(paths, struct{ bin, path string }{before, pathGRPC + " before"}, struct{ bin, path string }{before, pathREST + " before"})
	}
	for _, p := range paths {
		r, err := servicePath(sc, p.bin, p.path, simAddr, dur)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// medianRows is, for each path of each setting, its run with the median CPU per call
// over the rounds (the lower middle of an even count).
func medianRows(byRound [][]result) []result {
	var out []result
	for i, r := range byRound[0] {
		runs := []result{r}
		for _, rs := range byRound[1:] {
			runs = append(runs, rs[i])
		}
		sort.Slice(runs, func(a, b int) bool { return runs[a].cpuPer1000 < runs[b].cpuPer1000 })
		out = append(out, runs[(len(runs)-1)/2])
	}
	return out
}

// median is the middle of vs (the mean of the two middle ones for an even count).
func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else if n > 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return 0
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startSim(latency time.Duration) (string, func(), error) {
	addr := freeAddr()
	cmd := exec.Command("bin/esign-sim", "-addr", addr, "-app-id", appID, "-latency", latency.String())
	cmd.Env = append(os.Environ(), "SIM_APP_SECRET="+secret)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	if err := waitTCP(addr); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}

func waitTCP(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", addr)
}

// usage is the CPU seconds and peak RSS of an exited process.
func usage(ps *os.ProcessState) (cpu float64, rssMiB float64) {
	cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		rssMiB = float64(ru.Maxrss) / 1024
	}
	return cpu, rssMiB
}

func baseline(sc scenario, simAddr string, dur time.Duration) (result, error) {
	cmd := exec.Command("bin/baseline", "-url", "http://"+simAddr, "-app-id", appID, "-app-secret", secret,
		"-c", strconv.Itoa(sc.conc), "-d", dur.String(), "-body", seed)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("baseline: %w", err)
	}
	var r struct {
		Requests, Errors int
		RPS              float64
		P50              float64 `json:"p50_ms"`
		P99              float64 `json:"p99_ms"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("baseline output: %w", err)
	}
	cpu, rss := usage(cmd.ProcessState)
	return result{scenario: sc.name, path: pathBaseline, rps: r.RPS, p50: r.P50, p99: r.P99,
		calls: r.Requests, errs: r.Errors, cpuPer1000: cpu / float64(max(1, r.Requests)) * 1000, rssMiB: rss}, nil
}

// Paths of the table, and the binaries measured.
const (
	pathBaseline = "baseline (direct, signed by the caller)"
	pathFloor    = "floor (bare gRPC proxy, ghz)"
	pathGRPC     = "gRPC (ghz)"
	pathREST     = "REST (hey)"
	serviceBin   = "bin/esign-evidence"
)

// floor measures bench/floor with ghz, as the service's gRPC path is measured.
func floor(sc scenario, simAddr string, dur time.Duration) (result, error) {
	addr := freeAddr()
	cmd := exec.Command("bin/floor", "-addr", addr, "-esign-base-url", "http://"+simAddr, "-app-id", appID)
	cmd.Env = append(os.Environ(), "FLOOR_APP_SECRET="+secret)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	if err := waitTCP(addr); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return result{}, err
	}
	cpu0 := cpuSeconds(cmd.Process.Pid)
	r, err := ghz(addr, sc.conc, dur)
	cpu := cpuSeconds(cmd.Process.Pid) - cpu0
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if err != nil {
		return result{}, err
	}
	_, rss := usage(cmd.ProcessState)
	r.scenario, r.path = sc.name, pathFloor
	r.cpuPer1000, r.rssMiB = cpu/float64(max(1, r.calls))*1000, rss
	return r, nil
}

// startService runs the service binary bin against the simulator; the quota limiter is
// lifted so that the service, not e签宝's quota, is measured.
func startService(bin, simAddr string) (*exec.Cmd, string, string, error) {
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	dir, _ := os.MkdirTemp("", "esign-bench-")
	cmd := exec.Command(bin, "-grpc-addr", grpcAddr, "-http-addr", httpAddr, "-admin-addr", "")
	logFile, _ := os.Create(filepath.Join(dir, "service.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "ESIGN_BASE_URL=http://"+simAddr, "ESIGN_APP_ID="+appID, "ESIGN_APP_SECRET="+secret,
		"AUTH_DISABLED=true", "ESIGN_QPS=1000000", "DB_PATH="+filepath.Join(dir, "sub.db"), "LOG_LEVEL=info")
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	for range 200 {
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, grpcAddr, httpAddr, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, "", "", errors.New("the service did not start")
}

func servicePath(sc scenario, bin, path, simAddr string, dur time.Duration) (result, error) {
	svc, grpcAddr, httpAddr, err := startService(bin, simAddr)
	if err != nil {
		return result{}, err
	}
	var r result
	cpu0 := cpuSeconds(svc.Process.Pid)
	if strings.HasPrefix(path, "gRPC") {
		r, err = ghz(grpcAddr, sc.conc, dur)
	} else {
		r, err = hey("http://"+httpAddr+restURL, sc.conc, dur)
	}
	cpu := cpuSeconds(svc.Process.Pid) - cpu0
	_ = svc.Process.Signal(syscall.SIGTERM)
	_ = svc.Wait()
	if err != nil {
		return result{}, err
	}
	_, rss := usage(svc.ProcessState)
	r.scenario, r.path = sc.name, path
	r.cpuPer1000 = cpu / float64(max(1, r.calls)) * 1000
	r.rssMiB = rss
	return r, nil
}

func ghz(addr string, conc int, dur time.Duration) (result, error) {
	cmd := exec.Command("bin/ghz", "--insecure", "--call", method, "-D", seed, "-c", strconv.Itoa(conc),
		"--connections", "10", "-z", dur.String(), "-O", "json", addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("ghz: %w", err)
	}
	var rep struct {
		Count   int     `json:"count"`
		RPS     float64 `json:"rps"`
		Latency []struct {
			Percentage int   `json:"percentage"`
			Latency    int64 `json:"latency"`
		} `json:"latencyDistribution"`
		Status map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return result{}, fmt.Errorf("ghz output: %w", err)
	}
	r := result{rps: float64(rep.Status["OK"]) / dur.Seconds(), calls: rep.Status["OK"], errs: rep.Count - rep.Status["OK"]}
	for _, l := range rep.Latency {
		switch l.Percentage {
		case 50:
			r.p50 = float64(l.Latency) / 1e6
		case 99:
			r.p99 = float64(l.Latency) / 1e6
		}
	}
	return r, nil
}

func hey(url string, conc int, dur time.Duration) (result, error) {
	cmd := exec.Command("bin/hey", "-z", dur.String(), "-c", strconv.Itoa(conc), "-m", "POST",
		"-T", "application/json", "-D", seed, "-o", "csv", url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("hey: %w", err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) < 2 {
		return result{}, fmt.Errorf("hey output: %v", err)
	}
	var lat []float64
	errs := 0
	for _, row := range rows[1:] {
		if len(row) < 7 {
			continue
		}
		if row[6] != "200" {
			errs++
			continue
		}
		v, _ := strconv.ParseFloat(row[0], 64)
		lat = append(lat, v*1000)
	}
	sort.Float64s(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	return result{rps: float64(len(lat)) / dur.Seconds(), calls: len(lat), errs: errs, p50: pct(0.5), p99: pct(0.99)}, nil
}

func printTable(rs []result) {
	fmt.Println("Each path's run with the median CPU per call over the rounds.")
	fmt.Println()
	fmt.Println("| upstream | path | req/s | p50 ms | p99 ms | errors | CPU s / 1000 calls | peak RSS MiB | req/s ÷ baseline | CPU ÷ baseline |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var base result
	for _, r := range rs {
		if r.path == pathBaseline {
			base = r
		}
		fmt.Printf("| %s | %s | %.0f | %.2f | %.2f | %d | %.3f | %.1f | %.2f | %.2f |\n", r.scenario, r.path, r.rps, r.p50, r.p99,
			r.errs, r.cpuPer1000, r.rssMiB, r.rps/base.rps, r.cpuPer1000/base.cpuPer1000)
	}
}

// printTargets prints the issue's ratios, each taken within a round (the paths it
// compares ran one after the other) and the median over the rounds: the service's CPU per
// call against the floor's and REST's against gRPC's, and at the latency setting the share
// of Little's-law limit (concurrency ÷ latency) reached. Each round's ratios follow.
func printTargets(scenarios []scenario, byRound [][]result) {
	find := func(rs []result, sc, path string) (result, bool) {
		for _, r := range rs {
			if r.scenario == sc && r.path == path {
				return r, true
			}
		}
		return result{}, false
	}
	list := func(vs []float64) string {
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = fmt.Sprintf("%.2f", v)
		}
		return strings.Join(parts, ", ")
	}
	fmt.Println()
	fmt.Printf("Each ratio is taken within a round (its paths ran one after the other); the median over %d rounds first, then each round's.\n\n", len(byRound))
	fmt.Println("| upstream | build | gRPC CPU ÷ floor (≤ 1.35) | REST CPU ÷ gRPC (≤ 1.15) | gRPC % of Little's limit | REST % of Little's limit | gRPC p99 ms | REST p99 ms | gRPC ÷ floor by round | REST ÷ gRPC by round |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
	for _, sc := range scenarios {
		for _, build := range []string{"", " before"} {
			var gf, rg, gPct, rPct, gp99, rp99 []float64
			for _, rs := range byRound {
				fl, _ := find(rs, sc.name, pathFloor)
				g, ok1 := find(rs, sc.name, pathGRPC+build)
				r, ok2 := find(rs, sc.name, pathREST+build)
				if !ok1 || !ok2 {
					continue
				}
				gf, rg = append(gf, g.cpuPer1000/fl.cpuPer1000), append(rg, r.cpuPer1000/g.cpuPer1000)
				gp99, rp99 = append(gp99, g.p99), append(rp99, r.p99)
				if sc.latency > 0 {
					l := float64(sc.conc) / sc.latency.Seconds()
					gPct, rPct = append(gPct, 100*g.rps/l), append(rPct, 100*r.rps/l)
				}
			}
			if len(gf) == 0 {
				continue
			}
			gs, rs := "—", "—"
			if len(gPct) > 0 {
				gs, rs = fmt.Sprintf("%.0f %%", median(gPct)), fmt.Sprintf("%.0f %%", median(rPct))
			}
			name := "this"
			if build != "" {
				name = "before"
			}
			fmt.Printf("| %s | %s | %.2f | %.2f | %s | %s | %.1f | %.1f | %s | %s |\n", sc.name, name,
				median(gf), median(rg), gs, rs, median(gp99), median(rp99), list(gf), list(rg))
		}
	}
}

// soakRun loads the gRPC path for dur against a zero-latency simulator and samples the
// service's resident memory, to show whether it stays flat.
func soakRun(dur time.Duration) error {
	simAddr, stopSim, err := startSim(0)
	if err != nil {
		return err
	}
	defer stopSim()
	svc, grpcAddr, _, err := startService(serviceBin, simAddr)
	if err != nil {
		return err
	}
	defer func() { _ = svc.Process.Signal(syscall.SIGTERM); _ = svc.Wait() }()
	done := make(chan result, 1)
	go func() {
		r, _ := ghz(grpcAddr, 50, dur)
		done <- r
	}()
	var samples []string
	tick := time.NewTicker(dur / 6)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			fmt.Printf("\nSoak: gRPC, 50 concurrent, %s: %.0f req/s; service RSS (MiB) every %s: %s\n",
				dur, r.rps, dur/6, strings.Join(samples, ", "))
			return nil
		case <-tick.C:
			samples = append(samples, fmt.Sprintf("%.1f", rssMiB(svc.Process.Pid)))
		}
	}
}

// cpuSeconds is the user+system CPU a running process has used so far (/proc/<pid>/stat,
// in clock ticks of 1/100 s), so that a measurement covers the load run only, not the
// process's start-up and shutdown.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

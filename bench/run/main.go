// Command run drives `make bench`: for each upstream setting it starts the simulator,
// measures the baseline (a caller signing and posting to the simulator itself), then the
// service's gRPC path (ghz) and REST path (hey), each in a fresh service process, and
// prints one table with every path's ratio to the baseline measured in the same run.
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
	flag.Parse()
	if err := run(*dur, *soak); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(dur, soak time.Duration) error {
	scenarios := []scenario{
		{"0 ms e签宝 latency, 50 concurrent", 0, 50},
		{"50 ms e签宝 latency, 200 concurrent", 50 * time.Millisecond, 200},
	}
	var results []result
	for _, sc := range scenarios {
		simAddr, stopSim, err := startSim(sc.latency)
		if err != nil {
			return err
		}
		base, err := baseline(sc, simAddr, dur)
		if err != nil {
			stopSim()
			return err
		}
		results = append(results, base)
		for _, path := range []string{"gRPC (ghz)", "REST (hey)"} {
			r, err := servicePath(sc, path, simAddr, dur)
			if err != nil {
				stopSim()
				return err
			}
			results = append(results, r)
		}
		stopSim()
	}
	printTable(results)
	if soak > 0 {
		return soakRun(soak)
	}
	return nil
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
	return result{scenario: sc.name, path: "baseline (direct, signed by the caller)", rps: r.RPS, p50: r.P50, p99: r.P99,
		calls: r.Requests, errs: r.Errors, cpuPer1000: cpu / float64(max(1, r.Requests)) * 1000, rssMiB: rss}, nil
}

// startService runs the service against the simulator; the quota limiter is lifted so
// that the service, not e签宝's quota, is measured.
func startService(simAddr string) (*exec.Cmd, string, string, error) {
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	dir, _ := os.MkdirTemp("", "esign-bench-")
	cmd := exec.Command("bin/esign-evidence", "-grpc-addr", grpcAddr, "-http-addr", httpAddr, "-admin-addr", "")
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

func servicePath(sc scenario, path, simAddr string, dur time.Duration) (result, error) {
	svc, grpcAddr, httpAddr, err := startService(simAddr)
	if err != nil {
		return result{}, err
	}
	var r result
	if strings.HasPrefix(path, "gRPC") {
		r, err = ghz(grpcAddr, sc.conc, dur)
	} else {
		r, err = hey("http://"+httpAddr+restURL, sc.conc, dur)
	}
	_ = svc.Process.Signal(syscall.SIGTERM)
	_ = svc.Wait()
	if err != nil {
		return result{}, err
	}
	cpu, rss := usage(svc.ProcessState)
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
	fmt.Println("| upstream | path | req/s | p50 ms | p99 ms | errors | CPU s / 1000 calls | peak RSS MiB | req/s ÷ baseline | CPU ÷ baseline |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var base result
	for _, r := range rs {
		if strings.HasPrefix(r.path, "baseline") {
			base = r
		}
		fmt.Printf("| %s | %s | %.0f | %.2f | %.2f | %d | %.3f | %.1f | %.2f | %.2f |\n", r.scenario, r.path, r.rps, r.p50, r.p99,
			r.errs, r.cpuPer1000, r.rssMiB, r.rps/base.rps, r.cpuPer1000/base.cpuPer1000)
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
	svc, grpcAddr, _, err := startService(simAddr)
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

package esignsim

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Each request gets its own arrival, on kept-alive connections and on new ones (whose
// first bytes can arrive before Accept returns): after the request was written and no
// later than its handler ran, and never the previous request's.
func TestTakeArrival(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel receive timestamps are read on Linux only")
	}
	l, err := ListenArrivals("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type reading struct {
		arrived, read time.Time
		ok            bool
	}
	got := make(chan reading, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		at, ok := TakeArrival(r.Context())
		got <- reading{at, time.Now(), ok}
	}), ConnContext: ArrivalConnContext}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	kept := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var last time.Time
	for i := range 6 {
		client := kept
		if i%2 == 1 {
			client = fresh
		}
		time.Sleep(20 * time.Millisecond)
		sent := time.Now()
		resp, err := client.Post("http://"+l.Addr().String()+"/x", "text/plain", strings.NewReader(strings.Repeat("b", 3000)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r := <-got
		if !r.ok {
			t.Fatalf("request %d: no arrival", i)
		}
		if r.arrived.Before(sent) || r.arrived.After(r.read) || !r.arrived.After(last) {
			t.Errorf("request %d arrived at %v: sent at %v, read at %v, the previous read at %v", i, r.arrived, sent, r.read, last)
		}
		last = r.read
	}
}

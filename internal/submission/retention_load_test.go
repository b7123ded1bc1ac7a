package submission_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// TestRetentionUnderLoad is issue 21's retention benchmark, run only when
// RETENTION_BENCH_RECORDS is set (it writes a store of that many records, some 500 MB
// for a million):
//
//	RETENTION_BENCH_RECORDS=1000000 go test -run '^TestRetentionUnderLoad$' -v -timeout 60m ./internal/submission
//
// The store is written as a file from before the retention index (records only, in
// the embedded store's JSON form, half in the legacy operation's bucket, half in a
// second operation's), each record last changed at a random time over the past 40
// days. Keyed calls are measured for 10 s with no retention running; then two stages of
// retention follow: the first removes the records older than 36 days (about 10 %, and
// the new build indexes the file first), the second those older than 32 days (about
// 10 % more). A stage is retention runs as the service makes them, each bounded to a
// minute (RETENTION_BENCH_RUN_LIMIT), one after the other until one ends, for at most
// three minutes (RETENTION_BENCH_STAGE_LIMIT). Throughout, four callers make keyed calls
// on other keys, each bounded by the default STORE_TIMEOUT as the service bounds them
// (two write a new record, two read an existing one, every 10 ms each), and their
// latencies are reported: p50, p99, max and how many failed.
//
// It uses only the Store interface, so the same file measures an earlier build.
func TestRetentionUnderLoad(t *testing.T) {
	records, _ := strconv.Atoi(os.Getenv("RETENTION_BENCH_RECORDS"))
	if records <= 0 {
		t.Skip("set RETENTION_BENCH_RECORDS (e.g. 1000000) to run the retention benchmark")
	}
	runLimit := time.Minute
	if v := os.Getenv("RETENTION_BENCH_RUN_LIMIT"); v != "" {
		var err error
		if runLimit, err = time.ParseDuration(v); err != nil {
			t.Fatalf("RETENTION_BENCH_RUN_LIMIT: %v", err)
		}
	}
	now := time.Now()
	const day = 24 * time.Hour
	path := filepath.Join(t.TempDir(), "s.db")
	keys, ages := writeOldStore(t, path, records, now, 40*day)

	start := time.Now()
	store, err := submission.OpenBolt(path, boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	t.Logf("%d records written; opened in %s", records, time.Since(start).Round(time.Millisecond))

	// Keyed calls with no retention running, for reference, then each stage.
	stageLimit := 3 * time.Minute
	if v := os.Getenv("RETENTION_BENCH_STAGE_LIMIT"); v != "" {
		var err error
		if stageLimit, err = time.ParseDuration(v); err != nil {
			t.Fatalf("RETENTION_BENCH_STAGE_LIMIT: %v", err)
		}
	}
	stopCalls, lat := keyedCalls(store, keys, "idle")
	time.Sleep(10 * time.Second)
	stopCalls()
	t.Logf("no retention running, 10 s:")
	lat.report(t)
	before := 40 * day
	for stage, age := range []time.Duration{36 * day, 32 * day} {
		cutoff := now.Add(-age)
		want := int64(0)
		for _, a := range ages {
			if a > age && a <= before {
				want++
			}
		}
		before = age
		// Runs as the service makes them, each bounded by runLimit, one after the other
		// (the service waits a minute between them) until one finishes, or all of them
		// removed what was expired, or stageLimit is spent.
		stopCalls, lat := keyedCalls(store, keys, fmt.Sprint(stage))
		began := time.Now()
		var removed int64
		var runs []string
		for time.Since(began) < stageLimit {
			ctx, cancel := context.WithTimeout(context.Background(), min(runLimit, stageLimit-time.Since(began)))
			runBegan := time.Now()
			n, err := store.DeleteBefore(ctx, cutoff)
			cancel()
			removed += n
			runs = append(runs, fmt.Sprintf("%d in %s", n, time.Since(runBegan).Round(time.Millisecond)))
			if err == nil && n > 0 && removed < want {
				continue // an earlier build's run ends at its deadline without an error
			}
			if err == nil {
				break
			}
		}
		took := time.Since(began)
		stopCalls()
		t.Logf("stage %d: cutoff %v ago: removed %d of %d expired in %s over %d run(s) of at most %s: %v",
			stage+1, age/day*day, removed, want, took.Round(time.Millisecond), len(runs), runLimit, runs)
		lat.report(t)
	}
}

// keyedCalls starts four callers making keyed calls on the store, each bounded by the
// default STORE_TIMEOUT as the service bounds them: two write a new record, two read one
// of keys, each every 10 ms. It returns a function that stops them, and their latencies.
func keyedCalls(store submission.Store, keys []string, tag string) (func(), *latencies) {
	stop := make(chan struct{})
	lat := newLatencies()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(len(tag)), uint64(w)))
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), submission.DefaultStoreTimeout)
				began := time.Now()
				if w%2 == 0 {
					k := submission.Key{Op: evidencePoint.Name, Namespace: "caller", CustomBizID: fmt.Sprintf("live-%s-%d-%d", tag, w, i)}
					err := store.Mutate(ctx, k, func(*submission.Record) (*submission.Record, error) {
						at := time.Now()
						return &submission.Record{Key: k, Fingerprint: make([]byte, 32), State: submission.StateSucceeded, Result: "P", CreatedAt: at, UpdatedAt: at}, nil
					})
					lat.add("Mutate", time.Since(began), err)
				} else {
					j := rng.IntN(len(keys))
					_, err := store.Get(ctx, benchKey(keys[j], j))
					lat.add("Get", time.Since(began), err)
				}
				cancel()
			}
		}()
	}
	return func() { close(stop); wg.Wait() }, lat
}

// benchKey is the key of the j-th record writeOldStore wrote.
func benchKey(id string, j int) submission.Key {
	op := evidencePoint.Name
	if j%2 == 1 {
		op = "upload-file"
	}
	return submission.Key{Op: op, Namespace: "caller", CustomBizID: id}
}

// writeOldStore writes n records into a new bbolt file at path as a build without the
// retention index did: each record under its operation's bucket, in the store's JSON
// form, last changed a random time within span before now. It returns the records'
// customBizIds and ages.
func writeOldStore(t *testing.T, path string, n int, now time.Time, span time.Duration) ([]string, []time.Duration) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, n)
	ages := make([]time.Duration, n)
	for i := range n {
		b := make([]byte, 18)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		keys[i] = hex.EncodeToString(b) // 36 characters, customBizId's longest
		ages[i] = time.Duration(rng.Int64N(int64(span)))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// In key order, a hundred thousand a transaction: quick to write, and the pages end
	// up half full, as random inserts leave them.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	bucketOf := func(j int) string {
		if j%2 == 1 {
			return "submissions:upload-file"
		}
		return "submissions"
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmpString(bucketOf(a), bucketOf(b)); c != 0 {
			return c
		}
		return cmpString(keys[a], keys[b])
	})
	fp := make([]byte, 32)
	for lo := 0; lo < n; lo += 100_000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for _, j := range order[lo:min(lo+100_000, n)] {
				b, err := tx.CreateBucketIfNotExists([]byte(bucketOf(j)))
				if err != nil {
					return err
				}
				at := now.Add(-ages[j])
				v, err := json.Marshal(map[string]any{"fp": fp, "state": submission.StateSucceeded, "evi": "P" + keys[j],
					"attempts": 1, "lease": time.Time{}, "created": at, "updated": at})
				if err != nil {
					return err
				}
				if err := b.Put([]byte("caller\x00"+keys[j]), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return keys, ages
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// latencies collects keyed calls' latencies by kind.
type latencies struct {
	mu     sync.Mutex
	took   map[string][]time.Duration
	failed map[string]int
}

func newLatencies() *latencies {
	return &latencies{took: map[string][]time.Duration{}, failed: map[string]int{}}
}

func (l *latencies) add(kind string, d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.took[kind] = append(l.took[kind], d)
	if err != nil {
		l.failed[kind]++
	}
}

func (l *latencies) report(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, kind := range []string{"Mutate", "Get"} {
		d := l.took[kind]
		if len(d) == 0 {
			t.Logf("  %-6s: no calls", kind)
			continue
		}
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		t.Logf("  %-6s: %d calls, p50 %s, p99 %s, max %s, failed %d (STORE_TIMEOUT %s)", kind, len(d),
			q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond), l.failed[kind], submission.DefaultStoreTimeout)
	}
}

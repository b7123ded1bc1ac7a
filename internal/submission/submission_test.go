package submission_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// evidencePoint is the operation the tests submit: e签宝's personal evidence point,
// through the simulator, under a name of the tests' own. Its record keeps the
// eviPointId, and a replay returns it.
var evidencePoint = submission.Operation[*upstream.PsnEvidencePointResult]{
	Name:   "evidence-point",
	Encode: func(r *upstream.PsnEvidencePointResult) string { return r.EviPointID },
	Decode: func(id string) *upstream.PsnEvidencePointResult {
		return &upstream.PsnEvidencePointResult{EviPointID: id}
	},
}

// The tests' stores hold their operation's records where the service's stores hold the
// legacy operation's (bbolt's plain bucket), as the service runs.
var (
	boltOptions = submission.BoltOptions{LegacyOp: evidencePoint.Name}
	pgOptions   = submission.PostgresOptions{LegacyOp: evidencePoint.Name}
)

// storeKinds opens a fresh store of each kind; the same semantics must hold for both.
var storeKinds = map[string]func(t *testing.T) submission.Store{
	"bolt": func(t *testing.T) submission.Store {
		s, err := submission.OpenBolt(filepath.Join(t.TempDir(), "sub.db"), boltOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"postgres": func(t *testing.T) submission.Store {
		s, err := submission.OpenPostgres(context.Background(), pgtest.DSN(t), pgOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

func eachStore(t *testing.T, f func(t *testing.T, open func(t *testing.T) submission.Store)) {
	for name, open := range storeKinds {
		t.Run(name, func(t *testing.T) { f(t, open) })
	}
}

// rig is a submitter and a guard in front of the real upstream client and the
// simulator.
type rig struct {
	sim    *esignsim.Simulator
	client *upstream.Client
	guard  *guard.Guard
	store  submission.Store
	sub    *submission.Submitter
}

type result = submission.Result[*upstream.PsnEvidencePointResult]

// evi is a result's eviPointId, "" when there is none.
func evi(r result) string {
	if r.Value == nil {
		return ""
	}
	return r.Value.EviPointID
}

var fpKey = []byte("0123456789abcdef-fingerprint-key")

func newRig(t *testing.T, store submission.Store, policy submission.UnknownPolicy) *rig {
	t.Helper()
	sim := esignsim.New(esignsim.Config{AppID: "app", AppSecret: "secret"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: "app", AppSecret: "secret", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Unknown: policy, Lease: 2 * time.Second, StoreTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Through the Guard, as the service does. Its admission minimum is lowered so that
	// callers with short deadlines are sent (the tests of admission set their own).
	return &rig{sim: sim, client: c, guard: guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond}), store: store, sub: sub}
}

func point() *upstream.PsnEvidencePoint {
	return &upstream.PsnEvidencePoint{
		EviName: "证据", RealNameMethod: upstream.MethodThreeElements, TimeStamp: time.UnixMilli(1742809059000),
		Name: "测试张三", CardNo: "130401199601018395", CardType: upstream.CardTypeMainlandID,
		CardPortrait: "a", CardNationalEmblem: "b",
		ThreeElements: &upstream.ThreeElements{InfoVerifySupplier: "s", VerifyTime: "t", VerifySerialNumber: "n", Mobile: "19800002222", SMSCode: "1", SMSSupplier: "x"},
	}
}

func (r *rig) send(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
	return r.client.CreatePsnEvidencePoint(ctx, point())
}

var key = submission.Key{Op: evidencePoint.Name, Namespace: "", CustomBizID: "biz-0001"}

func (r *rig) submit(ctx context.Context, payload string) (result, error) {
	return r.submitWith(ctx, payload, r.send)
}

func (r *rig) submitWith(ctx context.Context, payload string, call func(context.Context) (*upstream.PsnEvidencePointResult, error)) (result, error) {
	return submission.Submit(ctx, r.sub, r.guard, evidencePoint, key, r.sub.Fingerprint([]byte(payload)), call)
}

func (r *rig) record(t *testing.T) *submission.Record {
	t.Helper()
	rec, err := r.store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestFirstRequestRecordedBeforeSendingAndAfter(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		var during *submission.Record
		res, err := r.submitWith(context.Background(), "p", func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
			during = r.record(t)
			return r.send(ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
		if during == nil || during.State != submission.StateInProgress || during.Attempts != 1 {
			t.Fatalf("before sending: %+v", during)
		}
		after := r.record(t)
		if after.State != submission.StateSucceeded || after.Result != evi(res) || res.Replayed {
			t.Fatalf("after: %+v, result %+v", after, res)
		}
		if string(after.Fingerprint) == "p" || len(after.Fingerprint) != 32 {
			t.Error("the fingerprint is not a keyed hash")
		}
	})
}

func TestReplayAndConflict(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		first, err := r.submit(context.Background(), "p")
		if err != nil {
			t.Fatal(err)
		}
		again, err := r.submit(context.Background(), "p")
		if err != nil || !again.Replayed || evi(again) != evi(first) {
			t.Fatalf("replay: %+v %v", again, err)
		}
		if _, err := r.submit(context.Background(), "other payload"); !errors.Is(err, submission.ErrConflict) {
			t.Fatalf("different payload: %v", err)
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d requests, want 1", n)
		}
	})
}

func TestInFlightDuplicateWaitsAndReplays(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		r.sim.Inject(esignsim.Fault{Latency: 400 * time.Millisecond, Times: 1})
		firstDone := make(chan result, 1)
		go func() {
			res, err := r.submit(context.Background(), "p")
			if err != nil {
				t.Error(err)
			}
			firstDone <- res
		}()
		waitFor(t, func() bool { rec := r.record(t); return rec != nil && rec.State == submission.StateInProgress })
		// A duplicate with too short a deadline gets the documented retryable answer.
		short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := r.submit(short, "p")
		cancel()
		if !errors.Is(err, submission.ErrInFlight) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("short deadline: %v", err)
		}
		// One with time to wait gets the first call's result.
		second, err := r.submit(context.Background(), "p")
		if err != nil {
			t.Fatal(err)
		}
		first := <-firstDone
		if !second.Replayed || evi(second) != evi(first) {
			t.Errorf("first %+v second %+v", first, second)
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d requests", n)
		}
	})
}

func TestDefiniteFailureThenRetry(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		r.sim.Inject(esignsim.Fault{BusinessCode: 1435002, BusinessMessage: "参数错误", Times: 1})
		_, err := r.submit(context.Background(), "p")
		var be *upstream.BusinessError
		if !errors.As(err, &be) {
			t.Fatalf("got %v", err)
		}
		if rec := r.record(t); rec.State != submission.StateFailed || rec.EsignCode != 1435002 {
			t.Fatalf("recorded %+v", rec)
		}
		// Nothing exists at e签宝: a retry (even with a corrected payload) is sent.
		res, err := r.submit(context.Background(), "corrected payload")
		if err != nil || res.Replayed || res.Attempts != 2 {
			t.Fatalf("retry: %+v %v", res, err)
		}
		if n := r.sim.Count(); n != 2 {
			t.Errorf("e签宝 received %d", n)
		}
	})
}

func TestOutcomeUnknownResendByDefault(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		r.sim.Inject(esignsim.Fault{ResetAfterBody: true, Times: 1})
		_, err := r.submit(context.Background(), "p")
		var uo *upstream.UnknownOutcomeError
		if !errors.As(err, &uo) {
			t.Fatalf("got %v", err)
		}
		if rec := r.record(t); rec.State != submission.StateOutcomeUnknown || rec.Attempts != 1 {
			t.Fatalf("recorded %+v", rec)
		}
		res, err := r.submit(context.Background(), "p")
		if err != nil || res.Attempts != 2 || res.Replayed {
			t.Fatalf("retry: %+v %v", res, err)
		}
		if rec := r.record(t); rec.State != submission.StateSucceeded || rec.Attempts != 2 {
			t.Errorf("recorded %+v", rec)
		}
		if n := r.sim.Count(); n != 2 {
			t.Errorf("e签宝 received %d", n)
		}
		// Different payload after an unknown outcome: refused (it may exist at e签宝).
		r2 := newRig(t, open(t), "")
		r2.sim.Inject(esignsim.Fault{ResetAfterBody: true, Times: 1})
		_, _ = r2.submit(context.Background(), "p")
		if _, err := r2.submit(context.Background(), "q"); !errors.Is(err, submission.ErrConflict) {
			t.Errorf("different payload after unknown: %v", err)
		}
	})
}

func TestOutcomeUnknownRefusedBySetting(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), submission.RefuseUnknown)
		r.sim.Inject(esignsim.Fault{ResetAfterBody: true, Times: 1})
		_, _ = r.submit(context.Background(), "p")
		if _, err := r.submit(context.Background(), "p"); !errors.Is(err, submission.ErrUnknownRefused) {
			t.Fatalf("got %v", err)
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d", n)
		}
	})
}

// A replica that died mid-call leaves an in-progress record; once its lease and the
// takeover grace have run out it counts as outcome unknown.
func TestExpiredLeaseIsOutcomeUnknown(t *testing.T) {
	for _, policy := range []submission.UnknownPolicy{submission.ResendUnknown, submission.RefuseUnknown} {
		t.Run(string(policy), func(t *testing.T) {
			eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
				r := newRig(t, open(t), policy)
				fp := r.sub.Fingerprint([]byte("p"))
				dead := func(lease time.Time) {
					err := r.store.Mutate(context.Background(), key, func(*submission.Record) (*submission.Record, error) {
						return &submission.Record{Key: key, Fingerprint: fp[0], State: submission.StateInProgress, Attempts: 1,
							AttemptID: "dead-replica", LeaseUntil: lease, CreatedAt: time.Now(), UpdatedAt: time.Now()}, nil
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				// Lease still running: the duplicate waits, then gives up.
				dead(time.Now().Add(time.Hour))
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, err := r.submit(ctx, "p")
				cancel()
				if !errors.Is(err, submission.ErrInFlight) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("live lease: %v", err)
				}
				// Lease run out, but within the grace a holder cut off from the store
				// has to record a result e签宝 returned: still held.
				dead(time.Now().Add(-time.Second))
				ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, err = r.submit(ctx, "p")
				cancel()
				if !errors.Is(err, submission.ErrInFlight) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("lease run out within the takeover grace: %v", err)
				}
				if n := r.sim.Count(); n != 0 {
					t.Fatalf("sent within the takeover grace: e签宝 received %d", n)
				}
				dead(time.Now().Add(-r.sub.TakeoverGrace() - time.Second))
				res, err := r.submit(context.Background(), "p")
				switch policy {
				case submission.ResendUnknown:
					if err != nil || res.Attempts != 2 {
						t.Fatalf("expired lease: %+v %v", res, err)
					}
					if n := r.sim.Count(); n != 1 {
						t.Errorf("e签宝 received %d", n)
					}
				case submission.RefuseUnknown:
					if !errors.Is(err, submission.ErrUnknownRefused) {
						t.Fatalf("expired lease: %v", err)
					}
					if rec := r.record(t); rec.State != submission.StateOutcomeUnknown {
						t.Errorf("recorded %+v", rec)
					}
				}
			})
		})
	}
}

func TestConcurrentDuplicatesSendOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		r.sim.Inject(esignsim.Fault{Latency: 100 * time.Millisecond})
		ids := concurrently(t, 50, func() (result, error) { return r.submit(context.Background(), "p") })
		if len(ids) != 1 {
			t.Errorf("%d different eviPointIds: %v", len(ids), ids)
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d requests for 50 duplicates", n)
		}
	})
}

// Two replicas (two pools, two submitters) on one PostgreSQL database.
func TestTwoReplicasOnePostgresSendOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	open := func() submission.Store {
		s, err := submission.OpenPostgres(context.Background(), dsn, pgOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := newRig(t, open(), "")
	b := newRig(t, open(), "")
	b.client, b.sim = a.client, a.sim // both replicas talk to the same e签宝
	a.sim.Inject(esignsim.Fault{Latency: 100 * time.Millisecond})
	i := 0
	var mu sync.Mutex
	ids := concurrently(t, 40, func() (result, error) {
		mu.Lock()
		rg := a
		if i%2 == 1 {
			rg = b
		}
		i++
		mu.Unlock()
		return rg.submit(context.Background(), "p")
	})
	if len(ids) != 1 {
		t.Errorf("%d different eviPointIds", len(ids))
	}
	if n := a.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests", n)
	}
}

func TestCallerHangsUpResultStillRecorded(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		// e签宝 answers slowly enough that a poller on a loaded machine sees the call in flight.
		r.sim.Inject(esignsim.Fault{Latency: 2 * time.Second, Times: 1})
		// The caller hangs up once its call is in flight. The watcher cancels in any case
		// (off the test goroutine it may not fail the test); submit then reports what it saw.
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer cancel()
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if rec, err := r.store.Get(context.Background(), key); err == nil && rec != nil && rec.State == submission.StateInProgress {
					return
				}
			}
		}()
		_, err := r.submit(ctx, "p")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		waitFor(t, func() bool { rec := r.record(t); return rec != nil && rec.State == submission.StateSucceeded })
		res, err := r.submit(context.Background(), "p")
		if err != nil || !res.Replayed || evi(res) == "" {
			t.Fatalf("retry: %+v %v", res, err)
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d", n)
		}
	})
}

func TestNoCustomBizIDIsNotDeduplicated(t *testing.T) {
	r := newRig(t, storeKinds["bolt"](t), "")
	for range 2 {
		if _, err := submission.Submit(context.Background(), r.sub, r.guard, evidencePoint, submission.Key{}, nil, r.send); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.sim.Count(); n != 2 {
		t.Errorf("e签宝 received %d", n)
	}
}

func concurrently(t *testing.T, n int, f func() (result, error)) map[string]bool {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[evi(res)] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ids
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An attempt that sent and succeeded, but finds another result already recorded for its
// key, tells its caller the recorded one: every caller of a key gets the same ID. The
// extra one is logged (without personal data) and counted.
func TestLoserReportsTheStoredResult(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		var logs bytes.Buffer
		var dups atomic.Int32
		sub, err := submission.New(submission.Config{Store: r.store, FingerprintKeys: [][]byte{fpKey}, Lease: 2 * time.Second,
			StoreTimeout: time.Second, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		sub.OnDuplicate(func(submission.Op) { dups.Add(1) })
		fp := sub.Fingerprint([]byte("p"))
		res, err := submission.Submit(context.Background(), sub, r.guard, evidencePoint, key, fp,
			func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
				got, err := r.send(ctx)
				// Meanwhile another attempt recorded its own result.
				_ = r.store.Mutate(ctx, key, func(cur *submission.Record) (*submission.Record, error) {
					next := *cur
					next.State, next.Result = submission.StateSucceeded, "P-recorded-first"
					return &next, nil
				})
				return got, err
			})
		if err != nil || evi(res) != "P-recorded-first" || !res.Replayed {
			t.Fatalf("got %+v %v, want the recorded result", res, err)
		}
		if dups.Load() != 1 {
			t.Errorf("%d duplicates counted", dups.Load())
		}
		created := r.sim.Received()[0].EviPointID
		if !strings.Contains(logs.String(), created) || !strings.Contains(logs.String(), "P-recorded-first") {
			t.Errorf("the extra evidence point is not logged:\n%s", logs.String())
		}
		for _, personal := range []string{"测试张三", "130401199601018395", "19800002222"} {
			if strings.Contains(logs.String(), personal) {
				t.Errorf("log holds personal data %q", personal)
			}
		}
		if rec := r.record(t); rec.Result != "P-recorded-first" {
			t.Errorf("recorded %+v", rec)
		}
	})
}

// Records older than the retention are removed in the background; a record whose lease
// still runs is kept whatever its age.
func TestRetentionRemovesOldRecords(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		store := open(t)
		now := time.Now()
		put := func(id string, rec submission.Record) submission.Key {
			k := submission.Key{Op: evidencePoint.Name, CustomBizID: id}
			rec.Key, rec.Fingerprint, rec.CreatedAt = k, []byte("fp"), rec.UpdatedAt
			if err := store.Mutate(context.Background(), k, func(*submission.Record) (*submission.Record, error) { return &rec, nil }); err != nil {
				t.Fatal(err)
			}
			return k
		}
		old := put("old", submission.Record{State: submission.StateSucceeded, Result: "P1", UpdatedAt: now.Add(-2 * time.Hour)})
		live := put("old-live", submission.Record{State: submission.StateInProgress, AttemptID: "a", LeaseUntil: now.Add(time.Hour), UpdatedAt: now.Add(-2 * time.Hour)})
		fresh := put("fresh", submission.Record{State: submission.StateFailed, UpdatedAt: now})
		otherOp := submission.Key{Op: "upload-file", CustomBizID: "other-op"}
		if err := store.Mutate(context.Background(), otherOp, func(*submission.Record) (*submission.Record, error) {
			return &submission.Record{Key: otherOp, Fingerprint: []byte("fp"), State: submission.StateSucceeded, UpdatedAt: now.Add(-2 * time.Hour)}, nil
		}); err != nil {
			t.Fatal(err)
		}
		sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Retention: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := sub.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { rec, _ := store.Get(context.Background(), old); return rec == nil })
		for _, k := range []submission.Key{live, fresh} {
			if rec, _ := store.Get(context.Background(), k); rec == nil {
				t.Errorf("%s removed", k.CustomBizID)
			}
		}
		waitFor(t, func() bool { rec, _ := store.Get(context.Background(), otherOp); return rec == nil })
	})
}

// The fingerprint keys rotate: records made under an older key still match while it is
// listed after the new one, and no longer once it is dropped.
func TestFingerprintKeyRotation(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		if _, err := r.submit(context.Background(), "p"); err != nil {
			t.Fatal(err)
		}
		k2 := []byte("the-next-fingerprint-key-2")
		for _, tc := range []struct {
			keys     [][]byte
			conflict bool
		}{{[][]byte{k2, fpKey}, false}, {[][]byte{k2}, true}} {
			sub, err := submission.New(submission.Config{Store: r.store, FingerprintKeys: tc.keys})
			if err != nil {
				t.Fatal(err)
			}
			res, err := submission.Submit(context.Background(), sub, r.guard, evidencePoint, key, sub.Fingerprint([]byte("p")), r.send)
			if tc.conflict != errors.Is(err, submission.ErrConflict) || (!tc.conflict && !res.Replayed) {
				t.Errorf("keys %d: %+v %v", len(tc.keys), res, err)
			}
		}
		if n := r.sim.Count(); n != 1 {
			t.Errorf("e签宝 received %d", n)
		}
	})
}

// The embedded store keeps its own fingerprint key: random for a new file, the legacy
// key (derived from the app secret) for a file that already has records made with it;
// the same on every later start, whatever the app secret then is.
func TestBoltKeepsItsFingerprintKey(t *testing.T) {
	legacy := []byte("legacy-key-derived-from-secret")
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := submission.OpenBolt(path, boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := s.FingerprintKey(legacy)
	if err != nil || len(k1) != 32 || bytes.Equal(k1, legacy) {
		t.Fatalf("new file: %x %v", k1, err)
	}
	k2, _ := s.FingerprintKey([]byte("another-app-secret-derivation"))
	if !bytes.Equal(k1, k2) {
		t.Error("the kept key changed")
	}
	s.Close()

	old, err := submission.OpenBolt(filepath.Join(t.TempDir(), "old.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	_ = old.Mutate(context.Background(), key, func(*submission.Record) (*submission.Record, error) {
		return &submission.Record{Key: key, Fingerprint: []byte("x"), State: submission.StateSucceeded}, nil
	})
	if k, _ := old.FingerprintKey(legacy); !bytes.Equal(k, legacy) {
		t.Errorf("a file with records adopts the key they were made with; got %x", k)
	}
}

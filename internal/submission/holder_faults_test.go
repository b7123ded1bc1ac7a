package submission_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// partitioned is one replica's view of a shared store that it cannot reach while down is
// set (a partition, or PostgreSQL down for it alone); the other replica uses the store
// directly.
type partitioned struct {
	submission.Store
	down atomic.Bool
}

func (p *partitioned) Mutate(ctx context.Context, k submission.Key, fn func(*submission.Record) (*submission.Record, error)) error {
	if p.down.Load() {
		return errors.New("unreachable")
	}
	return p.Store.Mutate(ctx, k, fn)
}

func (p *partitioned) Get(ctx context.Context, k submission.Key) (*submission.Record, error) {
	if p.down.Load() {
		return nil, errors.New("unreachable")
	}
	return p.Store.Get(ctx, k)
}

// A result e签宝 returned that only the holder's journal has keeps its key past the
// holder's unrenewed lease: replica A loses the store as it sends, e签宝 answers, A's
// caller is told "A"; B gets the key again after A's lease has run out and does not
// send; when A reaches the store again, "A" is recorded. One send, one id everywhere.
func TestPendingResultOutlivesLease(t *testing.T) {
	base, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	fa := &partitioned{Store: base}
	j, err := submission.OpenJournal(filepath.Join(t.TempDir(), "j"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	mk := func(s submission.Store, j *submission.Journal) *submission.Submitter {
		sub, err := submission.New(submission.Config{Store: s, FingerprintKeys: [][]byte{fpKey}, Lease: time.Second, StoreTimeout: 300 * time.Millisecond, Journal: j})
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	a, b := mk(fa, j), mk(base, nil)
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
	fp := a.Fingerprint([]byte("p"))
	var sends atomic.Int32
	call := func(id string, d time.Duration, before func()) func(context.Context) (*upstream.PsnEvidencePointResult, error) {
		return func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
			sends.Add(1)
			if before != nil {
				before()
			}
			time.Sleep(d)
			return &upstream.PsnEvidencePointResult{EviPointID: id}, nil
		}
	}
	claimed := time.Now()
	ra, err := submission.Submit(context.Background(), a, g, evidencePoint, key, fp, call("A", 500*time.Millisecond, func() { fa.down.Store(true) }))
	if err != nil || ra.Value == nil || ra.Value.EviPointID != "A" {
		t.Fatalf("A: %+v %v", ra.Value, err)
	}
	if a.Pending() != 1 {
		t.Fatalf("A's result should be pending (journaled), pending=%d", a.Pending())
	}
	// Past A's lease (1 s from the claim), which A could not renew.
	time.Sleep(time.Until(claimed.Add(1200 * time.Millisecond)))
	bctx, cancel := context.WithTimeout(context.Background(), time.Second)
	rb, errB := submission.Submit(bctx, b, g, evidencePoint, key, b.Fingerprint([]byte("p")), call("B", 10*time.Millisecond, nil))
	cancel()
	t.Logf("B: %+v %v", rb.Value, errB)
	fa.down.Store(false)
	waitRecorded(t, a)
	rec, err := base.Get(context.Background(), key)
	if err != nil || rec == nil {
		t.Fatalf("record: %+v %v", rec, err)
	}
	if sends.Load() > 1 || rec.Result != ra.Value.EviPointID {
		t.Errorf("%d sends; A's caller told %q, B's caller told %+v, stored %q", sends.Load(), ra.Value.EviPointID, rb.Value, rec.Result)
	}
	if rb.Value != nil && rb.Value.EviPointID != "A" {
		t.Errorf("B's caller told %q, not the stored %q", rb.Value.EviPointID, rec.Result)
	}
}

// A success recorded over a record another request last held is stored under the
// fingerprint of the request that produced it: its own retry replays it, the other
// request is refused as a reuse.
func TestRecordedSuccessKeepsItsRequestsFingerprint(t *testing.T) {
	base, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	fa := &partitioned{Store: base}
	j, err := submission.OpenJournal(filepath.Join(t.TempDir(), "j"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	a, err := submission.New(submission.Config{Store: fa, FingerprintKeys: [][]byte{fpKey}, Lease: time.Second, StoreTimeout: 300 * time.Millisecond, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
	ra, err := submission.Submit(context.Background(), a, g, evidencePoint, key, a.Fingerprint([]byte("p")),
		func(context.Context) (*upstream.PsnEvidencePointResult, error) {
			fa.down.Store(true)
			return &upstream.PsnEvidencePointResult{EviPointID: "A"}, nil
		})
	if err != nil || a.Pending() != 1 {
		t.Fatalf("A: %+v %v pending=%d", ra.Value, err, a.Pending())
	}
	// Meanwhile the record came to be held by a different request (its attempt failed
	// definitively and left the record failed under its fingerprint).
	other := a.Fingerprint([]byte("other"))
	if err := base.Mutate(context.Background(), key, func(cur *submission.Record) (*submission.Record, error) {
		next := *cur
		next.Fingerprint, next.State, next.AttemptID, next.LeaseUntil = other[0], submission.StateFailed, "", time.Time{}
		return &next, nil
	}); err != nil {
		t.Fatal(err)
	}
	fa.down.Store(false)
	waitRecorded(t, a)
	again, err := submission.Submit(context.Background(), a, g, evidencePoint, key, a.Fingerprint([]byte("p")),
		func(context.Context) (*upstream.PsnEvidencePointResult, error) {
			t.Error("sent again")
			return &upstream.PsnEvidencePointResult{EviPointID: "again"}, nil
		})
	if err != nil || !again.Replayed || again.Value.EviPointID != "A" {
		t.Errorf("A's own retry: %+v %v", again, err)
	}
	_, err = submission.Submit(context.Background(), a, g, evidencePoint, key, other,
		func(context.Context) (*upstream.PsnEvidencePointResult, error) {
			t.Error("sent for the other request")
			return nil, errors.New("unreachable")
		})
	if !errors.Is(err, submission.ErrConflict) {
		t.Errorf("the other request: %v, want ErrConflict", err)
	}
}

// waitRecorded waits (10 s at most) until s holds no result waiting for the store.
func waitRecorded(t *testing.T, s *submission.Submitter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d results still not recorded", s.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A keyless call whose first attempt provably never reached e签宝 is not sent again
// after its caller's deadline: nobody would learn the evidence point it creates.
func TestKeylessRetryNotSentAfterCallerGone(t *testing.T) {
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var sentAt []time.Duration
	start := time.Now()
	_, err := guard.Call(ctx, g, evidencePoint.Name, func(c context.Context) (string, error) {
		mu.Lock()
		sentAt = append(sentAt, time.Since(start))
		n := len(sentAt)
		mu.Unlock()
		if n == 1 {
			time.Sleep(250 * time.Millisecond)
			return "", &upstream.SendError{Err: errors.New("connection refused")}
		}
		return "created", nil
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("err=%v sends at %v, caller ctx err=%v", err, sentAt, ctx.Err())
	if len(sentAt) > 1 && sentAt[len(sentAt)-1] > 300*time.Millisecond {
		t.Errorf("attempt sent at %v, after the caller's 300ms deadline", sentAt[len(sentAt)-1])
	}
	if err == nil {
		t.Error("the call succeeded although its only sent attempt failed")
	}
}

// The retry of an unsent keyless attempt is admitted on the caller's deadline: with less
// than MinRemaining left it is not sent.
func TestKeylessRetryAdmittedOnTheCallersDeadline(t *testing.T) {
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var sends atomic.Int32
	_, err := guard.Call(ctx, g, evidencePoint.Name, func(c context.Context) (string, error) {
		if sends.Add(1) == 1 {
			time.Sleep(1400 * time.Millisecond) // leaves ~0.5 s, less the backoff
			return "", &upstream.SendError{Err: errors.New("connection refused")}
		}
		return "created", nil
	})
	if n := sends.Load(); n != 1 {
		t.Errorf("%d sends; the retry had less than MinRemaining of its caller's deadline left (err %v)", n, err)
	}
}

// lostAck commits a write but reports failure the first time: a COMMIT acknowledged too
// late for STORE_TIMEOUT, or bbolt's bounded wait giving up while the write goes on.
type lostAck struct {
	submission.Store
	n atomic.Int32
}

func (l *lostAck) Mutate(ctx context.Context, k submission.Key, fn func(*submission.Record) (*submission.Record, error)) error {
	err := l.Store.Mutate(ctx, k, fn)
	if l.n.Add(1) == 1 {
		return errors.New("timeout waiting for commit")
	}
	return err
}

// A claim that committed although the store reported an error leaves no phantom
// in-progress record: nothing was sent, so the key is not refused (or counted) as an
// outcome unknown, and a retry is sent.
func TestPhantomClaimIsReleased(t *testing.T) {
	base, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	s, err := submission.New(submission.Config{Store: &lostAck{Store: base}, FingerprintKeys: [][]byte{fpKey}, Unknown: submission.RefuseUnknown, Lease: time.Second, StoreTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
	var sends atomic.Int32
	call := func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		sends.Add(1)
		return &upstream.PsnEvidencePointResult{EviPointID: "X"}, nil
	}
	_, err1 := submission.Submit(context.Background(), s, g, evidencePoint, key, s.Fingerprint([]byte("p")), call)
	if !errors.Is(err1, submission.ErrStoreUnavailable) {
		t.Errorf("first: %v, want STORE_UNAVAILABLE (nothing sent)", err1)
	}
	time.Sleep(1100 * time.Millisecond)
	_, err2 := submission.Submit(context.Background(), s, g, evidencePoint, key, s.Fingerprint([]byte("p")), call)
	rec, _ := base.Get(context.Background(), key)
	t.Logf("first: %v; retry: %v; sends=%d; record %+v", err1, err2, sends.Load(), rec)
	if sends.Load() == 0 && errors.Is(err2, submission.ErrUnknownRefused) {
		t.Errorf("nothing was ever sent, yet the key is refused as outcome unknown")
	}
	if err2 != nil || sends.Load() != 1 || rec == nil || rec.State != submission.StateSucceeded || rec.Attempts != 1 {
		t.Errorf("the retry: %v, sends %d, record %+v; want it sent once, recorded as the first attempt", err2, sends.Load(), rec)
	}
}

// slowClaim makes the first write (the claim) take a while.
type slowClaim struct {
	submission.Store
	n atomic.Int32
	d time.Duration
}

func (s *slowClaim) Mutate(ctx context.Context, k submission.Key, fn func(*submission.Record) (*submission.Record, error)) error {
	if s.n.Add(1) == 1 {
		time.Sleep(s.d)
	}
	return s.Store.Mutate(ctx, k, fn)
}

// A keyed call whose remaining deadline fell below MinRemaining while it claimed the key
// is not sent: the claim is released (nothing sent) and the caller told
// DEADLINE_TOO_SHORT, retry-safe; a retry is sent at once.
func TestDeadlineRecheckedAfterTheClaim(t *testing.T) {
	base, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	s, err := submission.New(submission.Config{Store: &slowClaim{Store: base, d: 500 * time.Millisecond}, FingerprintKeys: [][]byte{fpKey}, Lease: 2 * time.Second, StoreTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Second})
	var sends atomic.Int32
	call := func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		sends.Add(1)
		return &upstream.PsnEvidencePointResult{EviPointID: "X"}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1300*time.Millisecond)
	defer cancel()
	_, err = submission.Submit(ctx, s, g, evidencePoint, key, s.Fingerprint([]byte("p")), call)
	if !errors.Is(err, guard.ErrDeadlineTooShort) || !upstream.IsRetrySafe(err) || sends.Load() != 0 {
		t.Fatalf("%v (%d sends), want DEADLINE_TOO_SHORT, retry-safe, nothing sent", err, sends.Load())
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	res, err := submission.Submit(rctx, s, g, evidencePoint, key, s.Fingerprint([]byte("p")), call)
	if err != nil || res.Value.EviPointID != "X" || sends.Load() != 1 || res.Attempts != 1 {
		t.Errorf("retry: %+v %v, %d sends; want sent at once, the first attempt", res, err, sends.Load())
	}
}

// A call the key's lease stops (the store cannot renew it) ends with a LeaseLostError
// around what the call ended with, so the caller is told the store failed, not that this
// process ran out of a resource; the outcome inside stands (here: nothing was sent).
func TestLeaseCutOffIsReportedAsSuch(t *testing.T) {
	base, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	store := &partitioned{Store: base}
	sub, err := submission.New(submission.Config{Store: store, FingerprintKeys: [][]byte{fpKey}, Lease: time.Second, StoreTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New(guard.Config{QPS: 1000, MinRemaining: time.Millisecond})
	_, err = submission.Submit(context.Background(), sub, g, evidencePoint, key, sub.Fingerprint([]byte("p")),
		func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
			store.down.Store(true) // the store is lost once the key is claimed
			<-ctx.Done()           // the request never gets written before the stop
			return nil, &upstream.SendError{Err: ctx.Err(), Local: true}
		})
	var lost *submission.LeaseLostError
	if !errors.As(err, &lost) || upstream.OutcomeOf(err) != upstream.OutcomeLocal {
		t.Fatalf("got %T %v", err, err)
	}
	// A call that ends by itself is not a lease's stop.
	store.down.Store(false)
	_, err = submission.Submit(context.Background(), sub, g, evidencePoint, submission.Key{Namespace: "n", CustomBizID: "other"}, sub.Fingerprint([]byte("q")),
		func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
			return nil, &upstream.SendError{Err: errors.New("refused"), Local: true}
		})
	if errors.As(err, &lost) || err == nil {
		t.Errorf("an unsent failure reported as %T %v", err, err)
	}
}

package simulation

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStoreConformance runs one suite of the submission.Store contract on every store:
// bbolt, PostgreSQL and the simulator's memStore. The simulator's verdicts are only
// worth something if its store behaves like the real ones.
func TestStoreConformance(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) submission.Store
	}{
		{"bolt", func(t *testing.T) submission.Store {
			s, err := submission.OpenBolt(filepath.Join(t.TempDir(), "s.db"), submission.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(t *testing.T) submission.Store {
			s, err := submission.OpenPostgres(context.Background(), pgtest.DSN(t), submission.PostgresOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"memStore", func(t *testing.T) submission.Store { return newMemStore() }},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { storeSuite(t, s.open) })
	}
}

func storeSuite(t *testing.T, open func(t *testing.T) submission.Store) {
	ctx := context.Background()
	// Times as the stores keep them: PostgreSQL's timestamptz has microseconds.
	now := time.Now().UTC().Truncate(time.Microsecond)
	key := submission.Key{Op: opPsn, Namespace: "ns", CustomBizID: "order-1"}
	full := submission.Record{Fingerprint: []byte{1, 2, 3}, State: submission.StateInProgress, Result: "",
		EsignCode: 1435203, Attempts: 2, AttemptID: "att-1", LeaseUntil: now.Add(time.Minute), CreatedAt: now.Add(-time.Hour), UpdatedAt: now}
	same := func(t *testing.T, got *submission.Record, want submission.Record) {
		t.Helper()
		if got == nil {
			t.Fatal("no record")
		}
		if !bytes.Equal(got.Fingerprint, want.Fingerprint) || got.State != want.State || got.Result != want.Result ||
			got.EsignCode != want.EsignCode || got.Attempts != want.Attempts || got.AttemptID != want.AttemptID ||
			!got.LeaseUntil.Equal(want.LeaseUntil) || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("record read back as %+v, written %+v", *got, want)
		}
	}

	t.Run("a missing key reads as nil", func(t *testing.T) {
		s := open(t)
		if r, err := s.Get(ctx, key); err != nil || r != nil {
			t.Fatalf("Get: %+v %v", r, err)
		}
		called := false
		err := s.Mutate(ctx, key, func(cur *submission.Record) (*submission.Record, error) {
			called = true
			if cur != nil {
				t.Errorf("fn given %+v for a missing key", *cur)
			}
			return nil, nil
		})
		if err != nil || !called {
			t.Fatalf("Mutate: %v, fn called %v", err, called)
		}
		if r, err := s.Get(ctx, key); err != nil || r != nil {
			t.Fatalf("fn returning nil wrote %+v (%v)", r, err)
		}
	})

	t.Run("every field round-trips, through Get and through the next Mutate", func(t *testing.T) {
		s := open(t)
		if err := s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) { r := full; return &r, nil }); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		same(t, r, full)
		next := full
		next.State, next.Result, next.AttemptID, next.LeaseUntil = submission.StateSucceeded, "evi-1", "", time.Time{}.UTC()
		if err := s.Mutate(ctx, key, func(cur *submission.Record) (*submission.Record, error) {
			same(t, cur, full)
			r := next
			return &r, nil
		}); err != nil {
			t.Fatal(err)
		}
		r, _ = s.Get(ctx, key)
		same(t, r, next)
	})

	t.Run("fn's error aborts the write and is returned", func(t *testing.T) {
		s := open(t)
		boom := errors.New("boom")
		err := s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) { r := full; return &r, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Mutate returned %v, want fn's error", err)
		}
		if r, _ := s.Get(ctx, key); r != nil {
			t.Fatalf("aborted Mutate wrote %+v", *r)
		}
	})

	t.Run("operation, namespace and id each tell keys apart; a key without operation is refused", func(t *testing.T) {
		s := open(t)
		keys := []submission.Key{key, {Op: "other-op", Namespace: "ns", CustomBizID: "order-1"},
			{Op: opPsn, Namespace: "ns2", CustomBizID: "order-1"}, {Op: opPsn, Namespace: "ns", CustomBizID: "order-2"}}
		for i, k := range keys {
			r := full
			r.Attempts = i + 1
			if err := s.Mutate(ctx, k, func(*submission.Record) (*submission.Record, error) { return &r, nil }); err != nil {
				t.Fatal(err)
			}
		}
		for i, k := range keys {
			r, err := s.Get(ctx, k)
			if err != nil || r == nil || r.Attempts != i+1 {
				t.Fatalf("key %d read back as %+v (%v)", i, r, err)
			}
		}
		noOp := submission.Key{Namespace: "ns", CustomBizID: "order-1"}
		if _, err := s.Get(ctx, noOp); !errors.Is(err, submission.ErrNoOperation) {
			t.Errorf("Get of a key without operation: %v, want ErrNoOperation", err)
		}
		called := false
		err := s.Mutate(ctx, noOp, func(*submission.Record) (*submission.Record, error) { called = true; return nil, nil })
		if !errors.Is(err, submission.ErrNoOperation) || called {
			t.Errorf("Mutate of a key without operation: %v (fn called %v), want ErrNoOperation", err, called)
		}
	})

	t.Run("concurrent read-modify-writes of one key are serialised", func(t *testing.T) {
		s := open(t)
		const n = 20
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Mutate(ctx, key, func(cur *submission.Record) (*submission.Record, error) {
					r := full
					if cur != nil {
						r = *cur
						r.Attempts = cur.Attempts + 1
					} else {
						r.Attempts = 1
					}
					return &r, nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if r, _ := s.Get(ctx, key); r == nil || r.Attempts != n {
			t.Fatalf("after %d increments: %+v", n, r)
		}
	})

	t.Run("a Mutate waiting for a held key gives up when its context ends", func(t *testing.T) {
		s := open(t)
		holding, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) {
				close(holding)
				<-release
				r := full
				return &r, nil
			})
		}()
		<-holding
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		start := time.Now()
		err := s.Mutate(wctx, key, func(cur *submission.Record) (*submission.Record, error) { return nil, nil })
		cancel()
		waited := time.Since(start)
		close(release)
		if err == nil {
			t.Fatal("a Mutate of a held key returned no error after its context ended")
		}
		if waited > 5*time.Second {
			t.Fatalf("gave up after %v, long after its context ended", waited)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an ended context writes nothing", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := s.Mutate(cctx, key, func(*submission.Record) (*submission.Record, error) { r := full; return &r, nil })
		if err == nil {
			t.Fatal("Mutate with an ended context returned no error")
		}
		if r, _ := s.Get(ctx, key); r != nil {
			t.Fatalf("wrote %+v", *r)
		}
		if _, err := s.Get(cctx, key); err == nil {
			t.Fatal("Get with an ended context returned no error")
		}
	})

	t.Run("records are copies", func(t *testing.T) {
		s := open(t)
		fp := []byte{9, 9, 9}
		if err := s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) {
			r := full
			r.Fingerprint = fp
			return &r, nil
		}); err != nil {
			t.Fatal(err)
		}
		fp[0] = 0
		r, _ := s.Get(ctx, key)
		r.Fingerprint[1] = 0
		again, _ := s.Get(ctx, key)
		if !bytes.Equal(again.Fingerprint, []byte{9, 9, 9}) {
			t.Fatalf("stored fingerprint changed through an alias: %v", again.Fingerprint)
		}
	})

	t.Run("DeleteBefore removes old records but not a running lease", func(t *testing.T) {
		s := open(t)
		cutoff := time.Now().Add(-time.Hour)
		put := func(id string, r submission.Record) {
			k := submission.Key{Op: opPsn, Namespace: "ns", CustomBizID: id}
			if err := s.Mutate(ctx, k, func(*submission.Record) (*submission.Record, error) { return &r, nil }); err != nil {
				t.Fatal(err)
			}
		}
		old := now.Add(-2 * time.Hour)
		put("old-done", submission.Record{Fingerprint: []byte{1}, State: submission.StateSucceeded, Result: "e", CreatedAt: old, UpdatedAt: old})
		put("old-expired", submission.Record{Fingerprint: []byte{1}, State: submission.StateInProgress, LeaseUntil: old.Add(time.Minute), CreatedAt: old, UpdatedAt: old})
		put("old-running", submission.Record{Fingerprint: []byte{1}, State: submission.StateInProgress, LeaseUntil: now.Add(time.Hour), CreatedAt: old, UpdatedAt: old})
		put("recent", submission.Record{Fingerprint: []byte{1}, State: submission.StateFailed, CreatedAt: now, UpdatedAt: now})
		n, err := s.DeleteBefore(ctx, cutoff)
		if err != nil || n != 2 {
			t.Fatalf("DeleteBefore removed %d (%v), want 2", n, err)
		}
		for id, kept := range map[string]bool{"old-done": false, "old-expired": false, "old-running": true, "recent": true} {
			r, _ := s.Get(ctx, submission.Key{Op: opPsn, Namespace: "ns", CustomBizID: id})
			if (r != nil) != kept {
				t.Errorf("%s: kept=%v, want %v", id, r != nil, kept)
			}
		}
	})
}

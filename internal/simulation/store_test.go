package simulation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// memStore is an in-memory submission.Store that behaves like the real ones: one
// read-modify-write of one key at a time (a per-key lock, held across fn as PostgreSQL's
// advisory lock is), a context that ends a wait for the key, records copied in and out,
// times kept to the microsecond in UTC (PostgreSQL's timestamptz), keys told apart by
// operation (a key without one refused), and DeleteBefore sparing running leases. The conformance suite
// (TestStoreConformance) runs the same checks on it, bbolt and PostgreSQL.
//
// Its locks are channels, so that a goroutine waiting for a key inside a synctest bubble
// is durably blocked and simulated time can advance.
type memStore struct {
	mu    sync.Mutex
	recs  map[submission.Key]submission.Record
	locks map[submission.Key]chan struct{}
	// now is the store's clock (time.Now when nil).
	now func() time.Time
}

func newMemStore() *memStore {
	return &memStore{recs: map[submission.Key]submission.Record{}, locks: map[submission.Key]chan struct{}{}}
}

func (m *memStore) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

// lock takes key's lock, or gives up when ctx ends.
func (m *memStore) lock(ctx context.Context, key submission.Key) error {
	m.mu.Lock()
	ch := m.locks[key]
	if ch == nil {
		ch = make(chan struct{}, 1)
		m.locks[key] = ch
	}
	m.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", submission.ErrStoreUnavailable, err)
	}
	select {
	case ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", submission.ErrStoreUnavailable, ctx.Err())
	}
}

func (m *memStore) unlock(key submission.Key) {
	m.mu.Lock()
	ch := m.locks[key]
	m.mu.Unlock()
	<-ch
}

// read returns a copy of key's record, nil if none.
func (m *memStore) read(key submission.Key) *submission.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[key]
	if !ok {
		return nil
	}
	return copyRecord(&r)
}

func (m *memStore) write(key submission.Key, r *submission.Record) {
	c := copyRecord(r)
	c.Key = key
	for _, t := range []*time.Time{&c.LeaseUntil, &c.CreatedAt, &c.UpdatedAt} {
		*t = t.UTC().Truncate(time.Microsecond)
	}
	m.mu.Lock()
	m.recs[key] = *c
	m.mu.Unlock()
}

func copyRecord(r *submission.Record) *submission.Record {
	c := *r
	c.Fingerprint = append([]byte(nil), r.Fingerprint...)
	return &c
}

// Mutate implements submission.Store.
func (m *memStore) Mutate(ctx context.Context, key submission.Key, fn func(cur *submission.Record) (*submission.Record, error)) error {
	if key.Op == "" {
		return submission.ErrNoOperation
	}
	if err := m.lock(ctx, key); err != nil {
		return err
	}
	defer m.unlock(key)
	next, err := fn(m.read(key))
	if err != nil || next == nil {
		return err
	}
	m.write(key, next)
	return nil
}

// MutateAt is Mutate giving fn the store's own time, as PostgreSQL's does
// (submission.ClockedStore): leases are then written and judged on one clock.
func (m *memStore) MutateAt(ctx context.Context, key submission.Key, fn func(cur *submission.Record, now time.Time) (*submission.Record, error)) error {
	return m.Mutate(ctx, key, func(cur *submission.Record) (*submission.Record, error) { return fn(cur, m.clock()) })
}

// Get implements submission.Store.
func (m *memStore) Get(ctx context.Context, key submission.Key) (*submission.Record, error) {
	if key.Op == "" {
		return nil, submission.ErrNoOperation
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", submission.ErrStoreUnavailable, err)
	}
	return m.read(key), nil
}

// DeleteBefore implements submission.Store.
func (m *memStore) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %v", submission.ErrStoreUnavailable, err)
	}
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, r := range m.recs {
		if !r.UpdatedAt.Before(cutoff) || (r.State == submission.StateInProgress && r.LeaseUntil.After(now)) {
			continue
		}
		delete(m.recs, k)
		n++
	}
	return n, nil
}

// Close implements submission.Store.
func (m *memStore) Close() error { return nil }

// snapshot returns a copy of every record.
func (m *memStore) snapshot() map[submission.Key]submission.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[submission.Key]submission.Record, len(m.recs))
	for k, r := range m.recs {
		out[k] = *copyRecord(&r)
	}
	return out
}

// opPsn is the operation the simulation submits (the service's psn-realname).
const opPsn submission.Op = "psn-realname"

// psnRealname is that operation as the service defines it (server/service.PsnRealname):
// the record keeps the eviPointId.
var psnRealname = submission.Operation[*upstream.PsnEvidencePointResult]{
	Name:   opPsn,
	Encode: func(r *upstream.PsnEvidencePointResult) string { return r.EviPointID },
	Decode: func(id string) *upstream.PsnEvidencePointResult {
		return &upstream.PsnEvidencePointResult{EviPointID: id}
	},
}

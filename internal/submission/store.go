package submission

import (
	"context"
	"errors"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
)

// Op names an e签宝 operation: the caller's name for it (Operation.Name), which labels
// metrics and log lines and is part of a submission's key, so one customBizId used for
// two operations makes two submissions. It is the guard's name for the same call.
type Op = guard.Op

// State is where a submission stands.
type State string

// The states of a submission.
const (
	// StateInProgress: an attempt holds the key and is sending (or about to send) the
	// request. Its lease says until when; a lease that ran out means the replica died.
	StateInProgress State = "in_progress"
	// StateSucceeded: e签宝 performed the operation; Result is set.
	StateSucceeded State = "succeeded"
	// StateFailed: e签宝 definitely did not create it (it refused, or never got it).
	StateFailed State = "failed"
	// StateOutcomeUnknown: sent, but no definite answer came back.
	StateOutcomeUnknown State = "outcome_unknown"
)

// Key identifies a submission: the operation, the caller's namespace (its identity) and
// its customBizId.
type Key struct {
	// Op is the e签宝 operation; Submit sets it from Operation.Name. It is required.
	Op          Op
	Namespace   string
	CustomBizID string
}

// ErrNoOperation: a key names no operation.
var ErrNoOperation = errors.New("submission: the key names no operation (Key.Op is required)")

// check refuses a key without an operation.
func (k Key) check() error {
	if k.Op == "" {
		return ErrNoOperation
	}
	return nil
}

// Record is a stored submission. It holds no personal data: the payload is kept only as
// a keyed hash.
type Record struct {
	Key Key
	// Fingerprint is the HMAC-SHA256 of the normalised request, under the service's
	// fingerprint key.
	Fingerprint []byte
	State       State
	// Result is the operation's result as its Operation encodes it; set once
	// succeeded.
	Result string
	// EsignCode is e签宝's business code of the last answer, when one came back.
	EsignCode int
	// Attempts counts the times the request was handed to e签宝 (or about to be).
	Attempts int
	// AttemptID names the attempt holding the lease ("" when none holds it).
	AttemptID  string
	LeaseUntil time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Store keeps submissions. Every implementation gives the same guarantee: Mutate runs
// one read-modify-write of one key at a time, across every process sharing the store.
type Store interface {
	// Mutate calls fn with the key's current record (nil if none) while holding the key,
	// and stores the record fn returns (nothing when it returns nil). fn may be called
	// more than once; it must decide from its argument alone.
	Mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error
	// Get returns the key's record, or nil if there is none.
	Get(ctx context.Context, key Key) (*Record, error)
	// DeleteBefore removes the records last changed before cutoff, except one whose
	// lease is still running, and returns how many it removed.
	DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error)
	// Close releases the store.
	Close() error
}

// ClockedStore is a Store with a clock of its own, shared by every replica (PostgreSQL's):
// MutateAt gives fn the store's time of the transaction. Leases are then written and
// judged on that one clock, so the replicas' clocks may disagree by any amount; each
// replica still measures its own cut-off as a duration on its own clock.
type ClockedStore interface {
	MutateAt(ctx context.Context, key Key, fn func(cur *Record, now time.Time) (*Record, error)) error
}

// ErrStoreUnavailable wraps failures of the store itself.
var ErrStoreUnavailable = errors.New("submission store unavailable")

// Package submission makes e签宝 operations exactly-once per customBizId (e签宝 does not
// de-duplicate, and every caller retries after a timeout), every call going through the
// guard (package guard: admission, quota, circuit breaker, retry of unsent attempts,
// metrics). It knows no operation: the caller names it (Operation) and the stores are
// told which one their records from before operations were named belong to.
//
// A submission is recorded as in progress before anything is sent and with its result
// after. A repeat of a succeeded submission gets the stored result without anything
// being sent; the same key with a different request is refused; a repeat while another
// attempt holds the key waits for it (within the caller's deadline). The semantics live
// here once, for every operation; the stores (bbolt, PostgreSQL) only provide an atomic
// read-modify-write of one key.
//
// While one attempt for a key may still reach e签宝, no other attempt for that key is
// sent. An attempt takes the key only once it has been admitted past the quota; it then
// holds a lease (SUBMISSION_LEASE) that it renews while its call is in flight, and the
// call is cut off before the last lease it renewed runs out (less ClockAllowance for the
// replicas' clocks). So however long the quota wait, the e签宝 timeout or the store's
// answers take, another replica can only take over a key whose holder can no longer be
// sending.
//
// The files: settings and fingerprints (submitter.go), the pure transitions of a record
// (transitions.go), the attempt loop (submit.go), lease renewal and the cut-off
// (lease.go), recording results, pending ones and the journal's write-back and replay
// (results.go), retention (retention.go). Every reading of the time goes through
// Config.Clock.
package submission

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// UnknownPolicy says what a retry does after an outcome unknown.
type UnknownPolicy string

const (
	// ResendUnknown (the default) sends a retry again, recorded as a further attempt: for
	// the operations this service makes, a duplicate result is harmless and a missing one
	// blocks the caller's next step.
	ResendUnknown UnknownPolicy = "resend"
	// RefuseUnknown refuses such retries; an operator settles the submission.
	RefuseUnknown UnknownPolicy = "refuse"
)

// Defaults.
const (
	// DefaultLease is how long an in-progress record holds its key without being
	// renewed. The holder renews it every third of it while its call is in flight, so it
	// bounds how long a key stays blocked after a replica dies, not how long a call may
	// take.
	DefaultLease = 45 * time.Second
	// DefaultMaxWait bounds how long a repeat waits for a call in flight with the same
	// key when its own context has no deadline.
	DefaultMaxWait = 20 * time.Second
	// DefaultStoreTimeout bounds every single store operation, whatever the caller's
	// deadline: a hung store fails the call instead of holding it.
	DefaultStoreTimeout = 2 * time.Second
	// DefaultRetention is how long records are kept after their last change.
	DefaultRetention = 30 * 24 * time.Hour
	// ClockAllowance is how far the replicas' clocks may disagree: a holder stops
	// sending this long before its lease runs out by its own clock. NTP keeps clocks
	// within milliseconds.
	ClockAllowance = 250 * time.Millisecond
	// recordFor bounds how long a failure's record is retried in the foreground.
	recordFor = 3
)

// Errors a submission can end with besides the upstream ones.
var (
	// ErrConflict: the key was used for a different request.
	ErrConflict = errors.New("customBizId was already used for a different request")
	// ErrInFlight: another call with the key is still in progress.
	ErrInFlight = errors.New("a call with this customBizId is still in progress")
	// ErrUnknownRefused: an earlier attempt's outcome is unknown and the policy refuses
	// to send again.
	ErrUnknownRefused = errors.New("an earlier attempt with this customBizId has an unknown outcome; retries are refused by configuration")
)

// CheckTiming reports a combination of lease and store timeout under which a holder
// could not renew its lease before cutting off its own call, naming the settings. Every
// combination it accepts keeps the exactly-once guarantee.
func CheckTiming(lease, storeTimeout time.Duration) error {
	if lease < 4*ClockAllowance {
		return fmt.Errorf("SUBMISSION_LEASE (%v) must be at least %v", lease, 4*ClockAllowance)
	}
	// A renewal starts a third into the lease and must end before the holder stops
	// sending (lease - ClockAllowance).
	if storeTimeout > 2*lease/3-ClockAllowance {
		return fmt.Errorf("STORE_TIMEOUT (%v) must be at most 2/3 of SUBMISSION_LEASE (%v) minus %v, so that a lease can be renewed before it runs out",
			storeTimeout, lease, ClockAllowance)
	}
	return nil
}

// Config configures a Submitter.
type Config struct {
	Store Store
	// FingerprintKeys key the HMAC of requests. The first keys new records; every one is
	// accepted when comparing (rotation). Replicas sharing a store must share them.
	FingerprintKeys [][]byte
	// Settings are the unknown-outcome policy, lease, store timeout and retention
	// (DefaultSettings, or as configured); a field left zero in a Config built in code
	// takes DefaultSettings' value.
	Settings
	// MaxWait bounds how long a repeat waits for a call in flight with the same key;
	// DefaultMaxWait when 0.
	MaxWait time.Duration
	// Journal, when set, keeps results e签宝 returned that the store could not record
	// yet, so that they survive a restart.
	Journal *Journal
	// OnDuplicate, when set, is told each time an attempt created a second result for a
	// key that already had one (for a metric).
	OnDuplicate func(op Op)
	Logger      *slog.Logger
	// Clock is the time source of every lease, wait, retry and timeout; the real clock
	// when nil.
	Clock clock.Clock
}

// Submitter runs submissions against a store.
type Submitter struct {
	cfg   Config
	clock clock.Clock
	// storeDown is set while the last store operation failed.
	storeDown atomic.Bool
	// pending holds results not yet recorded (journaled), by key.
	mu      sync.Mutex
	pending map[Key]pendingResult
	// claimTime (nanoseconds) is how long a claim of a key takes: a maximum of the
	// recent claims that decays by 1/32 with each one (see claimAhead).
	claimTime atomic.Int64
}

// claimAhead is the time a call is expected to spend claiming its key between its
// admission and its send, plus 5 ms: the quota slot it waits for must leave that much
// over the admission minimum, or the slot would be taken by a call refused once its
// claim is done (wasted under a backlog).
func (s *Submitter) claimAhead() time.Duration {
	return time.Duration(s.claimTime.Load()) + 5*time.Millisecond
}

// observeClaim adds a claim's duration to claimTime.
func (s *Submitter) observeClaim(d time.Duration) {
	for {
		old := s.claimTime.Load()
		next := max(int64(d), old-old/32)
		if s.claimTime.CompareAndSwap(old, next) {
			return
		}
	}
}

// New validates cfg and returns a Submitter.
func New(cfg Config) (*Submitter, error) {
	if cfg.Store == nil {
		return nil, errors.New("submission: Store is required")
	}
	if len(cfg.FingerprintKeys) == 0 {
		return nil, errors.New("submission: a FingerprintKey is required")
	}
	for _, k := range cfg.FingerprintKeys {
		if len(k) < 16 {
			return nil, errors.New("submission: every FingerprintKey must be at least 16 bytes")
		}
	}
	d := DefaultSettings()
	switch cfg.Unknown {
	case "":
		cfg.Unknown = d.Unknown
	case ResendUnknown, RefuseUnknown:
	default:
		return nil, fmt.Errorf("submission: unknown policy %q (want resend or refuse)", cfg.Unknown)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = d.Lease
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = d.StoreTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = d.Retention
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if err := CheckTiming(cfg.Lease, cfg.StoreTimeout); err != nil {
		return nil, fmt.Errorf("submission: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	return &Submitter{cfg: cfg, clock: cfg.Clock, pending: map[Key]pendingResult{}}, nil
}

// TakeoverGrace is how long after an in-progress record's lease ran out unrenewed the
// key still counts as held. Its holder may have had e签宝's answer just before its
// cut-off and be unable to reach the store (a partition, the store down, the holder
// restarting with the result in its journal): finish tries for recordFor store rounds,
// then the journal's write-back keeps trying. The grace is one more lease plus those
// rounds and a second, so a result e签宝 returned stays the key's result through a store
// outage (as seen from its holder) of at least that long after the answer. A longer
// outage can let another replica send the key again; the first result recorded is then
// kept and the other one counted as a duplicate.
func (s *Submitter) TakeoverGrace() time.Duration {
	if bugNoTakeoverGrace {
		return 0
	}
	return s.cfg.Lease + recordFor*s.cfg.StoreTimeout + time.Second
}

// Fingerprint is the keyed hash of a request's canonical bytes under each fingerprint
// key: the only trace of the payload the store keeps.
type Fingerprint [][]byte

// Fingerprint hashes a request's canonical bytes.
func (s *Submitter) Fingerprint(canonical []byte) Fingerprint {
	fp := make(Fingerprint, 0, len(s.cfg.FingerprintKeys))
	for _, k := range s.cfg.FingerprintKeys {
		m := hmac.New(sha256.New, k)
		m.Write(canonical)
		fp = append(fp, m.Sum(nil))
	}
	return fp
}

// matches reports whether stored is the fingerprint of the same request under any key.
func (fp Fingerprint) matches(stored []byte) bool {
	for _, h := range fp {
		if hmac.Equal(h, stored) {
			return true
		}
	}
	return false
}

func (fp Fingerprint) current() []byte {
	if len(fp) == 0 {
		return nil
	}
	return fp[0]
}

// OnDuplicate sets the function told of each extra result created for a key that
// already had one (for a metric). Call it before the Submitter is used.
func (s *Submitter) OnDuplicate(f func(op Op)) { s.cfg.OnDuplicate = f }

// StoreUp reports whether the last store operation succeeded.
func (s *Submitter) StoreUp() bool { return !s.storeDown.Load() }

// Lookup returns key's record as the next attempt would read it, or nil: an in-progress
// record whose lease and the takeover grace after it ran out unrenewed reads as outcome
// unknown (takeover: its holder died, or is cut off beyond the bound), so that a stale
// holder's record is told apart from a live one. Nothing is written. key.Op is required.
func (s *Submitter) Lookup(ctx context.Context, key Key) (*Record, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	rec, err := s.get(ctx, key)
	if err != nil || rec == nil {
		return rec, err
	}
	if v, next := takeover(rec, s.TakeoverGrace(), s.clock.Now()); v == takenOver {
		return next, nil
	}
	return rec, nil
}

// claimEvent is the claim of attemptID for a request of fingerprint fp under s's settings.
func (s *Submitter) claimEvent(attemptID string, fp Fingerprint) claimEvent {
	return claimEvent{AttemptID: attemptID, Fingerprint: fp, Lease: s.cfg.Lease, Grace: s.TakeoverGrace(), Unknown: s.cfg.Unknown}
}

// get and mutate bound every store operation by StoreTimeout.
func (s *Submitter) get(ctx context.Context, key Key) (*Record, error) {
	ctx, cancel := clock.WithTimeout(ctx, s.clock, s.cfg.StoreTimeout)
	defer cancel()
	rec, err := s.cfg.Store.Get(ctx, key)
	s.noteStore(err)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	return rec, nil
}

func (s *Submitter) mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error {
	ctx, cancel := clock.WithTimeout(ctx, s.clock, s.cfg.StoreTimeout)
	defer cancel()
	err := s.cfg.Store.Mutate(ctx, key, fn)
	s.noteStore(err)
	return err
}

// mutateAt is mutate with the time the record is judged and leases are written by: the
// store's own when it has one (ClockedStore: every replica then reads leases on one
// clock), this replica's otherwise.
func (s *Submitter) mutateAt(ctx context.Context, key Key, fn func(cur *Record, now time.Time) (*Record, error)) error {
	cs, ok := s.cfg.Store.(ClockedStore)
	if !ok {
		return s.mutate(ctx, key, func(cur *Record) (*Record, error) { return fn(cur, s.clock.Now()) })
	}
	ctx, cancel := clock.WithTimeout(ctx, s.clock, s.cfg.StoreTimeout)
	defer cancel()
	err := cs.MutateAt(ctx, key, fn)
	s.noteStore(err)
	return err
}

func (s *Submitter) noteStore(err error) {
	s.storeDown.Store(err != nil && !errors.Is(err, context.Canceled))
}

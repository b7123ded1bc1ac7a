// Package submission makes creating an evidence point exactly-once per customBizId:
// e签宝 does not de-duplicate, and every caller retries after a timeout.
//
// A submission is recorded as in progress before anything is sent and with its result
// after. A repeat of a succeeded submission gets the stored eviPointId without anything
// being sent; the same key with a different request is refused; a repeat while another
// call holds the key waits for it (within the caller's deadline). The semantics live
// here once; the stores (bbolt, PostgreSQL) only provide an atomic read-modify-write.
package submission

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// UnknownPolicy says what a retry does after an outcome unknown.
type UnknownPolicy string

const (
	// ResendUnknown (the default) sends a retry again, recorded as a further attempt: a
	// duplicate evidence point is harmless, a missing one blocks the person's signing
	// account.
	ResendUnknown UnknownPolicy = "resend"
	// RefuseUnknown refuses such retries; an operator settles the submission.
	RefuseUnknown UnknownPolicy = "refuse"
)

// Defaults.
const (
	// DefaultLease is how long an in-progress record holds its key. It must outlast one
	// call: the e签宝 timeout (15 s) plus the rate limiter's wait and retries of unsent
	// attempts. A record whose lease ran out belongs to a replica that died mid-call.
	DefaultLease = 45 * time.Second
	// DefaultMaxWait bounds how long a repeat waits for a call in flight with the same
	// key when its own context has no deadline.
	DefaultMaxWait = 20 * time.Second
	// finishTimeout bounds recording a result, which runs even if the caller has gone.
	finishTimeout = 10 * time.Second
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

// Result is a submission's outcome.
type Result struct {
	EviPointID string
	// Replayed is true when the stored result of an earlier call was returned.
	Replayed bool
	// Attempts is the number of attempts recorded so far.
	Attempts int
}

// Config configures a Submitter.
type Config struct {
	Store Store
	// FingerprintKey keys the HMAC of the request. Replicas sharing a store must share it.
	FingerprintKey []byte
	Unknown        UnknownPolicy
	Lease          time.Duration
	MaxWait        time.Duration
	Logger         *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Submitter runs submissions against a store.
type Submitter struct {
	cfg Config
}

// New validates cfg and returns a Submitter.
func New(cfg Config) (*Submitter, error) {
	if cfg.Store == nil {
		return nil, errors.New("submission: Store is required")
	}
	if len(cfg.FingerprintKey) < 16 {
		return nil, errors.New("submission: FingerprintKey must be at least 16 bytes")
	}
	switch cfg.Unknown {
	case "":
		cfg.Unknown = ResendUnknown
	case ResendUnknown, RefuseUnknown:
	default:
		return nil, fmt.Errorf("submission: unknown policy %q (want resend or refuse)", cfg.Unknown)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Submitter{cfg: cfg}, nil
}

// Fingerprint is the keyed hash of a request's canonical bytes: the only trace of the
// payload the store keeps.
func (s *Submitter) Fingerprint(canonical []byte) []byte {
	m := hmac.New(sha256.New, s.cfg.FingerprintKey)
	m.Write(canonical)
	return m.Sum(nil)
}

// Lookup returns the stored record of key, or nil.
func (s *Submitter) Lookup(ctx context.Context, key Key) (*Record, error) {
	rec, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	return rec, nil
}

// SendFunc sends the request to e签宝 once.
type SendFunc func(ctx context.Context) (*upstream.PsnEvidencePointResult, error)

type verdict int

const (
	proceed verdict = iota + 1
	replay
	conflict
	inFlight
	unknownRefused
)

// decide is the whole state machine: given the stored record (nil if none), what this
// attempt does and what is written. It is pure, so every store runs the same rules.
func (s *Submitter) decide(cur *Record, fp []byte, now time.Time, attemptID string) (verdict, *Record) {
	claim := func(r *Record) (verdict, *Record) {
		r.Fingerprint = fp
		r.State = StateInProgress
		r.Attempts++
		r.AttemptID = attemptID
		r.LeaseUntil = now.Add(s.cfg.Lease)
		r.UpdatedAt = now
		return proceed, r
	}
	if cur == nil {
		return claim(&Record{CreatedAt: now})
	}
	next := *cur
	same := hmac.Equal(cur.Fingerprint, fp)
	switch cur.State {
	case StateSucceeded:
		if same {
			return replay, nil
		}
		return conflict, nil
	case StateFailed:
		// Nothing exists at e签宝 under this key: a retry is sent, and may carry a
		// corrected request.
		return claim(&next)
	case StateInProgress:
		if !same {
			return conflict, nil
		}
		if now.Before(cur.LeaseUntil) {
			return inFlight, nil
		}
		// The replica holding the lease died mid-call: the outcome is unknown.
		next.State = StateOutcomeUnknown
		fallthrough
	case StateOutcomeUnknown:
		if !same {
			return conflict, nil
		}
		if s.cfg.Unknown == RefuseUnknown {
			if next.State != cur.State {
				next.AttemptID, next.UpdatedAt = "", now
				return unknownRefused, &next
			}
			return unknownRefused, nil
		}
		return claim(&next)
	}
	return conflict, nil
}

// Submit runs one submission under key: it claims the key, calls send at most once, and
// records the result. fp is the request's Fingerprint.
//
// send must not abandon a request that may be on its way when ctx ends (Guard does
// not): its result is recorded when it comes, so that an eviPointId e签宝 returns is not
// lost because the caller hung up; the caller's retry then gets it as a replay. Submit
// then returns ctx's error, which the caller has already seen.
//
// A key with an empty CustomBizID is not de-duplicated: send is called and nothing is
// stored.
func (s *Submitter) Submit(ctx context.Context, key Key, fp []byte, send SendFunc) (Result, error) {
	if key.CustomBizID == "" {
		return s.sendOnly(ctx, send)
	}
	attemptID := newAttemptID()
	var rec *Record
	backoff := 20 * time.Millisecond
	waitUntil := s.cfg.Now().Add(s.cfg.MaxWait)
	if d, ok := ctx.Deadline(); ok {
		waitUntil = d
	}
	for {
		var v verdict
		var last *Record
		err := s.cfg.Store.Mutate(ctx, key, func(cur *Record) (*Record, error) {
			var write *Record
			v, write = s.decide(cur, fp, s.cfg.Now(), attemptID)
			last = cur
			if write != nil {
				write.Key = key
				rec = write
			}
			return write, nil
		})
		if err != nil {
			return Result{}, storeErr(ctx, err)
		}
		switch v {
		case proceed:
		case replay:
			return Result{EviPointID: last.EviPointID, Replayed: true, Attempts: last.Attempts}, nil
		case conflict:
			return Result{}, ErrConflict
		case unknownRefused:
			return Result{}, ErrUnknownRefused
		case inFlight:
			if !s.cfg.Now().Add(backoff).Before(waitUntil) {
				return Result{}, ErrInFlight
			}
			select {
			case <-ctx.Done():
				return Result{}, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 500*time.Millisecond)
			continue
		}
		break
	}

	res, err := send(ctx)
	s.finish(key, attemptID, res, err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller has gone; the result is recorded for its retry.
		return Result{Attempts: rec.Attempts}, ctxErr
	}
	if err != nil {
		return Result{Attempts: rec.Attempts}, err
	}
	return Result{EviPointID: res.EviPointID, Attempts: rec.Attempts}, nil
}

// sendOnly sends without recording.
func (s *Submitter) sendOnly(ctx context.Context, send SendFunc) (Result, error) {
	res, err := send(ctx)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return Result{}, ctxErr
	}
	if err != nil {
		return Result{}, err
	}
	return Result{EviPointID: res.EviPointID, Attempts: 1}, nil
}

// finish records an attempt's result. A success is always recorded (an eviPointId is
// never dropped, even if another attempt took the key over after this one's lease ran
// out); a failure or unknown outcome only while this attempt still holds the key.
func (s *Submitter) finish(key Key, attemptID string, res *upstream.PsnEvidencePointResult, sendErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
	defer cancel()
	state, code := classify(sendErr)
	err := s.cfg.Store.Mutate(ctx, key, func(cur *Record) (*Record, error) {
		if cur == nil {
			return nil, nil
		}
		next := *cur
		now := s.cfg.Now()
		if state == StateSucceeded {
			if cur.State == StateSucceeded {
				// Two attempts both created one: keep the first, log the other.
				return nil, nil
			}
			next.State, next.EviPointID, next.EsignCode = StateSucceeded, res.EviPointID, 0
		} else {
			if cur.AttemptID != attemptID || cur.State != StateInProgress {
				return nil, nil
			}
			next.State, next.EsignCode = state, code
		}
		next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, now
		return &next, nil
	})
	if err != nil {
		attrs := []any{"custom_biz_id", key.CustomBizID, "namespace", key.Namespace, "state", string(state), "err", err.Error()}
		if res != nil {
			attrs = append(attrs, "evi_point_id", res.EviPointID)
		}
		s.cfg.Logger.Error("could not record a submission's result", attrs...)
	}
	if state == StateSucceeded {
		if cur, _ := s.cfg.Store.Get(ctx, key); cur != nil && cur.EviPointID != res.EviPointID {
			s.cfg.Logger.Warn("a second evidence point was created for one customBizId after a lost lease; the first is kept",
				"custom_biz_id", key.CustomBizID, "kept", cur.EviPointID, "also_created", res.EviPointID)
		}
	}
}

// classify turns a send result into the state to record and e签宝's code.
func classify(err error) (State, int) {
	if err == nil {
		return StateSucceeded, 0
	}
	var be *upstream.BusinessError
	if errors.As(err, &be) {
		return StateFailed, be.Code
	}
	if upstream.IsRetrySafe(err) || errors.Is(err, ErrRateLimited) || errors.Is(err, ErrCircuitOpen) {
		return StateFailed, 0
	}
	return StateOutcomeUnknown, 0
}

func storeErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, ErrStoreUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

func newAttemptID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

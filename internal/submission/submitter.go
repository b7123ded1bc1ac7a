// Package submission makes e签宝 operations exactly-once per customBizId (e签宝 does not
// de-duplicate, and every caller retries after a timeout) and guards every call to
// e签宝 (Guard: admission, quota, circuit breaker, retry of unsent attempts, metrics).
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
	"sync"
	"sync/atomic"
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
	Unknown         UnknownPolicy
	Lease           time.Duration
	MaxWait         time.Duration
	// StoreTimeout bounds each store operation; DefaultStoreTimeout when 0.
	StoreTimeout time.Duration
	// Retention is how long a record is kept after its last change; DefaultRetention
	// when 0. Run removes older ones.
	Retention time.Duration
	// Journal, when set, keeps results e签宝 returned that the store could not record
	// yet, so that they survive a restart.
	Journal *Journal
	// OnDuplicate, when set, is told each time an attempt created a second result for a
	// key that already had one (for a metric).
	OnDuplicate func(op Op)
	Logger      *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Submitter runs submissions against a store.
type Submitter struct {
	cfg Config
	// storeDown is set while the last store operation failed.
	storeDown atomic.Bool
	// pending holds results not yet recorded (journaled), by key.
	mu      sync.Mutex
	pending map[Key]pendingResult
}

type pendingResult struct {
	attemptID, result string
	fingerprint       []byte
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
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if err := CheckTiming(cfg.Lease, cfg.StoreTimeout); err != nil {
		return nil, fmt.Errorf("submission: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Submitter{cfg: cfg, pending: map[Key]pendingResult{}}, nil
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

// Lookup returns the stored record of key, or nil.
func (s *Submitter) Lookup(ctx context.Context, key Key) (*Record, error) {
	return s.get(ctx, key)
}

// get and mutate bound every store operation by StoreTimeout.
func (s *Submitter) get(ctx context.Context, key Key) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	rec, err := s.cfg.Store.Get(ctx, key)
	s.noteStore(err)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	return rec, nil
}

func (s *Submitter) mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	err := s.cfg.Store.Mutate(ctx, key, fn)
	s.noteStore(err)
	return err
}

func (s *Submitter) noteStore(err error) {
	s.storeDown.Store(err != nil && !errors.Is(err, context.Canceled))
}

// Operation describes an e签宝 operation for Submit: its name and how its result is kept
// in a record (Encode) and given back on a replay (Decode).
type Operation[R any] struct {
	Name   Op
	Encode func(R) string
	Decode func(string) R
}

// Result is a submission's outcome.
type Result[R any] struct {
	Value R
	// Replayed is true when the stored result of an earlier attempt was returned.
	Replayed bool
	// Attempts is the number of attempts recorded so far.
	Attempts int
}

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
func (s *Submitter) decide(cur *Record, fp Fingerprint, now time.Time, attemptID string) (verdict, *Record) {
	claim := func(r *Record) (verdict, *Record) {
		r.Fingerprint = fp.current()
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
	same := fp.matches(cur.Fingerprint)
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
		if now.Before(cur.LeaseUntil.Add(s.TakeoverGrace())) {
			return inFlight, nil
		}
		// The replica holding the lease stopped renewing it, and the grace in which a
		// holder cut off from the store keeps trying to record a result e签宝 returned
		// has passed too: it died mid-call, or its result was never recorded. The outcome
		// is unknown.
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

// Submit runs one operation for key through g, exactly once per key: it admits the call
// (g's deadline rule and quota), claims the key, calls call at most once (g's breaker
// and retry of provably unsent attempts apply), and records the result. fp is the
// request's Fingerprint. A key with an empty CustomBizID is not de-duplicated: the call
// goes through g alone (Call) and nothing is stored.
//
// call must not abandon a request that may be on its way when its context ends for the
// caller's sake: Submit gives it a context that ends only when the key's lease could no
// longer be renewed, so that an answer e签宝 returns is recorded even if the caller hung
// up; the caller's retry then gets it as a replay. Submit then returns the caller's
// context error.
//
// Every caller of one key is told the same result: an attempt whose success finds
// another one already recorded returns the recorded one (and reports the extra one
// through Config.OnDuplicate and the log).
func Submit[R any](ctx context.Context, s *Submitter, g *Guard, op Operation[R], key Key, fp Fingerprint, call func(context.Context) (R, error)) (Result[R], error) {
	key.Op = op.Name
	if key.CustomBizID == "" {
		v, err := Call(ctx, g, op.Name, call)
		if err != nil {
			return Result[R]{}, err
		}
		return Result[R]{Value: v, Attempts: 1}, nil
	}
	var fresh R
	got, err := s.submit(ctx, g, key, fp, func(ctx context.Context) (string, error) {
		v, err := call(ctx)
		if err != nil {
			return "", err
		}
		fresh = v
		return op.Encode(v), nil
	})
	res := Result[R]{Replayed: got.replayed, Attempts: got.attempts}
	if err != nil {
		return res, err
	}
	if got.fresh {
		res.Value = fresh
	} else {
		res.Value = op.Decode(got.result)
	}
	return res, nil
}

type outcome struct {
	result   string
	fresh    bool // result is this attempt's own
	replayed bool
	attempts int
}

func (s *Submitter) submit(ctx context.Context, g *Guard, key Key, fp Fingerprint, call func(context.Context) (string, error)) (outcome, error) {
	attemptID := newAttemptID()
	backoff := 20 * time.Millisecond
	waitUntil := s.cfg.Now().Add(s.cfg.MaxWait)
	if d, ok := ctx.Deadline(); ok {
		waitUntil = d
	}
	waitInFlight := func() error {
		if !s.cfg.Now().Add(backoff).Before(waitUntil) {
			return ErrInFlight
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 500*time.Millisecond)
		return nil
	}
	var rec *Record
	for {
		// A result this process holds but could not record yet is the key's result.
		s.mu.Lock()
		p, pending := s.pending[key]
		s.mu.Unlock()
		if pending && fp.matches(p.fingerprint) {
			return outcome{result: p.result, replayed: true}, nil
		}
		// Look first, without writing: a replay, a conflict or a call in flight needs
		// no quota slot.
		cur, err := s.get(ctx, key)
		if err != nil {
			return outcome{}, storeErr(ctx, err)
		}
		v, _ := s.decide(cur, fp, s.cfg.Now(), "")
		switch v {
		case replay:
			return outcome{result: cur.Result, replayed: true, attempts: cur.Attempts}, nil
		case conflict:
			return outcome{}, ErrConflict
		case inFlight:
			if err := waitInFlight(); err != nil {
				return outcome{}, err
			}
			continue
		case proceed:
			// The key is taken only once the call is admitted past the quota, so that
			// waiting for a slot never eats into the lease.
			if err := g.Admit(ctx); err != nil {
				return outcome{}, err
			}
			if err := ctx.Err(); err != nil {
				return outcome{}, err
			}
		}
		// The claim runs on a context the caller cannot cancel (still bounded by
		// StoreTimeout): a caller hanging up must not cut a commit in half.
		var last *Record
		err = s.mutate(context.WithoutCancel(ctx), key, func(cur *Record) (*Record, error) {
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
			// The claim may have committed all the same (an acknowledgement lost to the
			// timeout): if this attempt holds the key, give it back as not sent.
			go s.release(key, attemptID, last)
			return outcome{}, storeErr(ctx, err)
		}
		switch v {
		case proceed:
			// The claim took store time out of the caller's deadline: the admission rule
			// applies again before anything is sent.
			if d, ok := ctx.Deadline(); ok && time.Until(d) < g.cfg.MinRemaining {
				s.release(key, attemptID, last)
				return outcome{}, ErrDeadlineTooShort
			}
		case replay:
			return outcome{result: last.Result, replayed: true, attempts: last.Attempts}, nil
		case conflict:
			return outcome{}, ErrConflict
		case unknownRefused:
			return outcome{}, ErrUnknownRefused
		case inFlight:
			// Another attempt claimed the key since the look: wait for it.
			if err := waitInFlight(); err != nil {
				return outcome{}, err
			}
			continue
		}
		break
	}

	var out outcome
	err := s.sendHolding(ctx, g, key, attemptID, rec.LeaseUntil.Add(-s.cfg.Lease), call, func(res string, sendErr error) error {
		out = s.finish(key, attemptID, fp.current(), res, sendErr)
		return sendErr
	})
	out.attempts = rec.Attempts
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller has gone; the result is recorded for its retry.
		return out, ctxErr
	}
	if out.result != "" {
		return out, nil
	}
	return out, err
}

// release gives back a key this attempt claimed but never sent: if the attempt still
// holds it, the record returns to what it said before the claim (failed when there was
// none or nothing had been sent, outcome unknown when an earlier attempt's outcome was
// unknown) and the claim's attempt is not counted.
func (s *Submitter) release(key Key, attemptID string, before *Record) {
	err := s.mutate(context.Background(), key, func(cur *Record) (*Record, error) {
		if cur == nil || cur.AttemptID != attemptID || cur.State != StateInProgress {
			return nil, nil
		}
		next := *cur
		next.State, next.EsignCode = StateFailed, 0
		if before != nil {
			next.EsignCode = before.EsignCode
			if before.State != StateFailed {
				next.State = StateOutcomeUnknown
			}
		}
		if next.Attempts > 0 {
			next.Attempts--
		}
		next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, s.cfg.Now()
		return &next, nil
	})
	if err != nil {
		// The lease runs out by itself; the record then reads as outcome unknown.
		s.cfg.Logger.Warn("could not release a claim that was not sent", "op", string(key.Op), "custom_biz_id", key.CustomBizID,
			"namespace", key.Namespace, "err", err.Error())
	}
}

// sendHolding makes the call while holding key: the lease, taken at claimed, is renewed
// every third of it, and the call's context ends before the last lease renewed runs
// out (less ClockAllowance), so no other attempt can take the key while this one may
// still be sending. The call is not ended by the caller leaving. The lease is renewed
// until record (which records the call's result) has returned too, so that a result
// being written keeps its key.
func (s *Submitter) sendHolding(ctx context.Context, g *Guard, key Key, attemptID string, claimed time.Time, call func(context.Context) (string, error), record func(string, error) error) error {
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	lease := s.cfg.Lease
	stopAt := func(from time.Time) time.Duration { return time.Until(from.Add(lease - ClockAllowance)) }
	cutoff := time.AfterFunc(stopAt(claimed), cancel)
	defer cutoff.Stop()

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			from := s.cfg.Now()
			held := true
			err := s.mutate(sendCtx, key, func(cur *Record) (*Record, error) {
				if cur == nil || cur.AttemptID != attemptID || cur.State != StateInProgress {
					held = false
					return nil, nil
				}
				next := *cur
				next.LeaseUntil = from.Add(lease)
				return &next, nil
			})
			switch {
			case err != nil:
				// Not renewed: the cut-off stays where the last renewal put it.
			case !held:
				cancel()
				return
			default:
				cutoff.Reset(stopAt(from))
			}
		}
	}()
	// The result is recorded for the caller's retry, so an unsent attempt is tried again
	// while the lease holds, whatever the caller does.
	v, err := g.send(sendCtx, sendCtx, key.Op, func(c context.Context) (any, error) { return call(c) })
	res, _ := v.(string)
	err = record(res, err)
	close(done)
	wg.Wait()
	return err
}

// finish records an attempt's result and returns what the caller is told. A success is
// always recorded (an eviPointId is never dropped), retried while the store is
// unavailable and kept in the journal meanwhile; if another result is already recorded,
// that one is returned and this one reported as a duplicate. A failure or unknown
// outcome is recorded only while this attempt still holds the key.
func (s *Submitter) finish(key Key, attemptID string, fingerprint []byte, result string, sendErr error) outcome {
	state, code := classify(sendErr)
	if state == StateSucceeded {
		stored, err := s.recordSuccess(key, attemptID, fingerprint, result, recordFor)
		if err != nil {
			s.keep(key, pendingResult{attemptID: attemptID, result: result, fingerprint: fingerprint})
			return outcome{result: result, fresh: true}
		}
		if stored != result {
			return outcome{result: stored, replayed: true}
		}
		return outcome{result: result, fresh: true}
	}
	var stored string
	var err error
	for try := 0; try < recordFor; try++ {
		err = s.mutate(context.Background(), key, func(cur *Record) (*Record, error) {
			if cur == nil {
				return nil, nil
			}
			if cur.State == StateSucceeded {
				stored = cur.Result
				return nil, nil
			}
			if cur.AttemptID != attemptID || cur.State != StateInProgress {
				return nil, nil
			}
			next := *cur
			next.State, next.EsignCode = state, code
			next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, s.cfg.Now()
			return &next, nil
		})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		// The lease runs out by itself; the record then reads as outcome unknown, the
		// safe reading of any failure.
		s.cfg.Logger.Error("could not record a submission's result", "op", string(key.Op), "custom_biz_id", key.CustomBizID,
			"namespace", key.Namespace, "state", string(state), "err", err.Error())
	}
	if stored != "" {
		// Another attempt created it; every caller is told that one.
		return outcome{result: stored, replayed: true}
	}
	return outcome{}
}

// recordSuccess writes result for key, trying up to tries times, and returns the result
// the record holds afterwards (another one, if one was recorded first).
func (s *Submitter) recordSuccess(key Key, attemptID string, fingerprint []byte, result string, tries int) (string, error) {
	var stored string
	var err error
	backoff := 100 * time.Millisecond
	for try := 0; try < tries; try++ {
		if try > 0 {
			time.Sleep(backoff)
			backoff *= 2
		}
		err = s.mutate(context.Background(), key, func(cur *Record) (*Record, error) {
			now := s.cfg.Now()
			if cur == nil {
				// Removed meanwhile (retention): record it anew.
				stored = result
				return &Record{Key: key, Fingerprint: fingerprint, State: StateSucceeded, Result: result, Attempts: 1, CreatedAt: now, UpdatedAt: now}, nil
			}
			if cur.State == StateSucceeded {
				stored = cur.Result
				return nil, nil
			}
			stored = result
			next := *cur
			// The request that produced the result owns the record, whichever attempt
			// held it last.
			next.Fingerprint = fingerprint
			next.State, next.Result, next.EsignCode = StateSucceeded, result, 0
			next.AttemptID, next.LeaseUntil, next.UpdatedAt = "", time.Time{}, now
			return &next, nil
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return "", err
	}
	if stored != result {
		// Two attempts both created one: the first recorded is kept and told to every
		// caller. No personal data: the key, the namespace and the two results.
		s.cfg.Logger.Warn("a second e签宝 result was created for one customBizId; the first recorded is kept and returned",
			"op", string(key.Op), "custom_biz_id", key.CustomBizID, "namespace", key.Namespace, "kept", stored, "also_created", result)
		if s.cfg.OnDuplicate != nil {
			s.cfg.OnDuplicate(key.Op)
		}
	}
	return stored, nil
}

// keep journals a success the store could not record and retries it in the background
// until it is recorded. Until then the key stays in progress under this attempt, so no
// one sends it again while its lease and the TakeoverGrace after it last; each retry is a
// store round trip that records the result, the renewal that matters.
func (s *Submitter) keep(key Key, p pendingResult) {
	s.cfg.Logger.Warn("the store could not record an e签宝 result; it is kept locally and retried",
		"op", string(key.Op), "custom_biz_id", key.CustomBizID, "namespace", key.Namespace, "result", p.result)
	if s.cfg.Journal != nil {
		if err := s.cfg.Journal.put(journalEntry{Key: key, AttemptID: p.attemptID, Result: p.result, Fingerprint: p.fingerprint}); err != nil {
			s.cfg.Logger.Error("could not journal an e签宝 result", "custom_biz_id", key.CustomBizID, "err", err.Error())
		}
	}
	s.mu.Lock()
	_, running := s.pending[key]
	s.pending[key] = p
	s.mu.Unlock()
	if !running {
		go s.drainOne(key)
	}
}

// drainOne retries recording key's pending result until it is recorded.
func (s *Submitter) drainOne(key Key) {
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		p := s.pending[key]
		s.mu.Unlock()
		if _, err := s.recordSuccess(key, p.attemptID, p.fingerprint, p.result, 1); err == nil {
			s.mu.Lock()
			delete(s.pending, key)
			s.mu.Unlock()
			if s.cfg.Journal != nil {
				_ = s.cfg.Journal.remove(key)
			}
			s.cfg.Logger.Info("recorded a kept e签宝 result", "op", string(key.Op), "custom_biz_id", key.CustomBizID, "namespace", key.Namespace)
			return
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// Pending returns how many results wait to be recorded.
func (s *Submitter) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// WaitPending waits until no result waits to be recorded, or ctx ends (then it returns
// ctx's error and the journal keeps what is left for the next start).
func (s *Submitter) WaitPending(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Start replays the journal (results a previous run could not record) and starts the
// background work: recording them, and removing records older than the retention. It
// returns at once; the work stops when ctx ends.
func (s *Submitter) Start(ctx context.Context) error {
	if s.cfg.Journal != nil {
		entries, err := s.cfg.Journal.entries()
		if err != nil {
			return err
		}
		for _, e := range entries {
			s.mu.Lock()
			_, running := s.pending[e.Key]
			s.pending[e.Key] = pendingResult{attemptID: e.AttemptID, result: e.Result, fingerprint: e.Fingerprint}
			s.mu.Unlock()
			if !running {
				go s.drainOne(e.Key)
			}
		}
		if len(entries) > 0 {
			s.cfg.Logger.Info("replaying e签宝 results kept by a previous run", "count", len(entries))
		}
	}
	go s.retain(ctx)
	return nil
}

// retain removes records older than the retention, now and then every tenth of it
// (at most hourly).
func (s *Submitter) retain(ctx context.Context) {
	every := min(s.cfg.Retention/10, time.Hour)
	for {
		rctx, cancel := context.WithTimeout(ctx, max(s.cfg.StoreTimeout, time.Minute))
		n, err := s.cfg.Store.DeleteBefore(rctx, s.cfg.Now().Add(-s.cfg.Retention))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Warn("could not remove old submissions", "err", err.Error())
		case n > 0:
			s.cfg.Logger.Info("removed submissions older than the retention", "count", n)
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// classify turns a send result into the state to record and e签宝's code, from the
// outcome the error states: only an unknown outcome may have created something.
func classify(err error) (State, int) {
	switch upstream.OutcomeOf(err) {
	case upstream.OutcomeOK:
		return StateSucceeded, 0
	case upstream.OutcomeUnknown:
		return StateOutcomeUnknown, 0
	}
	var be *upstream.BusinessError
	if errors.As(err, &be) {
		return StateFailed, be.Code
	}
	return StateFailed, 0
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

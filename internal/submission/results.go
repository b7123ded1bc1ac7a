package submission

import (
	"context"
	"time"
)

// pendingResult is a result e签宝 returned that the store could not record yet.
type pendingResult struct {
	attemptID, result string
	fingerprint       []byte
}

// recordOutcome records an attempt's result and returns what the caller is told. A
// success is always recorded (record: a result e签宝 returned is never dropped): once its
// first store write has failed it is in the journal, and it is retried while the store
// is unavailable; if another result is already
// recorded, that one is returned and this one reported as a duplicate. A failure or
// unknown outcome is recorded only while this attempt still holds the key (finish); an
// unknown one keeps the key until quiet.
func (s *Submitter) recordOutcome(key Key, attemptID string, fingerprint []byte, result string, sendErr error, quiet time.Time) outcome {
	state, code := classify(sendErr)
	if state == StateSucceeded {
		p := pendingResult{attemptID: attemptID, result: result, fingerprint: fingerprint}
		stored, err := s.recordSuccess(key, attemptID, fingerprint, result, 1)
		if err != nil {
			// The first write failed: the result goes to the journal now, before the
			// store is tried again, so that a kill from here on cannot lose it.
			journaled := s.journal(key, p)
			s.clock.Sleep(100 * time.Millisecond)
			if stored, err = s.recordSuccess(key, attemptID, fingerprint, result, recordFor-1); err != nil {
				s.keep(key, p)
				return outcome{result: result, fresh: true}
			}
			if journaled {
				s.unjournal(key)
			}
		}
		if stored != result {
			return outcome{result: stored, replayed: true}
		}
		return outcome{result: result, fresh: true}
	}
	var stored string
	var err error
	for try := 0; try < recordFor; try++ {
		// Quiet as a time on the clock the record is written by.
		quietFor := s.clock.Until(quiet)
		err = s.mutateAt(context.Background(), key, func(cur *Record, now time.Time) (*Record, error) {
			var q time.Time
			if quietFor > 0 {
				q = now.Add(quietFor)
			}
			v, next := finish(cur, finishEvent{AttemptID: attemptID, State: state, EsignCode: code, Quiet: q}, now)
			if v == replay {
				stored = cur.Result
			}
			return next, nil
		})
		if err == nil {
			break
		}
		s.clock.Sleep(100 * time.Millisecond)
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

// recordSuccess writes result for key (record), trying up to tries times, and returns
// the result the record holds afterwards (another one, if one was recorded first).
func (s *Submitter) recordSuccess(key Key, attemptID string, fingerprint []byte, result string, tries int) (string, error) {
	var stored string
	var err error
	backoff := 100 * time.Millisecond
	for try := 0; try < tries; try++ {
		if try > 0 {
			s.clock.Sleep(backoff)
			backoff *= 2
		}
		err = s.mutateAt(context.Background(), key, func(cur *Record, now time.Time) (*Record, error) {
			v, next := record(cur, recordEvent{Key: key, Fingerprint: fingerprint, Result: result}, now)
			stored = result
			if v == replay {
				stored = cur.Result
			}
			return next, nil
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

// keep holds a success the store could not record (already journaled by recordOutcome)
// and retries it in the background until it is recorded. Until then the key stays in progress under this attempt, so no
// one sends it again while its lease and the TakeoverGrace after it last; each retry is a
// store round trip that records the result, the renewal that matters.
func (s *Submitter) keep(key Key, p pendingResult) {
	s.cfg.Logger.Warn("the store could not record an e签宝 result; it is kept locally and retried",
		"op", string(key.Op), "custom_biz_id", key.CustomBizID, "namespace", key.Namespace, "result", p.result)
	s.hold(key, p)
}

// journal writes p to the journal (fsynced) and reports whether it did.
func (s *Submitter) journal(key Key, p pendingResult) bool {
	if s.cfg.Journal == nil {
		return false
	}
	if err := s.cfg.Journal.put(journalEntry{Key: key, AttemptID: p.attemptID, Result: p.result, Fingerprint: p.fingerprint}); err != nil {
		s.cfg.Logger.Error("could not journal an e签宝 result", "custom_biz_id", key.CustomBizID, "err", err.Error())
		return false
	}
	return true
}

// unjournal removes key's entry once the store has its result.
func (s *Submitter) unjournal(key Key) {
	if err := s.cfg.Journal.remove(key); err != nil {
		// Replayed at the next start, it finds the result recorded: harmless.
		s.cfg.Logger.Warn("could not remove a recorded result from the journal", "custom_biz_id", key.CustomBizID, "err", err.Error())
	}
}

// hold keeps p as key's pending result and starts its write-back unless one runs.
func (s *Submitter) hold(key Key, p pendingResult) {
	s.mu.Lock()
	_, running := s.pending[key]
	s.pending[key] = p
	s.mu.Unlock()
	if !running {
		go s.drainOne(key)
	}
}

// pendingFor returns key's pending result, if this process holds one.
func (s *Submitter) pendingFor(key Key) (pendingResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[key]
	return p, ok
}

// drainOne retries recording key's pending result until it is recorded.
func (s *Submitter) drainOne(key Key) {
	backoff := 100 * time.Millisecond
	for {
		p, _ := s.pendingFor(key)
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
		s.clock.Sleep(backoff)
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
	t := s.clock.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.Chan():
		}
	}
	return nil
}

// Start replays the journal (results a previous run could not record) and starts the
// background work: recording them, and removing records older than the retention. It
// returns at once; the work stops when ctx ends.
func (s *Submitter) Start(ctx context.Context) error {
	if s.cfg.Journal != nil && !bugIgnoreJournal {
		entries, quarantined, err := s.cfg.Journal.entries()
		if err != nil {
			return err
		}
		if quarantined > 0 {
			// Its key is then handled as an outcome unknown after the grace, like a
			// result whose journal was lost; the others are replayed.
			s.cfg.Logger.Error("journal entries that could not be read were set aside in the journal's quarantine bucket; the other results are replayed",
				"count", quarantined)
		}
		for _, e := range entries {
			s.hold(e.Key, pendingResult{attemptID: e.AttemptID, result: e.Result, fingerprint: e.Fingerprint})
		}
		if len(entries) > 0 {
			s.cfg.Logger.Info("replaying e签宝 results kept by a previous run", "count", len(entries))
		}
	}
	go s.retain(ctx)
	return nil
}

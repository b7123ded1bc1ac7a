package submission

import (
	"context"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// retain removes records older than the retention, now and then every tenth of it
// (at most hourly). A run is bounded (a minute, or STORE_TIMEOUT if longer); the stores
// remove in short transactions, so keyed calls go on meanwhile. A run whose time was up
// before its end (a backlog, or the embedded store indexing a file from an earlier
// build) is followed by the next a minute later, which goes on from there.
func (s *Submitter) retain(ctx context.Context) {
	every := min(s.cfg.Retention/10, time.Hour)
	for {
		rctx, cancel := clock.WithTimeout(ctx, s.clock, max(s.cfg.StoreTimeout, time.Minute))
		n, err := s.cfg.Store.DeleteBefore(rctx, s.clock.Now().Add(-s.cfg.Retention))
		unfinished := err != nil && rctx.Err() != nil
		cancel()
		next := every
		switch {
		case ctx.Err() != nil:
		case unfinished:
			s.cfg.Logger.Info("removed submissions older than the retention; the run's time is up, the next goes on from there", "count", n)
			next = min(every, time.Minute)
		case err != nil:
			s.cfg.Logger.Warn("could not remove old submissions", "count", n, "err", err.Error())
		case n > 0:
			s.cfg.Logger.Info("removed submissions older than the retention", "count", n)
		}
		t := s.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.Chan():
		}
	}
}

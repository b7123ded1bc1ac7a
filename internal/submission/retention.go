package submission

import (
	"context"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// retain removes records older than the retention, now and then every tenth of it
// (at most hourly).
func (s *Submitter) retain(ctx context.Context) {
	every := min(s.cfg.Retention/10, time.Hour)
	for {
		rctx, cancel := clock.WithTimeout(ctx, s.clock, max(s.cfg.StoreTimeout, time.Minute))
		n, err := s.cfg.Store.DeleteBefore(rctx, s.clock.Now().Add(-s.cfg.Retention))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Warn("could not remove old submissions", "err", err.Error())
		case n > 0:
			s.cfg.Logger.Info("removed submissions older than the retention", "count", n)
		}
		t := s.clock.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.Chan():
		}
	}
}

package guard

import (
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings are the upstream policy's settings: the app's quota and the admission rule.
type Settings struct {
	// QPS is the app's e签宝 quota in requests per second, enforced before sending (the
	// burst is the same number). With a shared Quota (PostgreSQL) every replica shares it.
	QPS float64
	// MinRemaining is the admission rule: no e签宝 call is started for a caller whose
	// remaining deadline, after waiting for its quota slot, is shorter.
	MinRemaining time.Duration
}

// DefaultSettings are the settings unless configured otherwise; the reason for each value
// is beside its constant.
func DefaultSettings() Settings {
	return Settings{QPS: DefaultQPS, MinRemaining: DefaultMinRemaining}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.PositiveFloat(&s.QPS, "esign-qps", "e签宝 requests per second allowed for the app (its quota); with DATABASE_URL shared by every replica")
	set.Duration(&s.MinRemaining, "esign-min-remaining", "no e签宝 call is started for a caller with less deadline left (after waiting for the quota)")
}

package guard

import (
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings are the upstream policy's settings: the app's quota and the admission rule.
type Settings struct {
	// QPS is the app's e签宝 quota in requests per second, enforced before sending: no
	// window of QuotaWindow, at any offset, carries more than QPS calls. With a shared
	// Quota (PostgreSQL) every replica shares it.
	QPS float64
	// Replicas is how many replicas share a shared Quota. While it cannot be reached,
	// each process falls back to its own limiter at its share, QPS / Replicas, so that
	// the replicas together stay within QPS.
	Replicas int
	// MinRemaining is the admission rule: no e签宝 call is started for a caller whose
	// remaining deadline, after waiting for its quota slot, is shorter.
	MinRemaining time.Duration
	// CallerShare is the share of a second's quota one caller may hold reserved ahead
	// (QPS × CallerShare slots, at least one): a busy caller makes another one wait at
	// most about CallerShare seconds, plus one slot, for the quota, however many calls it
	// has waiting. A caller alone still gets the whole quota.
	CallerShare float64
}

// DefaultSettings are the settings unless configured otherwise; the reason for each value
// is beside its constant.
func DefaultSettings() Settings {
	return Settings{QPS: DefaultQPS, Replicas: 1, MinRemaining: DefaultMinRemaining, CallerShare: DefaultCallerShare}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	set.PositiveFloat(&s.QPS, "esign-qps", "e签宝 requests per second allowed for the app (its quota); with DATABASE_URL shared by every replica")
	set.Count(&s.Replicas, "esign-replicas", false, "how many replicas share ESIGN_QPS through DATABASE_URL: while PostgreSQL cannot be reached, each sends at most ESIGN_QPS / ESIGN_REPLICAS")
	set.Fraction(&s.CallerShare, "esign-caller-share", "share of a second's quota one caller may hold reserved ahead (ESIGN_QPS × this, at least one slot): a busy caller delays another caller's call by at most about this many seconds; a caller alone still gets the whole quota")
	set.Duration(&s.MinRemaining, "esign-min-remaining", "no e签宝 call is started for a caller with less deadline left (after waiting for the quota)")
}

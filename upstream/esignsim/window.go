package esignsim

import (
	"slices"
	"time"
)

// MostInWindow is the most of times that fall in any window [t, t+w), at any offset, and
// where that window starts: a window holding the most can always be moved to start at one
// of them. With the receipt times of a simulator's requests it tells whether a quota of N
// per w was ever exceeded as e签宝 counts.
func MostInWindow(times []time.Time, w time.Duration) (most int, at time.Time) {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < w {
			j++
		}
		if j-i > most {
			most, at = j-i, ts[i]
		}
	}
	return most, at
}

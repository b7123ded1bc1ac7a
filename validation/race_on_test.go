//go:build race

package validation

// raceEnabled: under the race detector the random comparisons are fewer (it is ~10× slower).
const raceEnabled = true

//go:build !simbugs

package submission

// The deliberate bugs the simulation (internal/simulation, built with -tags simbugs)
// must catch. In every other build they are constants, false, and the code they guard
// is not compiled in: no production binary can switch them on.
const (
	bugNoTakeoverGrace = false
	bugNoCutoff        = false
	bugIgnoreJournal   = false
)

//go:build simbugs

package submission

import "fmt"

// The deliberate bugs the simulation must catch, switchable only in a build with
// -tags simbugs (make simulate-bugs): proof that the simulator can fail.
var (
	// bugNoTakeoverGrace: an in-progress record can be taken over the moment its lease
	// has run out.
	bugNoTakeoverGrace bool
	// bugNoCutoff: the holder's call is not cut off before its lease runs out.
	bugNoCutoff bool
	// bugIgnoreJournal: Start does not replay the journal.
	bugIgnoreJournal bool
)

// DeliberateBugs names the bugs SetDeliberateBug switches.
var DeliberateBugs = []string{"no-takeover-grace", "no-cutoff", "ignore-journal"}

// SetDeliberateBug switches on the named deliberate bug ("" switches all off). For the
// simulation's proof that it catches them; it exists only in a simbugs build.
func SetDeliberateBug(name string) error {
	bugNoTakeoverGrace, bugNoCutoff, bugIgnoreJournal = false, false, false
	switch name {
	case "":
	case "no-takeover-grace":
		bugNoTakeoverGrace = true
	case "no-cutoff":
		bugNoCutoff = true
	case "ignore-journal":
		bugIgnoreJournal = true
	default:
		return fmt.Errorf("no deliberate bug %q", name)
	}
	return nil
}

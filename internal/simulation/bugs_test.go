//go:build simbugs

package simulation

import (
	"flag"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/internal/submission"
)

func init() {
	flag.StringVar(&bugFlag, "bug", "", "switch this deliberate bug on: "+strings.Join(submission.DeliberateBugs, ", "))
	setBug = submission.SetDeliberateBug
}

// TestDeliberateBugsAreCaught is the proof that the simulation can fail: with each
// deliberate bug of internal/submission switched on (a simbugs build: make
// simulate-bugs), some seed within the first 10,000 violates an invariant. It reports the
// first such seed and what it violated.
func TestDeliberateBugsAreCaught(t *testing.T) {
	defer submission.SetDeliberateBug("")
	for _, bug := range submission.DeliberateBugs {
		t.Run(bug, func(t *testing.T) {
			if err := submission.SetDeliberateBug(bug); err != nil {
				t.Fatal(err)
			}
			bugFlag = bug
			defer func() { bugFlag = ""; submission.SetDeliberateBug("") }()
			for seed := uint64(1); seed <= 10000; seed++ {
				r := runSeed(t, seed)
				if len(r.violations) > 0 {
					t.Logf("%s: caught by seed %d (%s): %s", bug, seed, replayCommand(seed), strings.Join(r.violations, "; "))
					return
				}
			}
			t.Errorf("%s: no seed of the first 10,000 caught it", bug)
		})
	}
}

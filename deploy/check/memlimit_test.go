package check

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// runtimeEnv are environment variables Go's runtime reads, not the binary's settings.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true}

// maxMemLimitShare is the largest GOMEMLIMIT a deployment may set, as a share of its hard
// memory limit: the rest is for what the collector does not count (stacks, the runtime's
// own structures, memory not yet returned to the system).
const maxMemLimitShare = 0.85

// goMemLimit parses GOMEMLIMIT as Go's runtime does: a number of bytes with an optional
// B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(v string) (int64, error) {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			i, err := strconv.ParseInt(n, 10, 64)
			if err != nil || i <= 0 {
				return 0, fmt.Errorf("GOMEMLIMIT=%q is not a size", v)
			}
			return i << u.shift, nil
		}
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil || i <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT=%q is not a size", v)
	}
	return i, nil
}

// checkMemLimit: GOMEMLIMIT is set, and at most maxMemLimitShare of the hard limit.
func checkMemLimit(t *testing.T, where, goMem string, hard int64) {
	t.Helper()
	if goMem == "" {
		t.Errorf("%s: GOMEMLIMIT is not set (a flood of large requests lets garbage grow to the hard limit)", where)
		return
	}
	soft, err := goMemLimit(goMem)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if hard <= 0 {
		t.Errorf("%s: GOMEMLIMIT=%s without a hard memory limit", where, goMem)
		return
	}
	if float64(soft) > maxMemLimitShare*float64(hard) {
		t.Errorf("%s: GOMEMLIMIT=%s is over %.0f %% of the memory limit (%d bytes)", where, goMem, 100*maxMemLimitShare, hard)
	}
}

func TestGoMemLimitParse(t *testing.T) {
	for v, want := range map[string]int64{"200MiB": 200 << 20, "1GiB": 1 << 30, "4096": 4096, "12B": 12} {
		if got, err := goMemLimit(v); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"", "MiB", "-1MiB", "200MB", "lots"} {
		if _, err := goMemLimit(v); err == nil {
			t.Errorf("%q parsed", v)
		}
	}
}

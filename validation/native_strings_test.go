package validation

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// patternAlphabet holds what the contract's patterns tell apart: digits, the dot, the
// letters of the formats, every kind of blank (\s, \v which \s leaves out, U+3000 and the
// other separators), C0 and C1 controls, DEL, the invisible direction marks and their
// neighbours, CJK, an emoji, and an invalid UTF-8 byte.
var patternAlphabet = []string{"0", "1", "3", "9", "5", ".", "a", "X", "H", " ", "\t", "\n", "\v", "\f", "\r", "\u3000", "\u00a0", "\u2028",
	"\u2029", "\u1680", "\x00", "\x1f", "\x7f", "\u0080", "\u009f", "\u00a1", "\u200d", "\u200e", "\u200f", "\u2010", "\u2029", "\u202a",
	"\u202e", "\u202f", "\u2065", "\u2066", "\u2069", "\u206a", "证", "𠀀", "\xff", "\ufffd", "-", ":"}

func randomPatternInput(rnd *rand.Rand) string {
	var b strings.Builder
	for range rnd.IntN(22) {
		b.WriteString(patternAlphabet[rnd.IntN(len(patternAlphabet))])
	}
	return b.String()
}

// Each pattern's Go matcher agrees with Go's regexp (protovalidate's engine) on 200,000
// random strings per pattern, and on each's typical accepted values.
func TestPatternMatchersAgreeWithRegexp(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 10_000
	}
	typical := []string{"", "13800001111", "12800001111", "1380000111", "123456", "12345678901234567", "6222021234567890123",
		"95.5", "99", "9.", ".5", "1.2.3", "测试张三", "a b", " ", "\u3000", "ok\u202e"}
	for pattern, match := range patternMatchers {
		re := regexp.MustCompile(pattern)
		check := func(s string) {
			if got, want := match(s), re.MatchString(s); got != want {
				t.Fatalf("pattern %q on %q: Go %v, regexp %v", pattern, s, got, want)
			}
		}
		for _, s := range typical {
			check(s)
		}
		for range n {
			check(randomPatternInput(rnd))
		}
	}
}

func FuzzPatternMatchersAgreeWithRegexp(f *testing.F) {
	f.Add("13800001111")
	f.Add("95.5")
	f.Add(" \u3000x\u202e")
	res := map[string]*regexp.Regexp{}
	for pattern := range patternMatchers {
		res[pattern] = regexp.MustCompile(pattern)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for pattern, match := range patternMatchers {
			if got, want := match(s), res[pattern].MatchString(s); got != want {
				t.Fatalf("pattern %q on %q: Go %v, regexp %v", pattern, s, got, want)
			}
		}
	})
}

package observe

import (
	"regexp"
	"strings"
	"testing"
)

// validRequestID accepts exactly what `^[A-Za-z0-9._:-]{1,128}$` matches.
func FuzzValidRequestID(f *testing.F) {
	plain := regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	for _, s := range []string{"", "a", "abc-123", "A.b_c:d-9", strings.Repeat("x", 128), strings.Repeat("x", 129),
		"a b", "a\n", "a/b", "é", "a\x00", "\xff", "0123456789abcdef0123456789abcdef", "a,b", "[a]", "a`", "a@", "Z{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validRequestID(s), plain.MatchString(s); got != want {
			t.Fatalf("validRequestID(%q) = %v, the expression says %v", s, got, want)
		}
	})
}

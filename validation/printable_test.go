package validation_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/validation"
)

// TestFreeTextIsBoundedAndPrintable: eviName and mark refuse control characters and the
// invisible direction marks and overrides (reported as string.printable), eviName also
// blank text (string.not_blank); every free-text field has a maximum length.
func TestFreeTextIsBoundedAndPrintable(t *testing.T) {
	v := newValidator(t)
	for _, tc := range []struct {
		name   string
		mutate func(*req)
		field  string
		rule   string
	}{
		{"eviName with NUL", func(r *req) { r.EviName = "a\x00b" }, "eviName", "string.printable"},
		{"eviName with CR LF", func(r *req) { r.EviName = "a\r\nb" }, "eviName", "string.printable"},
		{"eviName with ESC", func(r *req) { r.EviName = "a\x1b[2Jb" }, "eviName", "string.printable"},
		{"eviName with U+202E", func(r *req) { r.EviName = "evidence\u202Egpj.exe" }, "eviName", "string.printable"},
		{"eviName with U+200F", func(r *req) { r.EviName = "a\u200Fb" }, "eviName", "string.printable"},
		{"eviName with U+2066", func(r *req) { r.EviName = "a\u2066b" }, "eviName", "string.printable"},
		{"eviName blank", func(r *req) { r.EviName = " \u3000 " }, "eviName", "string.not_blank"},
		{"mark with U+202E", func(r *req) { r.Mark = "note\u202E" }, "mark", "string.printable"},
		{"mark with a newline", func(r *req) { r.Mark = "line\nline" }, "mark", "string.printable"},
		{"mark of 501 characters", func(r *req) { r.Mark = strings.Repeat("备", 501) }, "mark", "string.max_len"},
		{"name of 101 characters", func(r *req) { r.Name = strings.Repeat("张", 101) }, "name", "string.max_len"},
		{"a 200,000-character name", func(r *req) { r.Name = strings.Repeat("n", 200000) }, "name", "string.max_len"},
		{"verifySerialNumber of 65", func(r *req) { r.GetThreeElements().VerifySerialNumber = strings.Repeat("9", 65) }, "threeElements.verifySerialNumber", "string.max_len"},
		{"supplier of 101", func(r *req) { r.GetThreeElements().InfoVerifySupplier = strings.Repeat("s", 101) }, "threeElements.infoVerifySupplier", "string.max_len"},
		{"cardPortrait of 65", func(r *req) { r.CardPortrait = strings.Repeat("f", 65) }, "cardPortrait", "string.max_len"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := seedRequest(t)
			tc.mutate(r)
			err := v.Validate(r)
			var verr *validation.Error
			if !errors.As(err, &verr) {
				t.Fatalf("accepted: %v", err)
			}
			for _, fv := range verr.Violations {
				if fv.Field == tc.field && strings.HasPrefix(fv.Rule, tc.rule) {
					return
				}
			}
			t.Errorf("violations %+v, want %s at %s", verr.Violations, tc.rule, tc.field)
		})
	}
	ok := seedRequest(t)
	ok.Mark, ok.EviName = "备注 note (ok)", "测试 evidence ‹1›"
	if err := v.Validate(ok); err != nil {
		t.Errorf("printable text refused: %v", err)
	}
}

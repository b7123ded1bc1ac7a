package authtoken_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/internal/authtoken"
)

// TestParseQuotesNothing: a tokens file that cannot be used is refused naming its file
// and line, without quoting anything from it (fields swapped put the token first), and
// the names the service gives callers itself are refused as caller names.
func TestParseQuotesNothing(t *testing.T) {
	const tok = "s3cr3t-token-value-0123456789"
	for _, tc := range []struct{ name, content, want string }{
		{"fields swapped", tok + " billing\n", "line 1"},
		{"short token", "billing short\n", "line 1"},
		{"reserved name", "anonymous " + tok + "\n", "reserves"},
		{"reserved name, other case", "# comment\nPublic " + tok + "\n", "line 2"},
		{"reserved name unauthenticated", "unauthenticated " + tok + "\n", "reserves"},
		{"given twice", "a " + tok + "\nb " + tok + "\n", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "tokens")
			if err := os.WriteFile(f, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := authtoken.Parse(f, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("the error quotes the file: %v", err)
			}
		})
	}
	_, err := authtoken.Parse("", tok+":zz")
	if err == nil || strings.Contains(err.Error(), tok) {
		t.Errorf("AUTH_TOKEN_HASHES with a token where the caller goes: %v", err)
	}
	for name, want := range map[string]bool{"billing": true, "crm.internal": true, "anonymous": false, "ANONYMOUS": false, "a:b": false, "": false} {
		if got := authtoken.ValidIdentity(name); got != want {
			t.Errorf("ValidIdentity(%q) = %v", name, got)
		}
	}
}

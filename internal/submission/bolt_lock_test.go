package submission_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// A second opener of the same file (another replica on a shared volume) is told to use
// PostgreSQL, not handed bbolt's bare timeout.
func TestBoltRefusesSecondOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub.db")
	first, err := submission.OpenBolt(path, boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := submission.OpenBolt(path, boltOptions)
	if err == nil {
		second.Close()
		t.Fatal("a second opener got the file")
	}
	if !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("error does not point to PostgreSQL: %v", err)
	}
}

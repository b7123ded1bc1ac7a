package service

import (
	"os"
	"path/filepath"
)

// spoolPattern names an upload's temporary file while it has a name: only between its
// creation and its removal a moment later, where the file system cannot make unnamed
// files (and in earlier versions, for the whole upload).
const spoolPattern = "esign-evidence-upload-*"

// openSpool opens a new temporary file for an upload in os.TempDir() ($TMPDIR) that
// has no name, so that it goes with the process however the process ends (a SIGKILL
// included): an unnamed file (O_TMPFILE) where the system offers one, else a file
// removed as soon as it is created.
func openSpool() (*os.File, error) {
	dir := os.TempDir()
	if f, err := openUnnamed(dir); err == nil {
		return f, nil
	}
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// SweepSpools removes upload temporary files that still have a name in os.TempDir():
// left by a process of an earlier version, or by one killed between creating and
// removing one. A process still using such a file keeps it (removing a name does not
// close it). It returns how many were removed.
func SweepSpools() int {
	names, _ := filepath.Glob(filepath.Join(os.TempDir(), spoolPattern))
	n := 0
	for _, name := range names {
		if os.Remove(name) == nil {
			n++
		}
	}
	return n
}

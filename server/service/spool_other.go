//go:build !linux

package service

import (
	"errors"
	"os"
)

// openUnnamed: only Linux makes unnamed files; elsewhere a file is created and removed.
func openUnnamed(string) (*os.File, error) {
	return nil, errors.New("unnamed files are a Linux feature")
}

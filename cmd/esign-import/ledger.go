package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ledger remembers, between runs, the file ID each image got when it was uploaded through
// a service. The service knows a request by a hash of all its fields, file IDs included,
// so a row can be shown to the service again as the same request only with the file IDs
// it was first sent with: with them an unchanged row is replayed and an edited one is
// refused as a different request (IDEMPOTENCY_KEY_REUSED), and nothing is uploaded
// again. Entries are keyed by the service's address (file IDs belong to the e签宝 app
// behind it) and the image's content hash; the file holds no file names and no personal
// data. It is a JSON Lines file, appended to and synced after each upload, so that an
// image uploaded by a run that is killed a moment later is still known to the next one.
type ledger struct {
	path string
	addr string

	mu      sync.Mutex
	entries map[string]ledgerEntry // by image key, for addr
	f       *os.File               // opened for appending on the first put
	err     error                  // the first error appending, reported at the end
}

// ledgerEntry is one line of the file.
type ledgerEntry struct {
	Addr     string    `json:"addr"`
	Image    string    `json:"image"` // SHA-256 of the content, hex, and the extension
	FileID   string    `json:"fileId"`
	Uploaded time.Time `json:"uploaded"`
}

// defaultLedger is where the ledger lives unless -uploads names a file: the user's cache
// directory, so that runs from any directory share it.
func defaultLedger() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "esign-import", "uploads.jsonl")
}

// openLedger reads the ledger at path for the service at addr; a missing file is an
// empty ledger. An empty path gives a ledger that remembers nothing beyond the run.
func openLedger(path, addr string) (*ledger, error) {
	l := &ledger{path: path, addr: addr, entries: map[string]ledgerEntry{}}
	if path == "" {
		return l, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e ledgerEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A line cut short by a crash while it was appended is the last one: skip it.
			continue
		}
		if e.Addr == addr && e.Image != "" && e.FileID != "" {
			l.entries[e.Image] = e
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// get returns the file ID an image got, and when.
func (l *ledger) get(image string) (ledgerEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[image]
	return e, ok
}

// put records an upload before its file ID is used in any request.
func (l *ledger) put(image, fileID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := ledgerEntry{Addr: l.addr, Image: image, FileID: fileID, Uploaded: at.UTC()}
	l.entries[image] = e
	if l.path == "" || l.err != nil {
		return
	}
	if l.f == nil {
		if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
			l.err = err
			return
		}
		if l.f, l.err = os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); l.err != nil {
			return
		}
	}
	b, _ := json.Marshal(e)
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		l.err = err
		return
	}
	l.err = l.f.Sync()
}

// close closes the file and returns the first error met while appending.
func (l *ledger) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		if err := l.f.Close(); err != nil && l.err == nil {
			l.err = err
		}
	}
	return l.err
}

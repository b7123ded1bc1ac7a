package submission_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// recordBytesBound is the most a kept record may cost either store: OPERATIONS.md
// ("Retention") sizes with the measured cost (about 590 bytes in bbolt with the retention
// index's entry, 460 in PostgreSQL), and states this bound. A store layout that costs more must change the sizing (and this
// bound) with it.
const recordBytesBound = 700

// recordCount is how many records the measurement writes: enough for the B-tree's pages
// to have split as they do in a large store. RECORD_SIZE_RECORDS overrides it (the
// figures in OPERATIONS.md were also taken at 200,000 for bbolt, 20,000 for PostgreSQL).
func recordCount(t *testing.T) int {
	if v := os.Getenv("RECORD_SIZE_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RECORD_SIZE_RECORDS=%q", v)
		}
		return n
	}
	return 10000
}

// writeRecords writes n records to s as the service does for a keyed call that succeeds:
// the claim, then the result over it. Keys are customBizIds of the longest length (36
// characters), in random order as real keys arrive, under a caller's namespace; the
// result is an eviPointId as e签宝 returns it.
func writeRecords(t *testing.T, s submission.Store, n int) {
	t.Helper()
	ctx := context.Background()
	keys := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				b := make([]byte, 18+32+12)
				_, _ = rand.Read(b)
				key := submission.Key{Op: evidencePoint.Name, Namespace: "billing-service", CustomBizID: hex.EncodeToString(b[:18])}
				now := time.Now()
				claim := &submission.Record{Key: key, Fingerprint: b[18:50], State: submission.StateInProgress, Attempts: 1,
					AttemptID: hex.EncodeToString(b[50:]), LeaseUntil: now.Add(45 * time.Second), CreatedAt: now, UpdatedAt: now}
				err := s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) { return claim, nil })
				if err == nil {
					done := *claim
					done.State, done.Result = submission.StateSucceeded, fmt.Sprintf("P%019d", 1_700_000_000_000_000_000+i)
					done.AttemptID, done.LeaseUntil, done.UpdatedAt = "", time.Time{}, time.Now()
					err = s.Mutate(ctx, key, func(*submission.Record) (*submission.Record, error) { return &done, nil })
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		keys <- i
	}
	close(keys)
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
}

// TestRecordBytes measures what a kept submission costs each store, the figure
// OPERATIONS.md sizes volumes and databases with: bbolt's database size (the pages in
// use and free, which the file never falls below), and PostgreSQL's table with its
// indexes and TOAST, each over the records written.
func TestRecordBytes(t *testing.T) {
	n := recordCount(t)
	t.Run("bolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub.db")
		size := func() int64 {
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var sz int64
			_ = db.View(func(tx *bolt.Tx) error { sz = tx.Size(); return nil })
			return sz
		}
		s, err := submission.OpenBolt(path, boltOptions)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		empty := size()
		s, err = submission.OpenBolt(path, boltOptions)
		if err != nil {
			t.Fatal(err)
		}
		writeRecords(t, s, n)
		s.Close()
		per := float64(size()-empty) / float64(n)
		// The file is extended ahead of the database (doubling up to 1 GiB, then by 1 GiB),
		// sparsely: what it occupies on disk is its allocated blocks.
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		t.Logf("bbolt: %d records, %.0f bytes each (database %d bytes; the file %d bytes long, %d allocated)", n, per, size(), st.Size, st.Blocks*512)
		if per > recordBytesBound {
			t.Errorf("a record costs %.0f bytes in bbolt, more than the %d OPERATIONS.md sizes with", per, recordBytesBound)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		// Half as many: each write is a transaction of its own (bbolt batches them), and
		// a heap page holds the same rows however many there are.
		n := max(1, n/2)
		dsn := pgtest.DSN(t)
		s, err := submission.OpenPostgres(context.Background(), dsn, pgOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		size := func() int64 {
			// VACUUM: the dead versions the result's update left are reused space, as
			// autovacuum leaves them in a running database.
			if _, err := conn.Exec(context.Background(), "VACUUM esign_evidence_submissions"); err != nil {
				t.Fatal(err)
			}
			var sz int64
			if err := conn.QueryRow(context.Background(), "SELECT pg_total_relation_size('esign_evidence_submissions')").Scan(&sz); err != nil {
				t.Fatal(err)
			}
			return sz
		}
		empty := size()
		writeRecords(t, s, n)
		total := size()
		per := float64(total-empty) / float64(n)
		t.Logf("PostgreSQL: %d records, %.0f bytes each (table, indexes and TOAST: %d bytes)", n, per, total)
		if per > recordBytesBound {
			t.Errorf("a record costs %.0f bytes in PostgreSQL, more than the %d OPERATIONS.md sizes with", per, recordBytesBound)
		}
	})
}

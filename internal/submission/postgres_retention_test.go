package submission_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// PostgreSQL's retention removes in several bounded statements, each going on from the
// last one's newest row: every old row goes, across more rows than one statement takes,
// and the running leases among the oldest rows, and the recent rows, stay.
func TestPostgresRetentionInBatches(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	store, err := submission.OpenPostgres(ctx, dsn, pgOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// 2,500 old rows a millisecond apart, the 7 oldest of them with a running lease
	// (every tenth of those sharing its time with the next), and 100 recent rows.
	if _, err := conn.Exec(ctx, `INSERT INTO esign_evidence_submissions
		(operation, namespace, custom_biz_id, fingerprint, state, lease_until, created_at, updated_at)
		SELECT 'evidence-point', 'batches', 'old-' || i, '\x01', CASE WHEN i <= 7 THEN 'in_progress' ELSE 'succeeded' END,
			CASE WHEN i <= 7 THEN now() + interval '1 hour' ELSE now() - interval '3 days' END,
			now() - interval '3 days', now() - interval '2 days' + (i / 10 * 10) * interval '1 millisecond'
		FROM generate_series(1, 2500) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO esign_evidence_submissions
		(operation, namespace, custom_biz_id, fingerprint, state, lease_until, created_at, updated_at)
		SELECT 'evidence-point', 'batches', 'recent-' || i, '\x01', 'succeeded', now(), now(), now()
		FROM generate_series(1, 100) i`); err != nil {
		t.Fatal(err)
	}
	n, err := store.DeleteBefore(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 2500-7 {
		t.Fatalf("DeleteBefore removed %d (%v), want %d", n, err, 2500-7)
	}
	var left, running int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'in_progress') FROM esign_evidence_submissions WHERE namespace = 'batches'`).Scan(&left, &running); err != nil {
		t.Fatal(err)
	}
	if left != 107 || running != 7 {
		t.Errorf("%d rows left, %d of them running leases: want 107 and 7", left, running)
	}
}

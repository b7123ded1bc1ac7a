package submission

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresStore keeps submissions in PostgreSQL, for several replicas. Mutate holds a
// transaction-scoped advisory lock on the key, so a read-modify-write of one key is
// serialised across every replica, including the first insert of a key.
type PostgresStore struct {
	pool *pgxpool.Pool
}

// schemaVersion is the version migrate brings the schema to.
const schemaVersion = 1

// migrations[i] brings the schema from version i to i+1.
var migrations = []string{
	`CREATE TABLE esign_evidence_submissions (
		namespace      text        NOT NULL,
		custom_biz_id  text        NOT NULL,
		fingerprint    bytea       NOT NULL,
		state          text        NOT NULL,
		evi_point_id   text        NOT NULL DEFAULT '',
		esign_code     integer     NOT NULL DEFAULT 0,
		attempts       integer     NOT NULL DEFAULT 0,
		attempt_id     text        NOT NULL DEFAULT '',
		lease_until    timestamptz NOT NULL,
		created_at     timestamptz NOT NULL,
		updated_at     timestamptz NOT NULL,
		PRIMARY KEY (namespace, custom_biz_id)
	)`,
}

// OpenPostgres connects to dsn and migrates the schema.
func OpenPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included: say only what it is.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	s := &PostgresStore{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrate brings the schema to schemaVersion. Replicas starting together take turns
// through an advisory lock.
func (s *PostgresStore) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('esign_evidence_schema', 0))`); err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS esign_evidence_schema (version integer NOT NULL)`); err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM esign_evidence_schema`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO esign_evidence_schema (version) VALUES (0)`); err != nil {
				return fmt.Errorf("migrating: %w", err)
			}
		case err != nil:
			return fmt.Errorf("migrating: %w", err)
		}
		if v > schemaVersion {
			return fmt.Errorf("the database schema is version %d, newer than this binary's %d", v, schemaVersion)
		}
		for ; v < schemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrating to version %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE esign_evidence_schema SET version = $1`, schemaVersion)
		return err
	})
}

const pgColumns = `fingerprint, state, evi_point_id, esign_code, attempts, attempt_id, lease_until, created_at, updated_at`

func scanRecord(key Key, row pgx.Row) (*Record, error) {
	r := &Record{Key: key}
	var state string
	err := row.Scan(&r.Fingerprint, &state, &r.EviPointID, &r.EsignCode, &r.Attempts, &r.AttemptID, &r.LeaseUntil, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	r.State = State(state)
	return r, nil
}

// Mutate implements Store.
func (s *PostgresStore) Mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, key.Namespace, key.CustomBizID); err != nil {
			return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		cur, err := scanRecord(key, tx.QueryRow(ctx, `SELECT `+pgColumns+` FROM esign_evidence_submissions WHERE namespace = $1 AND custom_biz_id = $2`,
			key.Namespace, key.CustomBizID))
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO esign_evidence_submissions (namespace, custom_biz_id, `+pgColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (namespace, custom_biz_id) DO UPDATE SET
				fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, evi_point_id = EXCLUDED.evi_point_id,
				esign_code = EXCLUDED.esign_code, attempts = EXCLUDED.attempts, attempt_id = EXCLUDED.attempt_id,
				lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at`,
			key.Namespace, key.CustomBizID, next.Fingerprint, string(next.State), next.EviPointID, next.EsignCode,
			next.Attempts, next.AttemptID, next.LeaseUntil.UTC(), next.CreatedAt.UTC(), next.UpdatedAt.UTC())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		return nil
	})
}

// Get implements Store.
func (s *PostgresStore) Get(ctx context.Context, key Key) (*Record, error) {
	return scanRecord(key, s.pool.QueryRow(ctx, `SELECT `+pgColumns+` FROM esign_evidence_submissions WHERE namespace = $1 AND custom_biz_id = $2`,
		key.Namespace, key.CustomBizID))
}

// Close implements Store.
func (s *PostgresStore) Close() error {
	s.pool.Close()
	return nil
}

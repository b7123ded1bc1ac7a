package submission

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/internal/guard"
)

// PostgresStore keeps submissions in PostgreSQL, for several replicas. Mutate holds a
// transaction-scoped advisory lock on the key, so a read-modify-write of one key is
// serialised across every replica, including the first insert of a key.
type PostgresStore struct {
	pool  *pgxpool.Pool
	opts  PostgresOptions
	clock clock.Clock
}

// PostgresOptions configures a PostgresStore.
type PostgresOptions struct {
	// LegacyOp is the operation whose records a schema from before records were named by
	// operation (version 1) holds: migrating names them so. Required to migrate such a
	// schema when it holds records.
	LegacyOp Op
	// Clock is the time source of the shared quota's back-off; the real clock when nil.
	// (The quota and the retention run on the database's clock.)
	Clock clock.Clock
	// NoMigrate opens the store without changing its schema, so the role needs no DDL:
	// opening fails with ErrSchemaNotCurrent unless MigratePostgres brought the schema to
	// this binary's version first.
	NoMigrate bool
}

// ErrSchemaNotCurrent is why OpenPostgres with NoMigrate refuses a database whose schema
// is missing or older than this binary's: it must be migrated first.
var ErrSchemaNotCurrent = errors.New("the database schema is not at this binary's version")

// schemaVersion is the version migrate brings the schema to.
const schemaVersion = 4

// migrations[i] brings the schema from version i to i+1.
var migrations = []func(ctx context.Context, tx pgx.Tx, o PostgresOptions) error{
	execMigration(`CREATE TABLE esign_evidence_submissions (
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
	)`),
	nameOperations,
	// The app's e签宝 quota, shared by every replica: one row per app holding the
	// theoretical arrival time of GCRA.
	execMigration(`CREATE TABLE esign_evidence_quota (
		app text        PRIMARY KEY,
		tat timestamptz NOT NULL
	)`),
	// A record's result is whatever its operation keeps (Operation.Encode); the first
	// schema named its column after the first operation's.
	execMigration(`ALTER TABLE esign_evidence_submissions RENAME COLUMN evi_point_id TO result`),
}

func execMigration(sql string) func(context.Context, pgx.Tx, PostgresOptions) error {
	return func(ctx context.Context, tx pgx.Tx, _ PostgresOptions) error {
		_, err := tx.Exec(ctx, sql)
		return err
	}
}

// nameOperations keys submissions by operation too; the records already there are the
// legacy operation's. Records older than the retention are found by updated_at.
func nameOperations(ctx context.Context, tx pgx.Tx, o PostgresOptions) error {
	if o.LegacyOp == "" {
		var found bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM esign_evidence_submissions)`).Scan(&found); err != nil {
			return err
		}
		if found {
			return errors.New("the table holds submissions from before they were named by operation, and no legacy operation was given to name them (PostgresOptions.LegacyOp)")
		}
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE esign_evidence_submissions ADD COLUMN operation text`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE esign_evidence_submissions SET operation = $1`, string(o.LegacyOp)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `ALTER TABLE esign_evidence_submissions ALTER COLUMN operation SET NOT NULL;
	ALTER TABLE esign_evidence_submissions DROP CONSTRAINT esign_evidence_submissions_pkey;
	ALTER TABLE esign_evidence_submissions ADD PRIMARY KEY (operation, namespace, custom_biz_id);
	CREATE INDEX esign_evidence_submissions_updated_at ON esign_evidence_submissions (updated_at)`)
	return err
}

// OpenPostgres connects to dsn and migrates the schema, or with NoMigrate checks that it
// is at this binary's version.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*PostgresStore, error) {
	s, err := connectPostgres(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if opts.NoMigrate {
		err = s.checkSchema(ctx)
	} else {
		_, err = s.migrate(ctx)
	}
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// MigratePostgres connects to dsn, brings the schema to this binary's version and
// disconnects; it returns the version the schema had and the one it has now.
func MigratePostgres(ctx context.Context, dsn string, opts PostgresOptions) (from, to int, err error) {
	s, err := connectPostgres(ctx, dsn, opts)
	if err != nil {
		return 0, 0, err
	}
	defer s.pool.Close()
	from, err = s.migrate(ctx)
	if err != nil {
		return from, from, err
	}
	return from, schemaVersion, nil
}

func connectPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*PostgresStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included: say only what it is.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return &PostgresStore{pool: pool, opts: opts, clock: clock.Or(opts.Clock)}, nil
}

// checkSchema reads the schema's version, changing nothing: it must be schemaVersion.
func (s *PostgresStore) checkSchema(ctx context.Context) error {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT version FROM esign_evidence_schema`).Scan(&v)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", errors.Is(err, pgx.ErrNoRows): // 42P01: undefined_table
		return fmt.Errorf("%w: there is none yet (this binary's is %d)", ErrSchemaNotCurrent, schemaVersion)
	case err != nil:
		return fmt.Errorf("reading the schema version: %w", err)
	case v < schemaVersion:
		return fmt.Errorf("%w: it is version %d, older than this binary's %d", ErrSchemaNotCurrent, v, schemaVersion)
	case v > schemaVersion:
		return fmt.Errorf("the database schema is version %d, newer than this binary's %d", v, schemaVersion)
	}
	return nil
}

// migrate brings the schema to schemaVersion and returns the version it had. Replicas
// starting together take turns through an advisory lock.
func (s *PostgresStore) migrate(ctx context.Context) (int, error) {
	from := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
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
		from = v
		for ; v < schemaVersion; v++ {
			if err := migrations[v](ctx, tx, s.opts); err != nil {
				return fmt.Errorf("migrating to version %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE esign_evidence_schema SET version = $1`, schemaVersion)
		return err
	})
	return from, err
}

const pgColumns = `fingerprint, state, result, esign_code, attempts, attempt_id, lease_until, created_at, updated_at`

func scanRecord(key Key, row pgx.Row) (*Record, error) {
	r := &Record{Key: key}
	var state string
	err := row.Scan(&r.Fingerprint, &state, &r.Result, &r.EsignCode, &r.Attempts, &r.AttemptID, &r.LeaseUntil, &r.CreatedAt, &r.UpdatedAt)
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
	return s.MutateAt(ctx, key, func(cur *Record, _ time.Time) (*Record, error) { return fn(cur) })
}

// MutateAt implements ClockedStore: fn is given the database's time once the key is
// held, so every replica writes and judges leases on one clock.
func (s *PostgresStore) MutateAt(ctx context.Context, key Key, at func(cur *Record, now time.Time) (*Record, error)) error {
	if err := key.check(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT clock_timestamp() FROM pg_advisory_xact_lock(hashtext($1 || '/' || $2), hashtext($3))`,
			string(key.Op), key.Namespace, key.CustomBizID).Scan(&now); err != nil {
			return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		fn := func(cur *Record) (*Record, error) { return at(cur, now) }
		cur, err := scanRecord(key, tx.QueryRow(ctx, `SELECT `+pgColumns+` FROM esign_evidence_submissions WHERE operation = $1 AND namespace = $2 AND custom_biz_id = $3`,
			string(key.Op), key.Namespace, key.CustomBizID))
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO esign_evidence_submissions (operation, namespace, custom_biz_id, `+pgColumns+`)
			VALUES ($12, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (operation, namespace, custom_biz_id) DO UPDATE SET
				fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, result = EXCLUDED.result,
				esign_code = EXCLUDED.esign_code, attempts = EXCLUDED.attempts, attempt_id = EXCLUDED.attempt_id,
				lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at`,
			key.Namespace, key.CustomBizID, next.Fingerprint, string(next.State), next.Result, next.EsignCode,
			next.Attempts, next.AttemptID, next.LeaseUntil.UTC(), next.CreatedAt.UTC(), next.UpdatedAt.UTC(), string(key.Op))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		return nil
	})
}

// Get implements Store.
func (s *PostgresStore) Get(ctx context.Context, key Key) (*Record, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	return scanRecord(key, s.pool.QueryRow(ctx, `SELECT `+pgColumns+` FROM esign_evidence_submissions WHERE operation = $1 AND namespace = $2 AND custom_biz_id = $3`,
		string(key.Op), key.Namespace, key.CustomBizID))
}

// pgRetentionBatch bounds the rows one statement of DeleteBefore removes, so that no
// statement holds many row locks for long.
const pgRetentionBatch = 1000

// DeleteBefore implements Store, in statements of at most pgRetentionBatch rows taken
// in updated_at order from its index. Each goes on from the newest row the last one
// removed, so the rows it keeps (running leases) and the index entries of rows already
// removed (dead until vacuumed) are not read again and again; a row a keyed call holds
// at that moment is skipped (left for the next run) rather than waited for.
func (s *PostgresStore) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	var removed int64
	from := time.Time{} // no row is older
	for {
		var n int64
		var last *time.Time
		err := s.pool.QueryRow(ctx, `WITH gone AS (
				DELETE FROM esign_evidence_submissions WHERE ctid = ANY (ARRAY (
					SELECT ctid FROM esign_evidence_submissions
					WHERE updated_at >= $2 AND updated_at < $1 AND (state <> 'in_progress' OR lease_until < now())
					ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED))
				RETURNING updated_at)
			SELECT count(*), max(updated_at) FROM gone`, cutoff.UTC(), from.UTC(), pgRetentionBatch).Scan(&n, &last)
		if err != nil {
			return removed, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
		removed += n
		if n < pgRetentionBatch || last == nil {
			return removed, nil
		}
		from = *last
	}
}

// Quota is the app's e签宝 quota of qps per second, shared by every replica on this
// database: GCRA over one row per app, one slot every guard.SlotInterval(qps) with no
// burst (so no window of guard.QuotaWindow carries more than qps slots, after an idle
// period too), updated by one atomic statement per call (one round trip, the row locked
// only for that statement), on the database's clock so the replicas' clocks do not
// matter. It is work-conserving: one busy replica can use the whole quota.
//
// While the database cannot be reached, Reserve fails and the guard uses its own
// limiter at the replica's share (guard.Config.Replicas) for the call; the shared row is
// tried again a second later.
func (s *PostgresStore) Quota(app string, qps float64, timeout time.Duration) guard.Quota {
	return &pgQuota{pool: s.pool, app: app, interval: guard.SlotInterval(qps), timeout: timeout, clock: s.clock}
}

type pgQuota struct {
	pool     *pgxpool.Pool
	app      string
	interval time.Duration
	timeout  time.Duration
	clock    clock.Clock
	// downUntil (unix nanoseconds) skips the database after a failure.
	downUntil atomic.Int64
	// ready is set once the app's row exists.
	ready atomic.Bool
}

// errQuotaDown reports that the shared quota was skipped after a recent failure.
var errQuotaDown = errors.New("shared quota unreachable")

func (q *pgQuota) Reserve(ctx context.Context, maxWait time.Duration) (time.Duration, bool, error) {
	if q.clock.Now().UnixNano() < q.downUntil.Load() {
		return 0, false, errQuotaDown
	}
	ctx, cancel := clock.WithTimeout(ctx, q.clock, q.timeout)
	defer cancel()
	// GCRA without burst: the next slot is at max(tat, now); taking it moves tat on by
	// one interval past it. The app's row is created on first use.
	var waitSecs float64
	var ok bool
	if !q.ready.Load() {
		if _, err := q.pool.Exec(ctx, `INSERT INTO esign_evidence_quota (app, tat) VALUES ($1, clock_timestamp()) ON CONFLICT (app) DO NOTHING`, q.app); err != nil {
			q.downUntil.Store(q.clock.Now().Add(time.Second).UnixNano())
			return 0, false, err
		}
		q.ready.Store(true)
	}
	err := q.pool.QueryRow(ctx, `WITH cur AS (
			SELECT greatest(tat, clock_timestamp()) AS base, clock_timestamp() AS now FROM esign_evidence_quota WHERE app = $1 FOR UPDATE
		), upd AS (
			UPDATE esign_evidence_quota q SET tat = cur.base + make_interval(secs => $2)
			FROM cur WHERE q.app = $1 AND cur.base - cur.now <= make_interval(secs => $3)
			RETURNING 1
		)
		SELECT coalesce((SELECT extract(epoch FROM base - now) FROM cur), 0)::float8,
			EXISTS (SELECT 1 FROM upd)`,
		q.app, q.interval.Seconds(), maxWait.Seconds()).Scan(&waitSecs, &ok)
	if err != nil {
		q.downUntil.Store(q.clock.Now().Add(time.Second).UnixNano())
		return 0, false, err
	}
	return time.Duration(waitSecs * float64(time.Second)), ok, nil
}

// Close implements Store.
func (s *PostgresStore) Close() error {
	s.pool.Close()
	return nil
}

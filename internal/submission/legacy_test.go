package submission_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// The stores are told which operation their records from before operations were named
// belong to (LegacyOp); nothing in the package names one. The files and schemas of the
// last release itself are read back in cmd/esign-evidence (TestStoresOfTheLastRelease).

// bbolt: the legacy operation's records are in the plain "submissions" bucket, where
// files from before operations were named hold every record; another operation's are
// apart. Which bucket is read is the option's doing.
func TestBoltLegacyOperationIsThePlainBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub.db")
	s, err := submission.OpenBolt(path, boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, s, "")
	first, err := r.submit(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	other := submission.Key{Op: "another-op", CustomBizID: key.CustomBizID}
	if rec, err := s.Get(context.Background(), other); err != nil || rec != nil {
		t.Fatalf("another operation sees the key's record: %+v %v", rec, err)
	}
	s.Close()

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var buckets []string
	var inPlain bool
	_ = db.View(func(tx *bolt.Tx) error {
		inPlain = tx.Bucket([]byte("submissions")).Get([]byte("\x00"+key.CustomBizID)) != nil
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error { buckets = append(buckets, string(name)); return nil })
	})
	db.Close()
	if !inPlain {
		t.Fatalf("the legacy operation's record is not in the plain bucket; buckets %v", buckets)
	}

	// Opened again as the service opens it: a replay, nothing sent.
	again, err := submission.OpenBolt(path, boltOptions)
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, again, "")
	res, err := r2.submit(context.Background(), "p")
	if err != nil || !res.Replayed || evi(res) != evi(first) || r2.sim.Count() != 0 {
		t.Fatalf("replay: %+v %v, sent %d", res, err, r2.sim.Count())
	}
	again.Close()

	// Without the option the plain bucket is nobody's.
	bare, err := submission.OpenBolt(path, submission.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if rec, err := bare.Get(context.Background(), key); err != nil || rec != nil {
		t.Fatalf("without a legacy operation: %+v %v", rec, err)
	}
}

// PostgreSQL: a schema of version 1 (records not named by operation) is migrated with
// its records named the legacy operation, and they replay; without a legacy operation
// the migration refuses, saying so.
func TestPostgresLegacyOperationNamesVersion1Records(t *testing.T) {
	versionOne := func(t *testing.T, fingerprint []byte) string {
		dsn := pgtest.DSN(t)
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// The schema as version 1 made it, with one succeeded submission.
		for _, sql := range []string{
			`CREATE TABLE esign_evidence_schema (version integer NOT NULL)`,
			`INSERT INTO esign_evidence_schema (version) VALUES (1)`,
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
		} {
			if _, err := conn.Exec(context.Background(), sql); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(context.Background(), `INSERT INTO esign_evidence_submissions
			(namespace, custom_biz_id, fingerprint, state, evi_point_id, attempts, lease_until, created_at, updated_at)
			VALUES ('', $1, $2, 'succeeded', 'E-version-1', 1, now(), now(), now())`, key.CustomBizID, fingerprint); err != nil {
			t.Fatal(err)
		}
		return dsn
	}
	sub, err := submission.New(submission.Config{Store: storeKinds["bolt"](t), FingerprintKeys: [][]byte{fpKey}})
	if err != nil {
		t.Fatal(err)
	}
	fp := sub.Fingerprint([]byte("p"))[0]

	t.Run("named", func(t *testing.T) {
		s, err := submission.OpenPostgres(context.Background(), versionOne(t, fp), pgOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r := newRig(t, s, "")
		res, err := r.submit(context.Background(), "p")
		if err != nil || !res.Replayed || evi(res) != "E-version-1" || r.sim.Count() != 0 {
			t.Fatalf("replay: %+v %v, sent %d", res, err, r.sim.Count())
		}
		if rec, err := s.Get(context.Background(), submission.Key{Op: "another-op", CustomBizID: key.CustomBizID}); err != nil || rec != nil {
			t.Fatalf("another operation sees it: %+v %v", rec, err)
		}
	})
	t.Run("unnamed", func(t *testing.T) {
		s, err := submission.OpenPostgres(context.Background(), versionOne(t, fp), submission.PostgresOptions{})
		if err == nil {
			s.Close()
			t.Fatal("a version-1 schema with records was migrated without a legacy operation")
		}
		if !strings.Contains(err.Error(), "LegacyOp") {
			t.Errorf("the error does not say what is missing: %v", err)
		}
	})
}

// A key names its operation: without one, nothing is looked up, stored or sent.
func TestKeyWithoutOperationRefused(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) submission.Store) {
		r := newRig(t, open(t), "")
		unnamed := submission.Key{CustomBizID: key.CustomBizID}
		if _, err := r.sub.Lookup(context.Background(), unnamed); !errors.Is(err, submission.ErrNoOperation) {
			t.Errorf("Lookup: %v", err)
		}
		if _, err := r.store.Get(context.Background(), unnamed); !errors.Is(err, submission.ErrNoOperation) {
			t.Errorf("Get: %v", err)
		}
		err := r.store.Mutate(context.Background(), unnamed, func(*submission.Record) (*submission.Record, error) {
			return &submission.Record{Key: unnamed, State: submission.StateFailed}, nil
		})
		if !errors.Is(err, submission.ErrNoOperation) {
			t.Errorf("Mutate: %v", err)
		}
		nameless := evidencePoint
		nameless.Name = ""
		if _, err := submission.Submit(context.Background(), r.sub, r.guard, nameless, key, r.sub.Fingerprint([]byte("p")), r.send); !errors.Is(err, submission.ErrNoOperation) {
			t.Errorf("Submit: %v", err)
		}
		if n := r.sim.Count(); n != 0 {
			t.Errorf("e签宝 received %d", n)
		}
	})
}

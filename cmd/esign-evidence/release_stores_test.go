package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
)

// releaseDir holds the stores the binary of release a2028f7 wrote (see its README).
const releaseDir = "testdata/release-a2028f7"

// The stores written by the last release, from before internal/submission stopped
// naming the personal operation (an embedded store file and a PostgreSQL database, made
// by that release's binary), are read by this binary as they were: the submission that
// succeeded replays its eviPointId without reaching e签宝, the failed one reads as failed
// with e签宝's code, and another request under a used key is refused.
func TestStoresOfTheLastRelease(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(releaseDir, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expect map[string]map[string]string
	if err := json.Unmarshal(raw, &expect); err != nil {
		t.Fatal(err)
	}
	stores := map[string]func(t *testing.T) string{
		"bolt": func(t *testing.T) string {
			b, err := os.ReadFile(filepath.Join(releaseDir, "bolt-release.db"))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "sub.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return "DB_PATH=" + path
		},
		"postgres": func(t *testing.T) string {
			dsn := pgtest.DSN(t)
			restoreDump(t, dsn, filepath.Join(releaseDir, "postgres-release.sql"))
			return "DATABASE_URL=" + dsn
		},
	}
	bin := buildBinary(t)
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEsign(t)
			r := startBinary(t, bin, replicaEnv(t, e, store(t)))
			got := post(r, seedWithKey(t, "release-succeeded"), 0)
			if want := expect[name]["release-succeeded"]; got.code != 200 || got.id() != want || got.body["replayed"] != true {
				t.Fatalf("the release's submission: %d %v, want %s replayed", got.code, got.body, want)
			}
			if st := submissionState(t, r, "release-succeeded"); st["state"] != "SUBMISSION_STATE_SUCCEEDED" || st["eviPointId"] != expect[name]["release-succeeded"] {
				t.Errorf("its state: %v", st)
			}
			if st := submissionState(t, r, "release-failed"); st["state"] != "SUBMISSION_STATE_FAILED" || st["esignCode"] != float64(1435002) {
				t.Errorf("the failed one: %v", st)
			}
			other := bytes.Replace(seedWithKey(t, "release-succeeded"), []byte("个人实名证据"), []byte("另一个证据"), 1)
			if got := post(r, other, 0); got.code != 409 || got.reason() != "IDEMPOTENCY_KEY_REUSED" {
				t.Errorf("another request under the key: %d %v", got.code, got.body)
			}
			if n := e.count(""); n != 0 {
				t.Errorf("e签宝 received %d requests; everything was answered from the release's store", n)
			}
		})
	}
}

// restoreDump runs a plain pg_dump file (INSERTs, no COPY) against dsn; psql's
// meta-commands (\restrict) are skipped.
func restoreDump(t *testing.T, dsn, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sql strings.Builder
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, `\`) {
			sql.WriteString(line)
		}
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql.String()); err != nil {
		t.Fatalf("restoring %s: %v", path, err)
	}
}

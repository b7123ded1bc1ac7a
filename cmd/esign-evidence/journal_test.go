package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A journal entry that cannot be read does not keep the replica from starting, nor
// strand the other results in the journal: it is set aside (the journal's quarantine
// bucket, logged), and the readable result is replayed into the store.
func TestCorruptJournalEntryQuarantined(t *testing.T) {
	e := newEsign(t)
	journal := filepath.Join(t.TempDir(), "journal")
	db, err := bolt.Open(journal, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(map[string]any{
		"key":     map[string]string{"Op": "psn-realname", "Namespace": "", "CustomBizID": "journal-good-1"},
		"attempt": "a-1", "result": "PJOURNALED0001", "fp": []byte{1, 2, 3},
	})
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("pending"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("psn-realname\x00\x00journal-good-1"), good); err != nil {
			return err
		}
		return b.Put([]byte("psn-realname\x00\x00journal-torn-1"), []byte(`{"key":{"Op":"psn-re`))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	env := append(replicaEnv(t, e, "DB_PATH="+filepath.Join(t.TempDir(), "sub.db")), "JOURNAL_PATH="+journal)
	r := startBinary(t, buildBinary(t), env)
	eventually(t, 10*time.Second, "the readable result replayed", func() bool {
		return submissionState(t, r, "journal-good-1")["state"] == "SUBMISSION_STATE_SUCCEEDED"
	})
	if st := submissionState(t, r, "journal-good-1"); st["eviPointId"] != "PJOURNALED0001" {
		t.Fatalf("replayed as %v", st)
	}
	if log := r.stderr.String(); !strings.Contains(log, "quarantine") {
		t.Errorf("the set-aside entry is not logged:\n%s", log)
	}
}

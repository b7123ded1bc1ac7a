package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/esign-evidence/esign-evidence/internal/pgtest"
)

// The migration step and a runtime role without DDL, as the Kubernetes migration Job and
// the replicas run them: with STORE_MIGRATE=false the binary changes nothing in the
// schema and refuses one that is missing or older; `esign-evidence -migrate`, with a role
// that may create tables, brings it to this binary's version and exits; the replicas
// then serve with a role that may only read and write rows.
func TestMigrateStepAndRuntimeRoleWithoutDDL(t *testing.T) {
	ctx := context.Background()
	adminDSN := pgtest.DSN(t)
	admin, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := fmt.Sprintf("esign_runtime_%d", time.Now().UnixNano())
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN",
		// The runtime role may use the schema, not create in it (PostgreSQL before 15
		// grants CREATE on public to everyone).
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + role,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), adminDSN)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role)
			_, _ = c.Exec(context.Background(), "DROP ROLE "+role)
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	runtimeDSN := u.String()

	bin := buildBinary(t)
	e := newEsign(t)
	// exits runs the binary expecting it to end by itself, and returns its output.
	exits := func(env []string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", "")...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	schemaTable := func() bool {
		t.Helper()
		var exists bool
		if err := admin.QueryRow(ctx, `SELECT to_regclass('public.esign_evidence_schema') IS NOT NULL`).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		return exists
	}

	// The runtime role cannot migrate: with STORE_MIGRATE=false the binary says what to
	// do and creates nothing; left to migrate, the role's missing privilege stops it.
	out, err := exits(replicaEnv(t, e, "DATABASE_URL="+runtimeDSN, "STORE_MIGRATE=false"))
	if err == nil || !strings.Contains(out, "STORE_MIGRATE is false: run `esign-evidence -migrate` first") {
		t.Fatalf("STORE_MIGRATE=false on an empty database: %v\n%s", err, out)
	}
	if schemaTable() {
		t.Fatal("STORE_MIGRATE=false created the schema table")
	}
	if out, err := exits(replicaEnv(t, e, "DATABASE_URL="+runtimeDSN)); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("the runtime role migrated the schema itself (it must have no DDL): %v\n%s", err, out)
	}

	// The migration step, with the owner's role: only where the store is, no other setting.
	out, err = exits([]string{"DATABASE_URL=" + adminDSN}, "-migrate")
	if err != nil || !strings.Contains(out, "the PostgreSQL schema is at version 4 (was 0)") {
		t.Fatalf("-migrate: %v\n%s", err, out)
	}
	if _, err := admin.Exec(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+role); err != nil {
		t.Fatal(err)
	}

	// The replica with the runtime role serves and keeps records.
	r := startBinary(t, bin, replicaEnv(t, e, "DATABASE_URL="+runtimeDSN, "STORE_MIGRATE=false"))
	body := seedWithKey(t, "migrate-step-1")
	first := post(r, body, 0)
	if first.code != 200 || first.id() == "" {
		t.Fatalf("a keyed call on the runtime role: %d %v\n%s", first.code, first.body, r.stderr.String())
	}
	if again := post(r, body, 0); again.code != 200 || again.id() != first.id() || again.body["replayed"] != true {
		t.Errorf("the retry: %d %v, want %s replayed", again.code, again.body, first.id())
	}
	if n := e.count(""); n != 1 {
		t.Errorf("e签宝 received %d requests, want 1", n)
	}

	// Running the step again changes nothing; a schema older than the binary's is refused.
	if out, err := exits([]string{"DATABASE_URL=" + adminDSN}, "-migrate"); err != nil || !strings.Contains(out, "at version 4 (was 4)") {
		t.Errorf("-migrate again: %v\n%s", err, out)
	}
	if _, err := admin.Exec(ctx, "UPDATE esign_evidence_schema SET version = 2"); err != nil {
		t.Fatal(err)
	}
	if out, err := exits(replicaEnv(t, e, "DATABASE_URL="+runtimeDSN, "STORE_MIGRATE=false")); err == nil ||
		!strings.Contains(out, "version 2, older than this binary's 4") {
		t.Errorf("STORE_MIGRATE=false on an older schema: %v\n%s", err, out)
	}
}

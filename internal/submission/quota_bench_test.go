package submission_test

import (
	"context"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// BenchmarkQuota compares taking a slot from the in-process limiter with taking one
// from the quota shared through PostgreSQL (one statement per call).
func BenchmarkQuota(b *testing.B) {
	pg, err := submission.OpenPostgres(context.Background(), pgtest.DSN(b), submission.PostgresOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	for name, q := range map[string]guard.Quota{
		"local":    guard.NewLocalQuota(1e9, nil),
		"postgres": pg.Quota("bench-app", 1e9, time.Second),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, ok, err := q.Reserve(context.Background(), time.Second); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

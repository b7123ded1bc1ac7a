// Command esign-sim serves the offline e签宝 simulator on its own, for trying clients
// against it or for load tests:
//
//	esign-sim -addr 127.0.0.1:8443 -app-id demo-app -app-secret-file secret.txt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "esign-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", envOr("SIM_ADDR", "127.0.0.1:8000"), "listen address (SIM_ADDR)")
	appID := flag.String("app-id", envOr("SIM_APP_ID", "demo-app"), "the app ID it accepts (SIM_APP_ID)")
	secret := flag.String("app-secret", os.Getenv("SIM_APP_SECRET"), "the app secret it accepts (SIM_APP_SECRET)")
	secretFile := flag.String("app-secret-file", os.Getenv("SIM_APP_SECRET_FILE"), "file holding the app secret (SIM_APP_SECRET_FILE)")
	rev := flag.String("revision", envOr("SIM_REVISION", string(upstream.RevisionSeed)), "API revision to enforce: seed or 2025 (SIM_REVISION)")
	latency := flag.Duration("latency", 0, "added latency of every answer, as e签宝's own would be (benchmarks)")
	flag.Parse()

	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("-app-secret-file: %w", err)
		}
		*secret = strings.TrimSpace(string(b))
	}
	if *secret == "" {
		*secret = "demo-secret"
	}
	revision, err := upstream.ParseRevision(*rev)
	if err != nil {
		return fmt.Errorf("-revision: %w", err)
	}
	sim := esignsim.New(esignsim.Config{AppID: *appID, AppSecret: *secret, Revision: revision, RecordLimit: 64})
	if *latency > 0 {
		sim.Inject(esignsim.Fault{Latency: *latency})
	}
	srv := &http.Server{Addr: *addr, Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Warn("e签宝 SIMULATOR: this is not e签宝; evidence points it issues are not real",
		"addr", ln.Addr().String(), "app_id", *appID, "revision", string(revision), "latency", latency.String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Command esign-evidence serves the esign.evidence.v1 API over gRPC and REST and creates
// e签宝 personal real-name evidence points. `esign-evidence -h` lists the settings;
// `esign-evidence -simulate` runs the demo against an in-process offline e签宝.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	esignevidence "github.com/esign-evidence/esign-evidence"
	"github.com/esign-evidence/esign-evidence/internal/buildinfo"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/internal/telemetry"
	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func main() {
	for _, a := range os.Args[1:] {
		if a == "-version" || a == "--version" {
			fmt.Println(buildinfo.Read())
			return
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "esign-evidence:", err)
		os.Exit(1)
	}
}

// run wires configuration, the upstream client, the server and its listeners, and serves
// until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	build := buildinfo.Read()
	checkOnly, migrateOnly := false, false
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		switch a {
		case "-check-config", "--check-config":
			checkOnly = true
			return true
		case "-migrate", "--migrate":
			migrateOnly = true
			return true
		}
		return false
	})
	if migrateOnly {
		return migrate(ctx, args, stderr)
	}
	cfg, err := loadSettings(args, stderr)
	if err != nil {
		return err
	}
	if checkOnly {
		// Settings only: nothing is opened, listened on or called. What the start-up log
		// would warn about is printed too.
		for _, w := range cfg.exposureWarnings() {
			fmt.Fprintln(stderr, "esign-evidence: warning:", w)
		}
		fmt.Fprintln(stderr, "esign-evidence: configuration OK")
		return nil
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	registry := prometheus.NewRegistry()
	registry.MustRegister(build.Collector())
	for _, w := range cfg.exposureWarnings() {
		log.Warn(w)
	}

	if cfg.Simulate {
		stopSim, err := startSimulator(cfg, log)
		if err != nil {
			return err
		}
		defer stopSim()
	}

	tp, stopTracing, err := telemetry.Tracing(ctx)
	if err != nil {
		return fmt.Errorf("OTEL_*: %w", err)
	}
	defer stopTracing()
	var wrap func(http.RoundTripper) http.RoundTripper
	if tp != nil {
		wrap = func(rt http.RoundTripper) http.RoundTripper {
			return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp))
		}
	}
	esign := cfg.esign
	esign.WrapTransport = wrap
	client, err := upstream.New(esign)
	if err != nil {
		return err
	}
	store, journalPath, closeStore, err := openStore(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer closeStore()
	var backup func(io.Writer, func(int64)) error
	if b, ok := store.(*submission.BoltStore); ok {
		backup = b.Backup // PostgreSQL is backed up with PostgreSQL's own tools
	}
	keys, err := fingerprintKeys(cfg.Store.FingerprintKeys, cfg.esign.AppSecret, store)
	if err != nil {
		return err
	}
	journal, err := submission.OpenJournal(journalPath)
	if err != nil {
		return fmt.Errorf("JOURNAL_PATH: %w", err)
	}
	defer journal.Close()
	sub, err := submission.New(submission.Config{
		Store:           store,
		FingerprintKeys: keys,
		Settings:        cfg.Submission,
		Journal:         journal,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	if err := sub.Start(ctx); err != nil {
		return fmt.Errorf("JOURNAL_PATH: %w", err)
	}
	// With PostgreSQL, every replica shares the app's quota through the database.
	var quota guard.Quota
	if pg, ok := store.(*submission.PostgresStore); ok {
		quota = pg.Quota(cfg.esign.AppID, cfg.Server.Guard.QPS, cfg.Submission.StoreTimeout)
	}
	tlsCfg, trust, err := cfg.TLS.Start(ctx, log)
	if err != nil {
		return err
	}
	if trust != nil {
		cfg.auth.CertDenied = trust.Denied
	}
	reloads := newReloadMetrics(registry)
	if cfg.auth.Disabled {
		log.Warn("authentication is OFF: anyone who reaches the listeners can create evidence points")
	}
	var tracer trace.TracerProvider
	if tp != nil {
		tracer = tp
	}
	srv, err := server.New(server.Options{
		Settings:       cfg.Server,
		Upstream:       client,
		Submitter:      sub,
		Quota:          quota,
		Auth:           cfg.auth,
		TLS:            tlsCfg,
		TracerProvider: tracer,
		Logger:         log,
		Backup:         backup,
		Registry:       registry,
		OpenAPI:        esignevidence.OpenAPIv2,
	})
	if err != nil {
		return err
	}
	grpcLis, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("GRPC_ADDR: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.Server.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	ls := server.Listeners{GRPC: grpcLis, HTTP: httpLis}
	if cfg.Server.AdminAddr != "" {
		if ls.Admin, err = net.Listen("tcp", cfg.Server.AdminAddr); err != nil {
			_ = grpcLis.Close()
			_ = httpLis.Close()
			return fmt.Errorf("ADMIN_ADDR: %w", err)
		}
	}
	log.Info("esign-evidence starting", "version", build.Version, "revision", build.Revision, "esign_base_url", upstream.RedactURL(cfg.esign.BaseURL), "esign_app_id", cfg.esign.AppID,
		"esign_api_revision", string(cfg.esign.Revision), "demo_mode", cfg.Simulate, "tracing", tp != nil)
	// Registered before serving, so a SIGHUP never meets the default action (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, hup, cfg, trust, reloads, log)
	err = srv.Serve(ctx, ls)
	flushPending(sub, log)
	return err
}

// pendingFlushTimeout bounds how long shutdown waits, after the calls have drained, for
// results held in the journal to be recorded in the store. It fits in the manifests'
// terminationGracePeriodSeconds (35 s) after SHUTDOWN_DRAIN_DELAY (5 s) and
// SHUTDOWN_TIMEOUT (20 s).
const pendingFlushTimeout = 5 * time.Second

// flushPending waits (bounded) for results e签宝 returned that the store has not recorded
// yet: a journal on an emptyDir does not outlive the pod. What is left stays in the
// journal for the next start on the same volume.
func flushPending(sub *submission.Submitter, log *slog.Logger) {
	n := sub.Pending()
	if n == 0 {
		return
	}
	log.Warn("waiting for e签宝 results to be recorded before exiting", "count", n)
	ctx, cancel := context.WithTimeout(context.Background(), pendingFlushTimeout)
	defer cancel()
	if err := sub.WaitPending(ctx); err != nil {
		log.Error("exiting with e签宝 results not yet recorded; they stay in the journal (JOURNAL_PATH) for the next start",
			"count", sub.Pending())
		return
	}
	log.Info("every e签宝 result is recorded")
}

// reloadOnHangup re-reads AUTH_TOKENS_FILE (and AUTH_TOKEN_HASHES), and the client CA
// and deny-list (TLS_CLIENT_CA_FILE, TLS_CLIENT_DENY_FILE), on each SIGHUP until ctx is
// done. What cannot be used is left as it was, the log says why (never quoting a file's
// content) and the failure is counted (reloads); SIGHUP never stops the process.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, cfg *settings, trust *tlsreload.ClientTrust, reloads *reloadMetrics, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if cfg.Auth.TokensFile == "" {
			log.Info("SIGHUP: no AUTH_TOKENS_FILE to reload")
		} else if n, err := cfg.Auth.Reload(cfg.auth); err != nil {
			reloads.failed("auth_tokens")
			log.Error("SIGHUP: AUTH_TOKENS_FILE not reloaded; the previous tokens stay in force", "err", err.Error())
		} else {
			reloads.succeeded("auth_tokens")
			log.Info("SIGHUP: AUTH_TOKENS_FILE reloaded", "callers", n)
		}
		if trust == nil {
			continue
		}
		if err := trust.Reload(); err != nil {
			reloads.failed("client_ca")
			log.Error("SIGHUP: TLS_CLIENT_CA_FILE / TLS_CLIENT_DENY_FILE not reloaded; the previous ones stay in force", "err", err.Error())
		} else {
			reloads.succeeded("client_ca")
			log.Info("SIGHUP: TLS_CLIENT_CA_FILE and TLS_CLIENT_DENY_FILE reloaded", "denied_certificates", trust.Len())
		}
	}
}

// reloadMetrics report SIGHUP's reloads: whether the last one of each kind succeeded (1
// from start-up, when the files were read), and the failures.
type reloadMetrics struct {
	ok       *prometheus.GaugeVec
	failures *prometheus.CounterVec
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		ok: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "esign_evidence", Name: "config_last_reload_successful",
			Help: "1 when the last SIGHUP reload of these files succeeded (or none was asked since start-up), 0 when it failed and the previous ones stay in force."},
			[]string{"files"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "esign_evidence", Name: "config_reload_failures_total",
			Help: "SIGHUP reloads refused, by the files that could not be used."}, []string{"files"}),
	}
	reg.MustRegister(m.ok, m.failures)
	for _, f := range []string{"auth_tokens", "client_ca"} {
		m.ok.WithLabelValues(f).Set(1)
		m.failures.WithLabelValues(f)
	}
	return m
}

func (m *reloadMetrics) failed(files string) {
	m.ok.WithLabelValues(files).Set(0)
	m.failures.WithLabelValues(files).Inc()
}

func (m *reloadMetrics) succeeded(files string) { m.ok.WithLabelValues(files).Set(1) }

// legacyOp is the operation of the submissions stored before records were named by
// operation (the embedded store's plain "submissions" bucket, the PostgreSQL rows from
// before schema version 2): the personal real-name evidence point. It never changes.
var legacyOp = submission.Op(upstream.PsnRealname.Name)

// openStore opens the PostgreSQL store when DATABASE_URL is set, else the embedded one
// (in demo mode, in a temporary file removed at exit unless DB_PATH names one). It also
// returns where the journal goes: JOURNAL_PATH, else next to the embedded store, else
// esign-evidence.journal.
func openStore(ctx context.Context, cfg submission.StoreSettings) (submission.Store, string, func(), error) {
	if cfg.DatabaseURL != "" {
		s, err := submission.OpenPostgres(ctx, string(cfg.DatabaseURL), submission.PostgresOptions{LegacyOp: legacyOp, NoMigrate: !cfg.Migrate})
		if errors.Is(err, submission.ErrSchemaNotCurrent) {
			return nil, "", nil, fmt.Errorf("DATABASE_URL: %w; STORE_MIGRATE is false: run `esign-evidence -migrate` first", err)
		}
		if err != nil {
			return nil, "", nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		journal := cfg.JournalPath
		if journal == "" {
			journal = "esign-evidence.journal"
		}
		return s, journal, func() { _ = s.Close() }, nil
	}
	path, temp := cfg.DBPath, false
	if path == "" {
		dir, err := os.MkdirTemp("", "esign-evidence-demo-")
		if err != nil {
			return nil, "", nil, err
		}
		path, temp = filepath.Join(dir, "submissions.db"), true
	}
	s, err := submission.OpenBolt(path, submission.BoltOptions{LegacyOp: legacyOp})
	if err != nil {
		return nil, "", nil, fmt.Errorf("DB_PATH: %w", err)
	}
	journal := cfg.JournalPath
	if journal == "" {
		journal = path + ".journal"
	}
	return s, journal, func() {
		_ = s.Close()
		if temp {
			_ = os.RemoveAll(filepath.Dir(path))
		}
	}, nil
}

// migrate is `esign-evidence -migrate`: it brings the store's schema to this binary's
// version and exits, reading no setting but where the store is. It is the step that runs
// with a role allowed DDL, before replicas that start with STORE_MIGRATE=false.
func migrate(ctx context.Context, args []string, stderr io.Writer) error {
	s, set := newSettingSet(stderr)
	if err := set.Parse(args); err != nil {
		return err
	}
	if err := s.Store.CheckLocation(); err != nil {
		return err
	}
	if s.Store.DatabaseURL != "" {
		from, to, err := submission.MigratePostgres(ctx, string(s.Store.DatabaseURL), submission.PostgresOptions{LegacyOp: legacyOp})
		if err != nil {
			return fmt.Errorf("DATABASE_URL: %w", err)
		}
		fmt.Fprintf(stderr, "esign-evidence: the PostgreSQL schema is at version %d (was %d)\n", to, from)
		return nil
	}
	// The embedded store brings itself up to date when opened.
	b, err := submission.OpenBolt(s.Store.DBPath, submission.BoltOptions{LegacyOp: legacyOp})
	if err != nil {
		return fmt.Errorf("DB_PATH: %w", err)
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("DB_PATH: %w", err)
	}
	fmt.Fprintln(stderr, "esign-evidence: the embedded store is up to date")
	return nil
}

// fingerprintKeys are FINGERPRINT_KEY(_FILE)'s keys. Without them (only allowed with the
// embedded store) the store keeps its own key, so rotating the app secret never changes
// a request's fingerprint. A store that already holds records from before it kept a key
// adopts the key those were made with, derived from the app secret.
func fingerprintKeys(configured []upstream.Secret, appSecret upstream.Secret, store submission.Store) ([][]byte, error) {
	var keys [][]byte
	for _, k := range configured {
		keys = append(keys, []byte(k))
	}
	if len(keys) > 0 {
		return keys, nil
	}
	bs, ok := store.(*submission.BoltStore)
	if !ok {
		return nil, errors.New("FINGERPRINT_KEY: required with DATABASE_URL")
	}
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write([]byte("esign-evidence request fingerprint v1"))
	k, err := bs.FingerprintKey(m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("DB_PATH: %w", err)
	}
	return [][]byte{k}, nil
}

// startSimulator serves the offline e签宝 on a loopback port with a fresh secret and
// points cfg's e签宝 client at it. The service then signs and sends real HTTP requests,
// exactly as it would to e签宝.
func startSimulator(cfg *settings, log *slog.Logger) (stop func(), err error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	e := &cfg.esign
	e.AppID, e.AppSecret = "demo-app", upstream.Secret(hex.EncodeToString(secret))
	e.Revision, e.Timeout = cfg.Upstream.Revision, cfg.Upstream.Timeout
	sim := esignsim.New(esignsim.Config{AppID: e.AppID, AppSecret: string(e.AppSecret), Revision: e.Revision})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo mode: starting the simulator: %w", err)
	}
	e.BaseURL = "http://" + lis.Addr().String()
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	log.Warn("DEMO MODE: NOT TALKING TO e签宝. Requests go to an in-process offline simulator; "+
		"the eviPointIds it returns are not real and cannot be used to open signing accounts.",
		"simulator_url", e.BaseURL)
	return func() { _ = hs.Close() }, nil
}

package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/esign-evidence/esign-evidence/internal/authtoken"
)

// adminHandler serves the admin listener: Prometheus metrics, with
// ADMIN_BACKUP_TOKEN_FILE the embedded store's backup (to the bearer of that token) and,
// with Options.AdminPprof, Go's profiler. Bind it to an address only operators reach; it
// carries no personal data, but the backup holds the callers' customBizIds and the
// fingerprint key, and profiles reveal the service's internals and cost CPU on demand, so
// they are off unless asked for.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	if s.opts.Backup != nil && s.backupToken != nil {
		mux.HandleFunc("GET /backup", s.serveBackup)
	}
	if s.opts.AdminPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	}
	return mux
}

// serveBackup streams the embedded store with its Content-Length. A failure after the
// first byte aborts the response, so the client sees a broken download, never a short file
// that looks whole.
//
// Only the bearer of the backup token gets it; every request is logged, served or not,
// with the client's address and never the token.
func (s *Server) serveBackup(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(sum[:], s.backupToken[:]) != 1 {
		s.log.Warn("store backup refused: no valid backup token", "remote_addr", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="esign-evidence-admin"`)
		http.Error(w, "a valid backup token is required", http.StatusUnauthorized)
		return
	}
	counted := &countingWriter{w: w}
	defer func() {
		s.log.Info("store backup downloaded", "remote_addr", r.RemoteAddr, "bytes", counted.n,
			"latency_ms", float64(time.Since(start).Microseconds())/1000)
	}()
	w = counted
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="submissions.db"`)
	started := false
	err := s.opts.Backup(w, func(n int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		started = true
	})
	if err == nil {
		return
	}
	s.log.Error("store backup failed", "err", err.Error())
	if started {
		panic(http.ErrAbortHandler)
	}
	http.Error(w, "backup failed", http.StatusInternalServerError)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Header() http.Header  { return c.w.Header() }
func (c *countingWriter) WriteHeader(code int) { c.w.WriteHeader(code) }
func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// readBackupToken reads the backup token from file: one token, at least
// authtoken.MinTokenLength characters, surrounding white space ignored. Errors name the
// file and never quote it.
func readBackupToken(file string) (*[32]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ADMIN_BACKUP_TOKEN_FILE: cannot read %q", file)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < authtoken.MinTokenLength || strings.ContainsAny(tok, " \t\n") {
		return nil, errors.New("ADMIN_BACKUP_TOKEN_FILE: want one token of at least " + strconv.Itoa(authtoken.MinTokenLength) + " characters")
	}
	sum := sha256.Sum256([]byte(tok))
	return &sum, nil
}

package server

import (
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves the admin listener: Prometheus metrics, for the embedded store its
// backup and, with Options.AdminPprof, Go's profiler. Bind it to an address only
// operators reach; it carries no personal data, but the backup holds the callers'
// customBizIds, and profiles reveal the service's internals and cost CPU on demand, so
// they are off unless asked for.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	if s.opts.Backup != nil {
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
func (s *Server) serveBackup(w http.ResponseWriter, _ *http.Request) {
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

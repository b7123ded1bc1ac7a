package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/esign-evidence/esign-evidence/internal/setting"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/internal/tlsreload"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/auth"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// usageHeader opens the usage text; every setting follows it.
const usageHeader = `Usage: esign-evidence [flags]            serve
       esign-evidence -check-config [flags]  check the settings (flags and environment) and exit
       esign-evidence -migrate [flags]       bring the store's schema to this binary's version and exit
                                             (reads only DB_PATH or DATABASE_URL(_FILE))
       esign-evidence -version               print the build and exit

Every flag can also be set by its environment variable; a flag wins.`

// settings are the whole configuration of one process: each package's own settings,
// declared by the package (Bind) with its defaults (DefaultSettings), and the command's.
type settings struct {
	// Simulate runs the offline e签宝 simulator in-process and points the service at it
	// (demo mode). Nothing else ever selects the simulator.
	Simulate bool
	LogLevel slog.Level

	Server     server.Settings
	Upstream   upstream.Settings
	Auth       auth.Settings
	TLS        tlsreload.Settings
	Submission submission.Settings
	Store      submission.StoreSettings

	// Resolved by check: e签宝's client configuration (demo mode: the simulator's, set
	// when it starts) and the authentication the interceptors apply.
	esign upstream.Config
	auth  auth.Config
}

// defaultSettings are every package's defaults.
func defaultSettings() *settings {
	return &settings{
		Server:     server.DefaultSettings(),
		Upstream:   upstream.DefaultSettings(),
		Auth:       auth.DefaultSettings(),
		Submission: submission.DefaultSettings(),
		Store:      submission.DefaultStoreSettings(),
	}
}

// bind declares every setting on set.
func (s *settings) bind(set *setting.Set) {
	set.Bool(&s.Simulate, "simulate", "demo mode: serve against the in-process offline e签宝 simulator, not e签宝")
	set.Level(&s.LogLevel, "log-level", "debug, info, warn or error")
	s.Server.Bind(set)
	s.Upstream.Bind(set)
	s.Submission.Bind(set)
	s.Store.Bind(set)
	s.Auth.Bind(set)
	s.TLS.Bind(set)
}

// newSettingSet is the program's settings, declared on a new Set that prints usage to out.
func newSettingSet(out io.Writer) (*settings, *setting.Set) {
	s := defaultSettings()
	set := setting.NewSet("esign-evidence", out, usageHeader)
	s.bind(set)
	return s, set
}

// loadSettings parses args (without the program name) and the environment, then checks
// the whole: every error names its setting, all of them at once; the app secret is never
// printed.
func loadSettings(args []string, usageOut io.Writer) (*settings, error) {
	s, set := newSettingSet(usageOut)
	if err := set.Parse(args); err != nil {
		return nil, err
	}
	return s, s.check(set)
}

// check validates the settings together and resolves what depends on several: demo mode,
// authentication (tokens or client certificates), the store.
func (s *settings) check(set *setting.Set) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if s.Simulate && !set.Given("db-path") {
		s.Store.DBPath = "" // a temporary file
	}
	add(s.Store.Check(s.Simulate))
	add(s.Submission.Check())
	add(s.TLS.Check())
	var err error
	s.auth, err = s.Auth.Config(s.TLS.ClientCerts(), s.Simulate)
	add(err)
	if s.Simulate {
		// Demo mode serves anyone, in plaintext: on this host only, unless told otherwise.
		if !set.Given("grpc-addr") {
			s.Server.GRPCAddr = demoGRPCAddr
		}
		if !set.Given("http-addr") {
			s.Server.HTTPAddr = demoHTTPAddr
		}
	}
	add(s.checkExposure())
	if s.Simulate {
		// Demo mode brings its own simulator, app ID and secret; e签宝 settings given as
		// well are a mistake worth stopping for: the operator may think they are used.
		add(s.Upstream.CheckUnset())
	} else {
		s.esign, err = s.Upstream.Config()
		add(err)
	}
	return errors.Join(errs...)
}

// envVars lists every environment variable the service reads.
func envVars() []string {
	_, set := newSettingSet(io.Discard)
	return set.EnvVars()
}

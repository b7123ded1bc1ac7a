package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/server"
)

// New takes its settings as given (the defaults are DefaultSettings' alone) and refuses
// one outside its bounds with the error the same setting gets from a flag, naming it.
func TestNewRefusesSettingsOutOfBounds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*server.Settings)
		want   []string
	}{
		{"zero settings", func(s *server.Settings) { *s = server.Settings{} },
			[]string{"MAX_REQUEST_BYTES", "SHUTDOWN_TIMEOUT", "MAX_CALLS_IN_FLIGHT", "MAX_FILE_BYTES", "UPLOAD_IDLE_TIMEOUT", "GRPC_KEEPALIVE_TIME"}},
		{"no calls in flight", func(s *server.Settings) { s.MaxCallsInFlight = 0 }, []string{"MAX_CALLS_IN_FLIGHT (-max-calls-in-flight)"}},
		{"drain delay too long", func(s *server.Settings) { s.DrainDelay = 6 * time.Minute }, []string{"SHUTDOWN_DRAIN_DELAY (-shutdown-drain-delay)"}},
		{"the handlers' own settings", func(s *server.Settings) { s.MaxFileBytes = 10 }, []string{"MAX_FILE_BYTES (-max-file-bytes)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := server.DefaultSettings()
			tc.change(&s)
			_, err := server.New(server.Options{Settings: s})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v does not name %s", err, w)
				}
			}
		})
	}
	// The defaults pass the check: what is left to refuse is the missing e签宝 client.
	if _, err := server.New(server.Options{Settings: server.DefaultSettings()}); err == nil || !strings.Contains(err.Error(), "Upstream is required") {
		t.Errorf("default settings: %v, want only the missing Upstream refused", err)
	}
}

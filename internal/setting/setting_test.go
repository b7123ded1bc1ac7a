package setting_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// example is a package's settings as this package expects them declared.
type example struct {
	Timeout time.Duration
	Workers int
	Addr    string
	Secret  string
}

func (e *example) bind(set *setting.Set) {
	set.Duration(&e.Timeout, "example-timeout", "a timeout")
	set.Count(&e.Workers, "example-workers", true, "workers")
	set.Address(&e.Addr, "example-addr", true, "an address")
	setting.EnvOnly(set, &e.Secret, "EXAMPLE_SECRET")
}

func TestParseFlagOverEnvironmentAndEnvOnly(t *testing.T) {
	t.Setenv("EXAMPLE_TIMEOUT", "3s")
	t.Setenv("EXAMPLE_WORKERS", "7")
	t.Setenv("EXAMPLE_ADDR", "") // set but empty: no listener
	t.Setenv("EXAMPLE_SECRET", "hush-hush-hush")
	e := &example{Timeout: time.Second, Addr: ":1"}
	set := setting.NewSet("example", io.Discard, "")
	e.bind(set)
	if err := set.Parse([]string{"-example-workers", "auto"}); err != nil {
		t.Fatal(err)
	}
	if e.Timeout != 3*time.Second || e.Workers != 0 || e.Addr != "" || e.Secret != "hush-hush-hush" {
		t.Errorf("%+v", e)
	}
	if !set.Given("example-addr") || !set.Given("example-workers") {
		t.Error("a setting given (by flag, by an empty variable) is not reported as given")
	}
}

// Check runs a value built in code through the declaration's own rule and error.
func TestCheck(t *testing.T) {
	good := &example{Timeout: time.Second, Workers: 3, Addr: "127.0.0.1:80"}
	if err := setting.Check(good.bind); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
	if *good != (example{Timeout: time.Second, Workers: 3, Addr: "127.0.0.1:80"}) {
		t.Errorf("Check changed the settings: %+v", good)
	}
	bad := &example{Timeout: -time.Second, Workers: 1 << 21, Addr: "nowhere"}
	err := setting.Check(bad.bind)
	for _, want := range []string{
		`EXAMPLE_TIMEOUT (-example-timeout): "-1s" is not a positive duration such as 15s`,
		`EXAMPLE_WORKERS (-example-workers): "2097152" is not a number from 1 to 1048576, or auto`,
		`EXAMPLE_ADDR (-example-addr): "nowhere" is not a host:port address`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v, want %s", err, want)
		}
	}
}

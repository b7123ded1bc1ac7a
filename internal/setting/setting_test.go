package setting_test

import (
	"io"
	"os"
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

// A boolean is exactly true or false, by flag (bare, or with a value) and by variable:
// the other spellings strconv.ParseBool takes (1, t, T, TRUE, 0, f, ...) are refused by
// name.
func TestBoolIsStrict(t *testing.T) {
	parse := func(args []string, env string) (bool, error) {
		t.Setenv("EXAMPLE_ON", env)
		if env == "-" {
			t.Setenv("EXAMPLE_ON", "")
			os.Unsetenv("EXAMPLE_ON")
		}
		var on bool
		set := setting.NewSet("example", io.Discard, "")
		set.Bool(&on, "example-on", "on")
		err := set.Parse(args)
		return on, err
	}
	for _, tc := range []struct {
		args []string
		env  string
		want bool
	}{
		{[]string{"-example-on"}, "-", true},
		{[]string{"-example-on=false"}, "-", false},
		{nil, "true", true},
		{nil, "false", false},
	} {
		if on, err := parse(tc.args, tc.env); err != nil || on != tc.want {
			t.Errorf("%v EXAMPLE_ON=%q: %v, %v; want %v", tc.args, tc.env, on, err, tc.want)
		}
	}
	for _, v := range []string{"1", "t", "T", "TRUE", "True", "0", "f", "F", "FALSE", "yes", " true"} {
		on, err := parse(nil, v)
		if err == nil || !strings.Contains(err.Error(), `EXAMPLE_ON (-example-on): "`+v+`" is not true or false`) {
			t.Errorf("EXAMPLE_ON=%q: %v, %v; want refused by name", v, on, err)
		}
		if _, err := parse([]string{"-example-on=" + v}, "-"); err == nil {
			t.Errorf("-example-on=%s accepted", v)
		}
	}
}

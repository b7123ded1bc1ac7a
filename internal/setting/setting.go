// Package setting reads typed settings from flags and their environment variables, so that
// each package can declare its own: a package exports a settings struct, a function that
// returns it with the defaults filled in, and a Bind method that declares each field on a
// Set. The command builds the structs, binds them on one Set, parses, and passes them on.
//
// A flag wins over its environment variable (peterbourgon/ff); the variable's name is the
// flag's in upper case with underscores (GRPC_ADDR for -grpc-addr). A variable that is set
// counts as set even when empty (ADMIN_ADDR= means no admin listener). A value that cannot
// be used is refused with an error naming the setting by its variable and flag and saying
// what a valid value looks like; the value is quoted only for settings that hold no secret
// (secrets are environment-only, see EnvOnly, and never parsed here).
package setting

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// Set holds the declared settings of one program.
type Set struct {
	fs      *flag.FlagSet
	envOnly []envOnly
	given   map[string]bool
}

// envOnly is a setting read from the environment alone: a secret (a flag's value would
// show in a process list) or a setting that holds one.
type envOnly struct {
	name string
	set  func(string)
}

// NewSet returns an empty Set for the program name. On -help (or a flag it does not know)
// it writes usage to out: header, then every setting (see PrintSettings).
func NewSet(name string, out io.Writer, header string) *Set {
	s := &Set{fs: flag.NewFlagSet(name, flag.ContinueOnError), given: map[string]bool{}}
	s.fs.SetOutput(out)
	s.fs.Usage = func() {
		fmt.Fprintln(out, header)
		s.PrintSettings(out)
	}
	return s
}

// EnvName is the environment variable of a flag, by ff's rule: upper case, dashes as
// underscores.
func EnvName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Errorf is an error about a setting: "ENV (-flag): message". env names the variable (or
// variables) the operator sets, flag the flag.
func Errorf(env, flagName, format string, a ...any) error {
	return fmt.Errorf("%s (-%s): %s", env, flagName, fmt.Sprintf(format, a...))
}

// Var declares a setting with a value of its own type; Set's errors should name the
// setting (use Errorf, or one of the typed declarations of this package).
func (s *Set) Var(v flag.Value, name, help string) { s.fs.Var(v, name, help) }

// EnvOnly declares a setting read from the environment variable name alone; Parse stores
// its value (empty when unset) in *p. It is listed, without a default, in the usage text.
func EnvOnly[T ~string](s *Set, p *T, name string) {
	s.envOnly = append(s.envOnly, envOnly{name: name, set: func(v string) { *p = T(v) }})
}

// Parse reads args (without the program name) and the environment into the declared
// settings. It returns flag.ErrHelp after printing usage for -help.
func (s *Set) Parse(args []string) error {
	if err := ff.Parse(s.fs, args, ff.WithEnvVars()); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", s.fs.Arg(0))
	}
	s.fs.Visit(func(f *flag.Flag) { s.given[f.Name] = true })
	// ff skips empty environment variables; one that is set to "" still says something.
	var err error
	s.fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && v == "" && !s.given[f.Name] && err == nil {
			err = s.fs.Set(f.Name, "")
			s.given[f.Name] = true
		}
	})
	if err != nil {
		return err
	}
	for _, e := range s.envOnly {
		e.set(os.Getenv(e.name))
	}
	return nil
}

// Given reports whether the setting of flag name was set, by its flag or its environment
// variable (even to ""), in the last Parse.
func (s *Set) Given(name string) bool { return s.given[name] }

// EnvVars lists every environment variable the declared settings read.
func (s *Set) EnvVars() []string {
	var out []string
	s.fs.VisitAll(func(f *flag.Flag) { out = append(out, EnvName(f.Name)) })
	for _, e := range s.envOnly {
		out = append(out, e.name)
	}
	return out
}

// PrintSettings writes every setting with its flag, environment variable and default,
// then the environment-only ones.
func (s *Set) PrintSettings(w io.Writer) {
	s.fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "  -%-22s %-22s default %-10s %s\n", f.Name, EnvName(f.Name), def, f.Usage)
	})
	if len(s.envOnly) > 0 {
		names := make([]string, len(s.envOnly))
		for i, e := range s.envOnly {
			names[i] = e.name
		}
		fmt.Fprintf(w, "  Environment only: %s.\n", strings.Join(names, ", "))
	}
}

// Check validates settings built in code, not parsed (a package's constructor checking
// what it was given): bind declares them on a fresh Set, and each flag's current value is
// parsed again, by the same rules and with the same errors as a flag or variable.
// Environment-only settings are not checked.
func Check(bind func(*Set)) error {
	s := NewSet("check", io.Discard, "")
	bind(s)
	var errs []error
	s.fs.VisitAll(func(f *flag.Flag) {
		if err := f.Value.Set(f.Value.String()); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

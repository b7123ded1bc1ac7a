package setting

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// The typed declarations. Each takes the destination (its current value is the default
// the usage text shows), the flag name, and the help text; the bounds, where there are
// some, are part of the declaration, so a value built in code is checked by the same rule
// (Check).

// Bool declares a true/false setting, given as a bare flag (-simulate) or a value. The
// value is exactly true or false: strconv.ParseBool's 1, t, T, TRUE, 0, f and the like are
// refused, so that a setting that turns a protection off (AUTH_DISABLED) reads the same to
// every person and tool that looks at it.
func (s *Set) Bool(p *bool, name, help string) {
	s.fs.Var(&value[bool]{name: name, p: p, want: "true or false", parse: parseBool, format: strconv.FormatBool, isBool: true}, name, help)
}

// parseBool accepts exactly "true" and "false".
func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errBad
}

// String declares a text setting; any text, "" included, is accepted.
func (s *Set) String(p *string, name, help string) {
	s.fs.Var(&value[string]{name: name, p: p, parse: func(v string) (string, error) { return v, nil }, format: func(v string) string { return v }}, name, help)
}

// Duration declares a positive duration.
func (s *Set) Duration(p *time.Duration, name, help string) {
	s.DurationIn(p, name, time.Nanosecond, time.Duration(1<<63-1), "a positive duration such as 15s", help)
}

// DurationIn declares a duration from lo to hi; want says what that is ("a duration of at
// least 1s").
func (s *Set) DurationIn(p *time.Duration, name string, lo, hi time.Duration, want, help string) {
	s.fs.Var(&value[time.Duration]{name: name, p: p, want: want, format: time.Duration.String, parse: func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			return 0, errBad
		}
		return d, nil
	}}, name, help)
}

// Bytes declares a number of bytes from lo to hi.
func Bytes[T int | int64](s *Set, p *T, name string, lo, hi T, help string) {
	want := fmt.Sprintf("a number of bytes from %d to %d", lo, hi)
	s.fs.Var(&value[T]{name: name, p: p, want: want, format: func(v T) string { return strconv.FormatInt(int64(v), 10) }, parse: func(v string) (T, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || T(n) < lo || T(n) > hi {
			return 0, errBad
		}
		return T(n), nil
	}}, name, help)
}

// PositiveUint32 declares a positive count that fits in 32 bits.
func (s *Set) PositiveUint32(p *uint32, name, help string) {
	s.fs.Var(&value[uint32]{name: name, p: p, want: "a positive number", format: func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }, parse: func(v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return 0, errBad
		}
		return uint32(n), nil
	}}, name, help)
}

// PositiveFloat declares a positive number (a rate).
func (s *Set) PositiveFloat(p *float64, name, help string) {
	s.fs.Var(&value[float64]{name: name, p: p, want: "a positive number", format: func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }, parse: func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return 0, errBad
		}
		return f, nil
	}}, name, help)
}

// Fraction declares a share of something: a number above 0 and at most 1.
func (s *Set) Fraction(p *float64, name, help string) {
	s.fs.Var(&value[float64]{name: name, p: p, want: "a number above 0 and at most 1", format: func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }, parse: func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return 0, errBad
		}
		return f, nil
	}}, name, help)
}

// maxCount bounds Count: more of anything than this is a typing error.
const maxCount = 1 << 20

// Count declares a number of things from 1 to 1048576; with auto, "auto" (stored as 0)
// leaves the number to the package (sized from the descriptor limit, say).
func (s *Set) Count(p *int, name string, auto bool, help string) {
	want := fmt.Sprintf("a number from 1 to %d", maxCount)
	if auto {
		want += ", or auto"
	}
	s.fs.Var(&value[int]{name: name, p: p, want: want,
		format: func(v int) string {
			if auto && v == 0 {
				return "auto"
			}
			return strconv.Itoa(v)
		},
		parse: func(v string) (int, error) {
			if auto && v == "auto" {
				return 0, nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxCount {
				return 0, errBad
			}
			return n, nil
		}}, name, help)
}

// Address declares a host:port listen address; with emptyOK, "" (no listener) too.
func (s *Set) Address(p *string, name string, emptyOK bool, help string) {
	s.fs.Var(&value[string]{name: name, p: p, want: "a host:port address", format: func(v string) string { return v }, parse: func(v string) (string, error) {
		if v == "" && emptyOK {
			return "", nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return "", errBad
		}
		return v, nil
	}}, name, help)
}

// Level declares a log level: debug, info, warn or error.
func (s *Set) Level(p *slog.Level, name, help string) {
	s.fs.Var(&value[slog.Level]{name: name, p: p, want: "debug, info, warn or error", format: slog.Level.String, parse: func(v string) (slog.Level, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(v)); err != nil {
			return 0, errBad
		}
		return l, nil
	}}, name, help)
}

// Parsed declares a setting of the package's own type: parse returns the value or an error
// saying what is wrong (it is printed after the setting's name, so it need not repeat it).
func Parsed[T ~string](s *Set, p *T, name, help string, parse func(string) (T, error)) {
	s.fs.Var(&value[T]{name: name, p: p, parse: parse, format: func(v T) string { return string(v) }, own: true}, name, help)
}

// errBad marks a value the declaration's rule refuses; the error returned names the
// setting and says what it wants.
var errBad = fmt.Errorf("bad value")

// value is one typed setting: a flag.Value writing into *p.
type value[T any] struct {
	name   string
	p      *T
	want   string
	parse  func(string) (T, error)
	format func(T) string
	isBool bool
	// own: parse's error says what is wrong itself.
	own bool
}

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		if v.own {
			return Errorf(EnvName(v.name), v.name, "%v", err)
		}
		return Errorf(EnvName(v.name), v.name, "%q is not %s", s, v.want)
	}
	*v.p = x
	return nil
}

// String prints the current value (the default, in the usage text).
func (v *value[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

// IsBoolFlag lets a boolean setting be given as a bare flag.
func (v *value[T]) IsBoolFlag() bool { return v != nil && v.isBool }

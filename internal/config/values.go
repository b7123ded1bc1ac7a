package config

import (
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// value is a typed setting: Set parses the text into the destination or says, naming the
// setting by its environment variable and flag, what a valid value looks like.
type value struct {
	name string
	dst  any
}

func newValue(name string, dst any) *value { return &value{name: name, dst: dst} }

func (v *value) fail(s, want string) error {
	return fmt.Errorf("%s (-%s): %q is not %s", envName(v.name), v.name, s, want)
}

// Set parses s by the destination's type, within the setting's limits.
func (v *value) Set(s string) error {
	switch d := v.dst.(type) {
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return v.fail(s, "true or false")
		}
		*d = b
	case *time.Duration:
		min, max, want := time.Nanosecond, time.Duration(1<<63-1), "a positive duration such as 15s"
		switch v.name {
		case "submission-lease":
			min, want = time.Second, "a duration of at least 1s"
		case "shutdown-drain-delay":
			min, max, want = 0, 5*time.Minute, "a duration from 0s to 5m"
		}
		t, err := time.ParseDuration(s)
		if err != nil || t < min || t > max {
			return v.fail(s, want)
		}
		*d = t
	case *int:
		// max-request-bytes, the only int setting.
		n, err := strconv.Atoi(s)
		if err != nil || n < 1024 || n > 64<<20 {
			return v.fail(s, "a number of bytes from 1024 to 67108864")
		}
		*d = n
	case *int64:
		// max-file-bytes, the only int64 setting.
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1024 || n > 1<<30 {
			return v.fail(s, "a number of bytes from 1024 to 1073741824")
		}
		*d = n
	case *uint32:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return v.fail(s, "a positive number")
		}
		*d = uint32(n)
	case *float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 {
			return v.fail(s, "a positive number")
		}
		*d = f
	case *slog.Level:
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return v.fail(s, "debug, info, warn or error")
		}
	case *upstream.Revision:
		r, err := upstream.ParseRevision(s)
		if err != nil {
			return fmt.Errorf("%s (-%s): %v", envName(v.name), v.name, err)
		}
		*d = r
	case *submission.UnknownPolicy:
		p := submission.UnknownPolicy(s)
		if p != submission.ResendUnknown && p != submission.RefuseUnknown {
			return v.fail(s, "resend or refuse")
		}
		*d = p
	default:
		return fmt.Errorf("%s: unsupported setting type %T", v.name, v.dst)
	}
	return nil
}

// String prints the current value (the default, in the usage text).
func (v *value) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	if s, ok := v.dst.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(reflect.ValueOf(v.dst).Elem().Interface())
}

// IsBoolFlag lets a boolean setting be given as a bare flag (-simulate).
func (v *value) IsBoolFlag() bool { _, ok := v.dst.(*bool); return ok }

// address is a host:port listen address; emptyOK allows "" (no listener).
type address struct {
	name    string
	dst     *string
	emptyOK bool
}

func (a *address) Set(s string) error {
	if s == "" && a.emptyOK {
		*a.dst = ""
		return nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%s (-%s): %q is not a host:port address", envName(a.name), a.name, s)
	}
	*a.dst = s
	return nil
}

func (a *address) String() string {
	if a == nil || a.dst == nil {
		return ""
	}
	return *a.dst
}

// count is a positive number of things; with auto, "auto" (stored as 0) lets the server
// size it from the descriptor limit.
type count struct {
	name string
	dst  *int
	auto bool
}

func (c *count) Set(s string) error {
	if c.auto && s == "auto" {
		*c.dst = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1<<20 {
		want := "a number from 1 to 1048576"
		if c.auto {
			want += ", or auto"
		}
		return fmt.Errorf("%s (-%s): %q is not %s", envName(c.name), c.name, s, want)
	}
	*c.dst = n
	return nil
}

func (c *count) String() string {
	if c == nil || c.dst == nil {
		return ""
	}
	if c.auto && *c.dst == 0 {
		return "auto"
	}
	return strconv.Itoa(*c.dst)
}

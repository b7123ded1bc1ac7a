package esignsim_test

import (
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// The busiest window is found at any offset, its end is open, and the input's order does
// not matter.
func TestMostInWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	cases := []struct {
		times []time.Time
		want  int
		from  int
	}{
		{nil, 0, 0},
		{at(0, 1000, 2000), 1, 0},
		{at(1500, 0, 400, 999, 1400, 1300), 4, 999},
	}
	for _, c := range cases {
		n, from := esignsim.MostInWindow(c.times, time.Second)
		if n != c.want || (n > 0 && !from.Equal(t0.Add(time.Duration(c.from)*time.Millisecond))) {
			t.Errorf("%v: %d from %v, want %d from +%d ms", c.times, n, from, c.want, c.from)
		}
	}
}

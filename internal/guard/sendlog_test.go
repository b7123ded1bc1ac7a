package guard

import (
	"testing"
	"time"
)

// A send that went later than planned holds back the one QPS after it, so that bunched
// sends never put more than QPS in a window; and the sends planned later catch up.
func TestSendLogHoldsBackAfterALateSend(t *testing.T) {
	l := newSendLog(3)
	t0 := time.Unix(1000, 0)
	span := QuotaWindow + sendSlack
	for i := range 3 {
		seq, at := l.plan(t0.Add(time.Duration(i) * 10 * time.Millisecond))
		if !at.Equal(t0.Add(time.Duration(i) * 10 * time.Millisecond)) {
			t.Fatalf("send %d placed at %v", seq, at.Sub(t0))
		}
		if i == 0 {
			// The first went 300 ms late (the process paused).
			l.stamp(seq, t0.Add(300*time.Millisecond))
		} else {
			l.stamp(seq, at)
		}
	}
	seq, at := l.plan(t0.Add(500 * time.Millisecond))
	if want := t0.Add(300 * time.Millisecond).Add(span); !at.Equal(want) {
		t.Errorf("the fourth send is placed at +%v, want +%v (a window after the late first)", at.Sub(t0), want.Sub(t0))
	}
	l.stamp(seq, at)
	// The fifth is held back by the second's instant only.
	if _, at := l.plan(t0.Add(500 * time.Millisecond)); !at.Equal(t0.Add(10 * time.Millisecond).Add(span)) {
		t.Errorf("the fifth send is placed at +%v", at.Sub(t0))
	}
}

// A quota lifted out of the way (a benchmark's) is counted over a shorter window, not
// with a ring of as many entries.
func TestSendLogOfALiftedQuota(t *testing.T) {
	l := newSendLog(1e9)
	if len(l.at) > 2*maxSendLog {
		t.Fatalf("a ring of %d entries", len(l.at))
	}
	if per := float64(l.n) / l.span.Seconds(); per < 0.98e9 || per > 1e9 {
		t.Errorf("%v sends per %v: %.0f a second, want just under 1e9", l.n, l.span, per)
	}
}

package simulation

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/submission"
)

// A schedule is everything a seed decides: the settings, the callers, and the faults of
// the store, of e签宝 and of the replicas. Faults happen only before FaultEnd; after it
// every replica runs, the store and e签宝 answer, and every key must settle.
type schedule struct {
	Seed         uint64
	Replicas     int
	Lease        time.Duration
	StoreTimeout time.Duration
	Policy       submission.UnknownPolicy
	QPS          float64
	MinRemaining time.Duration
	FaultEnd     time.Duration
	Keys         int
	Clients      []clientPlan
	// The store: unreachable (Outages: refused at once) or frozen (Freezes: no answer
	// until the window ends) for a while; per operation, an error before the commit, a
	// commit whose acknowledgement is lost, a commit landing after the caller's error,
	// a slow answer.
	Outages, Freezes []window
	// Partitions: one replica cannot reach the store (the others can).
	Partitions                              []partition
	StoreErr, StoreAckLost, StoreLate, Slow float64
	Esign                                   esignPlan
	Events                                  []replicaEvent
	// Skew is each replica's clock offset.
	Skew []time.Duration
}

type window struct{ From, To time.Duration }

type partition struct {
	Replica int
	window
}

func (w window) len() time.Duration { return w.To - w.From }

// clientPlan is one caller: it sends its key with its payload from Start, with a
// deadline (0: none), maybe hangs up after HangUp, and retries what is worth retrying
// until the faults end. Again: it sends once more after a success (a duplicate).
type clientPlan struct {
	ID, Key, Payload int
	Start, Deadline  time.Duration
	HangUp           time.Duration
	Again            bool
}

// esignPlan: the odds of each way an e签宝 call can go.
type esignPlan struct {
	NotSent, Lost, AnswerLost, S5xx, S202, Refuse, Slow float64
	// Timeout is the client's own timeout of one call (ESIGN_TIMEOUT).
	Timeout time.Duration
}

type eventKind int

const (
	crash eventKind = iota + 1
	pause
)

// replicaEvent: a crash (memory lost; the journal kept or lost; restarted after For)
// or a pause (the process stopped for For).
type replicaEvent struct {
	At          time.Duration
	Replica     int
	Kind        eventKind
	JournalKept bool
	For         time.Duration
}

func (s *schedule) grace() time.Duration {
	// As submission.Submitter.TakeoverGrace.
	return s.Lease + 3*s.StoreTimeout + time.Second
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func uniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// newSchedule derives a schedule from seed. Times carry sub-millisecond noise so that
// two things rarely happen at the same simulated instant (which would leave their order
// to the Go scheduler).
func newSchedule(seed uint64) *schedule {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	s := &schedule{Seed: seed}
	s.Replicas = 2 + r.IntN(2)
	s.Lease = pick(r, time.Second, 2*time.Second, 3*time.Second)
	for {
		s.StoreTimeout = pick(r, 50*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond, 300*time.Millisecond, 500*time.Millisecond)
		if submission.CheckTiming(s.Lease, s.StoreTimeout) == nil {
			break
		}
	}
	s.Policy = submission.ResendUnknown
	if r.IntN(10) == 0 {
		s.Policy = submission.RefuseUnknown
	}
	s.QPS = 1000
	if r.IntN(5) == 0 {
		s.QPS = pick(r, 1.0, 2.0, 5.0)
	}
	s.MinRemaining = pick(r, 100*time.Millisecond, 500*time.Millisecond, time.Second)
	s.FaultEnd = uniform(r, 5*time.Second, 20*time.Second)
	grace := s.grace()
	s.Keys = 1 + r.IntN(3)
	id := 0
	for k := range s.Keys {
		for range 1 + r.IntN(4) {
			c := clientPlan{ID: id, Key: k, Start: uniform(r, 0, s.FaultEnd*4/5)}
			id++
			if r.IntN(7) == 0 {
				c.Payload = 1
			}
			switch r.IntN(10) {
			case 0, 1:
			case 2:
				// Just above the admission minimum: the claim's store time can take the
				// call below it.
				c.Deadline = s.MinRemaining + uniform(r, 0, 2*s.StoreTimeout)
			case 3, 4, 5:
				c.Deadline = uniform(r, 300*time.Millisecond, 3*time.Second)
			default:
				c.Deadline = uniform(r, s.Lease, 10*time.Second)
			}
			if r.IntN(6) == 0 {
				c.HangUp = uniform(r, 0, 3*time.Second)
			}
			c.Again = r.IntN(3) == 0
			s.Clients = append(s.Clients, c)
		}
	}
	// Most outages and pauses stay within the README's bound (the takeover grace); some
	// go beyond it, and are classified so.
	length := func() time.Duration {
		if r.IntN(8) == 0 {
			return uniform(r, grace+grace/10, 2*grace)
		}
		return uniform(r, 20*time.Millisecond, grace*9/10)
	}
	windows := func(n int) []window {
		var ws []window
		for range n {
			from := uniform(r, 0, s.FaultEnd)
			ws = append(ws, window{from, min(from+length(), s.FaultEnd)})
		}
		return ws
	}
	s.Outages = windows(pick(r, 0, 0, 1, 2))
	s.Freezes = windows(pick(r, 0, 0, 1, 2))
	for _, w := range windows(pick(r, 0, 0, 1, 2)) {
		// A partition may last longer than lease + grace: with no answer in hand, the
		// holder's cut-off keeps it safe however long.
		if r.IntN(3) == 0 {
			w.To = min(w.From+uniform(r, s.Lease+grace, 2*(s.Lease+grace)), s.FaultEnd)
		}
		s.Partitions = append(s.Partitions, partition{r.IntN(s.Replicas), w})
	}
	s.StoreErr = pick(r, 0, 0.02, 0.1)
	s.StoreAckLost = pick(r, 0, 0.03, 0.1)
	s.StoreLate = pick(r, 0, 0.05)
	s.Slow = pick(r, 0, 0.05, 0.2)
	s.Esign = esignPlan{
		NotSent:    pick(r, 0, 0.05),
		Lost:       pick(r, 0, 0.05, 0.1),
		AnswerLost: pick(r, 0, 0.05, 0.15),
		S5xx:       pick(r, 0, 0.05),
		S202:       pick(r, 0, 0.03),
		Refuse:     pick(r, 0, 0.05, 0.15),
		Slow:       pick(r, 0, 0.1, 0.3),
		Timeout:    pick(r, s.Lease/2, s.Lease, 3*s.Lease, 10*time.Second),
	}
	for range pick(r, 0, 1, 1, 2, 3, 4) {
		e := replicaEvent{At: uniform(r, 0, s.FaultEnd), Replica: r.IntN(s.Replicas), Kind: pick(r, crash, pause), For: length()}
		if e.Kind == crash {
			e.JournalKept = r.IntN(10) < 7
			// Most crashes hit while the replica cannot reach the store: when results
			// wait in its journal.
			ws := append(append([]window(nil), s.Outages...), s.Freezes...)
			for _, p := range s.Partitions {
				if p.Replica == e.Replica {
					ws = append(ws, p.window)
				}
			}
			if len(ws) > 0 && r.IntN(3) > 0 {
				w := pick(r, ws...)
				e.At = w.From + uniform(r, w.len()/3, w.len())
			}
		}
		s.Events = append(s.Events, e)
	}
	// Clocks: mostly agreeing; in some schedules apart by up to the allowance the
	// README states (250 ms); in a few, one replica's clock is off by more.
	s.Skew = make([]time.Duration, s.Replicas)
	switch r.IntN(20) {
	case 0, 1, 2, 3, 4, 5:
		for i := range s.Skew {
			s.Skew[i] = uniform(r, -submission.ClockAllowance/2, submission.ClockAllowance/2)
		}
	case 6:
		s.Skew[r.IntN(s.Replicas)] = pick(r, time.Duration(-1), 1) * uniform(r, 2*submission.ClockAllowance, 5*time.Second)
	}
	return s
}

func (s *schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d replicas, lease %v, store timeout %v (grace %v), unknown=%s, qps %v, min remaining %v, faults until %v\n",
		s.Seed, s.Replicas, s.Lease, s.StoreTimeout, s.grace(), s.Policy, s.QPS, s.MinRemaining, s.FaultEnd.Round(time.Millisecond))
	for _, c := range s.Clients {
		fmt.Fprintf(&b, "  caller c%d: key k%d payload p%d from %v deadline %v hang-up %v again %v\n",
			c.ID, c.Key, c.Payload, ms(c.Start), ms(c.Deadline), ms(c.HangUp), c.Again)
	}
	for _, w := range s.Outages {
		fmt.Fprintf(&b, "  store unreachable %v–%v\n", ms(w.From), ms(w.To))
	}
	for _, w := range s.Freezes {
		fmt.Fprintf(&b, "  store frozen %v–%v\n", ms(w.From), ms(w.To))
	}
	for _, p := range s.Partitions {
		fmt.Fprintf(&b, "  r%d cut off from the store %v–%v\n", p.Replica, ms(p.From), ms(p.To))
	}
	fmt.Fprintf(&b, "  store per op: error before commit %v, ack lost %v, late commit %v, slow %v\n", s.StoreErr, s.StoreAckLost, s.StoreLate, s.Slow)
	fmt.Fprintf(&b, "  e签宝 per call: not sent %v, lost %v, answer lost %v, 5xx %v, 202 %v, refused %v, slow %v, client timeout %v\n",
		s.Esign.NotSent, s.Esign.Lost, s.Esign.AnswerLost, s.Esign.S5xx, s.Esign.S202, s.Esign.Refuse, s.Esign.Slow, s.Esign.Timeout)
	for _, e := range s.Events {
		switch e.Kind {
		case crash:
			fmt.Fprintf(&b, "  r%d crashes at %v (journal kept: %v), restarts %v later\n", e.Replica, ms(e.At), e.JournalKept, ms(e.For))
		case pause:
			fmt.Fprintf(&b, "  r%d paused at %v for %v\n", e.Replica, ms(e.At), ms(e.For))
		}
	}
	for i, d := range s.Skew {
		if d != 0 {
			fmt.Fprintf(&b, "  r%d clock skew %v\n", i, d)
		}
	}
	return b.String()
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

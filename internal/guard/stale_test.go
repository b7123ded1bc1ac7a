package guard

import (
	"context"
	"errors"
	"net"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// sharedRig is two replicas' guards sharing one quota (as through PostgreSQL), on one
// fake clock, and the instants their sends went.
type sharedRig struct {
	fc    *clock.Fake
	quota Quota
	a, b  *Guard
	mu    sync.Mutex
	sent  []time.Time
}

func newSharedRig(qps float64) *sharedRig {
	fc := clock.NewFake(time.Now())
	q := NewLocalQuota(qps, fc)
	mk := func() *Guard {
		return New(Config{Settings: Settings{QPS: qps, MinRemaining: 10 * time.Millisecond}, Quota: q, Clock: fc})
	}
	return &sharedRig{fc: fc, quota: q, a: mk(), b: mk()}
}

// send sends through g on ctx (which carries its admitted slot): the call plays the
// HTTP client's trace (the connection, its headers written, the request written) and notes the instant.
// before runs in the call before the connection is got (a pause there).
func (r *sharedRig) send(ctx context.Context, g *Guard, before func()) error {
	_, err := g.send(ctx, context.WithoutCancel(ctx), "op", func(c context.Context) (any, error) {
		if before != nil {
			before()
		}
		if err := r.write(c, nil); err != nil {
			return nil, err
		}
		return "ok", nil
	})
	return err
}

// write plays the HTTP client's trace of a call on conn: the connection got (its pacing),
// the instant noted, its headers and the request reported written. It returns c's error
// if the pacing ended the call.
func (r *sharedRig) write(c context.Context, conn net.Conn) error {
	tr := httptrace.ContextClientTrace(c)
	tr.GotConn(httptrace.GotConnInfo{Conn: conn})
	if err := c.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	r.sent = append(r.sent, r.fc.Now())
	r.mu.Unlock()
	if tr.WroteHeaders != nil {
		tr.WroteHeaders()
	}
	if tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
	return nil
}

func (r *sharedRig) advanceTo(t time.Time) {
	if d := t.Sub(r.fc.Now()); d > 0 {
		r.fc.Advance(d)
	}
}

// Issue 24 item 3, several replicas: a send that goes long after its slot of the shared
// quota (its replica paused, or its key's claim took long) must not use that slot. Each
// replica counts only its own sends, so replica A's late sends would otherwise bunch
// with replica B's on time: here A takes 10 slots in the first half second and is paused
// until 1.015 s, while B sends on every slot after; A's 10 sends at 1.015 s and B's 20
// in the next second would make 30 in one window at ESIGN_QPS=20. A's callers have too
// little deadline left for a fresh slot: nothing is sent, each is refused as rate
// limited, and no window carries more than 20.
func TestStaleSlotIsNotUsed(t *testing.T) {
	const qps = 20
	r := newSharedRig(qps)
	iv := SlotInterval(qps)
	t0 := r.fc.Now()
	var stale []context.Context
	for k := range 10 {
		r.advanceTo(t0.Add(time.Duration(k) * iv))
		ctx, cancel := clock.WithDeadline(context.Background(), r.fc, t0.Add(1030*time.Millisecond))
		t.Cleanup(cancel)
		actx, err := r.a.AdmitSlot(ctx, 0)
		if err != nil {
			t.Fatalf("A's call %d: %v", k, err)
		}
		stale = append(stale, actx)
	}
	for k := 10; k < 40; k++ {
		r.advanceTo(t0.Add(time.Duration(k) * iv))
		actx, err := r.b.AdmitSlot(context.Background(), 0)
		if err != nil {
			t.Fatalf("B's call %d: %v", k, err)
		}
		if err := r.send(actx, r.b, nil); err != nil {
			t.Fatalf("B's send %d: %v", k, err)
		}
		if k == 20 {
			// A runs again, 15 ms before its callers' deadlines less the admission minimum.
			for i, ctx := range stale {
				if err := r.send(ctx, r.a, nil); !errors.Is(err, ErrRateLimited) {
					t.Errorf("A's late send %d: %v, want ErrRateLimited (nothing sent)", i, err)
				}
			}
		}
	}
	if most, at := esignsim.MostInWindow(r.sent, time.Second); most > qps {
		t.Errorf("%d sends in the 1 s window from +%v, more than %d", most, at.Sub(t0), qps)
	}
	if len(r.sent) != 30 {
		t.Errorf("%d sends, want B's 30 alone", len(r.sent))
	}
}

// A late send whose caller has time left waits for a fresh slot of the shared quota
// rather than refusing; so does one paused after the guard's check, on its way to the
// connection (pace).
func TestStaleSlotTakesAFreshOne(t *testing.T) {
	const qps = 20
	iv := SlotInterval(qps)
	for _, where := range []string{"before the send", "on the way to the connection"} {
		t.Run(where, func(t *testing.T) {
			r := newSharedRig(qps)
			t0 := r.fc.Now()
			actx, err := r.a.AdmitSlot(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			pause := 500 * time.Millisecond
			var before func()
			if where == "before the send" {
				r.advanceTo(t0.Add(pause))
			} else {
				// B takes the slot due now while A is paused past its check.
				before = func() {
					r.advanceTo(t0.Add(pause))
					bctx, err := r.b.AdmitSlot(context.Background(), 0)
					if err != nil {
						t.Error(err)
						return
					}
					if err := r.send(bctx, r.b, nil); err != nil {
						t.Error(err)
					}
				}
			}
			if where == "before the send" {
				bctx, err := r.b.AdmitSlot(context.Background(), 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.send(bctx, r.b, nil); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- r.send(actx, r.a, before) }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.fc.BlockUntilContext(ctx, 1); err != nil {
				t.Fatalf("A's late send never waited for a fresh slot: %v (sent %v)", err, r.sent)
			}
			r.fc.Advance(iv)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.sent) != 2 || r.sent[1].Sub(t0) != pause+iv {
				t.Errorf("sends at %v, want B's at +%v and A's on a fresh slot at +%v", r.sent, pause, pause+iv)
			}
		})
	}
}

// A send is stamped when its request's bytes have left the process, not when net/http
// reports it written: over HTTP/1.1 WroteRequest comes before the transport's buffer is
// flushed to the socket, and the writing goroutine can wait for a core in between. Here
// the first of QPS sends reports its headers and the request written at once, and its
// connection's write returns 300 ms later; the send QPS after it must wait for a window
// plus the slack after that write (with either trace stamp alone it would go 295 ms early).
// Writes after the answer has started no longer move the stamp.
func TestSendStampedWhenTheRequestIsFlushed(t *testing.T) {
	const qps = 5
	r := newSharedRig(qps)
	t0 := r.fc.Now()
	flushDelay := 300 * time.Millisecond
	// run runs f (an admission and a send) while the fake clock steps 1 ms at a time
	// whenever something waits on it, and returns the instant the send went.
	run := func(f func() error) time.Time {
		t.Helper()
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		go func() { err = f(); cancel() }()
		for r.fc.BlockUntilContext(wctx, 1) == nil {
			r.fc.Advance(time.Millisecond)
		}
		<-wctx.Done()
		if errors.Is(wctx.Err(), context.DeadlineExceeded) {
			t.Fatal("a send neither went nor waited")
		}
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.sent[len(r.sent)-1]
	}
	run(func() error {
		actx, err := r.a.AdmitSlot(context.Background(), 0)
		if err != nil {
			return err
		}
		_, err = r.a.send(actx, actx, "op", func(c context.Context) (any, error) {
			conn := &watchedPipe{}
			if err := r.write(c, conn); err != nil {
				return nil, err
			}
			tr := httptrace.ContextClientTrace(c)
			r.advanceTo(t0.Add(flushDelay))
			conn.wrote() // the flush's write returns
			if tr.GotFirstResponseByte != nil {
				tr.GotFirstResponseByte()
			}
			r.advanceTo(t0.Add(flushDelay + 50*time.Millisecond))
			conn.wrote() // a later write on the connection (the next request's)
			return "ok", nil
		})
		return err
	})
	var last time.Time
	for range qps {
		last = run(func() error {
			ctx, err := r.a.AdmitSlot(context.Background(), 0)
			if err != nil {
				return err
			}
			return r.send(ctx, r.a, nil)
		})
	}
	if want := t0.Add(flushDelay + QuotaWindow + sendSlack); last.Before(want) || last.After(want.Add(2*time.Millisecond)) {
		var at []time.Duration
		for _, s := range r.sent {
			at = append(at, s.Sub(t0))
		}
		t.Errorf("send %d went at +%v, want +%v (a window and the slack after the first's flush); sends at %v",
			qps+1, last.Sub(t0), want.Sub(t0), at)
	}
}

// watchedPipe is a connection whose writes a test plays (upstream.WriteWatcher).
type watchedPipe struct {
	net.Conn
	mu       sync.Mutex
	watchers map[*func()]struct{}
}

func (p *watchedPipe) WatchWrites(f func()) (stop func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchers == nil {
		p.watchers = map[*func()]struct{}{}
	}
	k := &f
	p.watchers[k] = struct{}{}
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.watchers, k)
	}
}

// wrote plays a write returning.
func (p *watchedPipe) wrote() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for f := range p.watchers {
		(*f)()
	}
}

package simulation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esign-evidence/esign-evidence/internal/clock"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// world is one schedule running: the shared store, e签宝, the replicas, the callers, and
// what was observed (the trace, what callers were told, every e签宝 call).
type world struct {
	s     *schedule
	dir   string
	t0    time.Time
	store *memStore
	reps  []*replica

	mu    sync.Mutex
	trace []traceLine
	// told: per key, every id a caller was told.
	told map[int][]tell
	// calls: per key, every e签宝 call (from when it was sent until it could no longer
	// reach e签宝).
	calls map[int][]*callSpan
	// created: per key, the ids e签宝 created.
	created map[int]map[string]bool
	// claims: per attempt, whether its claim's acknowledgement reached the replica.
	claims     map[string]bool
	claimedAt  map[string]time.Duration
	cov        coverage
	beyond     []string
	violations []string
	nextID     map[int]int
	// lastBeyondEnd is when the last fault beyond the bound ended.
	lastBeyondEnd time.Duration
	// Beyond the bound: calls that overlapped, keys whose callers were told two ids,
	// answers lost.
	overlaps, split, lostAnswers int
	beyondKinds                  map[string]bool
	// journalLost: per replica, when it crashed and lost its journal.
	journalLost map[int][]time.Duration
	// away: per replica, when it was stopped or down.
	away map[int][]window
	// dups: ids a replica reported as a second result for their key.
	dups map[string]bool
}

// faulty reports whether faults still happen (until FaultEnd).
func (w *world) faulty() bool { return w.now() < w.s.FaultEnd }

type tell struct {
	at      time.Duration
	client  int
	replica int
	id      string
}

type callSpan struct {
	replica    int
	from, to   time.Duration
	arrives    time.Duration
	processed  bool
	open       bool
	id, result string
	// answered: e签宝's result reached the replica's code (run life) at answeredAt.
	answered   bool
	answeredAt time.Duration
	life       *life
}

// coverage counts the risky paths a schedule reached.
type coverage struct {
	Takeover, WriteBack, Replay, AckLost, CutOff, Recheck, Duplicate int
}

// traceLine is formatted only when the trace is printed.
type traceLine struct {
	at     time.Duration
	format string
	args   []any
}

func (w *world) now() time.Duration { return time.Since(w.t0) }

// logf adds a line to the trace. Nothing personal ever enters it: keys are k0…, payloads
// p0…, ids are e签宝's fake ids.
func (w *world) logf(format string, args ...any) {
	at := w.now()
	w.mu.Lock()
	w.trace = append(w.trace, traceLine{at, format, args})
	w.mu.Unlock()
}

// draw is the random number for what, for replica and key k, now: a hash of the seed,
// those and the simulated time, so that a draw does not depend on the order in which
// goroutines running at the same instant reach it, and a seed replays the same.
func (w *world) draw(what string, replica, k int) uint64 {
	x := w.s.Seed*0x9e3779b97f4a7c15 ^ uint64(replica+2)*0xbf58476d1ce4e5b9 ^ uint64(k+2)*0x94d049bb133111eb ^ uint64(w.now())
	for i := 0; i < len(what); i++ {
		x = (x ^ uint64(what[i])) * 0x100000001b3
	}
	// splitmix64's finaliser.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (w *world) float(what string, replica, k int) float64 {
	return float64(w.draw(what, replica, k)>>11) / (1 << 53)
}

func (w *world) duration(lo, hi time.Duration, what string, replica, k int) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.draw(what, replica, k)%uint64(hi-lo))
}

// partitioned reports whether replica cannot reach the store now.
func (w *world) partitioned(replica int) bool {
	now := w.now()
	for _, p := range w.s.Partitions {
		if p.Replica == replica && now >= p.From && now < p.To {
			return true
		}
	}
	return false
}

func (w *world) in(ws []window) (window, bool) {
	now := w.now()
	for _, win := range ws {
		if now >= win.From && now < win.To {
			return win, true
		}
	}
	return window{}, false
}

func keyOf(k int) submission.Key {
	return submission.Key{Op: opPsn, Namespace: "sim", CustomBizID: fmt.Sprintf("k%d", k)}
}

func keyIndex(k submission.Key) int {
	i := 0
	for _, c := range k.CustomBizID[1:] {
		i = i*10 + int(c-'0')
	}
	return i
}

var fpKey = []byte("simulation-fingerprint-key-0123")

// sleepCtx sleeps d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ---- replicas ----

// replica is one process of the service; life is one run of it, from a start to a crash.
type replica struct {
	w    *world
	id   int
	mu   sync.Mutex
	life *life
	// journals counts the journal files this replica had (a lost journal is a new file).
	journals int
}

type life struct {
	r    *replica
	inc  int
	dead atomic.Bool
	died chan struct{}
	// diedAt is when the run crashed.
	diedAt time.Duration
	mu     sync.Mutex
	// resume is non-nil while the process is stopped; it is closed when it goes on.
	resume chan struct{}
	sub    *submission.Submitter
	guard  *guard.Guard
	jnl    *submission.Journal
	cancel context.CancelFunc
}

// gate is where a goroutine of this run touches the outside world (the store, e签宝, the
// caller's connection). A goroutine of a crashed run ends here: the process is gone. A
// goroutine of a stopped process waits here until it goes on.
func (l *life) gate() {
	for {
		if l.dead.Load() {
			runtime.Goexit()
		}
		l.mu.Lock()
		ch := l.resume
		l.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}

func (r *replica) current() *life {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.life
}

// start runs the replica anew: a new Submitter and Guard (memory is not kept), the
// journal file reopened when kept, a new one when lost, and the journal replayed.
func (r *replica) start(keepJournal bool) error {
	w := r.w
	r.mu.Lock()
	defer r.mu.Unlock()
	if !keepJournal || r.journals == 0 {
		r.journals++
	}
	inc := 0
	if r.life != nil {
		inc = r.life.inc + 1
	}
	l := &life{r: r, inc: inc, died: make(chan struct{})}
	j, err := submission.OpenJournal(filepath.Join(w.dir, fmt.Sprintf("r%d-j%d", r.id, r.journals)))
	if err != nil {
		return err
	}
	skew := w.s.Skew[r.id]
	sub, err := submission.New(submission.Config{
		Store:           &conn{w: w, l: l},
		FingerprintKeys: [][]byte{fpKey},
		Unknown:         w.s.Policy,
		Lease:           w.s.Lease,
		StoreTimeout:    w.s.StoreTimeout,
		Journal:         j,
		Logger:          slog.New(&logCounter{l: l}),
		Clock:           skewed(skew),
	})
	if err != nil {
		j.Close()
		return err
	}
	sub.OnDuplicate(func(guard.Op) {
		if !l.dead.Load() {
			w.mu.Lock()
			w.cov.Duplicate++
			w.mu.Unlock()
		}
	})
	l.sub, l.jnl = sub, j
	l.guard = guard.New(guard.Config{QPS: w.s.QPS, MinRemaining: w.s.MinRemaining, Clock: skewed(skew)})
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	r.life = l
	if err := sub.Start(ctx); err != nil {
		return err
	}
	return nil
}

// crash ends the run: its goroutines end at their next touch of the outside world, its
// memory is gone, the journal file is closed (kept or not is decided at the restart).
func (r *replica) crash() (pending int) {
	r.mu.Lock()
	l := r.life
	r.mu.Unlock()
	if l == nil || l.dead.Load() {
		return 0
	}
	// Results waiting: held in memory, or journaled while the store is retried.
	pending = max(l.sub.Pending(), l.jnl.Len())
	l.diedAt = r.w.now()
	l.dead.Store(true)
	close(l.died)
	l.mu.Lock()
	if l.resume != nil {
		close(l.resume)
		l.resume = nil
	}
	l.mu.Unlock()
	l.cancel()
	l.jnl.Close()
	return pending
}

func (r *replica) pause() bool {
	l := r.current()
	if l == nil || l.dead.Load() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.resume != nil {
		return false
	}
	l.resume = make(chan struct{})
	return true
}

func (r *replica) resume() {
	l := r.current()
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.resume != nil {
		close(l.resume)
		l.resume = nil
	}
}

// logCounter reads a replica's log for the paths it reports, and puts its warnings in
// the trace (message only: the attributes carry no personal data either, but the trace
// stays short).
type logCounter struct{ l *life }

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }
func (h *logCounter) Handle(_ context.Context, rec slog.Record) error {
	if h.l.dead.Load() {
		return nil
	}
	w := h.l.r.w
	switch {
	case strings.HasPrefix(rec.Message, "recorded a kept e签宝 result"):
		w.mu.Lock()
		w.cov.WriteBack++
		w.mu.Unlock()
	case strings.HasPrefix(rec.Message, "replaying e签宝 results kept by a previous run"):
		w.mu.Lock()
		w.cov.Replay++
		w.mu.Unlock()
	case strings.HasPrefix(rec.Message, "a second e签宝 result was created"):
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "also_created" {
				w.mu.Lock()
				w.dups[a.Value.String()] = true
				w.mu.Unlock()
			}
			return true
		})
	}
	if rec.Level >= slog.LevelInfo {
		var key string
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "custom_biz_id" {
				key = a.Value.String()
			}
			return true
		})
		w.logf("r%d log: %s %s", h.l.r.id, key, rec.Message)
	}
	return nil
}

// skewClock is a replica's clock: the bubble's time off by skew. Durations (timers,
// sleeps, timeouts) run as the bubble's; readings of the time and the time left until
// a stored one are off.
type skewClock struct {
	clock.Clock
	skew time.Duration
}

func skewed(d time.Duration) clock.Clock {
	if d == 0 {
		return clock.Real()
	}
	return skewClock{clock.Real(), d}
}

func (c skewClock) Now() time.Time                  { return time.Now().Add(c.skew) }
func (c skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c skewClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// skewCtx is a request's context as a replica with a skewed clock sees it: gRPC sends
// the time left, and the server sets the deadline on its own clock.
type skewCtx struct {
	context.Context
	skew time.Duration
}

func (c skewCtx) Deadline() (time.Time, bool) {
	d, ok := c.Context.Deadline()
	if !ok {
		return d, false
	}
	return d.Add(c.skew), true
}

// ---- the store as one replica reaches it ----

// conn is one replica's connection to the shared store, with the schedule's faults: an
// outage refuses at once; a freeze answers nothing until it ends; an operation may fail
// before its commit, commit and lose its acknowledgement, or (a write stuck behind the
// key when its caller gave up, as bbolt's bounded writes do) commit after its caller
// was told an error; answers may be slow. A crashed replica's operation that has not
// committed never does.
type conn struct {
	w *world
	l *life
}

var errUnreachable = fmt.Errorf("%w: connection refused", submission.ErrStoreUnavailable)

func storeCtxErr(ctx context.Context) error {
	return fmt.Errorf("%w: %v", submission.ErrStoreUnavailable, context.Cause(ctx))
}

// arrive is an operation's way to the store: false (with the error to return) when it
// does not get there.
func (c *conn) arrive(ctx context.Context, key int) (bool, error) {
	w := c.w
	if _, ok := w.in(w.s.Outages); ok || w.partitioned(c.l.r.id) {
		sleepCtx(ctx, time.Millisecond)
		return false, errUnreachable
	}
	if !sleepCtx(ctx, w.duration(100*time.Microsecond, 3*time.Millisecond, "store-lat", c.l.r.id, key)) {
		return false, storeCtxErr(ctx)
	}
	if win, ok := w.in(w.s.Freezes); ok {
		// The store takes the request and says nothing until it thaws.
		if !sleepCtx(ctx, win.To-w.now()) {
			return false, storeCtxErr(ctx)
		}
	}
	if w.faulty() && w.float("store-err", c.l.r.id, key) < w.s.StoreErr {
		return false, fmt.Errorf("%w: server closed the connection", submission.ErrStoreUnavailable)
	}
	return true, nil
}

// answer is the way back: slow sometimes; an answer that comes after the caller's
// context ended is lost.
func (c *conn) answer(ctx context.Context, key int) error {
	w := c.w
	d := w.duration(100*time.Microsecond, 3*time.Millisecond, "store-lat2", c.l.r.id, key)
	if w.faulty() && w.float("store-slow", c.l.r.id, key) < w.s.Slow {
		d = w.duration(w.s.StoreTimeout/2, 2*w.s.StoreTimeout, "store-slowlat", c.l.r.id, key)
	}
	if !sleepCtx(ctx, d) {
		return storeCtxErr(ctx)
	}
	return nil
}

func (c *conn) Get(ctx context.Context, key submission.Key) (*submission.Record, error) {
	c.l.gate()
	if ok, err := c.arrive(ctx, keyIndex(key)); !ok {
		c.l.gate()
		return nil, err
	}
	rec := c.w.store.read(key)
	err := c.answer(ctx, keyIndex(key))
	c.l.gate()
	if err != nil {
		return nil, err
	}
	return rec, nil
}

func (c *conn) Mutate(ctx context.Context, key submission.Key, fn func(cur *submission.Record) (*submission.Record, error)) error {
	return c.MutateAt(ctx, key, func(cur *submission.Record, _ time.Time) (*submission.Record, error) { return fn(cur) })
}

// MutateAt gives fn the store's time (the bubble's, unskewed), as PostgreSQL's does.
func (c *conn) MutateAt(ctx context.Context, key submission.Key, at func(cur *submission.Record, now time.Time) (*submission.Record, error)) error {
	fn := func(cur *submission.Record) (*submission.Record, error) { return at(cur, time.Now()) }
	c.l.gate()
	w := c.w
	if ok, err := c.arrive(ctx, keyIndex(key)); !ok {
		c.l.gate()
		return err
	}
	if err := w.store.lock(ctx, key); err != nil {
		if w.faulty() && w.float("store-late", c.l.r.id, keyIndex(key)) < w.s.StoreLate && !c.l.dead.Load() {
			// The write goes on without its caller, and commits once it has the key.
			go func() {
				if w.store.lock(context.Background(), key) != nil {
					return
				}
				defer w.store.unlock(key)
				if c.l.dead.Load() {
					return
				}
				if w.commit(c.l, key, fn) {
					w.mu.Lock()
					w.cov.AckLost++
					w.mu.Unlock()
					w.logf("store: r%d's write of %s committed after its caller gave up", c.l.r.id, key.CustomBizID)
				}
			}()
		}
		c.l.gate()
		return err
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			w.store.unlock(key)
		}
	}
	defer unlock()
	if c.l.dead.Load() {
		runtime.Goexit() // crashed before the commit: the transaction is rolled back
	}
	wrote, claim := false, ""
	{
		cur := w.store.read(key)
		next, err := fn(cur)
		if c.l.dead.Load() {
			runtime.Goexit()
		}
		if err != nil {
			return err
		}
		if next != nil {
			wrote = true
			claim = w.observe(c.l.r.id, key, cur, next)
			w.store.write(key, next)
		}
	}
	unlock()
	if w.faulty() && w.float("store-acklost", c.l.r.id, keyIndex(key)) < w.s.StoreAckLost {
		// Committed; the answer never arrives.
		<-ctx.Done()
		if wrote {
			w.mu.Lock()
			w.cov.AckLost++
			w.mu.Unlock()
			w.logf("store: r%d's write of %s committed, acknowledgement lost", c.l.r.id, key.CustomBizID)
		}
		c.l.gate()
		return storeCtxErr(ctx)
	}
	if err := c.answer(ctx, keyIndex(key)); err != nil {
		if wrote {
			w.mu.Lock()
			w.cov.AckLost++
			w.mu.Unlock()
			w.logf("store: r%d's write of %s committed, acknowledgement too late", c.l.r.id, key.CustomBizID)
		}
		c.l.gate()
		return err
	}
	c.l.gate()
	if claim != "" {
		w.mu.Lock()
		w.claims[claim] = true
		w.mu.Unlock()
	}
	return nil
}

// commit runs fn on the key's record and writes its answer (the key held).
func (w *world) commit(l *life, key submission.Key, fn func(cur *submission.Record) (*submission.Record, error)) bool {
	cur := w.store.read(key)
	next, err := fn(cur)
	if err != nil || next == nil {
		return false
	}
	w.observe(l.r.id, key, cur, next)
	w.store.write(key, next)
	return true
}

// observe notes what a write does to a record: a claim (returned: its attempt), a
// takeover of an expired lease, a claim given back unsent after admission was checked
// again.
func (w *world) observe(replica int, key submission.Key, cur, next *submission.Record) (claim string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if next.State == submission.StateInProgress && (cur == nil || cur.AttemptID != next.AttemptID) {
		claim = next.AttemptID
		w.claims[claim] = false
		w.claimedAt[claim] = w.now()
		if cur != nil && cur.State == submission.StateInProgress {
			w.cov.Takeover++
			w.trace = append(w.trace, traceLine{w.now(), "store: r%d takes %s over from an expired lease", []any{replica, key.CustomBizID}})
		}
	}
	if cur != nil && cur.State == submission.StateInProgress && next.State != submission.StateInProgress &&
		next.State != submission.StateSucceeded && next.Attempts == cur.Attempts-1 && w.claims[cur.AttemptID] {
		w.cov.Recheck++
		w.trace = append(w.trace, traceLine{w.now(), "store: r%d gives %s back unsent after its claim", []any{replica, key.CustomBizID}})
	}
	if cur == nil || cur.State != next.State || cur.Result != next.Result {
		w.trace = append(w.trace, traceLine{w.now(), "store: %s %s→%s %s (r%d)", []any{key.CustomBizID, stateOf(cur), next.State, next.Result, replica}})
	}
	return claim
}

func stateOf(r *submission.Record) string {
	if r == nil {
		return "none"
	}
	return string(r.State)
}

func (c *conn) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	c.l.gate()
	if ok, err := c.arrive(ctx, -1); !ok {
		c.l.gate()
		return 0, err
	}
	n, err := c.w.store.DeleteBefore(ctx, cutoff)
	c.l.gate()
	return n, err
}

func (c *conn) Close() error { return nil }

// ---- e签宝 ----

// esignCall is e签宝 as one replica's client sees it for one key. Each call is sent, may
// be lost on the way or refused before sending, arrives after a while (and is then
// processed: an evidence point exists), and its answer may be a result, a business
// refusal, a 5xx or an undocumented 202 (processed or not), or lost. The client's errors
// are the real client's (upstream's typed errors, each stating its outcome).
func (w *world) esignCall(l *life, k int) func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
	return func(ctx context.Context) (*upstream.PsnEvidencePointResult, error) {
		l.gate()
		if ctx.Err() != nil {
			return nil, &upstream.SendError{Err: ctx.Err(), Local: true}
		}
		e := w.s.Esign
		rep := l.r.id
		mode := w.float("esign-mode", -1, k)
		if !w.faulty() {
			mode = 1
		}
		if mode < e.NotSent {
			sleepCtx(ctx, time.Millisecond)
			l.gate()
			return nil, &upstream.SendError{Err: errors.New("connection refused")}
		}
		mode -= e.NotSent
		// e签宝 processes a request within ESIGN_MIN_REMAINING of its sending (the README's
		// "about what e签宝 takes to answer"), whatever its client does meanwhile.
		arrive := w.duration(time.Millisecond, min(300*time.Millisecond, w.s.MinRemaining), "esign-lat", -1, k)
		back := w.duration(time.Millisecond, 200*time.Millisecond, "esign-lat2", -1, k)
		if w.faulty() && w.float("esign-slow", -1, k) < e.Slow {
			back = w.duration(w.s.Lease/2, 2*w.s.Lease, "esign-slowlat", -1, k)
		}
		type kind int
		const (
			ok kind = iota
			lost
			answerLost
			s5xx
			s202
			refused
		)
		what := ok
		for _, c := range []struct {
			p float64
			k kind
		}{{e.Lost, lost}, {e.AnswerLost, answerLost}, {e.S5xx, s5xx}, {e.S202, s202}, {e.Refuse, refused}} {
			if mode < c.p {
				what = c.k
				break
			}
			mode -= c.p
		}
		processed := what == ok || what == answerLost || what == s202 ||
			(what == s5xx && w.float("esign-5xx", -1, k) < 0.5)
		now := w.now()
		span := &callSpan{replica: rep, from: now, arrives: now + arrive, processed: processed, open: true}
		w.mu.Lock()
		if processed {
			w.nextID[k]++
			span.id = fmt.Sprintf("E%d-%d", k, w.nextID[k])
			if w.created[k] == nil {
				w.created[k] = map[string]bool{}
			}
			w.created[k][span.id] = true
		}
		w.calls[k] = append(w.calls[k], span)
		w.mu.Unlock()
		w.logf("e签宝: r%d sends k%d (%s), creates %q, arrives +%v", rep, k, callKinds[what], span.id, arrive)
		end := func() {
			w.mu.Lock()
			span.to, span.open = w.now(), false
			w.mu.Unlock()
		}
		defer end()
		cctx, cancel := context.WithTimeout(ctx, e.Timeout)
		defer cancel()
		wait := arrive + back
		if what == lost || what == answerLost {
			wait = 24 * time.Hour
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-l.died:
			runtime.Goexit()
		case <-cctx.Done():
			cut := ctx.Err() != nil
			l.gate()
			if cut {
				w.mu.Lock()
				w.cov.CutOff++
				w.mu.Unlock()
				w.logf("e签宝: r%d's call for k%d cut off (%v)", rep, k, ctx.Err())
			}
			return nil, &upstream.UnknownOutcomeError{Err: cctx.Err()}
		}
		l.gate()
		switch what {
		case s5xx:
			return nil, &upstream.UnknownOutcomeError{Status: 503}
		case s202:
			return nil, &upstream.UnknownOutcomeError{Status: 202}
		case refused:
			return nil, &upstream.BusinessError{Code: 1435203, Message: "refused"}
		}
		w.mu.Lock()
		span.result, span.answered, span.answeredAt, span.life = span.id, true, w.now(), l
		w.mu.Unlock()
		return &upstream.PsnEvidencePointResult{EviPointID: span.id}, nil
	}
}

var callKinds = []string{"answered", "lost on the way", "answer lost", "5xx", "202", "refused"}

// ---- callers ----

type answer struct {
	id      string
	err     error
	crashed bool
}

// request sends one request of c to replica r and returns what the caller learns
// (nothing if it gave up first).
func (w *world) request(c clientPlan, r *replica, deadline time.Duration, hangUp time.Duration) (answer, bool) {
	l := r.current()
	if l == nil || l.dead.Load() {
		return answer{err: errors.New("connection refused")}, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	if deadline > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), deadline)
	}
	defer cancel()
	if hangUp > 0 {
		t := time.AfterFunc(hangUp, cancel)
		defer t.Stop()
	}
	ch := make(chan answer, 1)
	go func() {
		sent := false
		defer func() {
			if !sent {
				ch <- answer{crashed: true}
			}
		}()
		l.gate()
		res, err := submission.Submit(skewCtx{ctx, w.s.Skew[r.id]}, l.sub, l.guard, psnRealname, keyOf(c.Key), l.sub.Fingerprint([]byte(fmt.Sprintf("payload-%d", c.Payload))), w.esignCall(l, c.Key))
		l.gate()
		a := answer{err: err}
		if err == nil && res.Value != nil {
			a.id = res.Value.EviPointID
		}
		sent = true
		ch <- a
	}()
	select {
	case a := <-ch:
		return a, true
	case <-ctx.Done():
		return answer{}, false
	}
}

// retryable reports whether a caller sends again after err.
func retryable(err error) bool {
	var be *upstream.BusinessError
	switch {
	case errors.Is(err, submission.ErrConflict), errors.Is(err, submission.ErrUnknownRefused):
		return false
	case errors.As(err, &be):
		return false
	}
	return true
}

func (w *world) runClient(c clientPlan) {
	time.Sleep(c.Start)
	for try := 0; w.now() < w.s.FaultEnd; try++ {
		r := w.reps[w.draw("client-replica", -1, c.ID)%uint64(len(w.reps))]
		hang := time.Duration(0)
		if try == 0 {
			hang = c.HangUp
		}
		a, got := w.request(c, r, c.Deadline, hang)
		switch {
		case !got:
			w.logf("c%d (k%d p%d) on r%d: gave up", c.ID, c.Key, c.Payload, r.id)
		case a.crashed:
			w.logf("c%d (k%d p%d) on r%d: connection lost", c.ID, c.Key, c.Payload, r.id)
		case a.err != nil:
			w.logf("c%d (k%d p%d) on r%d: %v", c.ID, c.Key, c.Payload, r.id, a.err)
			if !retryable(a.err) {
				return
			}
		default:
			w.noteTold(c, r.id, a.id)
			if !c.Again {
				return
			}
			c.Again = false
		}
		time.Sleep(w.duration(50*time.Millisecond, time.Second, "client-backoff", -1, c.ID))
	}
}

func (w *world) noteTold(c clientPlan, replica int, id string) {
	w.logf("c%d (k%d p%d) on r%d: told %s", c.ID, c.Key, c.Payload, replica, id)
	w.mu.Lock()
	w.told[c.Key] = append(w.told[c.Key], tell{at: w.now(), client: c.ID, replica: replica, id: id})
	w.mu.Unlock()
}

// ---- the run ----

// result is what one schedule showed.
type result struct {
	seed       uint64
	violations []string
	beyond     []string
	cov        coverage
	trace      string
	overlaps   int
	split      int
	lost       int
	kinds      map[string]bool
}

func (w *world) violate(format string, args ...any) {
	w.mu.Lock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

func (w *world) beyondBound(kind string, end time.Duration, format string, args ...any) {
	w.mu.Lock()
	w.beyondKinds[kind] = true
	w.beyond = append(w.beyond, fmt.Sprintf(format, args...))
	w.lastBeyondEnd = max(w.lastBeyondEnd, end)
	w.mu.Unlock()
}

// run plays the schedule inside the current synctest bubble.
func run(s *schedule, dir string) result {
	w := &world{s: s, dir: dir, t0: time.Now(), store: newMemStore(),
		told: map[int][]tell{}, calls: map[int][]*callSpan{}, created: map[int]map[string]bool{}, claims: map[string]bool{}, claimedAt: map[string]time.Duration{}, nextID: map[int]int{}, dups: map[string]bool{}, away: map[int][]window{}, beyondKinds: map[string]bool{}, journalLost: map[int][]time.Duration{}}
	grace := s.grace()
	// The store has a clock of its own (like PostgreSQL, submission.ClockedStore): leases
	// are written and judged on it, so the replicas' clocks may disagree by any amount
	// within the bound.
	for i := range s.Replicas {
		r := &replica{w: w, id: i}
		w.reps = append(w.reps, r)
		if err := r.start(true); err != nil {
			w.violate("r%d did not start: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	for _, c := range s.Clients {
		wg.Go(func() { w.runClient(c) })
	}
	// Replica events, one driver per replica so that each replica's events keep their order.
	for i, r := range w.reps {
		var evs []replicaEvent
		for _, e := range s.Events {
			if e.Replica == i {
				evs = append(evs, e)
			}
		}
		sort.Slice(evs, func(a, b int) bool { return evs[a].At < evs[b].At })
		wg.Go(func() { w.drive(r, evs) })
	}
	// After the faults: a call whose answer was lost ends at the client's timeout (or the
	// lease's cut-off); then every key reaches a final state within the grace (as read by
	// a replica whose clock is behind the holder's: plus the clocks' spread).
	time.Sleep(s.FaultEnd + max(s.Lease, s.Esign.Timeout) + grace + (slices.Max(s.Skew) - slices.Min(s.Skew)) - w.now())
	w.checkSettled()
	w.settle()
	wg.Wait()
	w.checkFinal()
	for _, r := range w.reps {
		r.crash()
	}
	// Let every goroutine of the crashed runs reach its end.
	time.Sleep(time.Hour)
	res := result{seed: s.Seed, violations: w.violations, beyond: w.beyond, cov: w.cov}
	res.overlaps, res.split, res.lost, res.kinds = w.overlaps, w.split, w.lostAnswers, w.beyondKinds
	if len(w.violations) > 0 || *seedFlag != 0 {
		res.trace = w.traceText()
	}
	return res
}

// drive plays one replica's crashes and pauses; at FaultEnd the replica runs again.
func (w *world) drive(r *replica, evs []replicaEvent) {
	grace := w.s.grace()
	for _, e := range evs {
		if e.At < w.now() {
			continue // the replica was still down or paused from the last event
		}
		time.Sleep(e.At - w.now())
		end := min(e.At+e.For, w.s.FaultEnd)
		switch e.Kind {
		case crash:
			l := r.current()
			pending := r.crash()
			if l != nil && !e.JournalKept {
				w.mu.Lock()
				w.journalLost[r.id] = append(w.journalLost[r.id], w.now())
				w.mu.Unlock()
			}
			w.logf("r%d crashes (journal kept: %v, %d results pending)", r.id, e.JournalKept, pending)
			if pending > 0 && !e.JournalKept {
				w.beyondBound("journal lost with results in it", end, "r%d lost its journal with %d results pending", r.id, pending)
			}
			w.noteAway(r.id, window{e.At, end})
			time.Sleep(end - w.now())
			if err := r.start(e.JournalKept); err != nil {
				w.violate("r%d did not restart: %v", r.id, err)
				return
			}
			w.logf("r%d restarts", r.id)
		case pause:
			if !r.pause() {
				continue
			}
			w.logf("r%d paused", r.id)
			w.noteAway(r.id, window{e.At, end})
			if end-e.At > grace {
				// A stopped process cannot cut its own call off.
				w.beyondBound("a replica stopped longer than the grace", end, "r%d paused %v (longer than the grace %v)", r.id, ms(end-e.At), grace)
			}
			time.Sleep(end - w.now())
			r.resume()
			w.logf("r%d goes on", r.id)
		}
	}
}

// checkSettled: lease + grace after the faults stopped, every key is final (or free to
// take), and no replica holds a result unrecorded.
func (w *world) checkSettled() {
	now := time.Now()
	grace := w.s.grace()
	for k, rec := range w.store.snapshot() {
		w.mu.Lock()
		at, known := w.claimedAt[rec.AttemptID]
		w.mu.Unlock()
		if known && at >= w.s.FaultEnd {
			// A caller still waiting when the faults stopped sent the key again since:
			// a call without faults, which settle checks.
			continue
		}
		if rec.State == submission.StateInProgress && now.Add(slices.Min(w.s.Skew)).Before(rec.LeaseUntil.Add(grace)) {
			w.violate("%s still in progress max(lease, ESIGN_TIMEOUT)+grace after the faults stopped (lease until %v)", k.CustomBizID, rec.LeaseUntil.Sub(w.t0).Round(time.Millisecond))
		}
	}
	for _, r := range w.reps {
		if l := r.current(); l != nil && !l.dead.Load() && l.sub.Pending() > 0 {
			w.violate("r%d still holds %d results unrecorded max(lease, ESIGN_TIMEOUT)+grace after the faults stopped", r.id, l.sub.Pending())
		}
	}
}

// settle sends every key once more, without faults: each must get a definite answer.
func (w *world) settle() {
	var wg sync.WaitGroup
	for k := range w.s.Keys {
		var first *clientPlan
		for i := range w.s.Clients {
			if w.s.Clients[i].Key == k {
				first = &w.s.Clients[i]
				break
			}
		}
		if first == nil {
			continue
		}
		c := *first
		c.ID = -1 - k
		wg.Go(func() {
			// Retry what is worth retrying (a breaker opened by the faults stays open a
			// while) for up to a minute.
			until := w.now() + time.Minute
			for try := 0; ; try++ {
				r := w.reps[(k+try)%len(w.reps)]
				a, got := w.request(c, r, 30*time.Second, 0)
				switch {
				case !got || a.crashed:
					w.violate("settling k%d: no answer", k)
				case a.err == nil:
					w.noteTold(c, r.id, a.id)
				case errors.Is(a.err, submission.ErrConflict), errors.Is(a.err, submission.ErrUnknownRefused):
					w.logf("settling k%d: %v", k, a.err)
				case retryable(a.err) && w.now() < until:
					w.logf("settling k%d: %v", k, a.err)
					time.Sleep(time.Second)
					continue
				default:
					w.violate("settling k%d without faults: %v", k, a.err)
				}
				return
			}
		})
	}
	wg.Wait()
}

func (w *world) noteAway(replica int, win window) {
	w.mu.Lock()
	w.away[replica] = append(w.away[replica], win)
	w.mu.Unlock()
}

// cutOff returns the times replica could not reach the store (outages, freezes, its
// partitions, its pauses and crashes), merged.
func (w *world) cutOff(replica int) []window {
	ws := append(append([]window(nil), w.s.Outages...), w.s.Freezes...)
	for _, p := range w.s.Partitions {
		if p.Replica == replica {
			ws = append(ws, p.window)
		}
	}
	ws = append(ws, w.away[replica]...)
	sort.Slice(ws, func(a, b int) bool { return ws[a].From < ws[b].From })
	var out []window
	for _, x := range ws {
		if n := len(out); n > 0 && x.From <= out[n-1].To {
			out[n-1].To = max(out[n-1].To, x.To)
			continue
		}
		out = append(out, x)
	}
	return out
}

// classifyAnswers adds to the beyond-bound faults the README's bound for a result: a
// replica holding e签宝's answer cut off from the store for longer than the grace.
func (w *world) classifyAnswers() {
	grace := w.s.grace()
	for k := range w.s.Keys {
		for _, sp := range w.calls[k] {
			if !sp.answered {
				continue
			}
			for _, c := range w.cutOff(sp.replica) {
				if c.len() > grace && c.From <= sp.answeredAt+grace && c.To > sp.answeredAt {
					w.beyondBound("an answer held while cut off longer than the grace", c.To, "r%d held e签宝's answer %s for k%d while cut off from the store for %v (longer than the grace %v)",
						sp.replica, sp.id, k, ms(c.len()), grace)
					break
				}
			}
		}
	}
}

// checkFinal checks the invariants on what happened.
func (w *world) checkFinal() {
	recs := w.store.snapshot()
	w.classifyAnswers()
	inBound := len(w.beyond) == 0
	for k := range w.s.Keys {
		// No two e签宝 calls for one key could both be in flight.
		spans := append([]*callSpan(nil), w.calls[k]...)
		sort.Slice(spans, func(a, b int) bool { return spans[a].from < spans[b].from })
		var reach time.Duration
		var last *callSpan
		for _, sp := range spans {
			end := sp.to
			if sp.processed {
				end = max(end, sp.arrives)
			}
			if last != nil && sp.from < reach {
				if inBound {
					w.violate("k%d: two e签宝 calls could both be in flight: r%d's from %v (may reach e签宝 until %v) and r%d's from %v",
						k, last.replica, ms(last.from), ms(reach), sp.replica, ms(sp.from))
				} else {
					w.overlaps++
				}
			}
			if end > reach {
				reach, last = end, sp
			}
		}
		rec, ok := recs[keyOf(k)]
		stored := ""
		if ok && rec.State == submission.StateSucceeded {
			stored = rec.Result
		}
		if stored != "" && !w.created[k][stored] {
			w.violate("k%d: stored id %s was never created by e签宝", k, stored)
		}
		split := false
		for _, t := range w.told[k] {
			if !w.created[k][t.id] {
				w.violate("k%d: c%d was told %s, which e签宝 never created", k, t.client, t.id)
			}
			if t.id == stored {
				continue
			}
			switch {
			case inBound && stored == "":
				w.violate("k%d: c%d was told %s at %v, but the store holds no id (%s)", k, t.client, t.id, ms(t.at), stateOf(&rec))
			case inBound:
				w.violate("k%d: c%d was told %s at %v, the store holds %s", k, t.client, t.id, ms(t.at), stored)
			case t.client < 0 || t.at > w.lastBeyondEnd+w.s.Lease+w.s.grace():
				// Beyond the bound, the README says the first result recorded is kept and
				// returned to every later caller.
				w.violate("k%d: c%d was told %s at %v, after the faults beyond the bound were over, the store holds %q", k, t.client, t.id, ms(t.at), stored)
			default:
				split = true
			}
		}
		if split {
			w.split++
		}
		// Every answer e签宝 gave a replica is recorded (or reported as a second result),
		// unless the replica crashed while its first store write was still under way:
		// once a write has failed, the result is in the journal.
		for _, sp := range spans {
			if !sp.answered || sp.id == stored || w.dups[sp.id] {
				continue
			}
			died := sp.life.dead.Load()
			switch {
			case died && sp.life.diedAt <= sp.answeredAt+w.s.StoreTimeout:
				// Lost with the process before anything could be written: inherent.
			case !inBound && slices.ContainsFunc(w.journalLost[sp.replica], func(at time.Duration) bool { return at >= sp.answeredAt }):
				// The README: results pending when the journal is lost (a pod deleted) are
				// lost, the key handled as an outcome unknown after the grace (the result
				// may have passed through a restart's replay first).
				w.lostAnswers++
			case !inBound:
				// The README: beyond the bound the first result recorded is kept, the
				// second logged and counted, never silently dropped.
				w.violate("k%d: e签宝 answered %s to r%d at %v; beyond the bound it is neither recorded nor logged and counted as a second result (the store holds %q)",
					k, sp.id, sp.replica, ms(sp.answeredAt), stored)
			case died:
				w.violate("k%d: e签宝 answered %s to r%d at %v; r%d crashed at %v and the id is recorded nowhere (the store holds %q)",
					k, sp.id, sp.replica, ms(sp.answeredAt), sp.replica, ms(sp.life.diedAt), stored)
			default:
				w.violate("k%d: e签宝 answered %s to r%d at %v and the id is recorded nowhere (the store holds %q)", k, sp.id, sp.replica, ms(sp.answeredAt), stored)
			}
		}
	}
}

func (w *world) traceText() string {
	var b strings.Builder
	b.WriteString(w.s.String())
	if len(w.beyond) > 0 {
		fmt.Fprintf(&b, "beyond the bound: %s\n", strings.Join(w.beyond, "; "))
	}
	w.mu.Lock()
	lines := append([]traceLine(nil), w.trace...)
	w.mu.Unlock()
	text := make([]string, len(lines))
	for i, l := range lines {
		text[i] = fmt.Sprintf(l.format, l.args...)
	}
	// Lines of one instant in a fixed order: which goroutine logged first is the Go
	// scheduler's choice.
	idx := make([]int, len(lines))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		la, lb := lines[idx[a]], lines[idx[b]]
		if la.at != lb.at {
			return la.at < lb.at
		}
		return text[idx[a]] < text[idx[b]]
	})
	for _, i := range idx {
		fmt.Fprintf(&b, "%10s  %s\n", lines[i].at.Round(time.Microsecond), text[i])
	}
	return b.String()
}

func init() {
	// Quiet the default logger: replicas log through logCounter.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 100})))
}

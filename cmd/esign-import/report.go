package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// report writes the -report CSV: one row per input line that got an outcome. It holds
// line numbers, customBizIds (which the README says must not be personal data),
// outcomes, eviPointIds, reasons and field paths: never a value from the request, and
// never an image's file name.
type report struct {
	f *os.File
	w *csv.Writer
}

var reportHeader = []string{"line", "customBizId", "outcome", "eviPointId", "reason", "fields", "rules"}

func createReport(path string) (*report, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	r := &report{f: f, w: csv.NewWriter(f)}
	if err := r.w.Write(reportHeader); err != nil {
		_ = f.Close()
		return nil, err
	}
	r.w.Flush()
	return r, r.w.Error()
}

// add writes one row and flushes it, so that the file is complete up to the last row
// done whatever stops the run.
func (r *report) add(res result) error {
	if r == nil {
		return nil
	}
	if err := r.w.Write([]string{
		strconv.Itoa(res.line), res.key, res.outcome, res.eviPointID, res.reason, strings.Join(res.fields, " "), strings.Join(res.rules, " "),
	}); err != nil {
		return err
	}
	r.w.Flush()
	return r.w.Error()
}

func (r *report) close() error {
	if r == nil {
		return nil
	}
	r.w.Flush()
	if err := r.w.Error(); err != nil {
		_ = r.f.Close()
		return err
	}
	return r.f.Close()
}

// tally counts outcomes as rows finish.
type tally struct {
	total                                                                     int
	done, succeeded, replayed, conflict, unverified, invalid, failed, unknown atomic.Int64
	retrying                                                                  atomic.Int64
}

func (t *tally) add(outcome string) {
	t.done.Add(1)
	switch outcome {
	case outcomeSucceeded:
		t.succeeded.Add(1)
	case outcomeReplayed:
		t.replayed.Add(1)
	case outcomeConflict:
		t.conflict.Add(1)
	case outcomeUnverified:
		t.unverified.Add(1)
	case outcomeInvalid:
		t.invalid.Add(1)
	case outcomeFailed:
		t.failed.Add(1)
	case outcomeUnknown:
		t.unknown.Add(1)
	}
}

// counts is the tally in words, for the bar, the periodic line and the summary.
func (t *tally) counts() string {
	return fmt.Sprintf("succeeded %d, replayed %d, conflict %d, unverified %d, invalid %d, failed %d, unknown %d, retrying %d",
		t.succeeded.Load(), t.replayed.Load(), t.conflict.Load(), t.unverified.Load(), t.invalid.Load(), t.failed.Load(), t.unknown.Load(), t.retrying.Load())
}

func (t *tally) allSucceeded() bool {
	return t.done.Load() == int64(t.total) && t.succeeded.Load()+t.replayed.Load() == int64(t.total)
}

// progress shows how the run goes: a bar on a terminal, else a line every period.
type progress interface {
	// update is called after each row and whenever the retry count changes.
	update()
	// println prints a line without breaking the display.
	println(s string)
	// stop ends the display.
	stop()
}

// barProgress is a progress bar (schollz/progressbar) with the counts as its description.
// It is redrawn at most every barEvery, and always at the end (the library's own
// throttle would drop the last state).
type barProgress struct {
	w    io.Writer
	t    *tally
	bar  *progressbar.ProgressBar
	mu   sync.Mutex
	last time.Time
}

const barEvery = 150 * time.Millisecond

func newBarProgress(w io.Writer, t *tally) *barProgress {
	bar := progressbar.NewOptions(t.total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("rows"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(0),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetRenderBlankState(true),
	)
	return &barProgress{w: w, t: t, bar: bar}
}

func (b *barProgress) update() { b.draw(false) }

func (b *barProgress) draw(force bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !force && time.Since(b.last) < barEvery {
		return
	}
	b.last = time.Now()
	// Both render: the last one shows the new description and the new count.
	b.bar.Describe(b.t.counts())
	_ = b.bar.Set64(b.t.done.Load())
}

func (b *barProgress) println(s string) {
	_, _ = progressbar.Bprintln(b.bar, s)
	b.draw(true) // prints the line above the bar
}

func (b *barProgress) stop() {
	b.draw(true)
	_ = b.bar.Exit()
	_, _ = io.WriteString(b.w, "\n")
}

// lineProgress prints one summary line every period (not a terminal: a log, CI).
type lineProgress struct {
	t     *tally
	w     io.Writer
	mu    sync.Mutex
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

func newLineProgress(w io.Writer, t *tally, every time.Duration) *lineProgress {
	p := &lineProgress{t: t, w: w, start: time.Now(), quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p.println(p.line())
			case <-p.quit:
				return
			}
		}
	}()
	return p
}

// line is the summary: rows done of all, rate, time left, counts.
func (p *lineProgress) line() string {
	done := p.t.done.Load()
	el := time.Since(p.start)
	rate := float64(done) / el.Seconds()
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(int64(p.t.total)-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("progress: %d/%d rows, %.1f rows/s, %s elapsed, about %s left; %s",
		done, p.t.total, rate, el.Round(time.Second), eta, p.t.counts())
}

func (p *lineProgress) update() {}

func (p *lineProgress) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintln(p.w, s)
}

func (p *lineProgress) stop() {
	close(p.quit)
	p.wg.Wait()
}

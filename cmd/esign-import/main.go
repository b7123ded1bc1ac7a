// Command esign-import moves a backlog of already verified people to e签宝 through an
// esign-evidence service, as one of its gRPC clients:
//
//	esign-import [-addr host:9090] [-token-file F] [-tls] [-cacert F] [-concurrency N] [-report out.csv] [-uploads F] [-check] rows.jsonl
//
// Each line of rows.jsonl is one CreatePersonalEvidencePoint request in the REST facade's
// JSON (e签宝's names) with a customBizId; cardPortraitFile, cardNationalEmblemFile and
// faceImageFile may name local images, which are uploaded once and replaced by their file
// IDs (remembered between runs in the -uploads ledger). -check validates every line with
// the contract's rules and sends nothing. A run is safe to repeat: a row whose submission
// exists is sent as the same request it was made with, so the service answers it from its
// record without reaching e签宝: "replayed" when the row is unchanged, "conflict" when it
// was edited since. The -report CSV is in input order and names each violation's rule.
// Exit status: 0 when every row succeeded, 1 when some did not, 2 for a usage error.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

// Exit statuses.
const (
	exitOK      = 0
	exitSomeNot = 1
	exitUsage   = 2
)

// signalEcho is how soon after an interrupt another one counts as the same.
const signalEcho = 500 * time.Millisecond

// summaryEvery is how often a run that is not on a terminal prints a progress line.
const summaryEvery = 10 * time.Second

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stderr, sigs, term.IsTerminal(int(os.Stderr.Fd()))))
}

// options are the command line.
type options struct {
	addr, tokenFile, cacert, reportPath, input string
	uploadsPath                                string
	useTLS, check                              bool
	concurrency                                int
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("esign-import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "localhost:9090", "the esign-evidence service's gRPC address")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token to call the service with")
	fs.BoolVar(&o.useTLS, "tls", false, "connect over TLS (the system's CAs unless -cacert)")
	fs.StringVar(&o.cacert, "cacert", "", "PEM file of the CA that signed the service's certificate (implies -tls)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "rows in flight at once (the service applies e签宝's quota)")
	fs.StringVar(&o.reportPath, "report", "", "write a CSV report (line, customBizId, outcome, eviPointId, reason, fields, rules), in input order, to this file")
	fs.BoolVar(&o.check, "check", false, "validate every line and the images it names, send nothing")
	fs.StringVar(&o.uploadsPath, "uploads", defaultLedger(), "file remembering the file IDs of the images uploaded, between runs (\"\" for none)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: esign-import [-addr host:9090] [-token-file F] [-tls] [-cacert F] [-concurrency N] [-report out.csv] [-uploads F] [-check] rows.jsonl")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() != 1:
		return o, errors.New("give exactly one input file (JSON Lines)")
	case o.concurrency < 1 || o.concurrency > 1000:
		return o, errors.New("-concurrency must be between 1 and 1000")
	}
	o.input = fs.Arg(0)
	if o.cacert != "" {
		o.useTLS = true
	}
	return o, nil
}

// run is the whole command; it returns the exit status.
func run(args []string, stderr io.Writer, sigs <-chan os.Signal, onTerminal bool) int {
	o, err := parseArgs(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "esign-import:", err)
		}
		return exitUsage
	}
	total, err := countRows(o.input)
	if err != nil {
		fmt.Fprintln(stderr, "esign-import: reading the input:", err)
		return exitUsage
	}
	v, err := validation.New()
	if err != nil {
		fmt.Fprintln(stderr, "esign-import:", err)
		return exitSomeNot
	}
	p, err := newParser(o.input, v)
	if err != nil {
		fmt.Fprintln(stderr, "esign-import:", err)
		return exitUsage
	}
	var rep *report
	if o.reportPath != "" {
		if rep, err = createReport(o.reportPath); err != nil {
			fmt.Fprintln(stderr, "esign-import: -report:", err)
			return exitUsage
		}
	}
	if o.check {
		return check(o, p, rep, total, stderr)
	}
	led, err := openLedger(o.uploadsPath, o.addr)
	if err != nil {
		_ = rep.close()
		fmt.Fprintln(stderr, "esign-import: -uploads:", err)
		return exitUsage
	}
	conn, err := dial(o, stderr)
	if err != nil {
		_ = rep.close()
		fmt.Fprintln(stderr, "esign-import:", err)
		return exitUsage
	}
	defer conn.Close()
	return send(o, p, rep, led, total, evidencev1.NewEvidenceServiceClient(conn), stderr, sigs, onTerminal)
}

// check validates every line and prints what is wrong; nothing is sent, no connection
// is made.
func check(o options, p *parser, rep *report, total int, stderr io.Writer) int {
	f, err := os.Open(o.input)
	if err != nil {
		fmt.Fprintln(stderr, "esign-import:", err)
		return exitUsage
	}
	defer f.Close()
	lr := newLineReader(f)
	invalid := 0
	for {
		n, text, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(stderr, "esign-import: reading the input:", err)
			_ = rep.close()
			return exitSomeNot
		}
		r := tooLongRow(n)
		if !tooLong {
			r = p.parse(n, text)
		}
		if !r.invalid() {
			continue
		}
		invalid++
		fmt.Fprintln(stderr, violationText(r))
		if err := rep.add(invalidResult(r)); err != nil {
			fmt.Fprintln(stderr, "esign-import: -report:", err)
			return exitSomeNot
		}
	}
	if err := rep.close(); err != nil {
		fmt.Fprintln(stderr, "esign-import: -report:", err)
		return exitSomeNot
	}
	fmt.Fprintf(stderr, "esign-import: checked %d rows: %d valid, %d invalid; nothing was sent\n", total, total-invalid, invalid)
	if invalid > 0 {
		return exitSomeNot
	}
	return exitOK
}

// violationText is an invalid row for the terminal: every field with its rule and what
// it must be. The descriptions never quote a value.
func violationText(r *row) string {
	parts := make([]string, 0, len(r.violations))
	for _, v := range r.violations {
		f := v.Field
		if f == "" {
			f = "(line)"
		}
		parts = append(parts, fmt.Sprintf("%s [%s] %s", f, v.Rule, v.Description))
	}
	return fmt.Sprintf("line %d: invalid: %s", r.line, strings.Join(parts, "; "))
}

func invalidResult(r *row) result {
	res := result{line: r.line, seq: r.seq, key: r.key, outcome: outcomeInvalid, reason: reasonInvalidRequest, fields: violationFields(r.violations)}
	for _, v := range r.violations {
		res.rules = append(res.rules, v.Rule)
	}
	return res
}

// send runs the rows through the service with bounded concurrency.
func send(o options, p *parser, rep *report, led *ledger, total int, client evidencev1.EvidenceServiceClient, stderr io.Writer, sigs <-chan os.Signal, onTerminal bool) int {
	start := time.Now()
	t := &tally{total: total}
	var prog progress
	if onTerminal {
		prog = newBarProgress(stderr, t)
	} else {
		prog = newLineProgress(stderr, t, summaryEvery)
	}

	// The first interrupt stops new rows and retries; rows in flight finish. A second
	// one abandons them too (the service still finishes the calls it has).
	ctx, abandon := context.WithCancel(context.Background())
	defer abandon()
	stopping := make(chan struct{})
	var stopOnce sync.Once
	stop := func(why string) {
		stopOnce.Do(func() {
			prog.println("esign-import: " + why)
			close(stopping)
		})
	}
	go func() {
		var first time.Time
		for {
			select {
			case <-sigs:
				switch {
				case first.IsZero():
					first = time.Now()
					stop("interrupted: finishing the rows in flight (interrupt again to abandon them)")
				case time.Since(first) < signalEcho:
					// The same interrupt delivered twice (to the process and to its group,
					// as timeout(1) does): not a second one.
				default:
					prog.println("esign-import: abandoning the rows in flight")
					abandon()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	uploads := newUploadCache()
	s := &sender{
		client: client, retry: defaultRetry, stopping: stopping, uploads: uploads, ledger: led,
		onRetry: func(d int) { t.retrying.Add(int64(d)); prog.update() },
	}

	f, err := os.Open(o.input)
	if err != nil {
		prog.stop()
		fmt.Fprintln(stderr, "esign-import:", err)
		return exitUsage
	}
	defer f.Close()

	jobs := make(chan *row)
	results := make(chan result, o.concurrency)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reader: parses lines, sends valid rows to the workers
		defer wg.Done()
		defer close(jobs)
		lr := newLineReader(f)
		for seq := 0; ; seq++ {
			select {
			case <-stopping:
				return
			default:
			}
			n, text, tooLong, err := lr.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				readErr = err
				stop("reading the input failed; stopping")
				return
			}
			r := tooLongRow(n)
			if !tooLong {
				r = p.parse(n, text)
			}
			r.seq = seq
			if r.invalid() {
				prog.println(violationText(r))
				results <- invalidResult(r)
				continue
			}
			select {
			case jobs <- r:
			case <-stopping:
				return
			}
		}
	}()
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range jobs {
				results <- s.process(ctx, r)
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	var repErr error
	// The report is in input order: a row's result waits until every row before it has
	// one (rows finish out of order), and what is left waits for the end of the run.
	held, next := map[int]result{}, 0
	write := func(res result) {
		if err := rep.add(res); err != nil && repErr == nil {
			repErr = err
			stop("writing the report failed; stopping")
		}
	}
	unreachable := 0 // rows in a row that could not reach the service at all
	for res := range results {
		if res.reason == unreachableReason {
			if unreachable++; unreachable >= o.concurrency {
				stop("cannot reach the service at " + o.addr + "; stopping")
			}
		} else {
			unreachable = 0
		}
		t.add(res.outcome)
		if res.outcome != outcomeSucceeded && res.outcome != outcomeReplayed && res.outcome != outcomeInvalid {
			prog.println(res.describe())
		}
		if res.reason == codes.Unauthenticated.String() || res.reason == "UNAUTHENTICATED" {
			stop("the service refused the credentials (UNAUTHENTICATED): check -token-file; stopping")
		}
		held[res.seq] = res
		for r, ok := held[next]; ok; r, ok = held[next] {
			write(r)
			delete(held, next)
			next++
		}
		prog.update()
	}
	for _, seq := range slices.Sorted(maps.Keys(held)) { // rows after one not attempted
		write(held[seq])
	}
	prog.stop()
	if err := led.close(); err != nil {
		fmt.Fprintln(stderr, "esign-import: -uploads: the file IDs of this run's uploads could not all be recorded:", err)
	}
	if err := rep.close(); err != nil && repErr == nil {
		repErr = err
	}

	done := t.done.Load()
	fmt.Fprintf(stderr, "esign-import: %d of %d rows in %s: %s; images uploaded %d\n",
		done, total, time.Since(start).Round(100*time.Millisecond), t.counts(), s.uploaded.Load())
	if left := int64(total) - done; left > 0 {
		fmt.Fprintf(stderr, "esign-import: stopped with %d rows not attempted: run the same command again to continue\n", left)
	}
	switch {
	case readErr != nil:
		fmt.Fprintln(stderr, "esign-import: reading the input:", readErr)
	case repErr != nil:
		fmt.Fprintln(stderr, "esign-import: -report:", repErr)
	}
	if t.allSucceeded() && readErr == nil && repErr == nil {
		return exitOK
	}
	return exitSomeNot
}

// unreachableReason is the reason of a call that did not reach the service: the gRPC
// code alone, without the service's ErrorInfo.
var unreachableReason = codes.Unavailable.String()

// dial connects to the service with the transport and token the options name.
func dial(o options, stderr io.Writer) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{}
	if o.useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.cacert != "" {
			pem, err := os.ReadFile(o.cacert)
			if err != nil {
				return nil, fmt.Errorf("-cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("-cacert: no PEM certificate in the file")
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return nil, errors.New("-token-file: the file must hold one token")
		}
		if !o.useTLS && !loopback(o.addr) {
			fmt.Fprintln(stderr, "esign-import: warning: sending the token without TLS to a host that is not this machine; use -tls")
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: o.useTLS}))
	}
	conn, err := grpc.NewClient(o.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	return conn, nil
}

// loopback reports whether addr's host is this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends the token as `authorization: Bearer <token>` on every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only when the user chose plain text (-tls not
// given): the demo and a service on this machine need no TLS.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

// Outcomes of a row, as the report names them.
const (
	outcomeSucceeded = "succeeded"
	outcomeReplayed  = "replayed"
	outcomeInvalid   = "invalid"
	outcomeFailed    = "failed"
	outcomeUnknown   = "unknown"
)

// The service's ErrorInfo reasons the importer acts on (README, "Errors").
const (
	reasonInvalidRequest      = "INVALID_REQUEST"
	reasonRateLimited         = "RATE_LIMITED"
	reasonEsignRateLimited    = "ESIGN_RATE_LIMITED"
	reasonEsignOutcomeUnknown = "ESIGN_OUTCOME_UNKNOWN"
	reasonSubmissionInFlight  = "SUBMISSION_IN_PROGRESS"
	reasonKeyReused           = "IDEMPOTENCY_KEY_REUSED"
	reasonUnknownRefused      = "OUTCOME_UNKNOWN_RETRY_REFUSED"
	errorDomain               = "esign-evidence"
)

// result is what became of one row.
type result struct {
	line       int
	key        string
	outcome    string
	eviPointID string
	// reason is the service's ErrorInfo reason, the gRPC code when there is none, or
	// one of the importer's own (INTERRUPTED, IMAGE_UPLOAD_FAILED).
	reason string
	// fields are the field paths of the violations, in the contract's JSON names.
	fields []string
	// retries is how many times the row was sent again.
	retries int
}

// retryPolicy bounds the retries of one call.
type retryPolicy struct {
	attempts int           // calls in all, the first included
	base     time.Duration // first backoff
	max      time.Duration // longest backoff
	timeout  time.Duration // deadline of each call
}

var defaultRetry = retryPolicy{attempts: 8, base: 250 * time.Millisecond, max: 15 * time.Second, timeout: 30 * time.Second}

// sender sends rows through the service.
type sender struct {
	client evidencev1.EvidenceServiceClient
	retry  retryPolicy
	// stopping is closed on the first interrupt: no call is retried after it.
	stopping <-chan struct{}
	// onRetry is told when a row starts (+1) and stops (-1) waiting to be retried.
	onRetry func(delta int)
	uploads *uploadCache
}

// callError is what the importer reads from a failed call.
type callError struct {
	code      codes.Code
	reason    string
	retrySafe *bool // from ErrorInfo's retry_safe, when given
	delay     time.Duration
	fields    []string
}

func readError(err error) callError {
	st := status.Convert(err)
	ce := callError{code: st.Code(), reason: st.Code().String()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == errorDomain || d.GetDomain() == "" {
				ce.reason = d.GetReason()
			}
			if v, ok := d.GetMetadata()["retry_safe"]; ok {
				b := v == "true"
				ce.retrySafe = &b
			}
		case *errdetails.RetryInfo:
			ce.delay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, fv := range d.GetFieldViolations() {
				ce.fields = append(ce.fields, fv.GetField())
			}
		}
	}
	return ce
}

// transient reports whether the call may simply be made again later. Every request the
// importer sends carries a customBizId, so the service de-duplicates a repeat: sending
// again after an unknown outcome (retry_safe false) is safe with the same key, and only
// with it.
func (ce callError) transient() bool {
	switch ce.code {
	case codes.ResourceExhausted:
		// The quota (RATE_LIMITED, ESIGN_RATE_LIMITED); not a request over the size limit.
		return ce.reason == reasonRateLimited || ce.reason == reasonEsignRateLimited
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.Aborted:
		return ce.reason == reasonSubmissionInFlight
	}
	return false
}

// mayExist reports whether the evidence point may have been created although the call
// failed: retry_safe false, or a call that ended without an answer.
func (ce callError) mayExist() bool {
	if ce.retrySafe != nil {
		return !*ce.retrySafe
	}
	return ce.code == codes.DeadlineExceeded || ce.code == codes.Canceled ||
		ce.code == codes.Unavailable && ce.reason == codes.Unavailable.String() ||
		ce.reason == reasonEsignOutcomeUnknown
}

// backoff returns the wait before attempt n (1 for the first retry): exponential with
// "equal jitter", never shorter than what the service asked for in RetryInfo.
func (s *sender) backoff(n int, asked time.Duration) time.Duration {
	d := s.retry.base << min(n-1, 16)
	if d > s.retry.max || d <= 0 {
		d = s.retry.max
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, asked)
}

// sleep waits d unless an interrupt comes first; it reports whether it waited it all.
func (s *sender) sleep(ctx context.Context, d time.Duration) bool {
	s.onRetry(1)
	defer s.onRetry(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopping:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s *sender) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// process sends one valid row: it looks the customBizId up first (a row already done is
// not sent again), uploads the row's images, then creates the evidence point.
func (s *sender) process(ctx context.Context, r *row) result {
	res := result{line: r.line, key: r.key}
	done, res := s.lookup(ctx, r, res)
	if done {
		return res
	}
	req := r.req
	for i, path := range r.images {
		id, err := s.uploads.get(ctx, path, func(ctx context.Context) (string, error) { return s.upload(ctx, path) })
		if err != nil {
			res.outcome, res.reason = outcomeFailed, "IMAGE_UPLOAD_FAILED"
			if ce := readError(err); ce.code != codes.Unknown {
				res.reason = "IMAGE_UPLOAD_FAILED:" + ce.reason
			}
			res.fields = []string{imageFields[i].key}
			return res
		}
		imageFields[i].set(req, id)
	}
	var last callError
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, s.retry.timeout)
		resp, err := s.client.CreatePersonalEvidencePoint(cctx, req)
		cancel()
		if err == nil {
			res.outcome, res.eviPointID, res.reason = outcomeSucceeded, resp.GetEviPointId(), ""
			if resp.GetReplayed() {
				res.outcome = outcomeReplayed
			}
			return res
		}
		last = readError(err)
		res.reason, res.fields = last.reason, last.fields
		if !last.transient() || attempt >= s.retry.attempts || s.stopped() || ctx.Err() != nil ||
			!s.sleep(ctx, s.backoff(attempt, last.delay)) {
			break
		}
		res.retries++
	}
	switch {
	case last.code == codes.InvalidArgument && last.reason == reasonInvalidRequest:
		res.outcome = outcomeInvalid
	case last.reason == reasonUnknownRefused, last.mayExist():
		res.outcome = outcomeUnknown
	case last.reason == reasonKeyReused:
		// The key's record may be an unknown outcome that this run cannot repeat exactly
		// (its images were uploaded again, under new file IDs): say so.
		res.outcome = outcomeFailed
		if st := s.state(ctx, r.key); st == evidencev1.SubmissionState_SUBMISSION_STATE_OUTCOME_UNKNOWN {
			res.outcome = outcomeUnknown
		}
	default:
		res.outcome = outcomeFailed
	}
	if last.transient() && (s.stopped() || ctx.Err() != nil) {
		res.reason = "INTERRUPTED:" + res.reason
	}
	return res
}

// lookup asks the service for the row's submission. It reports done for a submission
// that succeeded (the row is a replay) and waits while one is still in progress, so
// that a resumed run never sends a row whose earlier call may still succeed. It also
// reports done, as failed, when the service refuses the credentials or stays unreachable.
func (s *sender) lookup(ctx context.Context, r *row, res result) (bool, result) {
	fails, waits := 0, 0
	for {
		cctx, cancel := context.WithTimeout(ctx, s.retry.timeout)
		sub, err := s.client.GetSubmission(cctx, &evidencev1.GetSubmissionRequest{CustomBizId: r.key})
		cancel()
		var wait time.Duration
		switch {
		case err == nil && sub.GetState() == evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED:
			res.outcome, res.eviPointID = outcomeReplayed, sub.GetEviPointId()
			return true, res
		case err == nil && sub.GetState() == evidencev1.SubmissionState_SUBMISSION_STATE_IN_PROGRESS:
			// Its lease ends it at the latest (45 s by default); until then, sending
			// could only wait or conflict.
			waits++
			if waits > 4*s.retry.attempts {
				return false, res
			}
			wait = s.backoff(min(waits, 3), time.Second)
		case err == nil, status.Code(err) == codes.NotFound:
			return false, res
		default:
			ce := readError(err)
			fails++
			switch {
			case ce.code == codes.Unauthenticated || ce.code == codes.PermissionDenied,
				ce.reason == unreachableReason && fails >= s.retry.attempts:
				// The create call cannot get further: report it now, send nothing.
				res.outcome, res.reason = outcomeFailed, ce.reason
				return true, res
			case !ce.transient() || fails >= s.retry.attempts:
				// The create call meets the same problem and reports it with its outcome.
				return false, res
			}
			wait = s.backoff(fails, ce.delay)
		}
		if s.stopped() || ctx.Err() != nil || !s.sleep(ctx, wait) {
			return false, res
		}
	}
}

// state returns a submission's state, or UNSPECIFIED when it cannot be read.
func (s *sender) state(ctx context.Context, key string) evidencev1.SubmissionState {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.retry.timeout)
	defer cancel()
	sub, err := s.client.GetSubmission(cctx, &evidencev1.GetSubmissionRequest{CustomBizId: key})
	if err != nil {
		return evidencev1.SubmissionState_SUBMISSION_STATE_UNSPECIFIED
	}
	return sub.GetState()
}

// uploadChunk is the size of the chunks an image is streamed in.
const uploadChunk = 64 << 10

// upload streams one image to UploadFile and returns its file ID, retrying transient
// failures. The file is sent under a name made of its content's hash: the local name
// often contains the person's name, and e签宝 needs only the extension.
func (s *sender) upload(ctx context.Context, path string) (string, error) {
	name, err := uploadName(path)
	if err != nil {
		return "", err
	}
	for attempt := 1; ; attempt++ {
		id, err := s.uploadOnce(ctx, path, name)
		if err == nil {
			return id, nil
		}
		ce := readError(err)
		upstreamFailed := ce.code == codes.Unavailable // ESIGN_UPLOAD_FAILED and the like
		if !(ce.transient() || upstreamFailed) || attempt >= s.retry.attempts || s.stopped() || ctx.Err() != nil ||
			!s.sleep(ctx, s.backoff(attempt, ce.delay)) {
			return "", err
		}
	}
}

func (s *sender) uploadOnce(ctx context.Context, path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", status.Error(codes.FailedPrecondition, "the image cannot be opened")
	}
	defer f.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*s.retry.timeout)
	defer cancel()
	stream, err := s.client.UploadFile(cctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{
		Info: &evidencev1.FileInfo{FileName: name},
	}}); err != nil {
		_, err = stream.CloseAndRecv()
		return "", err
	}
	buf := make([]byte, uploadChunk)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				_, err = stream.CloseAndRecv()
				return "", err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			cancel()
			return "", status.Error(codes.FailedPrecondition, "the image could not be read")
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return "", err
	}
	return resp.GetFileId(), nil
}

// uploadName is the name an image is uploaded under: the first 16 hex digits of its
// SHA-256 and its extension (lower case).
func uploadName(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", status.Error(codes.FailedPrecondition, "the image cannot be opened")
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", status.Error(codes.FailedPrecondition, "the image could not be read")
	}
	return "img-" + hex.EncodeToString(h.Sum(nil))[:16] + strings.ToLower(filepath.Ext(path)), nil
}

// uploadCache uploads each image once per run, however many rows name it and however
// many of them want it at the same time.
type uploadCache struct {
	mu      sync.Mutex
	entries map[string]*uploadEntry
	// uploaded counts the images uploaded (for the summary).
	uploaded int
}

type uploadEntry struct {
	done chan struct{}
	id   string
	err  error
}

func newUploadCache() *uploadCache { return &uploadCache{entries: map[string]*uploadEntry{}} }

// get returns path's file ID, uploading it with up if no row has yet. A failed upload is
// remembered too: the rows that need the image fail with its error.
func (c *uploadCache) get(ctx context.Context, path string, up func(context.Context) (string, error)) (string, error) {
	c.mu.Lock()
	e, ok := c.entries[path]
	if !ok {
		e = &uploadEntry{done: make(chan struct{})}
		c.entries[path] = e
	}
	c.mu.Unlock()
	if !ok {
		e.id, e.err = up(ctx)
		if e.err == nil {
			c.mu.Lock()
			c.uploaded++
			c.mu.Unlock()
		}
		close(e.done)
	}
	select {
	case <-e.done: // checked first: an image already uploaded is used even when ctx ends
		return e.id, e.err
	default:
	}
	select {
	case <-e.done:
		return e.id, e.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// violationFields lists the field paths of a row's violations, once each, in order.
func violationFields(vs []validation.FieldViolation) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range vs {
		f := v.Field
		if f == "" {
			f = "(line)"
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// describe is a row's problem for the terminal: line, outcome, reason, fields.
func (r result) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: %s", r.line, r.outcome)
	if r.reason != "" {
		fmt.Fprintf(&b, " (%s)", r.reason)
	}
	if len(r.fields) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(r.fields, ", "))
	}
	return b.String()
}

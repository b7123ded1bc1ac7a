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
	"sync/atomic"
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
	// outcomeConflict: the customBizId's stored submission holds a different request (the
	// row was edited after it was sent); nothing was sent.
	outcomeConflict = "conflict"
	// outcomeUnverified: the customBizId's submission exists, but the row names images
	// whose file IDs from the run that sent it are not in the ledger (another machine, a
	// deleted cache), so it cannot be shown to the service as the same request; nothing
	// was sent.
	outcomeUnverified = "unverified"
)

// reasonUploadsUnknown is the reason of an unverified row.
const reasonUploadsUnknown = "UPLOADS_NOT_IN_LEDGER"

// ledgerSkew is how much later than the stored submission's last change an image may
// have been recorded in the ledger and still be the one it was sent with: the two times
// come from different machines' clocks.
const ledgerSkew = time.Minute

// The service's ErrorInfo reasons the importer acts on (API.md, "Errors").
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
	// rules are the violations' rule ids (protovalidate's, or the Go rules'), in order.
	rules []string
	// seq is the row's place among the input's rows, which orders the report.
	seq int
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
	// ledger holds the file IDs of images uploaded in earlier runs.
	ledger *ledger
	// uploaded counts the images this run uploaded (for the summary).
	uploaded atomic.Int64
}

// callError is what the importer reads from a failed call.
type callError struct {
	code      codes.Code
	reason    string
	retrySafe *bool // from ErrorInfo's retry_safe, when given
	delay     time.Duration
	fields    []string
	rules     []string
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
				ce.rules = append(ce.rules, fv.GetReason())
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

// process sends one valid row: it looks the customBizId up first and waits for a
// submission still in progress, resolves the row's images to file IDs (from the ledger, or
// uploaded), then calls CreatePersonalEvidencePoint. A row whose submission exists is
// sent as the same request it was made with, so the service answers it from its record:
// replayed when the row is unchanged, IDEMPOTENCY_KEY_REUSED (a conflict) when it was
// edited; neither reaches e签宝.
func (s *sender) process(ctx context.Context, r *row) result {
	res := result{line: r.line, key: r.key, seq: r.seq}
	done, stored, res := s.lookup(ctx, r, res)
	if done {
		return res
	}
	req := r.req
	for i, path := range r.images {
		if stored != nil {
			// Only the file IDs the stored request was made with make this row the same
			// request; an upload now would make any row a conflict.
			e, ok := s.uploads.known(path, s.ledger)
			if !ok || e.Uploaded.After(stored.GetUpdateTime().AsTime().Add(ledgerSkew)) {
				res.outcome, res.reason, res.fields = outcomeUnverified, reasonUploadsUnknown, []string{imageFields[i].key}
				return res
			}
			imageFields[i].set(req, e.FileID)
			continue
		}
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
		res.reason, res.fields, res.rules = last.reason, last.fields, last.rules
		if !last.transient() || attempt >= s.retry.attempts || s.stopped() || ctx.Err() != nil ||
			!s.sleep(ctx, s.backoff(attempt, last.delay)) {
			break
		}
		res.retries++
	}
	switch {
	case last.code == codes.InvalidArgument && last.reason == reasonInvalidRequest:
		res.outcome = outcomeInvalid
	case last.reason == reasonKeyReused:
		// The request differs from the stored one: the images are the ones it was made
		// with (from the ledger), so the row itself was edited.
		res.outcome = outcomeConflict
	case last.reason == reasonUnknownRefused, last.mayExist():
		res.outcome = outcomeUnknown
	default:
		res.outcome = outcomeFailed
	}
	if last.transient() && (s.stopped() || ctx.Err() != nil) {
		res.reason = "INTERRUPTED:" + res.reason
	}
	return res
}

// lookup asks the service for the row's submission. It waits while one is still in
// progress, so that a resumed run never sends a row whose earlier call may still succeed,
// and returns the submission when it holds a request the row must repeat exactly
// (succeeded, or sent with an unknown outcome). It reports done, as failed, when the
// service refuses the credentials or stays unreachable.
func (s *sender) lookup(ctx context.Context, r *row, res result) (bool, *evidencev1.GetSubmissionResponse, result) {
	fails, waits := 0, 0
	for {
		cctx, cancel := context.WithTimeout(ctx, s.retry.timeout)
		sub, err := s.client.GetSubmission(cctx, &evidencev1.GetSubmissionRequest{CustomBizId: r.key})
		cancel()
		var wait time.Duration
		switch {
		case err == nil && (sub.GetState() == evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED ||
			sub.GetState() == evidencev1.SubmissionState_SUBMISSION_STATE_OUTCOME_UNKNOWN):
			return false, sub, res
		case err == nil && sub.GetState() == evidencev1.SubmissionState_SUBMISSION_STATE_IN_PROGRESS:
			// Its lease ends it at the latest (45 s by default); until then, sending
			// could only wait or conflict.
			waits++
			if waits > 4*s.retry.attempts {
				return false, nil, res
			}
			wait = s.backoff(min(waits, 3), time.Second)
		case err == nil, status.Code(err) == codes.NotFound:
			// Failed (nothing exists at e签宝: the row may be sent as it is now) or none.
			return false, nil, res
		default:
			ce := readError(err)
			fails++
			switch {
			case ce.code == codes.Unauthenticated || ce.code == codes.PermissionDenied,
				ce.reason == unreachableReason && fails >= s.retry.attempts:
				// The create call cannot get further: report it now, send nothing.
				res.outcome, res.reason = outcomeFailed, ce.reason
				return true, nil, res
			case !ce.transient() || fails >= s.retry.attempts:
				// The create call meets the same problem and reports it with its outcome.
				return false, nil, res
			}
			wait = s.backoff(fails, ce.delay)
		}
		if s.stopped() || ctx.Err() != nil || !s.sleep(ctx, wait) {
			return false, nil, res
		}
	}
}

// uploadChunk is the size of the chunks an image is streamed in.
const uploadChunk = 64 << 10

// upload streams one image to UploadFile and returns its file ID, retrying transient
// failures. The file is sent under a name made of its content's hash: the local name
// often contains the person's name, and e签宝 needs only the extension.
func (s *sender) upload(ctx context.Context, path string) (string, error) {
	image, err := s.uploads.key(path)
	if err != nil {
		return "", err
	}
	if e, ok := s.ledger.get(image); ok {
		return e.FileID, nil
	}
	name := uploadName(image)
	for attempt := 1; ; attempt++ {
		id, err := s.uploadOnce(ctx, path, name)
		if err == nil {
			s.uploaded.Add(1)
			s.ledger.put(image, id, time.Now())
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

// imageKey is an image's identity in the ledger: the hex SHA-256 of its content and its
// extension (lower case).
func imageKey(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", status.Error(codes.FailedPrecondition, "the image cannot be opened")
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", status.Error(codes.FailedPrecondition, "the image could not be read")
	}
	return hex.EncodeToString(h.Sum(nil)) + strings.ToLower(filepath.Ext(path)), nil
}

// uploadName is the name an image is uploaded under: the first 16 hex digits of its
// SHA-256 and its extension.
func uploadName(image string) string {
	return "img-" + image[:16] + image[64:]
}

// uploadCache uploads each image once per run, however many rows name it and however
// many of them want it at the same time.
type uploadCache struct {
	mu      sync.Mutex
	entries map[string]*uploadEntry
	keys    map[string]string // imageKey by path, each image hashed once per run
}

type uploadEntry struct {
	done chan struct{}
	id   string
	err  error
}

func newUploadCache() *uploadCache {
	return &uploadCache{entries: map[string]*uploadEntry{}, keys: map[string]string{}}
}

// key returns path's imageKey, hashing the file the first time only.
func (c *uploadCache) key(path string) (string, error) {
	c.mu.Lock()
	k, ok := c.keys[path]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := imageKey(path)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.keys[path] = k
	c.mu.Unlock()
	return k, nil
}

// known returns the ledger's entry for path's image, without uploading anything.
func (c *uploadCache) known(path string, l *ledger) (ledgerEntry, bool) {
	k, err := c.key(path)
	if err != nil {
		return ledgerEntry{}, false
	}
	return l.get(k)
}

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

package service

import (
	"context"
	"crypto/md5" //nolint:gosec // e签宝's Content-MD5 is MD5 by specification
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/guard"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/translate"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// DefaultMaxFileBytes caps one uploaded file. Photos of an ID card or a face are a few
// megabytes; 20 MiB leaves room for a scanned PDF.
const DefaultMaxFileBytes = 20 << 20

// DefaultUploadIdleTimeout ends an upload stream that sends nothing for this long and
// removes its temporary file.
const DefaultUploadIdleTimeout = 30 * time.Second

// UploadFile spools the streamed file to a temporary file (memory stays bounded whatever
// its size) while computing its MD5, then makes e签宝's two upload calls. At most
// MAX_CONCURRENT_UPLOADS run at once; a stream silent for UPLOAD_IDLE_TIMEOUT is ended,
// and the temporary file exists only from the first bytes to the end of the call.
func (s *Evidence) UploadFile(stream evidencev1.EvidenceService_UploadFileServer) error {
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		return apierror.WithDetails(status.New(codes.ResourceExhausted, "as many uploads as the service allows are in progress; retry shortly"),
			apierror.Info(apierror.ReasonTooManyUploads, map[string]string{"retry_safe": "true"})).Err()
	}
	ctx := stream.Context()
	in := receive(stream, s.uploadIdle)
	defer in.stop()

	first, err := in.next()
	if errors.Is(err, io.EOF) {
		return apierror.Field("info", "upload.info_first", "no file description received")
	}
	if err != nil {
		return err // invalid info (a status naming the field), idle, or the stream's own failure
	}
	info := first.GetInfo()
	if info == nil {
		return apierror.Field("info", "upload.info_first", "the first message must carry the file's info (fileName)")
	}
	// e签宝's file-name rules (upstream.CheckFileName is their one home) are checked
	// before anything is buffered or a quota token spent.
	if err := upstream.CheckFileName(info.GetFileName()); err != nil {
		return apierror.Field("info.fileName", "file_name.esign", err.Error())
	}
	sp := &spool{}
	defer sp.remove()
	sum := md5.New() //nolint:gosec // see import
	size, err := s.receiveFile(in, sp, sum)
	if err != nil {
		return err
	}
	if size == 0 {
		return apierror.Field("chunk", "upload.empty", "the file is empty")
	}
	md5b64 := base64.StdEncoding.EncodeToString(sum.Sum(nil))
	// The same guard as every e签宝 call: admission and quota, the breaker, the retry of an
	// attempt that never reached e签宝, metrics and the debug line.
	fileID, err := guard.Call(ctx, s.guard, guard.Op(upstream.FileUploadOp.Name), func(ctx context.Context) (string, error) {
		// Every attempt reads the file from its start.
		if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
			return "", &upstream.LocalError{What: "reading the buffered upload", Err: err}
		}
		return s.files.UploadFile(ctx, translate.ToFileUpload(info, size, md5b64, sp.f))
	})
	if err != nil {
		return apierror.FromSubmission(ctx, err).Err()
	}
	return stream.SendAndClose(&evidencev1.UploadFileResponse{FileId: fileID, Size: size, ContentMd5: md5b64})
}

// receiveFile copies the chunks after the first message to the spool and the hash,
// refusing a file over the size limit or a second info message.
func (s *Evidence) receiveFile(in *receiver, sp *spool, sum hash.Hash) (int64, error) {
	var size int64
	for {
		msg, err := in.next()
		if errors.Is(err, io.EOF) {
			return size, nil
		}
		if err != nil {
			return 0, err // idle, or the stream's own status (cancelled, too large a message, invalid)
		}
		if msg.GetInfo() != nil {
			return 0, apierror.Field("info", "upload.info_first", "only the first message may carry the file's info")
		}
		chunk := msg.GetChunk()
		size += int64(len(chunk))
		if size > s.maxFileBytes {
			return 0, apierror.WithDetails(status.New(codes.ResourceExhausted, fmt.Sprintf("the file is larger than %d bytes", s.maxFileBytes)),
				apierror.Info(apierror.ReasonFileTooLarge, nil)).Err()
		}
		if len(chunk) == 0 {
			continue
		}
		if err := sp.write(chunk); err != nil {
			return 0, apierror.LocalFailure("the upload cannot be buffered")
		}
		sum.Write(chunk)
	}
}

// spool is an upload's temporary file, opened when the first bytes arrive, without a
// name (openSpool): closing it frees it, and so does the end of the process.
type spool struct {
	f *os.File
}

func (sp *spool) write(b []byte) error {
	if sp.f == nil {
		f, err := openSpool()
		if err != nil {
			return err
		}
		sp.f = f
	}
	_, err := sp.f.Write(b)
	return err
}

func (sp *spool) remove() {
	if sp.f != nil {
		_ = sp.f.Close()
	}
}

// receiver reads an upload stream on its own goroutine, so that the handler can stop
// waiting when the stream stays silent for the idle timeout. It reads one message per
// request (never ahead: a stream may reuse a message's buffer for the next one).
// Returning from the handler ends a gRPC stream, which ends a pending Recv; a REST
// stream's pending read ends with the request's read deadline.
type receiver struct {
	want chan struct{}
	msgs chan received
	done chan struct{}
	idle time.Duration
}

type received struct {
	msg *evidencev1.UploadFileRequest
	err error
}

func receive(stream evidencev1.EvidenceService_UploadFileServer, idle time.Duration) *receiver {
	r := &receiver{want: make(chan struct{}, 1), msgs: make(chan received), done: make(chan struct{}), idle: idle}
	go func() {
		for {
			select {
			case <-r.want:
			case <-r.done:
				return
			}
			msg, err := stream.Recv()
			select {
			case r.msgs <- received{msg, err}:
			case <-r.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// next returns the next message, or an error when none came within the idle timeout.
func (r *receiver) next() (*evidencev1.UploadFileRequest, error) {
	r.want <- struct{}{}
	t := time.NewTimer(r.idle)
	defer t.Stop()
	select {
	case m := <-r.msgs:
		return m.msg, m.err
	case <-t.C:
		return nil, apierror.WithDetails(status.New(codes.DeadlineExceeded, fmt.Sprintf("the upload sent nothing for %v", r.idle)),
			apierror.Info(apierror.ReasonUploadIdleTimeout, map[string]string{"retry_safe": "true"})).Err()
	}
}

func (r *receiver) stop() { close(r.done) }

package service

import (
	"context"
	"crypto/md5" //nolint:gosec // e签宝's Content-MD5 is MD5 by specification
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
)

// OpFileUpload names uploads (e签宝's upload URL, then the PUT of the bytes) in the guard's
// debug lines.
const OpFileUpload submission.Op = "file-upload"

// DefaultMaxFileBytes caps one uploaded file. Photos of an ID card or a face are a few
// megabytes; 20 MiB leaves room for a scanned PDF.
const DefaultMaxFileBytes = 20 << 20

// UploadFile spools the streamed file to a temporary file (memory stays bounded whatever
// its size) while computing its MD5, then makes e签宝's two upload calls.
func (s *Evidence) UploadFile(stream evidencev1.EvidenceService_UploadFileServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return apierror.Field("info", "upload.info_first", "no file description received")
	}
	if err != nil {
		return err // invalid info (a status naming the field), or the stream's own failure
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
	contentType := info.GetContentType()
	if contentType == "" {
		contentType = upstream.ContentTypeFor(info.GetFileName())
	}

	spool, err := os.CreateTemp("", "esign-evidence-upload-*")
	if err != nil {
		return status.Error(codes.Internal, "cannot buffer the upload")
	}
	defer func() {
		_ = spool.Close()
		_ = os.Remove(spool.Name())
	}()
	sum := md5.New() //nolint:gosec // see import
	size, err := s.receiveFile(stream, io.MultiWriter(spool, sum))
	if err != nil {
		return err
	}
	if size == 0 {
		return apierror.Field("chunk", "upload.empty", "the file is empty")
	}
	md5b64 := base64.StdEncoding.EncodeToString(sum.Sum(nil))
	// The same guard as every e签宝 call: admission and quota, the breaker, the retry of an
	// attempt that never reached e签宝, metrics and the debug line.
	fileID, err := submission.Call(ctx, s.guard, OpFileUpload, func(ctx context.Context) (string, error) {
		// Every attempt reads the file from its start.
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return "", status.Error(codes.Internal, "cannot read the buffered upload")
		}
		return s.files.UploadFile(ctx, upstream.FileUpload{
			Name: info.GetFileName(), ContentType: contentType, Size: size, ContentMD5: md5b64, Body: spool,
		})
	})
	if err != nil {
		return apierror.FromSubmission(ctx, err).Err()
	}
	return stream.SendAndClose(&evidencev1.UploadFileResponse{FileId: fileID, Size: size, ContentMd5: md5b64})
}

// receiveFile copies the chunks after the first message to w, refusing a file over the
// size limit or a second info message.
func (s *Evidence) receiveFile(stream evidencev1.EvidenceService_UploadFileServer, w io.Writer) (int64, error) {
	var size int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return size, nil
		}
		if err != nil {
			return 0, err // the stream's own status (cancelled, too large a message, invalid)
		}
		if msg.GetInfo() != nil {
			return 0, apierror.Field("info", "upload.info_first", "only the first message may carry the file's info")
		}
		size += int64(len(msg.GetChunk()))
		if size > s.maxFileBytes {
			return 0, status.Error(codes.ResourceExhausted, fmt.Sprintf("the file is larger than %d bytes", s.maxFileBytes))
		}
		if _, err := w.Write(msg.GetChunk()); err != nil {
			return 0, status.Error(codes.Internal, "cannot buffer the upload")
		}
	}
}

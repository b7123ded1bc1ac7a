package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/inprocess"
	"github.com/esign-evidence/esign-evidence/server/observe"
	"github.com/esign-evidence/esign-evidence/validation"
)

// UploadPath is the REST route of UploadFile: POST the file's bytes as the body (or a
// multipart/form-data form with the file in its part "file"); the fileName query
// parameter names the file (a form's file part may name it instead).
const UploadPath = "/v1/files"

// uploadChunk is the size of the chunks a REST upload is handed to UploadFile in.
const uploadChunk = 64 << 10

// formOverhead is what a multipart/form-data envelope may add to the file's size: the
// boundaries, the part headers and a few small form fields.
const formOverhead = 64 << 10

// uploadMethod is UploadFile's full gRPC method name.
var uploadMethod = "/" + evidencev1.EvidenceService_ServiceDesc.ServiceName + "/UploadFile"

// uploadHandler serves a REST upload with the UploadFile handler, through the same stream
// interceptors (authentication, logging, validation) as a gRPC upload: the handler
// receives the file's info from the query (and a form's file part), then the file's
// bytes in chunks. Only the file's bytes reach e签宝: a body in a media type this route
// does not take is refused (415) before any of it is read.
func uploadHandler(mux *runtime.ServeMux, ch *inprocess.Channel, maxFile int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md := metadata.MD{}
		if v := r.Header.Get("Authorization"); v != "" {
			md.Set("authorization", v)
		}
		if v := r.Header.Get("X-Request-Id"); v != "" {
			md.Set(observe.RequestIDKey, v)
		}
		q := r.URL.Query()
		for _, p := range []string{"fileName", "contentType"} {
			// The contract's strings are UTF-8; bytes that are not cannot even be put in
			// the message, so they are refused here, naming the parameter.
			if !utf8.ValidString(q.Get(p)) {
				writeStatus(w, http.StatusBadRequest, apierror.Invalid(&validation.Error{Violations: []validation.FieldViolation{
					{Field: p, Rule: "string.utf8", Description: "is not valid UTF-8"}}}))
				return
			}
		}
		declared, boundary, kerr := uploadKind(r.Header.Get("Content-Type"))
		if kerr != nil {
			writeStatus(w, kerr.httpStatus, kerr.st)
			return
		}
		limit := maxFile
		if boundary != "" {
			limit += formOverhead
		}
		ctx, ts := inprocess.StreamContext(metadata.NewOutgoingContext(r.Context(), md), uploadMethod)
		ss := &uploadStream{
			ctx:      ctx,
			ts:       ts,
			info:     &evidencev1.FileInfo{FileName: q.Get("fileName"), ContentType: q.Get("contentType")},
			declared: declared,
			boundary: boundary,
			body:     http.MaxBytesReader(w, r.Body, limit),
			max:      maxFile,
		}
		err := ch.ServeStream(uploadMethod, ss)
		if v := ts.Header().Get(observe.RequestIDKey); len(v) > 0 {
			w.Header().Set("X-Request-Id", v[0])
		}
		if uerr := ss.uploadError(); uerr != nil {
			writeStatus(w, uerr.httpStatus, uerr.st)
			return
		}
		if rerr := ss.readError(); rerr != nil {
			writeReadError(w, rerr, "the file", apierror.ReasonFileTooLarge, maxFile)
			return
		}
		if err != nil {
			if st := status.Convert(err); apierror.ErrorInfoOf(st).GetReason() == apierror.ReasonFileTooLarge {
				writeStatus(w, http.StatusRequestEntityTooLarge, st)
				return
			}
			runtime.HTTPError(r.Context(), mux, errorMarshaler, w, r, err)
			return
		}
		b, err := newMarshaler().Marshal(ss.resp)
		if err != nil {
			runtime.HTTPError(r.Context(), mux, errorMarshaler, w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// uploadStream is UploadFile's server stream over an HTTP request: the first message is
// the file's info, the next ones the file's bytes in chunks, then io.EOF. A form is read
// up to its file part when the first message is asked for, under the handler's idle
// timeout like every other read.
type uploadStream struct {
	ctx      context.Context
	ts       *inprocess.TransportStream
	info     *evidencev1.FileInfo
	infoSent bool
	// declared is the body's declared file type; boundary, for a form, its boundary.
	declared, boundary string
	body               io.Reader
	buf                []byte
	max                int64
	// readErr is why the body could not be read (too large, broken off, too slow), and
	// upErr why it could not be taken (a form without its file, a media type this route
	// does not take); the answer then says so rather than the handler's status. The
	// handler may stop waiting for a read (its idle timeout) that ends later, so both are
	// guarded.
	mu      sync.Mutex
	readErr error
	upErr   *uploadError
	resp    *evidencev1.UploadFileResponse
}

func (s *uploadStream) readError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readErr
}

func (s *uploadStream) uploadError() *uploadError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upErr
}

var _ grpc.ServerStream = (*uploadStream)(nil)

func (s *uploadStream) RecvMsg(m any) error {
	req, ok := m.(*evidencev1.UploadFileRequest)
	if !ok {
		return status.Errorf(codes.Internal, "unexpected message %T", m)
	}
	if !s.infoSent {
		s.infoSent = true
		declared := s.declared
		if s.boundary != "" {
			form, err := openForm(s.body, s.boundary)
			if err != nil {
				return s.failed(err)
			}
			s.body, declared = form, form.declared
			if s.info.FileName == "" {
				s.info.FileName = form.fileName
			}
		}
		if s.info.ContentType == "" {
			s.info.ContentType = declaredContentType(declared)
		}
		req.Part = &evidencev1.UploadFileRequest_Info{Info: s.info}
		return nil
	}
	if s.buf == nil {
		s.buf = make([]byte, uploadChunk)
	}
	n, err := io.ReadFull(s.body, s.buf)
	if n > 0 && (err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		// The handler writes the chunk out before asking for the next one, so the
		// buffer is reused.
		req.Part = &evidencev1.UploadFileRequest_Chunk{Chunk: s.buf[:n]}
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return s.failed(err)
}

// failed records why the body could not be read or taken and returns the status the
// handler sees.
func (s *uploadStream) failed(err error) error {
	var uerr *uploadError
	if errors.As(err, &uerr) {
		s.mu.Lock()
		s.upErr = uerr
		s.mu.Unlock()
		return uerr.st.Err()
	}
	s.mu.Lock()
	s.readErr = err
	s.mu.Unlock()
	var (
		tooBig *http.MaxBytesError
		netErr net.Error
	)
	switch {
	case errors.As(err, &tooBig):
		return apierror.WithDetails(status.New(codes.ResourceExhausted, fmt.Sprintf("the file is larger than %d bytes", s.max)),
			apierror.Info(apierror.ReasonFileTooLarge, nil)).Err()
	case errors.As(err, &netErr) && netErr.Timeout():
		// As the answer says (writeReadError: 408), so the call's line says it too.
		return apierror.WithDetails(status.New(codes.DeadlineExceeded, "the file did not arrive within the server's read timeout"),
			apierror.Info(apierror.ReasonRequestTimeout, nil)).Err()
	}
	return apierror.WithDetails(status.New(codes.InvalidArgument, "the file could not be read"),
		apierror.Info(apierror.ReasonInvalidRequest, nil)).Err()
}

func (s *uploadStream) SendMsg(m any) error {
	resp, ok := m.(*evidencev1.UploadFileResponse)
	if !ok {
		return status.Errorf(codes.Internal, "unexpected message %T", m)
	}
	s.resp = resp
	return nil
}

func (s *uploadStream) Context() context.Context { return s.ctx }

func (s *uploadStream) SetHeader(md metadata.MD) error  { return s.ts.SetHeader(md) }
func (s *uploadStream) SendHeader(md metadata.MD) error { return s.ts.SendHeader(md) }
func (s *uploadStream) SetTrailer(md metadata.MD)       { _ = s.ts.SetTrailer(md) }

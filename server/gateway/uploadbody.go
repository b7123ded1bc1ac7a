package gateway

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream"
	"github.com/esign-evidence/esign-evidence/validation"
)

// FileTypes are the media types a REST upload's body (or its file part) may declare:
// the file's own bytes follow, nothing else. openapi/upload.swagger.json lists them as
// the route's "consumes".
var FileTypes = []string{"application/octet-stream", "image/jpeg", "image/png", "application/pdf"}

// FilePart is the multipart/form-data part that carries the file, as curl -F file=@x.jpg
// and the usual HTTP libraries send it.
const FilePart = "file"

// maxSkippedParts bounds the form fields read and discarded before the file part.
const maxSkippedParts = 8

// whatToSend tells a caller how to send a file.
var whatToSend = "send the file's bytes as the body with Content-Type " + strings.Join(FileTypes, ", ") +
	" (or none), or multipart/form-data with the file in the part named \"" + FilePart + "\""

func fileType(mediaType string) bool {
	for _, t := range FileTypes {
		if mediaType == t {
			return true
		}
	}
	return false
}

// uploadError is why an upload's body cannot be taken, with its HTTP status: 415 for a
// media type this route does not take, 400 for a form without its file.
type uploadError struct {
	httpStatus int
	st         *status.Status
}

func (e *uploadError) Error() string { return e.st.Message() }

func (e *uploadError) GRPCStatus() *status.Status { return e.st }

func unsupportedType(field, desc string) *uploadError {
	return &uploadError{httpStatus: http.StatusUnsupportedMediaType, st: apierror.Invalid(&validation.Error{Violations: []validation.FieldViolation{
		{Field: field, Rule: "upload.media_type", Description: desc + "; " + whatToSend}}})}
}

func badForm(desc string) *uploadError {
	return &uploadError{httpStatus: http.StatusBadRequest, st: apierror.Invalid(&validation.Error{Violations: []validation.FieldViolation{
		{Field: FilePart, Rule: "upload.form", Description: desc}}})}
}

// uploadKind reads a REST upload's Content-Type (the header alone): the body is the file
// (raw), or a multipart/form-data form whose boundary is returned. A declared file type
// is returned as declared.
func uploadKind(contentType string) (declared, boundary string, err *uploadError) {
	if contentType == "" {
		return "", "", nil // RFC 9110 8.3: the recipient may take the body as octet-stream
	}
	mt, params, perr := mime.ParseMediaType(contentType)
	switch {
	case perr != nil:
		return "", "", unsupportedType("Content-Type", "is not a media type")
	case fileType(mt):
		return mt, "", nil
	case mt == "multipart/form-data":
		if params["boundary"] == "" {
			return "", "", badForm("the multipart/form-data Content-Type has no boundary")
		}
		return "", params["boundary"], nil
	}
	// The caller's media type is not quoted: an error answer echoes no request value.
	return "", "", unsupportedType("Content-Type", "this route does not take that media type")
}

// formFile is the file part of a multipart/form-data upload: its bytes, its file name
// (the part's filename parameter, without any directory) and its declared type. Reading
// past the file part's end checks that no second file follows.
type formFile struct {
	mr       *multipart.Reader
	part     *multipart.Part
	fileName string
	declared string
	done     bool
}

// openForm reads a form up to its file part: the part named FilePart, or else the first
// part with a file name. Form fields before it (at most maxSkippedParts) are discarded.
func openForm(body io.Reader, boundary string) (*formFile, error) {
	mr := multipart.NewReader(body, boundary)
	for range maxSkippedParts + 1 {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, badForm(fmt.Sprintf("the form has no file: put it in the part named %q", FilePart))
		}
		if err != nil {
			return nil, formReadError(err)
		}
		if p.FormName() != FilePart && p.FileName() == "" {
			if _, err := io.Copy(io.Discard, p); err != nil {
				return nil, formReadError(err)
			}
			continue
		}
		// The file name without any directory: Go drops a "/" path, some browsers send a
		// Windows one.
		name := p.FileName()
		name = name[strings.LastIndexAny(name, `/\`)+1:]
		f := &formFile{mr: mr, part: p, fileName: name}
		// Go's reader decodes quoted-printable itself; any other transfer encoding would
		// send e签宝 the encoding instead of the file.
		switch strings.ToLower(p.Header.Get("Content-Transfer-Encoding")) {
		case "", "binary", "8bit", "7bit":
		default:
			return nil, unsupportedType(FilePart, "the file part has a Content-Transfer-Encoding this route does not decode")
		}
		if ct := p.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || !fileType(mt) {
				return nil, unsupportedType(FilePart, "the file part's Content-Type is not one this route takes")
			}
			f.declared = mt
		}
		return f, nil
	}
	return nil, badForm(fmt.Sprintf("more than %d form fields before the file", maxSkippedParts))
}

// formReadError keeps a read error that says why the body could not be read (too large,
// too slow) and turns a malformed form into a 400.
func formReadError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	type timeout interface{ Timeout() bool }
	if t, ok := err.(timeout); ok && t.Timeout() {
		return err
	}
	return badForm("the multipart/form-data body is malformed")
}

// Read reads the file part; at its end, the rest of the form, which must hold no other
// file.
func (f *formFile) Read(b []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	n, err := f.part.Read(b)
	if !errors.Is(err, io.EOF) {
		if err != nil {
			err = formReadError(err)
		}
		return n, err
	}
	f.done = true
	for range maxSkippedParts + 1 {
		p, perr := f.mr.NextPart()
		if errors.Is(perr, io.EOF) {
			return n, io.EOF
		}
		if perr != nil {
			return n, formReadError(perr)
		}
		if p.FormName() == FilePart || p.FileName() != "" {
			return n, badForm("the form holds more than one file: upload one file per request")
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return n, formReadError(err)
		}
	}
	return n, badForm(fmt.Sprintf("more than %d form fields after the file", maxSkippedParts))
}

// declaredContentType is the content type to declare to e签宝 when the caller did not
// name one: PDF when the body or file part says so, else as the file name implies.
func declaredContentType(declared string) string {
	if declared == upstream.ContentTypePDF {
		return upstream.ContentTypePDF
	}
	return ""
}
